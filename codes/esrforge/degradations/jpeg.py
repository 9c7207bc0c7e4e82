"""JPEG compression at a random quality: libjpeg itself (exact) or kornia's differentiable codec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import torch
from kornia.enhance import jpeg_codec_differentiable
from torch import Tensor

from ..fields import option
from .base import DEGRADATIONS, Degradation, DegradationOptions, SampleRandom, require_range, scalar_like

DLAS_PRESETS: dict[str, tuple[float, float]] = {
    "jpeg": (10, 29),
    "jpeg-low": (15, 24),
    "jpeg-medium": (23, 47),
    "jpeg-broad": (15, 74),
    "jpeg-normal": (47, 81),
}
"""DLAS ``image_corruptor`` presets: quality ``lo + r % range`` as the range ``[lo, lo + range - 1]``."""

Preset = Literal["jpeg", "jpeg-low", "jpeg-medium", "jpeg-broad", "jpeg-normal"]


@dataclass(frozen=True, kw_only=True)
class JpegOptions(DegradationOptions):
    """Compress with a quality drawn from ``quality_range`` (or a DLAS ``preset``)."""

    quality_range: tuple[float, float] = option((30.0, 95.0), doc="JPEG quality, 1-100")
    preset: Preset | None = option(
        None,
        doc="a DLAS quality preset instead of quality_range: jpeg, jpeg-low, jpeg-medium, jpeg-broad, jpeg-normal",
    )
    backend: Literal["libjpeg", "kornia"] = option(
        "libjpeg",
        doc="libjpeg: the real codec on the CPU (what PIL and OpenCV write, bit for bit; the image goes "
        "to the host and back); kornia: a differentiable codec on the training device, faster on a GPU",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self.quality_range, "quality_range", 1.0, 100.0)

    @property
    def qualities(self) -> tuple[float, float]:
        return DLAS_PRESETS[self.preset] if self.preset is not None else self.quality_range


def libjpeg(image: Tensor, quality: int) -> Tensor:
    """Encode ``1 x C x H x W`` (C = 1 or 3) with libjpeg at ``quality`` (4:2:0) and decode it back.

    OpenCV's libjpeg writes what Pillow's does at the same quality, bit for bit.
    """
    pixels = (image[0].detach().float().cpu() * 255.0).round().clamp(0, 255).to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()[..., ::-1].copy()  # RGB -> BGR (grey: as is)
    ok, encoded = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"jpeg: OpenCV could not encode a {array.shape[1]}x{array.shape[0]} image")
    flag = cv2.IMREAD_GRAYSCALE if array.shape[2] == 1 else cv2.IMREAD_COLOR
    decoded = cv2.imdecode(encoded, flag)
    if decoded is None:
        raise ValueError(f"jpeg: OpenCV could not decode its own {array.shape[1]}x{array.shape[0]} JPEG")
    decoded = decoded.reshape(array.shape)[..., ::-1]
    tensor = torch.from_numpy(decoded.copy()).permute(2, 0, 1).float() / 255.0
    return tensor[None].to(image.device, image.dtype)


def differentiable_jpeg(image: Tensor, quality: float) -> Tensor:
    """kornia's differentiable JPEG at ``quality`` (grey images go through it as RGB)."""
    rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
    out = jpeg_codec_differentiable(rgb.float(), scalar_like(quality, rgb.float()))
    return (out[:, :1] if image.shape[1] == 1 else out).to(image.dtype)


@DEGRADATIONS.register(JpegOptions, name="jpeg")
class Jpeg(Degradation[JpegOptions]):
    """JPEG round trip of a sample clamped to [0, 1] (libjpeg quality is rounded to an integer)."""

    def apply(self, image: Tensor, rng: SampleRandom) -> Tensor:
        quality = rng.uniform(*self.options.qualities)
        image = image.clamp(0, 1)
        if self.options.backend == "libjpeg":
            rng.note("jpeg", quality=round(quality))
            return libjpeg(image, round(quality))
        rng.note("jpeg", quality=round(quality, 1), backend="kornia")
        return differentiable_jpeg(image, quality).clamp(0, 1)
