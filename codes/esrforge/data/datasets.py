"""The training dataset (random HR patches, LR by MATLAB bicubic) and the validation dataset (whole images).

Both read images through :func:`esrforge.data.sources.read_rgb` (grey -> RGB, alpha dropped, 8 or
16 bits kept) and return float32 ``C x H x W`` tensors in [0, 1].
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from ..logs import original_message
from .base import DATASETS, TrainDatasetOptions, ValDatasetOptions
from .imageio import read_image, round_to_dtype, to_float
from .imresize import imresize
from .loader import SampleKey
from .sources import ImageItem, check_lr_size, load_items, pair_with_lr, read_rgb, to_rgb

log = logging.getLogger(__name__)

MAX_DRAWS = 50
"""How many unusable images in a row a training sample may draw before it gives up."""


class UnusableDataError(ValueError):
    """No usable training sample could be drawn.

    Raised in a DataLoader worker, it reaches the main process with the worker's whole traceback as
    its message; ``str()`` gives back the original one-line message.
    """

    def __str__(self) -> str:
        return original_message(super().__str__())


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``H x W x C`` uint8/uint16 -> float32 ``C x H x W`` tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(to_float(image).transpose(2, 0, 1)))


def augment(images: list[np.ndarray], rng: np.random.Generator, flip: bool, rotate: bool) -> list[np.ndarray]:
    """The same random horizontal flip, vertical flip and transposition (with ``rotate``) applied to all."""
    hflip = flip and rng.random() < 0.5
    vflip = rotate and rng.random() < 0.5
    transpose = rotate and rng.random() < 0.5
    out = []
    for image in images:
        if hflip:
            image = image[:, ::-1]
        if vflip:
            image = image[::-1]
        if transpose:
            image = image.transpose(1, 0, 2)
        out.append(image)
    return out


def _no_images(what: str, dataroot: Path) -> ValueError:
    return ValueError(
        f"{what}: no usable images in dataroot {dataroot} (expected image files or a manifest.jsonl)"
    )


@DATASETS.register(TrainDatasetOptions, name="HRPatchDataset")
class HRPatchDataset(Dataset[dict[str, torch.Tensor]]):
    """Random ``target_size`` HR patches from chunks (a manifest) or a folder; LR on the fly or paired.

    Index it with a :class:`SampleKey` (as the training sampler does); the crop and flips come from a
    generator seeded with ``(seed, epoch, index)``. A plain int ``i`` means ``SampleKey(i, 0, 0)``.
    Unreadable images, images smaller than the patch and LR files of the wrong size are skipped: a
    warning names the file, ``skipped`` counts them by reason (per process), and the sample is drawn
    again from another index chosen from the same seed.
    """

    def __init__(self, options: TrainDatasetOptions, scale: int) -> None:
        if options.target_size % scale:
            raise ValueError(
                f"target_size: expected a multiple of the scale {scale}, got {options.target_size}"
            )
        self.options = options
        self.scale = scale
        self.skipped: Counter[str] = Counter()
        self._bad: set[int] = set()
        items = load_items(options.dataroot)
        if options.dataroot_lq is not None:
            items = pair_with_lr(items, options.dataroot_lq)
        size = options.crop_size
        self.items = [item for item in items if item.size is None or min(item.size) >= size]
        if len(self.items) < len(items):
            self.skipped["too small"] += len(items) - len(self.items)
            log.warning(
                "%d chunks smaller than the %d pixel patch are left out", len(items) - len(self.items), size
            )
        if not self.items:
            raise _no_images("HRPatchDataset", options.dataroot)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | SampleKey) -> dict[str, torch.Tensor]:
        key = SampleKey(int(key), 0, 0) if isinstance(key, int | np.integer) else key
        index = key.index
        for draw in range(1, MAX_DRAWS + 1):
            images = self._load(index)
            if images is not None:
                rng = np.random.default_rng([key.seed, key.epoch, key.index])
                return self._patch(*images, rng)
            index = int(np.random.default_rng([key.seed, key.epoch, key.index, draw]).integers(len(self)))
        raise UnusableDataError(
            f"HRPatchDataset: {MAX_DRAWS} draws in a row found no usable image in {self.options.dataroot} "
            f"({len(self._bad)} of {len(self)} images unusable so far; the warnings above say why)"
        )

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The HR image (and LR if paired), or None after recording why it cannot be used."""
        if index in self._bad:
            return None
        item = self.items[index]
        try:
            hr = read_rgb(item.hr)
            lr = None if item.lr is None else read_rgb(item.lr)
            if lr is not None:
                check_lr_size(hr, lr, self.scale, item.lr or item.hr)
        except (ValueError, OSError) as err:
            self._skip(index, "unreadable", str(err))
            return None
        if min(hr.shape[:2]) < self.options.crop_size:
            size = f"{hr.shape[1]}x{hr.shape[0]}"
            reason = f"{item.hr}: {size} is smaller than the {self.options.crop_size} pixel patch"
            self._skip(index, "too small", reason)
            return None
        return hr, lr

    def _skip(self, index: int, reason: str, message: str) -> None:
        self._bad.add(index)
        self.skipped[reason] += 1
        log.warning("skipping %s (%s images skipped in this process)", message, sum(self.skipped.values()))

    def _patch(
        self, hr: np.ndarray, lr: np.ndarray | None, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """Random crop (aligned in HR and LR), augmentation, and LR by MATLAB bicubic if not paired.

        With a degradation the sample is the ``crop_size`` HR patch alone: the training device makes its LR.
        """
        size, scale = self.options.crop_size, self.scale
        lr_size = size // scale
        if lr is None:
            top = int(rng.integers(hr.shape[0] - size + 1))
            left = int(rng.integers(hr.shape[1] - size + 1))
            hq = augment(
                [hr[top : top + size, left : left + size]], rng, self.options.use_flip, self.options.use_rot
            )[0]
            if self.options.degradation is not None:
                return {"hq": to_tensor(hq)}
            lq = imresize(hq, 1.0 / scale)
        else:
            top = int(rng.integers(min(lr.shape[0], hr.shape[0] // scale) - lr_size + 1))
            left = int(rng.integers(min(lr.shape[1], hr.shape[1] // scale) - lr_size + 1))
            lq = lr[top : top + lr_size, left : left + lr_size]
            hq = hr[top * scale : top * scale + size, left * scale : left * scale + size]
            hq, lq = augment([hq, lq], rng, self.options.use_flip, self.options.use_rot)
        return {"lq": to_tensor(lq), "hq": to_tensor(hq)}


def crop_to_scale(hr: np.ndarray, scale: int, path: Path) -> np.ndarray:
    """The top-left part of ``hr`` whose sides are multiples of ``scale`` (ValueError if none is left)."""
    height, width = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    if height == 0 or width == 0:
        raise ValueError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {scale}")
    return hr[:height, :width]


class ValSample(TypedDict):
    """One validation image: LR and HR as float32 ``C x H x W`` in [0, 1], its name, and whether the HR
    file is single-channel (its three channels are copies; metrics score it on its one channel)."""

    lq: torch.Tensor
    hq: torch.Tensor
    name: str
    grey: bool


@DATASETS.register(ValDatasetOptions, name="FullImageDataset")
class FullImageDataset(Dataset[ValSample]):
    """Whole HR images cropped to a multiple of the scale (top-left), with LR by MATLAB bicubic in 8 bits.

    Returns ``{"lq", "hq", "name", "grey"}``; ``name`` is the path relative to dataroot without suffix. With
    ``dataroot_lq`` the LR images are read instead (same relative names).
    """

    def __init__(self, options: ValDatasetOptions, scale: int) -> None:
        self.options = options
        self.scale = scale
        items: list[ImageItem] = load_items(options.dataroot)[: options.max_images]
        if options.dataroot_lq is not None:
            items = pair_with_lr(items, options.dataroot_lq)
        if not items:
            raise _no_images("FullImageDataset", options.dataroot)
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> ValSample:
        item, scale = self.items[index], self.scale
        raw = read_image(item.hr)
        grey = raw.ndim == 2 or raw.shape[2] <= 2  # grey, or grey and alpha
        hr = to_rgb(raw, item.hr)
        lr = None if item.lr is None else read_rgb(item.lr)
        if lr is not None:
            check_lr_size(hr, lr, scale, item.lr or item.hr)
        hr = crop_to_scale(hr, scale, item.hr)
        height, width = hr.shape[:2]
        if lr is None:
            to_8bit = 255.0 / np.iinfo(hr.dtype).max
            lr = round_to_dtype(imresize(hr.astype(np.float64) * to_8bit, 1.0 / scale), np.uint8)
        else:
            lr = lr[: height // scale, : width // scale]
        return ValSample(lq=to_tensor(lr), hq=to_tensor(hr), name=item.name, grey=grey)
