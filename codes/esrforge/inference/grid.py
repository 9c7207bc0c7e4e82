"""Cut an image into overlapping tiles and blend the upscaled tiles back with a feathering window.

Geometry, per axis, in LR pixels:

* the image is cut into ``n = ceil(length / tile)`` cores of (nearly) equal size;
* around every cut, a band of ``overlap`` pixels is shared by the two neighbouring tiles; across it the
  weight of one tile rises from 0 to 1 (raised cosine, ``sin²``, evaluated at HR pixel centres) while
  the other's falls, so at every HR pixel the weights of the tiles covering it sum to exactly one;
* the network input of a tile adds ``pad`` pixels of context on each side of its window, and the
  output of that context is discarded; all crops along an axis have the same size (those at the image
  edges are shifted inwards and see more context there), so tiles of one image stack into batches;
* crops start at multiples of ``multiple`` (pixel-unshuffle models group pixels from the origin);
* an axis that one crop would cover whole is not split.

Because the 2-D weights (outer products of the 1-D ones) form a partition of unity, the result is a
plain weighted sum: no weight map and no division. Rows of HR pixels are finished as soon as the last
tile that touches them is added, so only two rows of tiles are held in float32 at any time. The sums
are made on the device of the network's outputs (the GPU does the blending; only finished rows travel).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Span:
    """One tile along one axis: its output ``window`` and network-input ``crop`` (LR ``[start, end)``)."""

    window_start: int
    window_end: int
    crop_start: int
    crop_end: int
    ramp_in: int
    """Width of the rising feather at the window start (0 at the image edge)."""
    ramp_out: int
    """Width of the falling feather at the window end (0 at the image edge)."""


def _cuts(length: int, pieces: int, multiple: int) -> list[int]:
    """``pieces + 1`` increasing cut positions from 0 to ``length``, inner ones on multiples of ``multiple``."""
    inner = {multiple * round(i * length / pieces / multiple) for i in range(1, pieces)}
    return [0, *sorted(c for c in inner if 0 < c < length), length]


def plan_axis(length: int, tile: int, overlap: int, pad: int, multiple: int = 1) -> list[Span]:
    """The tiles along an axis of ``length`` LR pixels (a multiple of ``multiple``)."""
    if length < 1 or tile < 1 or overlap < 0 or pad < 0 or multiple < 1 or length % multiple:
        raise ValueError(
            f"cannot tile {length} pixels with tile {tile}, overlap {overlap}, pad {pad}, multiple {multiple}"
        )
    cuts = _cuts(length, math.ceil(length / tile), multiple)
    cores = [b - a for a, b in itertools.pairwise(cuts)]
    # The band at inner cut k is shared by cores k-1 and k; it never reaches past either core's middle.
    bands = [0] + [min(overlap, cores[k - 1], cores[k]) for k in range(1, len(cores))] + [0]
    windows = [
        (cuts[k] - bands[k] // 2, cuts[k + 1] - bands[k + 1] // 2 + bands[k + 1]) for k in range(len(cores))
    ]
    crop = min(length, multiple * math.ceil((max(b - a for a, b in windows) + 2 * pad) / multiple))
    if crop == length:  # one crop holds the whole axis: splitting it would only repeat work
        return [Span(0, length, 0, length, 0, 0)]
    spans = []
    for k, (start, end) in enumerate(windows):
        centred = start - (crop - (end - start)) // 2
        crop_start = min(max(multiple * (centred // multiple), 0), length - crop)
        spans.append(Span(start, end, crop_start, crop_start + crop, bands[k], bands[k + 1]))
    return spans


def feather(width: int) -> Tensor:
    """Rising weights ``sin²(π (t + 0.5) / (2 width))``; ``feather(w)[t] + feather(w)[w - 1 - t] == 1``."""
    t = torch.arange(width, dtype=torch.float64)
    return torch.sin(math.pi * (t + 0.5) / (2 * width)).square().float()


def window_weights(span: Span, scale: int) -> Tensor:
    """The HR weights of ``span``'s output window: 1 inside, feathered over its shared bands."""
    weights = torch.ones((span.window_end - span.window_start) * scale)
    if span.ramp_in:
        weights[: span.ramp_in * scale] = feather(span.ramp_in * scale)
    if span.ramp_out:
        weights[-span.ramp_out * scale :] *= feather(span.ramp_out * scale).flip(0)
    return weights


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one image: row spans times column spans, visited in raster order."""

    rows: tuple[Span, ...]
    cols: tuple[Span, ...]

    @classmethod
    def plan(cls, height: int, width: int, tile: int, overlap: int, pad: int, multiple: int = 1) -> TileGrid:
        """Tiles for an LR image of ``height x width`` (see the module doc for the parameters)."""
        return cls(
            tuple(plan_axis(height, tile, overlap, pad, multiple)),
            tuple(plan_axis(width, tile, overlap, pad, multiple)),
        )

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def crop_shape(self) -> tuple[int, int]:
        """The network input size of every tile, ``(height, width)``."""
        return self.rows[0].crop_end - self.rows[0].crop_start, self.cols[0].crop_end - self.cols[
            0
        ].crop_start

    def tiles(self) -> Iterator[tuple[int, int]]:
        """``(row, column)`` indices in raster order."""
        for i in range(len(self.rows)):
            for j in range(len(self.cols)):
                yield i, j

    def crop(self, image: Tensor, i: int, j: int) -> Tensor:
        """The network input of tile ``(i, j)`` of a ``(C, H, W)`` image (a view)."""
        row, col = self.rows[i], self.cols[j]
        return image[:, row.crop_start : row.crop_end, col.crop_start : col.crop_end]


@dataclass(frozen=True)
class Band:
    """Finished HR rows ``[row, row + data.shape[1])`` of an output of shape ``size`` ``(C, H, W)``.

    ``data`` is float32 on the device of the network's outputs.
    """

    row: int
    data: Tensor
    size: tuple[int, int, int]


class _RowAccumulator:
    """Weighted sums of tile outputs per row of tiles; hands out rows that no later tile touches."""

    def __init__(self, grid: TileGrid, channels: int, scale: int, device: torch.device | str = "cpu") -> None:
        self.grid, self.scale, self.device = grid, scale, device
        width = grid.cols[-1].window_end * scale
        self.size = (channels, grid.rows[-1].window_end * scale, width)
        self.row_weights = [window_weights(span, scale).to(device) for span in grid.rows]
        self.col_weights = [window_weights(span, scale).to(device) for span in grid.cols]
        self.remaining = [len(grid.cols)] * len(grid.rows)
        self.buffers: dict[int, Tensor] = {}

    def add(self, i: int, j: int, output: Tensor) -> Band | None:
        """Add tile ``(i, j)``'s output ``(C, crop_h * scale, crop_w * scale)``; a Band when row ``i`` is done."""
        row, col, s = self.grid.rows[i], self.grid.cols[j], self.scale
        if i not in self.buffers:
            height = (row.window_end - row.window_start) * s
            self.buffers[i] = torch.zeros(self.size[0], height, self.size[2], device=self.device)
        y0, x0 = (row.window_start - row.crop_start) * s, (col.window_start - col.crop_start) * s
        part = output[:, y0 : y0 + (row.window_end - row.window_start) * s]
        part = part[:, :, x0 : x0 + (col.window_end - col.window_start) * s]
        weights = self.row_weights[i][:, None] * self.col_weights[j][None, :]
        self.buffers[i][:, :, col.window_start * s : col.window_end * s].addcmul_(part, weights)
        self.remaining[i] -= 1
        return self._finish(i) if self.remaining[i] == 0 else None

    def _finish(self, i: int) -> Band:
        rows, s = self.grid.rows, self.scale
        buffer = self.buffers[i]
        if i > 0:
            previous = self.buffers.pop(i - 1)
            shared = (rows[i - 1].window_end - rows[i].window_start) * s
            if shared:
                buffer[:, :shared] += previous[:, previous.shape[1] - shared :]
        end = rows[i + 1].window_start if i + 1 < len(rows) else rows[i].window_end
        if i + 1 == len(rows):
            del self.buffers[i]
        return Band(rows[i].window_start * s, buffer[:, : (end - rows[i].window_start) * s], self.size)


def output_scale(crop: tuple[int, int], output: Tensor) -> int:
    """The integer factor between a network input of size ``crop`` and its output ``(B, C, H, W)``."""
    height, width = output.shape[-2:]
    scale = height // crop[0]
    if scale < 1 or (height, width) != (crop[0] * scale, crop[1] * scale):
        raise ValueError(
            f"the network turned a {crop[1]}x{crop[0]} input into {width}x{height}; tiling needs an "
            "integer upscaling factor"
        )
    return scale


def blend_tiles(
    image: Tensor,
    grid: TileGrid,
    forward: Callable[[Tensor], Tensor],
    batch_size: int = 1,
    on_batch: Callable[[int], object] | None = None,
) -> Iterator[Band]:
    """Upscale a ``(C, H, W)`` image tile by tile; yield its finished HR rows in order.

    ``forward`` maps a ``(B, C, h, w)`` float32 batch (on the image's device) to its
    ``(B, C', h*s, w*s)`` output on any device; the blending runs there and the rows are float32 on
    that device;
    ``on_batch(n)`` is called after each batch of ``n`` tiles (progress bars).
    """
    tiles = list(grid.tiles())
    accumulator: _RowAccumulator | None = None
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first : first + batch_size]
        batch = torch.stack([grid.crop(image, i, j) for i, j in chunk])
        output = forward(batch).float()
        if accumulator is None:
            scale = output_scale(grid.crop_shape(), output)
            accumulator = _RowAccumulator(grid, output.shape[1], scale, output.device)
        for (i, j), tile_output in zip(chunk, output, strict=True):
            band = accumulator.add(i, j, tile_output)
            if band is not None:
                yield band
        if on_batch is not None:
            on_batch(len(chunk))
