"""Score a generator on validation sets: the loop that validation, checkpoint sweeps and interpolation share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.base import ValDatasetOptions, build_dataset
from ..data.loader import make_val_loader
from ..metrics.base import Metric
from ..networks.base import Description
from .tiling import TileOptions, Upscaler

OnImage = Callable[[int, dict[str, Any], Tensor], None]
"""Called with the image's index in the loader, its sample (lq, hq, name) and the [0, 1] output."""


LUMA_WEIGHTS = (4899.0, 9617.0, 1868.0)
"""OpenCV's fixed-point RGB-to-grey weights (0.299, 0.587, 0.114 times 2**14)."""


def val_loader(options: ValDatasetOptions, scale: int, rank: int = 0, world_size: int = 1) -> DataLoader[Any]:
    """The loader of one validation set (this process's share of its images)."""
    return make_val_loader(build_dataset(options, scale), rank, world_size)


def folder_set(gt: Path, lq: Path | None = None, name: str = "") -> ValDatasetOptions:
    """A validation set of the HR images in folder ``gt`` (LR from ``lq``, else MATLAB bicubic of HR)."""
    return ValDatasetOptions(type="FullImageDataset", name=name, dataroot=gt, dataroot_lq=lq)


@torch.no_grad()
def score_set(
    model: nn.Module,
    loader: DataLoader[Any],
    metrics: Sequence[Metric[Any]],
    description: Description,
    tile: Literal["auto"] | int | None,
    label: str = "validation",
    progress: bool = True,
    on_image: OnImage | None = None,
) -> Tensor:
    """Sums of each metric over the loader's images, then the image count: float64 on the model's device.

    ``tile``: a size, auto (the largest that fits, found on the first image) or None (whole images).
    The model is run in eval mode (and put back as it was); ``on_image`` sees every output.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    upscaler = Upscaler(model, TileOptions(tile_size=tile), description=description)
    sums = torch.zeros(len(metrics) + 1, dtype=torch.float64, device=device)
    bar = tqdm(loader, desc=label, leave=False, unit="img", disable=None if progress else True)
    for index, sample in enumerate(bar):
        lq, hq = sample["lq"].to(device), sample["hq"].to(device)
        sr = upscaler(lq[0]).to(device)[None].clamp(0, 1)
        scored = (luma(sr), hq[:, :1]) if bool(sample["grey"].all()) else (sr, hq)
        try:
            values = [metric(*scored).sum() for metric in metrics]
        except ValueError as error:  # an image a metric cannot score (too small for its crop or network)
            raise ValueError(f"{label}: {', '.join(sample['name'])}: {error}") from None
        sums += torch.stack([*values, torch.tensor(float(len(sr)), dtype=torch.float64, device=device)])
        if on_image is not None:
            on_image(index, sample, sr)
    model.train(was_training)
    return sums


def luma(rgb: Tensor) -> Tensor:
    """``(B, 1, H, W)`` BT.601 luma of ``(B, 3, H, W)`` RGB in [0, 1], computed as ``cv2.COLOR_RGB2GRAY``
    computes it on the 8-bit image (fixed point, 14 bits): how test.py writes a grey image's output,
    which the published protocol scores on its one channel."""
    levels = torch.floor(rgb.clamp(0, 1) * 255 + 0.5)
    weights = rgb.new_tensor(LUMA_WEIGHTS).reshape(1, 3, 1, 1)
    return torch.floor(((levels * weights).sum(1, keepdim=True) + 8192) / 16384) / 255


def means(sums: Tensor, metrics: Sequence[Metric[Any]]) -> dict[str, float]:
    """``{metric name: mean}`` of :func:`score_set`'s sums (reduced over processes where needed)."""
    count = max(float(sums[-1]), 1.0)
    return {metric.name: float(sums[i]) / count for i, metric in enumerate(metrics)}
