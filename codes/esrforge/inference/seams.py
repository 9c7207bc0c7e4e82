"""Measure what tiling does to an output: PSNR against the untiled output and the error along tile borders.

Tiles meet at the cuts between their cores; there a crop-and-paste tiler switches from one tile to the
next and its error peaks (a seam). :func:`seam_errors` compares the mean absolute difference on the
border (HR pixels within one LR pixel of a vertical cut) with the rest of a band around the cut (for
the feathered tiler, the ``tile_overlap`` pixels that two tiles share, where tiling has any effect).
Used by the seam test and ``bench/infer.py``.

:func:`realish_rrdb` builds the stand-in for a trained model that both use: a freshly initialised RRDBNet
barely looks past its neighbours, so it would not test the overlap; with every convolution Kaiming-normal
(leaky slope 0.2, fan-in) times 2, perturbations travel far through the blocks, as in a trained network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..networks import RRDBNet, RRDBNetOptions
from ..probes import smooth_image
from .grid import TileGrid


def grid_cuts(grid: TileGrid, scale: int) -> list[int]:
    """The HR columns where ``grid``'s neighbouring tiles meet (the middles of their shared bands)."""
    cuts = [scale * (span.window_start + span.ramp_in // 2) for span in grid.cols[1:]]
    if not cuts:
        raise ValueError("the grid has a single column of tiles: no border to measure")
    return cuts


def seam_errors(difference: Tensor, cuts: list[int], scale: int, band: int) -> tuple[float, float]:
    """Mean ``|difference|`` ``(C, H, W)`` on the HR columns ``cuts`` (within one LR pixel), and in the
    rest of ``band`` LR pixels centred on them."""
    columns = torch.arange(difference.shape[-1], dtype=torch.float32) + 0.5
    distance = torch.stack([(columns - cut).abs() for cut in cuts]).amin(0)
    per_column = difference.abs().float().mean(dim=(0, 1)).cpu()
    border = distance < scale
    inside = (distance >= scale) & (distance < scale * band / 2)
    return float(per_column[border].mean()), float(per_column[inside].mean())


def realish_rrdb(nf: int = 32, nb: int = 23, gc: int = 32, scale: int = 4) -> RRDBNet:
    """An RRDBNet in eval mode with Kaiming x 2 weights and an image-like output (mean 0.5, std 0.2)."""
    torch.manual_seed(0)
    model = RRDBNet(RRDBNetOptions(nf=nf, nb=nb, gc=gc, scale=scale)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.2, mode="fan_in")
                module.weight.mul_(2.0)
        probe = model(smooth_image(48, 48, seed=2)[None])
        gain = 0.2 / probe.std()
        last, bias = model.conv_last.weight, model.conv_last.bias
        assert bias is not None
        last.mul_(gain)
        bias.mul_(gain).add_(0.5 - gain * probe.mean())
    return model
