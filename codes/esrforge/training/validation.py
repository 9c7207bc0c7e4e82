"""Validation during training: score every validation set with the configured metrics, keep the best models.

Each metric keeps ``models/best_<metric>_G.pth``, judged on the first set (lower is better for LPIPS and
DISTS). In a run with a GAN loss only models that have had GAN steps compete: the L1 phase always wins
PSNR, and its model is not what a GAN run is for (its last checkpoint is kept as ``<step>_G.pth``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..data.base import ValDatasetOptions
from ..data.imageio import to_uint8, write_image
from ..data.imresize import imresize
from ..inference.scoring import means, score_set, val_loader
from ..logs import original_message
from ..metrics.base import Metric, build_metric, metric_class
from ..options.checks import GAN_TYPES
from ..options.schema import Config
from .degraded_validation import degraded_validation
from .distributed import DistributedContext
from .experiment import ExperimentDirs
from .reporting import Reporter
from .state import save_weights

log = logging.getLogger("esrforge")


class ValidationFailed(Exception):
    """Validation could not score an image (unreadable, too small) on this or another process; raised on
    every process at once, so they can save the step's checkpoint together."""


SIDE_BY_SIDE = 4
"""How many images of each validation set get a bicubic | output | ground-truth picture each time."""

Best = dict[str, dict[str, float]]
"""``{metric: {"value": score, "step": step}}``: the best score of each metric and where it was."""


def side_by_side(lq: Tensor, sr: Tensor, hq: Tensor, scale: int) -> Tensor:
    """``bicubic | sr | hq`` as one ``C x H x 3W`` image in [0, 1]."""
    bicubic = imresize(lq.float().cpu(), scale).clamp(0, 1)
    return torch.cat([bicubic[0], sr[0].float().cpu(), hq[0].float().cpu()], dim=-1)


def best_file(metric: str) -> str:
    """``best_<metric>_G.pth``."""
    return f"best_{metric}_G.pth"


def report_metric(config: Config) -> str:
    """The metric the closing line reports (``validation.report``; auto: perceptual in a GAN run)."""
    validation = config.validation
    if validation.report != "auto":
        return validation.report
    perceptual = [m.name for m in validation.metrics if metric_class(m.type).perceptual]
    return perceptual[0] if gan_losses(config) and perceptual else validation.metrics[0].name


def gan_losses(config: Config) -> list[Any]:
    return [loss for loss in (config.train.losses if config.train else []) if loss.type in GAN_TYPES]


def legacy_best(best: dict[str, Any]) -> Best:
    """A training state's ``best``; states before per-metric bests held ``{"psnr_y": v, "step": s}``."""
    if "step" in best and not isinstance(best["step"], dict):
        return {"psnr_y": {"value": float(best["psnr_y"]), "step": float(best["step"])}}
    return best


@dataclass(frozen=True)
class ValSet:
    """One validation set as this process sees it."""

    options: ValDatasetOptions
    loader: DataLoader[Any]

    @property
    def label(self) -> str:
        return self.options.label


class Validator:
    """Scores a generator on the validation sets; ``best`` holds the best score of each metric.

    Under torch.distributed every process scores its share of each set's images (see
    :func:`~esrforge.data.loader.make_val_loader`) and the sums are reduced over all of them, so no
    process waits idle while another validates; the main process logs them and keeps the best models.
    """

    def __init__(
        self, sets: list[ValSet], config: Config, dirs: ExperimentDirs, dist: DistributedContext
    ) -> None:
        self.sets = sets
        self.scale = config.scale
        self.description = config.networks.generator.describe()
        self.metrics: list[Metric[Any]] = [
            build_metric(options, config.scale).to(dist.device) for options in config.validation.metrics
        ]
        self.report = report_metric(config)
        self.gans = gan_losses(config)
        self.dirs = dirs
        self.dist = dist
        self.best: Best = {}
        if self.gans and dist.is_main and not any(m.perceptual for m in self.metrics):
            log.info(
                "a GAN run scored by %s only: add {type: lpips} to validation.metrics to judge textures",
                self.report,
            )

    def candidate(self, step: int) -> bool:
        """Whether the model after ``step`` steps may be a best model: in a GAN run, once GAN steps began."""
        return not self.gans or any(loss.active(step - 1) for loss in self.gans)

    def run(self, model: nn.Module, step: int, reporter: Reporter) -> dict[str, dict[str, float]]:
        """Validate ``model`` at ``step`` on every set; log and return ``{set: {metric: mean}}``."""
        results: dict[str, dict[str, float]] = {}
        for val in self.sets:

            def picture(index: int, sample: dict[str, Any], sr: Tensor, val: ValSet = val) -> None:
                if self.dist.rank + index * self.dist.world_size >= SIDE_BY_SIDE:  # the first images only
                    return
                image, name = side_by_side(sample["lq"], sr, sample["hq"], self.scale), sample["name"][0]
                path = self.dirs.val_images / val.label / str(step) / f"{name}.png"
                write_image(path, to_uint8(image.permute(1, 2, 0).numpy()))
                reporter.image(step, f"val/{val.label}/{name}", image)

            failure: Exception | None = None
            try:
                sums = score_set(
                    model,
                    val.loader,
                    self.metrics,
                    self.description,
                    val.options.tile_size,
                    label=f"validation {val.label}",
                    progress=self.dist.is_main,
                    on_image=picture,
                )
            except (ValueError, OSError, RuntimeError) as err:  # an image of this process's share
                failure, sums = (
                    err,
                    torch.zeros(len(self.metrics) + 1, dtype=torch.float64, device=self.dist.device),
                )
            # every process reaches the sum, failed or not, and learns whether any failed
            failed = torch.tensor([float(failure is not None)], dtype=torch.float64, device=sums.device)
            total = self.dist.all_reduce_sum(torch.cat([sums, failed]))
            if total[-1] > 0:
                raise ValidationFailed(
                    original_message(str(failure))
                    if failure is not None
                    else "on another process (its log names the image)"
                ) from failure
            scores = means(total[:-1], self.metrics)
            results[val.label] = scores
            if self.dist.is_main:
                shown = ", ".join(f"{name} {value:.4f}" for name, value in scores.items())
                log.info("validation at step %d on %s: %s", step, val.label, shown)
                reporter.scalars(step, {f"val/{val.label}/{k}": v for k, v in scores.items()})
        if self.dist.is_main:
            self._keep_best(model, step, results[self.sets[0].label])
        return results

    def _keep_best(self, model: nn.Module, step: int, scores: dict[str, float]) -> None:
        if not self.candidate(step):
            start = min(loss.after for loss in self.gans)
            log.info(
                "step %d is before the GAN phase (from step %d): not a candidate for best models", step, start
            )
            return
        for metric in self.metrics:
            value, best = scores[metric.name], self.best.get(metric.name)
            if math.isnan(value) or (best is not None and not metric.better(value, best["value"])):
                continue
            self.best[metric.name] = {"value": value, "step": float(step)}
            save_weights(self.dirs.models / best_file(metric.name), model.state_dict())
            log.info(
                "new best %s %.4f: saved models/%s (step %d)",
                metric.name,
                value,
                best_file(metric.name),
                step,
            )

    def summary(self) -> str:
        """The closing line's words on the best model: its score, set, step and file."""
        best = self.best.get(self.report)
        if best is None:
            why = "no validation ran in the GAN phase" if self.gans else "no validation gave a score"
            return f"; no best {self.report} model: {why}"
        path = self.dirs.models / best_file(self.report)
        return (
            f"; best validation {self.report} {best['value']:.4f} on {self.sets[0].label} at step "
            f"{int(best['step'])} ({path})"
        )


def validation_sets(
    config: Config, dirs: ExperimentDirs, device: torch.device, main: bool = True
) -> list[ValDatasetOptions]:
    """``datasets.val``'s sets as they are scored: a set with ``degrade`` reads the run's fixed degraded LR
    from ``val_lq/<set>/`` (made there first by the ``main`` process when missing)."""
    sets = []
    for val in config.datasets.val_sets:
        if val.degrade:
            assert config.datasets.train is not None and config.train is not None, (
                "checked when the config loads"
            )
            seed, folder = config.train.manual_seed, dirs.val_lq / val.label
            val = degraded_validation(val, config.datasets.train, config.scale, seed, folder, device, main)
        sets.append(val)
    return sets


def make_validator(config: Config, dirs: ExperimentDirs, dist: DistributedContext) -> Validator | None:
    """The validator of ``datasets.val`` (None without one, or with ``val_freq: 0``)."""
    if not config.datasets.val_sets or (config.train is not None and not config.train.val_freq):
        return None
    sets = validation_sets(config, dirs, dist.device, dist.is_main)
    if any(val.degrade for val in config.datasets.val_sets):
        dist.barrier()  # the main process has written the LR the others read
    loaders = [ValSet(val, val_loader(val, config.scale, dist.rank, dist.world_size)) for val in sets]
    return Validator(loaders, config, dirs, dist)
