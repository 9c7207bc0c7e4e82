"""Image files for inference: read upright (EXIF), split grey/alpha, and compose outputs of the same kind.

* Every image is upscaled as RGB: a grey image is repeated into three channels and its output is
  converted back to one channel (BT.601 luma, as ``cv2.COLOR_RGB2GRAY``).
* An alpha channel is split off and upscaled on its own: ``bicubic`` (``cv2.resize``, fast) or
  ``model`` (run through the network as a grey image; sharper edges, twice the work).
* 8-bit files give 8-bit outputs and 16-bit files 16-bit outputs (JPEG and WebP outputs take 8 bits only).
* The EXIF orientation is applied on reading, so outputs are stored upright and carry no EXIF.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

from ..data.imageio import read_image, to_uint8, write_image
from ..data.imresize import imresize, mod_crop
from .exif import NORMAL, apply_orientation, exif_orientation, is_tiff

log = logging.getLogger(__name__)

AlphaUpsampler = Literal["bicubic", "model"]
EIGHT_BIT_FORMATS = (".jpg", ".jpeg", ".webp")
OPAQUE_FORMATS = (".jpg", ".jpeg")
DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16}
"""The integer image types inference reads and writes, and their tensor dtypes."""


@dataclass(frozen=True)
class InputImage:
    """An upright image ready for the network: RGB (grey repeated), the alpha plane, and its kind."""

    rgb: np.ndarray
    """``H x W x 3``, uint8 or uint16."""
    alpha: np.ndarray | None
    """``H x W``, same dtype as ``rgb``; None without alpha."""
    grey: bool
    """Whether the file was single-channel (the output is written single-channel too)."""


def _decoder_turned(path: Path, image: np.ndarray) -> bool:
    """Whether cv2 already applied a TIFF's orientation (OpenCV 5 does, even with IMREAD_UNCHANGED)."""
    reference = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    colour = image[:, :, 2::-1] if image.ndim == 3 and image.shape[2] >= 3 else image
    return reference is not None and reference.shape == colour.shape and np.array_equal(reference, colour)


def read_upright(path: str | os.PathLike[str]) -> np.ndarray:
    """:func:`~esrforge.data.imageio.read_image` with the file's EXIF orientation applied."""
    file = Path(path)
    image = read_image(file)
    orientation = exif_orientation(file)
    if orientation == NORMAL or (is_tiff(file) and _decoder_turned(file, image)):
        return image
    return np.ascontiguousarray(apply_orientation(image, orientation))


def split_image(image: np.ndarray, source: str | os.PathLike[str] = "image") -> InputImage:
    """Split an ``H x W[ x C]`` uint8/uint16 array (C = 1 to 4) into RGB, alpha and kind."""
    if image.dtype not in DTYPES:
        raise ValueError(f"{source}: {image.dtype} images are not supported (8 or 16 bits per channel)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return InputImage(np.repeat(image[:, :, None], 3, axis=2), None, True)
    channels = image.shape[2]
    if channels == 2:
        return InputImage(np.repeat(image[:, :, :1], 3, axis=2), image[:, :, 1].copy(), True)
    if channels in (3, 4):
        alpha = image[:, :, 3].copy() if channels == 4 else None
        return InputImage(np.ascontiguousarray(image[:, :, :3]), alpha, False)
    raise ValueError(f"{source}: images with {channels} channels are not supported")


def read_input(path: str | os.PathLike[str]) -> InputImage:
    """Read an image file upright and split it (see the module doc)."""
    return split_image(read_upright(path), path)


def downscale_input(image: InputImage, scale: int) -> tuple[InputImage, InputImage]:
    """``(LR, cropped GT)``: the GT cropped to a multiple of ``scale`` and its MATLAB bicubic downscale."""
    if min(image.rgb.shape[:2]) < scale:
        raise ValueError(
            f"image of {image.rgb.shape[1]}x{image.rgb.shape[0]} is smaller than the scale {scale}"
        )
    gt = replace(
        image,
        rgb=mod_crop(image.rgb, scale),
        alpha=None if image.alpha is None else mod_crop(image.alpha, scale),
    )
    lr = replace(
        gt,
        rgb=imresize(gt.rgb, 1.0 / scale),
        alpha=None if gt.alpha is None else imresize(gt.alpha, 1.0 / scale),
    )
    return lr, gt


def to_tensor(rgb: np.ndarray) -> Tensor:
    """An ``H x W x C`` uint8/uint16 array as a ``(C, H, W)`` float32 tensor in [0, 1]."""
    top = float(np.iinfo(rgb.dtype).max)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(top)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``H x W x 3`` RGB uint8/uint16 array (``cv2.COLOR_RGB2GRAY``)."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def resize_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """The alpha plane enlarged ``scale`` times with bicubic interpolation (saturated to its dtype)."""
    height, width = alpha.shape
    return cv2.resize(alpha, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)


def compose(rgb: np.ndarray, alpha: np.ndarray | None, grey: bool) -> np.ndarray:
    """The array to write: grey or RGB, with alpha appended (grey with alpha is written as RGBA)."""
    if alpha is None:
        return to_grey(rgb) if grey else rgb
    if grey:
        rgb = np.repeat(to_grey(rgb)[:, :, None], 3, axis=2)
    return np.dstack([rgb, alpha])


def write_output(path: Path, image: np.ndarray) -> None:
    """Write atomically; a 16-bit image going to an 8-bit-only format is converted, and the alpha plane
    dropped for a format without one (each with a warning)."""
    if image.dtype == np.uint16 and path.suffix.lower() in EIGHT_BIT_FORMATS:
        log.warning("%s: %s stores 8 bits per channel; the 16-bit result is rounded", path, path.suffix)
        image = to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 4 and path.suffix.lower() in OPAQUE_FORMATS:
        log.warning(
            "%s: %s stores no transparency; the alpha channel is dropped (--ext png keeps it)",
            path,
            path.suffix,
        )
        image = np.ascontiguousarray(image[:, :, :3])
    write_image(path, image)
