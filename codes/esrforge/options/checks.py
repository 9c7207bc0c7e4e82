"""Checks that span sections of a config (each field's own checks live in its dataclass)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from ..fields.errors import OptionError, OptionValueError
from ..losses.schedule import phases

if TYPE_CHECKING:
    from .schema import Config

GAN_TYPES = ("gan",)
DISCRIMINATOR_LOSS_TYPES = ("gradient_penalty",)


def _losses_of(config: Config, kinds: tuple[str, ...]) -> list[int]:
    losses = config.train.losses if config.train is not None else []
    return [i for i, loss in enumerate(losses) if loss.type in kinds]


def check_config(config: Config) -> None:
    """Raise :class:`OptionError` for settings that contradict each other across sections."""
    train_data = config.datasets.train
    if train_data is not None and train_data.target_size % config.scale:
        raise OptionError(
            "datasets.train.target_size",
            f"expected a multiple of the scale {config.scale}, got {train_data.target_size}",
        )
    if train_data is not None and train_data.crop_size % config.scale:
        raise OptionError(
            "datasets.train.degradation.patch_size",
            f"expected a multiple of the scale {config.scale}, got {train_data.crop_size}",
        )
    if train_data is not None and train_data.degradation is not None:
        try:
            train_data.degradation.check_output_size(config.scale)
        except OptionValueError as err:
            raise err.at("datasets.train.degradation") from None
        queue, batch = train_data.degradation.queue_size, train_data.batch_size
        if queue % batch:
            raise OptionError(
                "datasets.train.degradation.queue_size",
                f"expected a multiple of datasets.train.batch_size {batch}, got {queue}",
            )
    for i, val in enumerate(config.datasets.val_sets):
        if val.degrade and (train_data is None or train_data.degradation is None):
            key = "datasets.val" if not isinstance(config.datasets.val, list) else f"datasets.val[{i}]"
            raise OptionError(f"{key}.degrade", "true needs datasets.train.degradation to make the LR with")
    if config.logger.wandb is not None and importlib.util.find_spec("wandb") is None:
        raise OptionError(
            "logger.wandb", "needs the wandb package: pip install wandb (or null to log without it)"
        )
    discriminator = config.networks.discriminator
    if discriminator is not None:
        described = discriminator.describe()
        if (described.scale, described.out_channels) != (1, 1):
            raise OptionError(
                "networks.discriminator.type",
                f"expected a discriminator (one logit channel), got {discriminator.type}, a "
                f"x{described.scale} {described.in_channels} -> {described.out_channels} channel network",
            )
    if config.train is None:
        return
    generator = config.networks.generator.describe()
    if (generator.in_channels, generator.out_channels) != (3, 3):
        raise OptionError(
            "networks.generator",
            f"expected an RGB network (3 -> 3 channels): training reads RGB images, got a "
            f"{generator.in_channels} -> {generator.out_channels} channel {generator.architecture}",
        )
    gans = _losses_of(config, GAN_TYPES)
    if len(gans) > 1:
        raise OptionError(
            f"train.losses[{gans[1]}]", "only one gan loss is allowed (it drives the discriminator)"
        )
    for i in gans + _losses_of(config, DISCRIMINATOR_LOSS_TYPES):
        if config.networks.discriminator is None:
            kind = config.train.losses[i].type
            raise OptionError(f"train.losses[{i}]", f"a {kind} loss needs networks.discriminator")
    for i in _losses_of(config, DISCRIMINATOR_LOSS_TYPES):
        if not gans:
            raise OptionError(
                f"train.losses[{i}]", "a discriminator-side loss needs a gan loss in train.losses"
            )
    losses = config.train.losses
    for phase in phases(losses, config.train.niter):
        trained = phase.end > config.train.start_step  # the steps before start_step are never run
        if trained and all(losses[i].type in DISCRIMINATOR_LOSS_TYPES for i in phase.active):
            raise OptionError(
                "train.losses",
                f"expected a generator loss active at every step; none is at steps "
                f"{max(phase.start, config.train.start_step)}-{phase.end - 1} "
                "(see each loss's after and before)",
            )
    _check_patch_geometry(config)


def _check_patch_geometry(config: Config) -> None:
    """The translational loss must fit the training tile, and D must see the size G produces."""
    train_data = config.datasets.train
    if train_data is None or config.train is None:
        return
    patch, patch_key = train_data.target_size, "datasets.train.target_size"
    for i in _losses_of(config, ("translational",)):
        loss = config.train.losses[i]
        try:
            loss.check_geometry(config.scale, train_data.target_size)  # type: ignore[attr-defined]
        except OptionValueError as err:
            raise err.at(f"train.losses[{i}]") from None
        patch, patch_key = loss.patch_size, f"train.losses[{i}].patch_size"  # type: ignore[attr-defined]
    size = getattr(config.networks.discriminator, "image_size", None)
    if size is not None and size != patch:
        raise OptionError(
            "networks.discriminator.image_size", f"expected {patch} to match {patch_key}, got {size}"
        )
