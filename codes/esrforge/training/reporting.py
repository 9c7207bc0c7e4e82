"""What a run reports: averaged loss lines in the log, TensorBoard scalars and images, a progress bar."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

log = logging.getLogger("esrforge")


class Reporter:
    """Accumulates per-step scalars without forcing a device sync, and writes them every ``print_freq`` steps.

    Only the main process writes; elsewhere every method is a no-op apart from accumulation.
    """

    def __init__(self, tb_dir: Path | None, enabled: bool, start: int, total: int) -> None:
        self.enabled = enabled
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = defaultdict(int)
        self._times = {"data": 0.0, "iter": 0.0}
        self._steps = 0
        self.writer = None
        if enabled and tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(tb_dir))
        self.bar = tqdm(total=total, initial=start, disable=not enabled, unit="it", dynamic_ncols=True)

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
        return means

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write scalars to TensorBoard (when enabled)."""
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, step: int, tag: str, image: Tensor) -> None:
        """Write a ``C x H x W`` image in [0, 1] to TensorBoard (when enabled)."""
        if self.writer is not None:
            self.writer.add_image(tag, image.clamp(0, 1).to(torch.float32).cpu(), step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
