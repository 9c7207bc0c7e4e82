"""Where a dataset's images come from: RGB normalisation, folder scans, chunk manifests and LR pairing.

Every image a dataset or the chunk builder reads goes through :func:`to_rgb`:

* grey (``H x W`` or ``H x W x 1``) becomes RGB by repeating the channel;
* an alpha channel is dropped (grey+alpha and RGBA alike): the colour values are kept as stored, not
  composited over a background, so opaque images are unchanged;
* the bit depth is kept: uint8 stays uint8 and uint16 stays uint16 (divided by 65535, not 255, when
  converted to [0, 1]); other sample types (float TIFF, 32-bit) are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .imageio import list_images, read_image
from .manifest import MANIFEST_NAME, read_manifest


def to_rgb(image: np.ndarray, source: str | os.PathLike[str] = "image") -> np.ndarray:
    """An ``H x W x 3`` uint8 or uint16 array from a grey, grey+alpha, RGB or RGBA one (see module doc)."""
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{source}: unsupported sample type {image.dtype} (expected 8- or 16-bit integers)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{source}: unsupported image shape {image.shape}")
    channels = image.shape[2]
    if channels <= 2:
        return np.repeat(image[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]) if channels == 4 else image


def read_rgb(path: Path) -> np.ndarray:
    """Read ``path`` and normalise it with :func:`to_rgb`; unreadable files raise ValueError or OSError."""
    return to_rgb(read_image(path), path)


@dataclass(frozen=True)
class ImageItem:
    """One HR image (or chunk) of a dataset, its known size if any, and its paired LR file if any."""

    hr: Path
    name: str
    size: tuple[int, int] | None = None
    lr: Path | None = None


def scan_folder(root: Path) -> list[ImageItem]:
    """The images under ``root``, recursively, sorted; ``name`` is the relative path without suffix."""
    return [ImageItem(path, _relative_stem(path, root)) for path in list_images(root, recursive=True)]


def load_items(dataroot: Path) -> list[ImageItem]:
    """Items from a chunk manifest (the file, or the ``manifest.jsonl`` of a folder of chunks) or else from
    a recursive folder scan."""
    manifest = dataroot / MANIFEST_NAME if dataroot.is_dir() else dataroot
    if not manifest.is_file():
        return scan_folder(dataroot)
    base = manifest.parent
    return [
        ImageItem(base / e.chunk, Path(e.chunk).with_suffix("").as_posix(), (e.box[2], e.box[3]))
        for e in read_manifest(manifest)
    ]


def pair_with_lr(items: list[ImageItem], lr_root: Path) -> list[ImageItem]:
    """Attach to each item the file in ``lr_root`` with the same relative name (any image extension)."""
    lr_by_name = {item.name: item.hr for item in scan_folder(lr_root)}
    missing = [item.name for item in items if item.name not in lr_by_name]
    if missing:
        raise FileNotFoundError(
            f"dataroot_lq {lr_root}: no LR image for {len(missing)} HR image(s), e.g. {missing[0]!r} "
            "(LR files must have the same relative name as the HR files)"
        )
    return [ImageItem(item.hr, item.name, item.size, lr_by_name[item.name]) for item in items]


def check_lr_size(hr: np.ndarray, lr: np.ndarray, scale: int, where: Path) -> None:
    """Raise ValueError unless ``lr`` is ``hr`` downscaled by ``scale`` (MATLAB size: floor or ceil)."""
    for axis in (0, 1):
        if not hr.shape[axis] // scale <= lr.shape[axis] <= -(-hr.shape[axis] // scale):
            raise ValueError(
                f"{where}: LR size {lr.shape[1]}x{lr.shape[0]} does not match HR size "
                f"{hr.shape[1]}x{hr.shape[0]} at scale {scale}"
            )


def _relative_stem(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()
