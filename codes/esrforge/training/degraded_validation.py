"""Validation LR made once with the training degradation at a fixed seed, saved and reused.

``datasets.val.degrade: true`` makes ``experiments/<name>/val_lq/`` on the first run: every HR image
(cropped to a multiple of the scale) degraded with its own key ``(seed, VAL_TAG, index)``. A
``degradation.json`` beside the images records what made them; a later or resumed run reuses the
folder while that record matches, and makes it again (with a warning) when the settings changed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..data.base import TrainDatasetOptions, ValDatasetOptions
from ..data.datasets import FullImageDataset
from ..data.imageio import write_image
from ..degradations.pipeline import Degrader
from ..fileio import atomic_write_text
from ..options.convert import to_data

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
    """``val`` reading its LR from ``folder``, which is made first unless it holds these settings' LR.

    Processes other than the main one pass ``write=False`` and only read the folder.
    """
    if not val.degrade:
        return val
    assert train.degradation is not None, "checked when the config loads"
    paired = dataclasses.replace(val, dataroot_lq=folder, degrade=False)
    record = json.dumps({"scale": scale, "seed": seed, "degradation": to_data(train.degradation)}, indent=1)
    if not write:
        return paired
    record_file = folder / RECORD
    if record_file.is_file() and record_file.read_text() == record:
        log.info("validation LR: reusing %s", folder)
        return paired
    if record_file.is_file():
        log.warning("validation LR in %s was made with other degradation settings: making it again", folder)
        record_file.unlink()
    degrader = Degrader(train.degradation, scale, train.target_size, seed)
    dataset = FullImageDataset(dataclasses.replace(val, degrade=False), scale)
    for index in range(len(dataset)):
        sample = dataset[index]
        lq, _ = degrader.degrade(sample["hq"][None].to(device), (degrader.seed, VAL_TAG, index))
        pixels = (lq[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        write_image(folder / f"{sample['name']}.png", pixels)
    atomic_write_text(record_file, record)  # last: a folder without it is incomplete
    log.info("validation LR: %d images degraded at seed %d into %s", len(dataset), seed, folder)
    return paired
