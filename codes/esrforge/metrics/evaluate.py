"""Score super-resolved images (or the bicubic baseline) against ground truth: PSNR/SSIM on Y and RGB.

Usage (from the repository root)::

    python codes/scripts/evaluate.py --gt DIR (--sr DIR | --bicubic) --scale 4 [--csv out.csv]

* Every GT image is cropped top-left to a multiple of the scale; ``crop_border`` (default: the scale)
  pixels are shaved from each side before scoring; Y is BT.601 (16..235) as MATLAB computes it.
* ``--bicubic``: SR = MATLAB bicubic upscale of the MATLAB bicubic downscale of the cropped GT, both
  rounded to 8 bits (how the published bicubic baselines are made).
* ``--sr DIR``: an SR file belongs to the GT file with the same stem, or to the GT whose stem followed by
  ``_`` starts the SR stem (``baby_x4.png``, ``baby_SR.png``, ``baby_ESRGAN_x4.png`` all match ``baby.png``;
  the longest such GT stem wins). GT is cropped top-left to the SR image's size, which must not be larger,
  nor smaller by more than ``scale - 1`` pixels (what cropping GT to a multiple of the scale removes).
* Single-channel GT is scored on its grey channel for both Y and RGB; a 3-channel SR image of a grey GT is
  converted to grey first (BT.601 luma, ``cv2`` RGB2GRAY). Alpha channels are ignored; 16-bit images
  are converted to 8 bits.

Exit codes: 0 success, 2 bad arguments, missing folder, or an unreadable or mismatched image (one line).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data.imageio import list_images, read_image, to_uint8
from ..data.imresize import imresize, mod_crop
from ..fileio import atomic_write_text
from .psnr_ssim import calculate_psnr, calculate_ssim

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image (or the mean over a folder)."""

    name: str
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float


def load_for_scoring(path: Path) -> np.ndarray:
    """Read an image as uint8 ``H x W`` (grey) or ``H x W x 3`` (RGB), dropping alpha."""
    image = to_uint8(read_image(path))
    if image.ndim == 3 and image.shape[2] in (1, 2):
        image = image[:, :, 0]
    return image[:, :, :3] if image.ndim == 3 else image


def bicubic_baseline(gt: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB bicubic down- then upscale (8-bit rounding after each) of an already cropped uint8 GT."""
    return imresize(imresize(gt, 1.0 / scale), float(scale))


def score_pair(name: str, sr: np.ndarray, gt: np.ndarray, crop_border: int) -> ImageScore:
    """PSNR/SSIM on Y and on RGB of one uint8 SR image against its GT (same shape)."""
    return ImageScore(
        name=name,
        psnr_y=calculate_psnr(sr, gt, crop_border, y_channel=True),
        ssim_y=calculate_ssim(sr, gt, crop_border, y_channel=True),
        psnr_rgb=calculate_psnr(sr, gt, crop_border),
        ssim_rgb=calculate_ssim(sr, gt, crop_border),
    )


def mean_score(scores: Sequence[ImageScore]) -> ImageScore:
    """The per-image scores averaged (named ``mean``)."""
    columns = list(zip(*(astuple(s)[1:] for s in scores), strict=True))
    return ImageScore("mean", *(math.fsum(column) / len(column) for column in columns))


def match_sr_files(gt_files: Sequence[Path], sr_files: Sequence[Path]) -> dict[Path, Path]:
    """Map each GT file to its SR file by stem (see the module doc); raises ValueError when one is missing."""
    by_stem = {p.stem: p for p in gt_files}
    matches: dict[Path, list[Path]] = {p: [] for p in gt_files}
    for sr in sr_files:
        owners = [stem for stem in by_stem if sr.stem == stem or sr.stem.startswith(stem + "_")]
        if not owners:
            logger.warning("no GT image for SR file %s; ignored", sr)
            continue
        exact = sr.stem if sr.stem in by_stem else max(owners, key=len)
        matches[by_stem[exact]].append(sr)
    for gt, candidates in matches.items():
        if not candidates:
            raise ValueError(f"no SR image for GT file {gt}")
        if len(candidates) > 1:
            raise ValueError(f"several SR images match GT file {gt}: {', '.join(p.name for p in candidates)}")
    return {gt: candidates[0] for gt, candidates in matches.items()}


def align_to_gt(
    sr: np.ndarray, gt: np.ndarray, sr_path: Path, gt_path: Path, scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crop GT to the SR size and reconcile grey/RGB; raises ValueError naming the file on a mismatch."""
    height, width = sr.shape[:2]
    gt_height, gt_width = gt.shape[:2]
    if height > gt_height or width > gt_width:
        raise ValueError(
            f"SR image {sr_path} ({width}x{height}) is larger than GT {gt_path} ({gt_width}x{gt_height})"
        )
    if gt_height - height >= scale or gt_width - width >= scale:
        raise ValueError(
            f"SR image {sr_path} ({width}x{height}) is smaller than GT {gt_path} ({gt_width}x{gt_height}) "
            f"by more than the {scale - 1} px that cropping to a multiple of the scale {scale} removes"
        )
    if (height, width) != (gt_height - gt_height % scale, gt_width - gt_width % scale):
        logger.warning(
            "SR image %s (%dx%d) is not its GT cropped to a multiple of %d", sr_path, width, height, scale
        )
    gt = gt[:height, :width]
    if sr.ndim == 3 and gt.ndim == 2:
        sr = cv2.cvtColor(sr, cv2.COLOR_RGB2GRAY)
    elif sr.ndim == 2 and gt.ndim == 3:
        raise ValueError(f"SR image {sr_path} is single-channel but its GT {gt_path} is RGB")
    return sr, gt


def evaluate_folder(gt_dir: Path, sr_dir: Path | None, scale: int, crop_border: int) -> list[ImageScore]:
    """Score every GT image in ``gt_dir`` against its SR file in ``sr_dir`` (None: the bicubic baseline)."""
    gt_files = list_images(gt_dir)
    if not gt_files:
        raise ValueError(f"no images in GT folder {gt_dir}")
    pairs = match_sr_files(gt_files, list_images(sr_dir)) if sr_dir is not None else None
    scores = []
    for gt_path in tqdm(gt_files, desc="evaluate", unit="img", disable=None):
        gt = load_for_scoring(gt_path)
        if pairs is None:
            sr, gt = _bicubic_pair(gt, gt_path, scale)
        else:
            sr, gt = align_to_gt(load_for_scoring(pairs[gt_path]), gt, pairs[gt_path], gt_path, scale)
        try:
            scores.append(score_pair(gt_path.stem, sr, gt, crop_border))
        except ValueError as exc:
            raise ValueError(f"cannot score {gt_path}: {exc}") from None
    return scores


def _bicubic_pair(gt: np.ndarray, gt_path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The bicubic baseline SR and the GT it is scored against (GT cropped to a multiple of the scale)."""
    if min(gt.shape[0], gt.shape[1]) < scale:
        raise ValueError(
            f"GT image {gt_path} ({gt.shape[1]}x{gt.shape[0]}) is smaller than the scale {scale}"
        )
    cropped = mod_crop(gt, scale)
    return bicubic_baseline(cropped, scale), cropped


def format_table(scores: Sequence[ImageScore]) -> str:
    """A fixed-width text table of the scores and their mean."""
    width = max(len("image"), *(len(s.name) for s in scores))
    header = f"{'image':<{width}}  {'PSNR_Y':>8}  {'SSIM_Y':>7}  {'PSNR_RGB':>8}  {'SSIM_RGB':>8}"
    rows = [
        f"{s.name:<{width}}  {s.psnr_y:8.4f}  {s.ssim_y:7.4f}  {s.psnr_rgb:8.4f}  {s.ssim_rgb:8.4f}"
        for s in [*scores, mean_score(scores)]
    ]
    return "\n".join([header, *rows[:-1], "-" * len(header), rows[-1]]) + "\n"


def write_csv(path: Path, scores: Sequence[ImageScore]) -> None:
    """Write the scores and their mean as CSV (atomically)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f.name for f in fields(ImageScore)])
    for score in [*scores, mean_score(scores)]:
        writer.writerow([score.name, *(f"{value:.6f}" for value in astuple(score)[1:])])
    atomic_write_text(path, buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``evaluate.py``."""
    parser = argparse.ArgumentParser(description="PSNR/SSIM (Y and RGB) of SR images against ground truth.")
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth (HR) images")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sr", type=Path, help="folder of super-resolved images, matched to GT by file stem")
    source.add_argument("--bicubic", action="store_true", help="score the MATLAB bicubic baseline instead")
    parser.add_argument("--scale", type=int, required=True, help="upscaling factor, e.g. 4")
    parser.add_argument(
        "--crop-border", type=int, default=None, help="pixels shaved per side (default: scale)"
    )
    parser.add_argument("--csv", type=Path, default=None, help="also write the scores to this CSV file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation CLI (under :func:`~esrforge.cli.common.exit_with`: a ValueError is one line, exit 2);
    the table goes to standard output."""
    args = build_parser().parse_args(argv)
    if args.scale < 1:
        raise ValueError(f"--scale: expected a positive integer, got {args.scale}")
    crop_border = args.scale if args.crop_border is None else args.crop_border
    if crop_border < 0:
        raise ValueError(f"--crop-border: expected 0 or more pixels, got {crop_border}")
    for flag, folder in (("--gt", args.gt), ("--sr", args.sr)):
        if folder is not None and not folder.is_dir():
            raise ValueError(f"{flag} {folder}: folder not found")
    if args.csv is not None and args.csv.is_dir():
        raise ValueError(f"--csv {args.csv}: is a folder; expected the name of a CSV file")
    scores = evaluate_folder(args.gt, args.sr, args.scale, crop_border)
    sys.stdout.write(format_table(scores))
    if args.csv is not None:
        write_csv(args.csv, scores)
        logger.info("wrote %s", args.csv)
    return 0
