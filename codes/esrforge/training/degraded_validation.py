"""Validation LR made once with the training degradation at a fixed seed, saved and reused.

``datasets.val.degrade: true`` makes ``experiments/<name>/val_lq/`` on the first run: every HR image
(cropped to a multiple of the scale) degraded with its own key ``(seed, VAL_TAG, index)``. A
``degradation.json`` beside the images records what made them (the settings and the images); a
later or resumed run reuses the folder while that record matches, and makes it again (with a
warning) when anything in it changed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch

from ..data.base import TrainDatasetOptions, ValDatasetOptions
from ..data.datasets import crop_to_scale, to_tensor
from ..data.imageio import to_uint8, write_image
from ..data.sources import load_items, read_rgb
from ..degradations.pipeline import Degrader
from ..fields.convert import to_data
from ..fileio import atomic_write_text

log = logging.getLogger(__name__)

VAL_TAG = 0x56414C
"""In place of the rank in the key of validation images: unrelated to every training draw."""
RECORD = "degradation.json"


def degraded_validation(
    val: ValDatasetOptions,
    train: TrainDatasetOptions,
    scale: int,
    seed: int,
    folder: Path,
    device: torch.device,
    write: bool = True,
) -> ValDatasetOptions:
    """``val`` (with ``degrade``) reading its LR from ``folder``, made first unless it holds these settings' LR.

    Every process degrades the images (an unreadable one then fails on all of them alike, none waits
    for another); only the one with ``write`` saves them.
    """
    assert train.degradation is not None, "checked when the config loads"
    items = load_items(val.dataroot)[: val.max_images]
    record = json.dumps(
        {
            "scale": scale,
            "seed": seed,
            "degradation": to_data(train.degradation),
            "dataroot": str(val.dataroot),
            "images": [item.name for item in items],
        },
        indent=1,
    )
    paired = dataclasses.replace(val, dataroot_lq=folder, degrade=False)
    record_file = folder / RECORD
    if record_file.is_file() and record_file.read_text() == record:
        if write:
            log.info("validation LR: reusing %s", folder)
        return paired
    if write and record_file.is_file():
        log.warning(
            "validation LR in %s was made from other settings or images: making it again; the scores of the "
            "best_* models so far came from the old LR, so a later best is judged against them",
            folder,
        )
        record_file.unlink()
    degrader = Degrader(train.degradation, scale, train.target_size, seed)
    for index, item in enumerate(items):
        image = to_tensor(crop_to_scale(read_rgb(item.hr), scale, item.hr))[None].to(device)
        lq, _ = degrader.degrade(image, (degrader.seed, VAL_TAG, index))
        if write:
            write_image(folder / f"{item.name}.png", to_uint8(lq[0].permute(1, 2, 0).cpu().numpy()))
    if write:
        atomic_write_text(record_file, record)  # last: a folder without it is incomplete
        log.info("validation LR: %d images degraded at seed %d into %s", len(items), seed, folder)
    return paired
