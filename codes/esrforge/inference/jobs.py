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
    keeps_extension: bool = False
    """Whether the output name keeps the source's extension (``photo.jpg_x4.png``): names collided."""


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


def output_name(relative: Path, suffix: str, ext: str, keep_extension: bool = False) -> Path:
    """``<folder>/<stem>_<suffix>.<ext>`` (``<stem>.<ext>`` for an empty suffix).

    With ``keep_extension`` the whole source name stands for the stem: ``photo.jpg_x4.png``.
    """
    base = relative.name if keep_extension else relative.stem
    stem = f"{base}_{suffix}" if suffix else base
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
    """The jobs of a run; raises ValueError when an output would replace an input. ``gt_dir`` is a folder
    of ground-truth images, or one image for one input image.

    Sources whose outputs would share a name (``photo.jpg`` and ``photo.png``) keep their extension in
    it (``photo.jpg_x4.png``, ``photo.png_x4.png``), so every image is upscaled and none overwritten.
    """
    if out_dir.is_file():
        raise ValueError(f"{out_dir}: the output is a file; expected a folder for the upscaled images")
    if gt_dir is not None and gt_dir.is_file() and not root.is_file():
        raise ValueError(
            f"{gt_dir}: the ground truth is one image; expected a folder for the input folder {root}"
        )
    inputs, base = find_inputs(root, recursive)
    results = out_dir.resolve()
    if results != base.resolve():  # earlier results in a sub-folder of a recursive input are not inputs
        inputs = [p for p in inputs if not p.resolve().is_relative_to(results)]
        if not inputs:
            raise ValueError(f"{root}: every image is in the output folder {out_dir}; choose another one")
    protected = {p.resolve(): p for p in inputs}
    relatives = [source.relative_to(base) for source in inputs]
    plain = [(out_dir / output_name(r, suffix, ext)).resolve() for r in relatives]
    shared = {name for name in plain if plain.count(name) > 1}
    taken: dict[Path, Path] = {}
    jobs = []
    for source, relative, name in zip(inputs, relatives, plain, strict=True):
        output = out_dir / output_name(relative, suffix, ext, keep_extension=name in shared)
        resolved = output.resolve()
        if resolved in protected:
            raise ValueError(
                f"{output} would overwrite the input {protected[resolved]}; choose another output folder or suffix"
            )
        if resolved in taken:
            raise ValueError(f"{taken[resolved]} and {source} would both be written to {output}")
        taken[resolved] = source
        gt = None if gt_dir is None else gt_dir if gt_dir.is_file() else match_gt(gt_dir, relative)
        if gt_dir is not None and gt is None:
            log.warning("no ground truth for %s in %s: it is upscaled but not scored", relative, gt_dir)
        jobs.append(Job(relative.as_posix(), source, output, gt, keeps_extension=name in shared))
    renamed = [job for job in jobs if job.keeps_extension]
    if renamed:
        log.info(
            "%d images share a name with another: their outputs keep the source extension (%s)",
            len(renamed),
            ", ".join(f"{job.name} -> {job.output.name}" for job in renamed),
        )
    return jobs
