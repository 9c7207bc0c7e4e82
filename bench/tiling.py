"""The tiling comparisons of bench/infer.py: the error of tiled against untiled output for several
(pad, overlap) settings, and Real-ESRGAN's RealESRGANer (speed and error) beside esrforge's tiler."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "codes"))

from esrforge.inference import TileOptions, Upscaler
from esrforge.inference.seams import grid_cuts, seam_errors
from esrforge.probes import psnr, smooth_image
from measure import DTYPES, best_time, build_model, tiled_size, work_ratio

SEAM_SETTINGS = ((16, 64), (8, 32), (12, 24), (8, 16), (4, 8), (10, 0), (32, 0))
"""(pad, overlap) pairs compared by :func:`seams`; overlap 0 is Real-ESRGAN's crop-and-paste."""


def seam_strip(quick: bool) -> tuple[int, int, int]:
    """The seam measurements' LR strip ``(height, width)`` and tile size."""
    return (32, 320, 96) if quick else (64, 768, 128)


SEAM_HEADER = (
    f"{'tiler':>26} {'work':>5} {'PSNR dB':>8} {'% > 1/255':>9} {'max /255':>8} {'border':>7} {'inside':>7}"
)


def seam_row(
    label: str, work: float, tiled: torch.Tensor, whole: torch.Tensor, cuts: list[int], band: int
) -> str:
    """One line of the seam table: ``tiled`` against ``whole`` (``(C, H, W)`` in [0, 1]), errors in 1/255."""
    error = (tiled - whole).abs() * 255
    border, inside = seam_errors(tiled - whole, cuts, 4, band)
    return (
        f"{label:>26} {work:5.2f} {psnr(tiled, whole):8.2f} {float((error > 1).float().mean()) * 100:9.3f}"
        f" {float(error.max()):8.2f} {border * 255:7.4f} {inside * 255:7.4f}"
    )


def paste_work(height: int, width: int, tile: int, pad: int = 10, pre_pad: int = 10) -> float:
    """Network input pixels per image pixel for RealESRGANer's tiles: the image padded by ``pre_pad``, cut
    every ``tile`` pixels, each tile with ``pad`` context per side clipped at the edges."""

    def axis(length: int) -> float:
        padded = length + pre_pad
        starts = range(0, padded, tile)
        return sum(min(start + tile + pad, padded) - max(start - pad, 0) for start in starts) / length

    return axis(height) * axis(width)


def seams(args: argparse.Namespace, device: torch.device) -> None:
    """Tiled vs untiled on the seam test's stand-in model (64/nb/32): PSNR, pixels off, border vs inside."""
    height, width, tile = seam_strip(args.quick)
    model = build_model(args.nb, device, DTYPES[args.precision], realish=True)
    image = smooth_image(height, width, seed=1)
    whole = Upscaler(model, TileOptions(tile_size=None))(image)
    print(
        f"\n== tiling error, {width}x{height} input, tile {tile}, x4 RRDBNet 64/{args.nb}/32 (real-ish weights);"
        " border/inside: mean error on the tile cuts / in the band around them"
    )
    print(SEAM_HEADER)
    for pad, overlap in SEAM_SETTINGS:
        upscaler = Upscaler(model, TileOptions(tile_size=tile, tile_pad=pad, tile_overlap=overlap))
        tiled = upscaler(image)
        cuts = grid_cuts(upscaler.plan(height, width), 4)
        work = work_ratio(height, width, tile, overlap, pad)
        print(seam_row(f"pad {pad} overlap {overlap}", work, tiled, whole, cuts, max(overlap, 32)))


def import_realesrgan(path: str | None) -> tuple[type, type] | None:
    """basicsr's RRDBNet and RealESRGANer, importable from ``path``; None (with how to get them) if not."""
    if path:
        sys.path.insert(0, path)
    try:
        import torchvision.transforms.functional as tv_functional

        # basicsr 1.4.2 imports a module torchvision removed in 0.17; alias it to its successor.
        sys.modules.setdefault("torchvision.transforms.functional_tensor", tv_functional)
        from basicsr.archs.rrdbnet_arch import RRDBNet as BasicRRDBNet
        from realesrgan import RealESRGANer
    except ImportError as err:
        print(f"   skipped: realesrgan does not import ({err}); install it into a throwaway folder:")
        print(
            "   pip install --target DIR --no-deps realesrgan==0.3.0 basicsr==1.4.2 addict yapf lmdb future"
            " scipy requests; then pass --realesrgan-path DIR"
        )
        return None
    return BasicRRDBNet, RealESRGANer


def realesrgan(
    args: argparse.Namespace, device: torch.device, ours: dict[tuple[int, int, str], float]
) -> None:
    """RealESRGANer's s/image at ``--tile`` beside ours from the speed section, and its tiling error."""
    print("\n== Real-ESRGAN 0.3.0 (RealESRGANer, tile_pad 10, pre_pad 10, crop-and-paste)")
    imported = import_realesrgan(args.realesrgan_path)
    if imported is None:
        return
    basic_rrdb, realesrganer = imported

    def upsampler(model: nn.Module, tile: int) -> object:
        weights = Path("/tmp/bench_infer_rrdb.pth")
        torch.save({"params_ema": model.float().cpu().state_dict()}, weights)
        network = basic_rrdb(
            num_in_ch=3, num_out_ch=3, num_feat=64, num_block=args.nb, num_grow_ch=32, scale=4
        )
        half = args.precision == "fp16"
        return realesrganer(
            4, str(weights), model=network, tile=tile, tile_pad=10, pre_pad=10, half=half, device=device
        )

    def enhance(runner: object, image: torch.Tensor) -> torch.Tensor:
        bgr = (image.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per tile
            output, _ = runner.enhance(bgr)  # type: ignore[attr-defined]
        return torch.from_numpy(output[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255

    tiled_runner = upsampler(build_model(args.nb, torch.device("cpu"), torch.float32), args.tile)
    enhance(tiled_runner, smooth_image(16, 16))  # first-call set-up, as the speed section's
    for height, width in args.sizes:
        image = smooth_image(height, width)
        tile = tiled_size(args, height, width)
        tiled_runner.tile_size = tile  # type: ignore[attr-defined]
        seconds = best_time(partial(enhance, tiled_runner, image), args.repeats)
        mine = ours.get((height, width, "tiled"))
        versus = (
            f"; esrforge (pad {args.pad} overlap {args.overlap}): {mine:.2f} s, {mine / seconds:.2f}x"
            if mine
            else ""
        )
        work = paste_work(height, width, tile)
        print(f"   {width}x{height}: tile {tile} (work {work:.2f}): {seconds:.2f} s/image{versus}")
    height, width, tile = seam_strip(args.quick)
    realish = build_model(args.nb, torch.device("cpu"), torch.float32, realish=True)
    image = smooth_image(height, width, seed=1)
    whole = enhance(upsampler(realish, 0), image)
    tiled = enhance(upsampler(realish, tile), image)
    cuts = [4 * tile * k for k in range(1, math.ceil(width / tile))]
    work = paste_work(height, width, tile)
    print(f"   tiling error on the seams section's strip ({width}x{height}, tile {tile}), uint8 outputs:")
    print(SEAM_HEADER)
    print(seam_row("RealESRGANer pad 10", work, tiled, whole, cuts, 32))
