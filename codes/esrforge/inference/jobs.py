"""Which files a test run reads, writes and scores against: inputs, output names, ground-truth matches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..data.imageio import is_image_file, list_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One image: read ``source``, write ``output``, score against ``gt`` (when known)."""

    name: str
    """The source path relative to the input folder, for logs and metric tables."""
    source: Path
    output: Path
    gt: Path | None


def find_inputs(root: Path, recursive: bool = False) -> tuple[list[Path], Path]:
    """The image files under ``root`` (a file or a folder) and the folder their names are relative to."""
    if root.is_file():
        if not is_image_file(root):
            raise ValueError(f"{root}: not an image file (expected png, jpg, webp, bmp, tif, ...)")
        return [root], root.parent
    images = list_images(root, recursive)
    if not images:
        raise ValueError(f"{root}: no image files in this folder{' or below' if recursive else ''}")
    return images, root


def output_name(relative: Path, suffix: str, ext: str) -> Path:
    """``<folder>/<stem>_<suffix>.<ext>`` (``<stem>.<ext>`` for an empty suffix)."""
    stem = f"{relative.stem}_{suffix}" if suffix else relative.stem
    return relative.parent / f"{stem}.{ext}"


def match_gt(gt_dir: Path, relative: Path) -> Path | None:
    """The image in ``gt_dir`` with the same relative folder and stem as ``relative`` (any image format)."""
    folder = gt_dir / relative.parent
    if not folder.is_dir():
        return None
    candidates = sorted(p for p in folder.iterdir() if p.stem == relative.stem and is_image_file(p))
    return candidates[0] if candidates else None


def plan_jobs(
    root: Path, out_dir: Path, suffix: str, ext: str, recursive: bool = False, gt_dir: Path | None = None
) -> list[Job]:
    """The jobs of a run; raises ValueError when an output would replace an input or another output."""
    inputs, base = find_inputs(root, recursive)
    results = out_dir.resolve()
    if results != base.resolve():  # earlier results in a sub-folder of a recursive input are not inputs
        inputs = [p for p in inputs if not p.resolve().is_relative_to(results)]
    protected = {p.resolve(): p for p in inputs}
    taken: dict[Path, Path] = {}
    jobs = []
    for source in inputs:
        relative = source.relative_to(base)
        output = out_dir / output_name(relative, suffix, ext)
        resolved = output.resolve()
        if resolved in protected:
            raise ValueError(
                f"{output} would overwrite the input {protected[resolved]}; choose another output folder or suffix"
            )
        if resolved in taken:
            raise ValueError(f"{taken[resolved]} and {source} would both be written to {output}")
        taken[resolved] = source
        gt = match_gt(gt_dir, relative) if gt_dir is not None else None
        if gt_dir is not None and gt is None:
            log.warning("no ground truth for %s in %s: it is upscaled but not scored", relative, gt_dir)
        jobs.append(Job(relative.as_posix(), source, output, gt))
    return jobs
