"""Upscale whole images with a network, tile by tile: the API for test.py, validation and video.

``Upscaler(model, TileOptions(...), description=...)(image)`` takes a ``(C, h, w)`` float image in [0, 1] held in CPU
memory; only tiles (in batches) visit the model's device, and finished rows are written straight into
the output in the dtype asked for, so beyond the input and the output, memory is bounded by the tile
size. See :mod:`esrforge.inference.grid` for the geometry and the blending.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from ..fields import option, require
from ..networks.base import Description
from .engine import Engine, TileTooLarge
from .grid import TileGrid, blend_tiles
from .images import DTYPES, to_tensor

log = logging.getLogger(__name__)

DEFAULT_PAD = 16
DEFAULT_OVERLAP = 64
MIN_TILE = 16
INTEGER_RANGES = {torch.uint8: 255.0, torch.uint16: 65535.0}


@dataclass(frozen=True, kw_only=True)
class TileOptions:
    """How an image is cut into tiles (sizes in LR pixels)."""

    tile_size: Literal["auto"] | int | None = option(
        "auto",
        doc="core of a tile (it sees tile + overlap + 2 pad); auto: largest that fits the free memory (CUDA) "
        "or half the available memory (CPU; 256 where unknown); null: whole images",
    )
    tile_pad: int = option(DEFAULT_PAD, doc="context added on each side of a tile and discarded after")
    tile_overlap: int = option(DEFAULT_OVERLAP, doc="width of the feathered band neighbouring tiles share")
    tile_batch_size: int = option(1, doc="tiles per forward pass")

    def __post_init__(self) -> None:
        if isinstance(self.tile_size, int):
            require(
                self.tile_size >= MIN_TILE, "tile_size", f"auto, null or at least {MIN_TILE}", self.tile_size
            )
        require(self.tile_pad >= 0, "tile_pad", "0 or more pixels", self.tile_pad)
        require(self.tile_overlap >= 0, "tile_overlap", "0 or more pixels", self.tile_overlap)
        require(self.tile_batch_size >= 1, "tile_batch_size", "a positive count", self.tile_batch_size)


class Upscaler:
    """Upscales ``(C, h, w)`` float images with ``model`` (in eval mode, on any device), tile by tile.

    ``description`` (the network's) gives the size multiple inputs are padded to; a network that tiles
    internally gets whole images. ``dtype`` is the compute precision (default: the model's; others run
    under autocast); the model is not modified. ``compiled``: through torch.compile (CUDA graphs on CUDA,
    see :class:`~.engine.Engine`). A CUDA out-of-memory error halves the tile batch, then the tile size, and
    retries; the smaller sizes are kept for later images.
    """

    def __init__(
        self,
        model: nn.Module,
        options: TileOptions | None = None,
        *,
        description: Description | None = None,
        dtype: torch.dtype | None = None,
        channels_last: bool = True,
        progress: bool = False,
        compiled: bool = False,
    ) -> None:
        self.multiple = description.size_multiple if description is not None else 1
        self.engine = Engine(model, dtype, channels_last, self.multiple, compiled)
        self.options = options or TileOptions()
        if (
            description is not None
            and description.tiling == "internal"
            and self.options.tile_size is not None
        ):
            log.info("%s tiles internally: running whole images", description.architecture)
            self.options = dataclasses.replace(self.options, tile_size=None)
        self.progress = progress
        self.tile: int | None = None if self.options.tile_size == "auto" else self.options.tile_size
        self._tile_known = self.options.tile_size != "auto"

    def _tile_for(self, channels: int) -> int | None:
        if not self._tile_known:
            margin = self.options.tile_overlap + 2 * self.options.tile_pad
            self.tile = self.engine.auto_tile(channels, margin, self.options.tile_batch_size)
            self._tile_known = True
        return self.tile

    def plan(self, height: int, width: int, channels: int = 3) -> TileGrid:
        """The tiles of an image of ``height x width`` (already a multiple of the model's size multiple)."""
        tile = self._tile_for(channels) or max(height, width)
        options = self.options
        return TileGrid.plan(height, width, tile, options.tile_overlap, options.tile_pad, self.multiple)

    def __call__(self, image: Tensor, out_dtype: torch.dtype = torch.float32) -> Tensor:
        """The ``(C', h*s, w*s)`` output of a ``(C, h, w)`` image in [0, 1], on the CPU.

        ``out_dtype`` float32 keeps the raw network output; uint8 and uint16 clamp to [0, 1] and round.
        The result is a view of an ``H x W x C`` buffer: ``result.permute(1, 2, 0)`` is contiguous.
        """
        if image.ndim != 3:
            raise ValueError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}")
        height, width = image.shape[1:]
        padded = pad_to_multiple(image.float(), self.multiple)
        while True:
            grid = self.plan(padded.shape[1], padded.shape[2], image.shape[0])
            try:
                output = self._run(padded, grid, out_dtype)
            except TileTooLarge:
                self._shrink_tile(max(padded.shape[1:]))
                continue
            scale = output.shape[1] // padded.shape[1]
            return output[:, : height * scale, : width * scale]

    def upscale_array(self, image: np.ndarray) -> np.ndarray:
        """An ``h x w x C`` uint8 or uint16 array (RGB) upscaled to ``H x W x C`` of the same dtype."""
        dtype = DTYPES.get(image.dtype)
        if dtype is None or image.ndim != 3:
            raise ValueError(f"expected an H x W x C uint8 or uint16 array, got {image.dtype} {image.shape}")
        return self(to_tensor(image), dtype).permute(1, 2, 0).numpy()

    def _run(self, image: Tensor, grid: TileGrid, out_dtype: torch.dtype) -> Tensor:
        output: Tensor | None = None
        with tqdm(total=len(grid), unit="tile", leave=False, disable=None if self.progress else True) as bar:
            for band in blend_tiles(image, grid, self.engine, self.options.tile_batch_size, bar.update):
                if output is None:
                    channels, height, width = band.size
                    output = torch.empty(height, width, channels, dtype=out_dtype).permute(2, 0, 1)
                output[:, band.row : band.row + band.data.shape[1]] = to_host(band.data, out_dtype)
        assert output is not None  # a grid has at least one tile
        return output

    def _shrink_tile(self, image_size: int) -> None:
        current = min(self.tile or image_size, image_size)
        smaller = current * 3 // 4 // 8 * 8
        if smaller < MIN_TILE:
            raise RuntimeError(f"out of memory even with {current}-pixel tiles")
        log.warning("out of memory with %d-pixel tiles: retrying with %d", current, smaller)
        self.tile = smaller


def pad_to_multiple(image: Tensor, multiple: int) -> Tensor:
    """Extend a ``(C, H, W)`` image at the bottom and right (edge pixels repeated) to multiples of ``multiple``."""
    pad_h, pad_w = -image.shape[1] % multiple, -image.shape[2] % multiple
    if not (pad_h or pad_w):
        return image
    return F.pad(image[None], (0, pad_w, 0, pad_h), mode="replicate")[0]


def convert_range(values: Tensor, dtype: torch.dtype) -> Tensor:
    """Float values in [0, 1] as ``dtype``: integer types are clamped, scaled and rounded."""
    top = INTEGER_RANGES.get(dtype)
    if top is None:
        return values.to(dtype)
    return values.clamp(0.0, 1.0).mul_(top).round_()


def to_host(values: Tensor, dtype: torch.dtype) -> Tensor:
    """:func:`convert_range` where ``values`` are, then on the CPU as ``dtype`` (uint8 travels as uint8)."""
    converted = convert_range(values, dtype)
    if dtype == torch.uint8:
        converted = converted.to(dtype)
    return converted.cpu().to(dtype)


def upscale(
    model: nn.Module,
    lr: Tensor,
    tile: int | None = None,
    pad: int = DEFAULT_PAD,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 1,
    dtype: torch.dtype | None = None,
    channels_last: bool = True,
    progress: bool = False,
    description: Description | None = None,
) -> Tensor:
    """Upscale ``lr`` ``(1, C, h, w)`` or ``(C, h, w)`` in [0, 1] on any device; float32, same rank and device.

    ``tile=None`` runs the whole image at once; otherwise tiles of ``tile`` pixels with ``pad`` context
    and ``overlap`` feathered pixels (see :class:`TileOptions`). ``model`` must be in eval mode;
    ``description`` is the network's (see :class:`Upscaler`).
    """
    if lr.ndim == 4 and lr.shape[0] == 1:
        return upscale(
            model, lr[0], tile, pad, overlap, batch_size, dtype, channels_last, progress, description
        )[None]
    if lr.ndim != 3:
        raise ValueError(f"expected a (1, C, H, W) or (C, H, W) tensor, got shape {tuple(lr.shape)}")
    options = TileOptions(tile_size=tile, tile_pad=pad, tile_overlap=overlap, tile_batch_size=batch_size)
    upscaler = Upscaler(
        model, options, description=description, dtype=dtype, channels_last=channels_last, progress=progress
    )
    return upscaler(lr).to(lr.device)
