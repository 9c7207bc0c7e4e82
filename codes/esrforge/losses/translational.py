"""Translational (self-consistency) loss: G must agree with itself where two shifted patches overlap.

The trainer cuts the main LR patch from an LR tile with :meth:`TranslationalLoss.sample_main_patch`
and a second patch of the same size with :meth:`TranslationalLoss.sample_second_patch`, and runs G on
both in one batch (``ctx.fake``, ``ctx.fake_second``: one forward of twice the batch launches half
the kernels of two). The loss compares the two outputs over an HR region both patches cover. Boxes are
drawn once per batch (every sample uses the same offsets) from the step's generators. Given a context
without the second output, the loss draws the patch and runs G itself.

- ``corners`` (DLAS): the main patch is the tile's top-left corner, the second one of the other three
  corners (uniform); the compared region is the central ``(2·patch − tile)²`` square, covered by all
  four corners.
- ``random``: both patches anywhere on the LR grid, at least ``min_overlap`` HR px overlapping in each
  axis and never identical; the compared region is their whole intersection.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..fields import option, require
from ..randomness import StepGenerators, randint
from .base import LOSSES, GeneratorContext, Loss, LossOptions
from .criteria import FeatureCriterion, distance

Box = tuple[int, int]
"""(top, left) of a patch, in LR pixels."""

Region = tuple[int, int, int, int]
"""(top, bottom, left, right) of an HR region, bottom and right exclusive."""


@dataclass(frozen=True, kw_only=True)
class TranslationalOptions(LossOptions):
    """Options of the ``translational`` loss; sizes are HR pixels."""

    patch_size: int = option(96, doc="HR size of each patch the generator sees (LR size: patch_size / scale)")
    offsets: Literal["corners", "random"] = option(
        "corners",
        doc="corners: DLAS's tile corners, compared on the central square; random: any LR-grid shift",
    )
    min_overlap: int | None = option(
        None, doc="random only: least HR overlap of the two patches per axis; null: patch_size // 2"
    )
    criterion: FeatureCriterion = option("l1", doc="distance over the shared region: l1 or mse (alias l2)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.patch_size > 0, "patch_size", "a size > 0", self.patch_size)
        if self.min_overlap is not None:
            require(
                0 < self.min_overlap < self.patch_size,
                "min_overlap",
                f"0 < min_overlap < patch_size ({self.patch_size})",
                self.min_overlap,
            )

    @property
    def overlap(self) -> int:
        """The least HR overlap per axis of the two patches in random mode."""
        return self.patch_size // 2 if self.min_overlap is None else self.min_overlap

    def check_geometry(self, scale: int, tile_size: int) -> None:
        """Check the sizes against the model's ``scale`` and the HR ``tile_size`` the patches come from.

        The tile is the training dataset's ``target_size``; the config loader calls this.
        """
        require(
            self.patch_size < tile_size,
            "patch_size",
            f"a size < the HR tile size {tile_size}",
            self.patch_size,
        )
        require(
            self.patch_size % scale == 0, "patch_size", f"a multiple of the scale {scale}", self.patch_size
        )
        if self.offsets == "corners":
            require(
                2 * self.patch_size > tile_size,
                "patch_size",
                f"a size > half the HR tile ({tile_size / 2:g}) so the corner patches overlap",
                self.patch_size,
            )
        else:
            require(
                self.overlap <= self.patch_size - scale,
                "min_overlap",
                f"at most patch_size - scale ({self.patch_size - scale}) so a shift of one LR pixel fits",
                self.overlap,
            )


def intersection(boxes: list[Box], size: int, scale: int) -> Region:
    """The HR region that every LR box of side ``size`` (LR px) covers."""
    top, left = max(b[0] for b in boxes), max(b[1] for b in boxes)
    bottom, right = min(b[0] for b in boxes) + size, min(b[1] for b in boxes) + size
    return top * scale, bottom * scale, left * scale, right * scale


def crop_region(hr: Tensor, box: Box, region: Region, scale: int) -> Tensor:
    """The part of ``hr`` (the output for LR ``box``) that lies in the HR ``region``."""
    top, left = box[0] * scale, box[1] * scale
    return hr[..., region[0] - top : region[1] - top, region[2] - left : region[3] - left]


def pick(candidates: list[Box], generators: StepGenerators | None = None) -> Box:
    """One of ``candidates``, uniformly, drawn from ``generators`` (torch's global generator when None)."""
    if not candidates:
        raise ValueError(
            "translational loss: no second patch fits; check patch_size, the tile size and min_overlap"
        )
    return candidates[int(randint(len(candidates), generators))]


@LOSSES.register(TranslationalOptions, name="translational")
class TranslationalLoss(Loss[TranslationalOptions]):
    """``criterion(G(lq)[shared], G(lq_shifted)[shared])``; gradient flows through both outputs."""

    def sample_main_patch(
        self, lq_tile: Tensor, hq_tile: Tensor, scale: int, generators: StepGenerators | None = None
    ) -> tuple[Tensor, Tensor, Box]:
        """Cut the main LR patch and its HR patch from the tiles; returns (lq, hq, (top, left) in LR px)."""
        tile, size = self._sizes(lq_tile, scale)
        if hq_tile.shape[-2:] != (tile * scale, tile * scale):
            hr = tile * scale
            raise ValueError(
                f"translational loss: HR tile is {tuple(hq_tile.shape[-2:])}, expected {hr}x{hr}"
            )
        top, left = (
            self._corners(tile, size)[0]
            if self.options.offsets == "corners"
            else self._random(tile, size, generators)
        )
        lq = lq_tile[..., top : top + size, left : left + size]
        hq = hq_tile[..., top * scale : (top + size) * scale, left * scale : (left + size) * scale]
        return lq, hq, (top, left)

    def sample_second_patch(
        self, lq_tile: Tensor, main: Box, scale: int, generators: StepGenerators | None = None
    ) -> tuple[Tensor, Box]:
        """Draw the second LR patch for the main patch at ``main``; returns (its LR patch, its box)."""
        tile, size = self._sizes(lq_tile, scale)
        if self.options.offsets == "corners":
            corners = self._corners(tile, size)
            if main not in corners:
                raise ValueError(
                    f"translational loss: corners mode needs the main patch at a corner, got {main}"
                )
            second = pick([c for c in corners if c != main], generators)
        else:
            second = pick(self._shifted(main, tile, size, scale), generators)
        return lq_tile[..., second[0] : second[0] + size, second[1] : second[1] + size], second

    def forward(self, ctx: GeneratorContext) -> Tensor:
        tile, size = self._sizes(ctx.lq_tile, ctx.scale)
        if ctx.lq.shape[-2:] != (size, size):
            raise ValueError(
                f"translational loss: LR patch is {tuple(ctx.lq.shape[-2:])}, expected {size}x{size}"
            )
        main, second, other = ctx.lq_box, ctx.second_box, ctx.fake_second
        if second is None or other is None:
            lq_second, second = self.sample_second_patch(ctx.lq_tile, main, ctx.scale, ctx.generators)
            other = ctx.generator(lq_second)
        shared = self._corners(tile, size) if self.options.offsets == "corners" else [main, second]
        region = intersection(shared, size, ctx.scale)
        return distance(
            self.options.criterion,
            crop_region(ctx.fake, main, region, ctx.scale),
            crop_region(other, second, region, ctx.scale),
        )

    def _sizes(self, lq_tile: Tensor, scale: int) -> tuple[int, int]:
        """LR tile and patch sizes; the LR tile must be square and fit the geometry."""
        height, width = lq_tile.shape[-2:]
        if height != width:
            raise ValueError(f"translational loss: LR tile is {height}x{width}, expected a square tile")
        self.options.check_geometry(scale, height * scale)
        return height, self.options.patch_size // scale

    @staticmethod
    def _corners(tile: int, size: int) -> list[Box]:
        """The four corner boxes, top-left first."""
        far = tile - size
        return [(0, 0), (0, far), (far, 0), (far, far)]

    @staticmethod
    def _random(tile: int, size: int, generators: StepGenerators | None) -> Box:
        top, left = randint(tile - size + 1, generators, (2,)).tolist()
        return top, left

    def _shifted(self, main: Box, tile: int, size: int, scale: int) -> list[Box]:
        """Every other box in the tile that overlaps ``main`` by at least ``min_overlap`` HR px per axis."""
        reach = (self.options.patch_size - self.options.overlap) // scale
        tops, lefts = (range(max(0, m - reach), min(tile - size, m + reach) + 1) for m in main)
        return [box for box in itertools.product(tops, lefts) if box != main]
