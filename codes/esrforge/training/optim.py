"""Optimisers and learning-rate schedules.

A schedule is stepped once per training iteration, after the optimiser step, as PyTorch expects:
``scheduler.last_epoch`` is the 0-based index of the iteration the current rate applies to. Every
rate is a closed-form function of that index, so a scheduler restored from its ``state_dict()``
continues exactly where the saved one stopped.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..options.schema import TrainSection

log = logging.getLogger(__name__)


def build_optimizer(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], weight_decay: float
) -> Adam:
    """Adam over the parameters that require gradients: the fused kernel, on the CPU as on CUDA.

    Fused Adam can skip a step on the device (``found_inf``), which the trainer's non-finite guard uses.
    """
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("build_optimizer: the network has no trainable parameters")
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in trainable)
    return Adam(trainable, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused or None)


def load_optimizer_state(optimizer: Optimizer, state: dict[str, Any], what: str) -> None:
    """Restore a saved optimiser state (Adam's moments and step counts), keeping the config's betas and
    weight decay where they changed since (the learning rate follows the restored schedule)."""
    configured = [(tuple(group["betas"]), group["weight_decay"]) for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, (betas, decay) in zip(optimizer.param_groups, configured, strict=True):
        saved = (tuple(group["betas"]), group["weight_decay"])
        if saved != (betas, decay):
            log.info(
                "%s: Adam betas %s, weight decay %g from the config (saved: %s, %g)",
                what,
                betas,
                decay,
                *saved,
            )
            group["betas"], group["weight_decay"] = betas, decay


class WarmupScheduler(LRScheduler):
    """A closed-form schedule times a linear warm-up over the first ``warmup_iter`` iterations.

    During the warm-up, iteration ``i`` runs at ``(i + 1) / warmup_iter`` times the schedule's rate.
    Subclasses implement :meth:`rate` and list their schedule parameters in ``schedule_keys``.
    :meth:`load_state_dict` restores the position only; the schedule and base rates built from the
    config are kept, with a warning that names any difference from the saved ones.
    """

    schedule_keys: tuple[str, ...] = ("warmup_iter",)

    def __init__(self, optimizer: Optimizer, warmup_iter: int = 0) -> None:
        if warmup_iter < 0:
            raise ValueError(f"warmup_iter: expected 0 or more steps, got {warmup_iter}")
        self.warmup_iter = warmup_iter
        super().__init__(optimizer)

    def rate(self, base_lr: float, step: int) -> float:
        """The learning rate of iteration ``step`` (0-based) before the warm-up factor."""
        raise NotImplementedError

    def lr_at(self, step: int) -> list[float]:
        """The learning rate of each parameter group at iteration ``step``."""
        warmup = min(1.0, (step + 1) / self.warmup_iter) if self.warmup_iter else 1.0
        return [warmup * self.rate(float(base), step) for base in self.base_lrs]

    def get_lr(self) -> list[float | torch.Tensor]:
        return list(self.lr_at(self.last_epoch))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position and set the optimiser's rates from it (load the optimiser first)."""
        if "last_epoch" not in state_dict or "_step_count" not in state_dict:
            raise ValueError("learning-rate scheduler state lacks last_epoch or _step_count")
        keys = (*self.schedule_keys, "base_lrs")
        saved = {key: state_dict.get(key) for key in keys}
        configured = {key: getattr(self, key) for key in keys}
        if saved != configured:
            log.warning(
                "the resumed learning-rate schedule %s differs from the config's %s; following the config",
                saved,
                configured,
            )
        self.seek(int(state_dict["last_epoch"]))
        self._step_count = int(state_dict["_step_count"])

    def seek(self, step: int) -> None:
        """Move to iteration ``step`` and set the optimiser's rates to that iteration's."""
        self.last_epoch = step
        self._step_count = step + 1
        self._last_lr = list(self.lr_at(step))
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr


class MultiStepLR(WarmupScheduler):
    """``base_lr * gamma ** k`` where ``k`` is the number of milestones at or before the iteration."""

    schedule_keys = ("warmup_iter", "milestones", "gamma")

    def __init__(self, optimizer: Optimizer, milestones: list[int], gamma: float, warmup_iter: int = 0):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, warmup_iter)

    def rate(self, base_lr: float, step: int) -> float:
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, step)


class CosineAnnealingRestartLR(WarmupScheduler):
    """Cosine cycles of ``periods`` iterations, cycle ``k`` starting at ``restart_weights[k] * base_lr``.

    As in BasicSR, cycle ``k`` covers the iterations up to and including the sum of the first ``k + 1``
    periods, and the rate falls to ``eta_min`` at its last one; after the last cycle it stays at ``eta_min``.
    """

    schedule_keys = ("warmup_iter", "periods", "restart_weights", "eta_min")

    def __init__(
        self,
        optimizer: Optimizer,
        periods: list[int],
        restart_weights: list[float] | None = None,
        eta_min: float = 0.0,
        warmup_iter: int = 0,
    ) -> None:
        weights = list(restart_weights) if restart_weights else [1.0] * len(periods)
        if not periods or len(weights) != len(periods) or any(p <= 0 for p in periods):
            raise ValueError(
                f"restart_periods/restart_weights: expected positive periods and one weight per period, "
                f"got {list(periods)} and {weights}"
            )
        self.periods = [int(p) for p in periods]
        self.restart_weights = [float(w) for w in weights]
        self.eta_min = float(eta_min)
        super().__init__(optimizer, warmup_iter)

    def rate(self, base_lr: float, step: int) -> float:
        ends = list(itertools.accumulate(self.periods))
        cycle = bisect.bisect_left(ends, step)
        if cycle == len(ends):
            return self.eta_min
        start = ends[cycle - 1] if cycle else 0
        progress = (step - start) / self.periods[cycle]
        weight = self.restart_weights[cycle]
        return self.eta_min + weight * 0.5 * (base_lr - self.eta_min) * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: Optimizer, train: TrainSection) -> WarmupScheduler:
    """The schedule ``train.lr_scheme`` names, with ``train.warmup_iter`` steps of linear warm-up."""
    if train.lr_scheme == "MultiStepLR":
        return MultiStepLR(optimizer, train.lr_steps, train.lr_gamma, train.warmup_iter)
    return CosineAnnealingRestartLR(
        optimizer, train.restart_periods, train.restart_weights, train.eta_min, train.warmup_iter
    )
