"""What a run reports: averaged loss lines in the log, a progress bar, and every scalar to TensorBoard,
wandb (when configured) and the run's history file, whose curves are drawn to a PNG beside the log."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ..fields.convert import to_data
from ..options.schema import Config
from .curves import History, plot_history
from .experiment import ExperimentDirs
from .wandb_run import start_wandb

log = logging.getLogger("esrforge")


class Reporter:
    """Accumulates per-step scalars without forcing a device sync, and writes them every ``print_freq`` steps.

    Only the main process writes; elsewhere every method is a no-op apart from accumulation.
    ``history`` (with ``curves``, the PNG it is drawn to) keeps every scalar; its records after ``start``
    (from a run that was stopped after its last checkpoint) are dropped first. ``wandb_run`` is a
    started wandb run or None.
    """

    PLOT_EVERY_S = 300.0
    """The curves are redrawn after validation, at the end, and otherwise at most this often (only when
    scalars were recorded since the last drawing)."""

    def __init__(
        self,
        tb_dir: Path | None,
        enabled: bool,
        start: int,
        total: int,
        history: Path | None = None,
        curves: Path | None = None,
        wandb_run: Any = None,
        title: str = "",
    ) -> None:
        self.enabled = enabled
        self.history = History(history) if enabled and history is not None else None
        if self.history is not None:
            self.history.truncate(start)
        self.curves, self.title, self.wandb = curves, title, wandb_run
        self._plotted = time.monotonic()
        self._unplotted = False
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = defaultdict(int)
        self._times = {"data": 0.0, "iter": 0.0}
        self._steps = 0
        self.writer = None
        if enabled and tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(tb_dir))
        self.bar = tqdm(
            total=total, initial=start, disable=None if enabled else True, unit="it", dynamic_ncols=True
        )

    def record(self, values: dict[str, Tensor], data_time: float, iter_time: float) -> None:
        """Add one step's detached scalars and timings."""
        for key, value in values.items():
            value = value.detach().float()
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] += 1
        self._times["data"] += data_time
        self._times["iter"] += iter_time
        self._steps += 1
        self.bar.update(1)

    def flush(self, step: int, epoch: int, learning_rates: dict[str, float]) -> dict[str, float]:
        """Log the means since the last flush at ``step``; returns them."""
        means = {k: float(v) / self._counts[k] for k, v in self._sums.items()}
        steps = max(self._steps, 1)
        timing = {"time/iter_s": self._times["iter"] / steps, "time/data_s": self._times["data"] / steps}
        self._sums.clear()
        self._counts.clear()
        self._times = {"data": 0.0, "iter": 0.0}
        self._steps = 0
        if not self.enabled:
            return means
        shown = " ".join(f"{k} {v:.4g}" for k, v in means.items())
        rates = " ".join(f"lr_{k} {v:.3g}" for k, v in learning_rates.items())
        log.info(
            "step %d epoch %d %s %s iter %.3fs data %.3fs",
            step,
            epoch,
            rates,
            shown,
            timing["time/iter_s"],
            timing["time/data_s"],
        )
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if k in ("g_total", "d_gan")})
        self.scalars(step, {f"loss/{k}": v for k, v in means.items()})
        self.scalars(step, {f"lr/{k}": v for k, v in learning_rates.items()})
        self.scalars(step, timing)
        if time.monotonic() - self._plotted > self.PLOT_EVERY_S:
            self.plot()
        return means

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write scalars to TensorBoard, wandb and the history (when enabled)."""
        if not self.enabled or not values:
            return
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)
        if self.history is not None:
            self.history.append(step, values)
            self._unplotted = True

    def image(self, step: int, tag: str, image: Tensor) -> None:
        """Write a ``C x H x W`` image in [0, 1] to TensorBoard and wandb (when enabled)."""
        picture = image.clamp(0, 1).to(torch.float32).cpu()
        if self.writer is not None:
            self.writer.add_image(tag, picture, step)
        if self.wandb is not None:
            import wandb

            self.wandb.log({tag: wandb.Image(picture.permute(1, 2, 0).numpy())}, step=step)

    def plot(self) -> None:
        """Draw the history's curves to the PNG (when enabled and something was recorded since)."""
        if self.history is not None and self.curves is not None and self._unplotted:
            plot_history(self.history, self.curves, self.title)
            self._plotted, self._unplotted = time.monotonic(), False

    def close(self) -> None:
        self.bar.close()
        self.plot()
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def make_reporter(config: Config, dirs: ExperimentDirs, main: bool, step: int) -> Reporter:
    """TensorBoard, wandb when configured, the history and its curves: the main process's reporter."""
    assert config.train is not None
    logger = config.logger
    wandb_run = None
    if main and logger.wandb is not None:
        wandb_run = start_wandb(logger.wandb, dirs.wandb, config.name, to_data(config))
    return Reporter(
        dirs.tb_logger if logger.use_tb_logger else None,
        main,
        step,
        config.train.niter,
        history=dirs.history,
        curves=dirs.curves,
        wandb_run=wandb_run,
        title=config.name,
    )
