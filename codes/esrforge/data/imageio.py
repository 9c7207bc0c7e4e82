"""Reading and writing image files as RGB numpy arrays, and dtype conversions.

Conventions used across the project:

* Arrays are ``H x W`` (grey) or ``H x W x C`` with channels in RGB(A) order.
* :func:`read_image` keeps the file's bit depth (uint8 or uint16) and returns a grey image as a
  2-D ``H x W`` array; an alpha channel is kept as the 4th channel.
* Paths may contain any unicode characters (files are read and written through numpy buffers).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..fileio import atomic_write_bytes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
"""File name endings treated as images (compared case-insensitively)."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS`."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """The image files in ``folder`` (sorted by path; hidden files skipped)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in candidates if p.is_file() and is_image_file(p) and not p.name.startswith("."))


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an RGB(A) array with its own dtype; grey images come back as ``H x W``."""
    file = Path(path)
    try:
        buffer = np.fromfile(file, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {file}") from None
    except OSError as exc:
        raise ValueError(f"cannot read image file {file}: {exc.strerror or exc}") from None
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise ValueError(_too_many_pixels(file)) from None
        raise ValueError(f"cannot decode image file {file} ({str(exc).strip().splitlines()[-1]})") from None
    if image is None:
        raise ValueError(f"cannot decode image file {file} (unreadable, corrupt or not an image)")
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


OPENCV_PIXEL_LIMIT = "OPENCV_IO_MAX_IMAGE_PIXELS"
"""The environment variable that sets how many pixels OpenCV decodes at most (default 2**30)."""


def header_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` as the file's header states it, without decoding; None if unreadable."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read: no decompression-bomb check needed
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _too_many_pixels(path: Path) -> str:
    """One line: the file, the size its header claims, OpenCV's limit and how to raise it."""
    limit = int(os.environ.get(OPENCV_PIXEL_LIMIT, 1 << 30))
    size = header_size(path)
    if size is None:
        claim, needed = "more pixels", limit * 2
    else:
        claim, needed = f"{size[0]}x{size[1]} ({size[0] * size[1]:,} pixels)", size[0] * size[1]
    return (
        f"cannot decode image file {path}: its header claims {claim}, over OpenCV's limit of {limit:,} "
        f"pixels; to read it, start the program with {OPENCV_PIXEL_LIMIT}={needed} set"
    )


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an RGB(A) or grey uint8/uint16 array atomically; the format follows the extension (PNG if none).

    Missing parent folders are created.
    """
    file = Path(path)
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot write {file}: expected a uint8 or uint16 array, got {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    if channels not in (1, 3, 4):
        raise ValueError(f"cannot write {file}: expected HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    try:
        ok, encoded = cv2.imencode(file.suffix or ".png", np.ascontiguousarray(image))
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode {file}: format {file.suffix or '.png'!r} does not take this image")
    atomic_write_bytes(file, encoded.tobytes())


def round_to_dtype(values: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Round half away from zero (as MATLAB does) and saturate to the range of integer ``dtype``."""
    info = np.iinfo(dtype)
    rounded = np.where(values >= 0, np.floor(values + 0.5), np.ceil(values - 0.5))
    return np.clip(rounded, info.min, info.max).astype(dtype)


def to_float(image: np.ndarray) -> np.ndarray:
    """Convert an integer image to float32 in [0, 1] (by its dtype's maximum); float images pass through."""
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    if np.issubdtype(image.dtype, np.unsignedinteger):
        return (image.astype(np.float64) / np.iinfo(image.dtype).max).astype(np.float32)
    raise ValueError(f"expected an unsigned integer or float image, got dtype {image.dtype}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Convert an image to uint8: floats are taken as [0, 1] (clipped), uint16 is rescaled, both rounded."""
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.unsignedinteger):
        factor = 255.0 / np.iinfo(image.dtype).max
    elif np.issubdtype(image.dtype, np.floating):
        factor = 255.0
    else:
        raise ValueError(f"expected an unsigned integer or float image, got dtype {image.dtype}")
    return round_to_dtype(image.astype(np.float64) * factor, np.uint8)
