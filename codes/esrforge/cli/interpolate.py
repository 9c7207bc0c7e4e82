"""``python codes/scripts/interpolate.py --a PSNR.pth --b GAN.pth (--alpha 0.8 --output OUT | --sweep 0:1:0.1 --gt DIR)``.

Network interpolation (ESRGAN, section 3.4): the weights ``(1 - alpha) * A + alpha * B`` of two checkpoints
of one architecture, typically the L1 (PSNR) model and the GAN model trained from it. ``alpha`` 0 is A,
1 is B; between them, textures grow with alpha while artefacts and noise stay lower than B's.

* ``--alpha A --output FILE`` writes that blend (``.pth``, or ``.safetensors`` with the options that
  build it). Any layout the loader reads works for A and B; B must fit A's network.
* ``--sweep START:STOP:STEP --gt DIR`` scores every alpha on the HR images in DIR (LR by MATLAB bicubic,
  or ``--lq DIR``) and writes ``interpolation.csv``, ``interpolation.png`` (each metric against alpha)
  and ``crops.png`` (the same crop of the first images at every alpha, and the HR) to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.imageio import to_uint8, write_image
from ..inference.scoring import folder_set, val_loader
from ..inference.sweeps import Candidate, crop_grid, score_candidates, write_results
from ..networks import Description, load_generator
from ..networks.base import StateDict
from ..networks.saved import save_generator
from .common import exit_with
from .scoring import (
    add_scoring_arguments,
    build_metrics,
    check_scoring_arguments,
    metric_options,
    scoring_device,
)

log = logging.getLogger("esrforge")
CROP, CROP_IMAGES = 128, 3
MAX_ALPHAS = 1000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Blend two generators of one architecture; score the blends."
    )
    parser.add_argument("--a", type=Path, required=True, help="alpha 0: e.g. the L1 (PSNR) model")
    parser.add_argument("--b", type=Path, required=True, help="alpha 1: e.g. the GAN model")
    parser.add_argument("--alpha", type=float, help="the weight of B in the blend written to --output")
    parser.add_argument("--output", type=Path, help="file of the blend: .pth or .safetensors")
    parser.add_argument("--sweep", help="START:STOP:STEP of alphas to score, e.g. 0:1:0.1 (needs --gt)")
    parser.add_argument("--gt", type=Path, help="folder of HR images to score the sweep on")
    parser.add_argument("--lq", type=Path, help="folder of matching LR images (default: bicubic of --gt)")
    parser.add_argument(
        "--out", type=Path, default=Path("interpolation"), help="folder of the sweep's results"
    )
    add_scoring_arguments(parser, "psnr_y,ssim_y,lpips_alex")
    args = parser.parse_args(argv)
    if args.alpha is None and args.sweep is None:
        parser.error("give --alpha and --output, or --sweep and --gt")
    if (args.alpha is None) != (args.output is None):
        parser.error("--alpha and --output go together")
    if args.sweep is not None and args.gt is None:
        parser.error("--sweep needs --gt, the HR images to score on")
    if args.alpha is not None:
        flag = f"--alpha {args.alpha:g}"
        require_finite(flag, args.alpha)
        warn_extrapolation(flag, [args.alpha])
    if args.sweep is not None:
        check_scoring_arguments(args, args.out)
    return args


def require_finite(flag: str, *numbers: float) -> None:
    if not all(math.isfinite(number) for number in numbers):
        raise ValueError(f"{flag}: expected finite numbers")


def warn_extrapolation(flag: str, values: Sequence[float]) -> None:
    """Alphas outside [0, 1] can be meant, but are seldom what one wants."""
    if min(values) < 0 or max(values) > 1:
        log.warning("%s: alphas below 0 or above 1 extrapolate beyond A and B (artefacts grow fast)", flag)


def alphas(text: str) -> list[float]:
    """``0:1:0.1`` -> 0, 0.1, ..., 1 (the stop included; at most :data:`MAX_ALPHAS`)."""
    flag = f"--sweep {text}"
    try:
        start, stop, step = (float(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"{flag}: expected START:STOP:STEP, e.g. 0:1:0.1") from None
    require_finite(flag, start, stop, step)
    if step <= 0 or stop < start:
        raise ValueError(f"{flag}: expected START <= STOP and a positive STEP")
    intervals = round((stop - start) / step, 6)
    if not intervals < MAX_ALPHAS:  # also for inf: 1e308 wide
        raise ValueError(f"{flag}: expected at most {MAX_ALPHAS} alphas; use a larger STEP")
    values = [round(start + i * step, 10) for i in range(int(intervals) + 1)]
    warn_extrapolation(flag, values)
    return values


def interpolate(a: StateDict, b: StateDict, alpha: float) -> StateDict:
    """``(1 - alpha) * a + alpha * b`` of every floating-point tensor (exactly ``a`` at 0, ``b`` at 1);
    other tensors (counters) are ``a``'s. Both need the same keys and shapes."""
    if a.keys() != b.keys():
        raise ValueError(f"the checkpoints hold different tensors: {sorted(a.keys() ^ b.keys())[:3]}")
    out = {}
    for key, x in a.items():
        y = b[key]
        if x.shape != y.shape:
            raise ValueError(f"{key}: shapes {list(x.shape)} and {list(y.shape)} differ")
        out[key] = torch.lerp(x.float(), y.float(), alpha).to(x.dtype) if x.is_floating_point() else x.clone()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sweep_alphas = alphas(args.sweep) if args.sweep is not None else []  # a bad --sweep fails first
    a = load_generator(args.a)
    try:
        b = load_generator(args.b, options=a.options)
    except ValueError as error:
        raise ValueError(f"--b {error} (--a is {a.description.line()})") from None
    # copies: the sweep loads each blend into A's module, which would change a state dict sharing its tensors
    weights_a = {key: tensor.clone() for key, tensor in a.module.state_dict().items()}
    weights_b = b.module.state_dict()
    if args.alpha is not None:
        save_generator(args.output, interpolate(weights_a, weights_b, args.alpha), a.options)
        log.info("wrote %s: %g of %s and %g of %s", args.output, 1 - args.alpha, args.a, args.alpha, args.b)
    if args.sweep is not None:
        sweep(args, sweep_alphas, a.module, a.description, weights_a, weights_b)
    return 0


def sweep(
    args: argparse.Namespace,
    values: list[float],
    module: nn.Module,
    description: Description,
    wa: StateDict,
    wb: StateDict,
) -> None:
    """Score every alpha of ``values`` on ``--gt``; write the table, plot and crop grid."""
    device = scoring_device(args.device)
    module.to(device)
    options = folder_set(args.gt, args.lq, name=args.gt.name)
    sets = [(options, val_loader(options, description.scale))]
    metrics = build_metrics(metric_options(args.metrics), description.scale, device)
    crops: dict[str, list[np.ndarray]] = {}
    truth: list[np.ndarray] = []

    def keep(candidate: Candidate, index: int, sample: dict[str, Any], sr: Tensor) -> None:
        if index < CROP_IMAGES:
            crops.setdefault(f"alpha {candidate.x:g}", []).append(centre(sr))
            if len(truth) <= index:
                truth.append(centre(sample["hq"]))

    def load(alpha: float, into: nn.Module) -> None:
        into.load_state_dict(interpolate(wa, wb, alpha))

    candidates = [Candidate(alpha, "", partial(load, alpha)) for alpha in values]
    rows = score_candidates(module, description, candidates, sets, metrics, "alphas", keep, args.tile)
    write_results(rows, metrics, args.out, "interpolation", "alpha")
    crops["HR"] = truth
    write_image(args.out / "crops.png", crop_grid(crops))
    log.info("wrote %s", args.out / "crops.png")


def centre(image: Tensor) -> np.ndarray:
    """The central ``CROP`` square (or less) of a ``1 x C x H x W`` [0, 1] image, as uint8 RGB."""
    height, width = image.shape[-2:]
    size = min(CROP, height, width)
    top, left = (height - size) // 2, (width - size) // 2
    crop = image[0, :3, top : top + size, left : left + size].float().cpu().clamp(0, 1)
    return to_uint8(crop.permute(1, 2, 0).numpy())


def run() -> None:
    exit_with(main)
