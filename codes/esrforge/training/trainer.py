"""The training loop: build everything a config describes, train, validate, save, resume."""

from __future__ import annotations

import logging
import random
import signal
import time
import warnings
from collections.abc import Iterator, Sized
from pathlib import Path
from types import FrameType
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..data.base import build_dataset
from ..data.datasets import UnusableDataError
from ..data.loader import make_train_loader
from ..degradations.pipeline import Degrader, UsmOptions
from ..fileio import DiskFullError, free_bytes
from ..losses.base import build_loss
from ..losses.schedule import describe_schedule, phases
from ..options.schema import Config
from ..randomness import StepGenerators
from .build import build_discriminator, build_generator, count_parameters
from .compiled import compile_wanted, describe_compile, graphs_wanted, slow_steps, training_forwards
from .distributed import DistributedContext
from .ema import ModelEMA
from .experiment import ExperimentDirs
from .guard import SkipGuard, TrainingStopped
from .optim import build_optimizer, build_scheduler, load_optimizer_state
from .precision import Precision, configure_backends, to_channels_last
from .reporting import Reporter, make_reporter
from .state import (
    gather_pools,
    load_networks,
    load_pool,
    load_training_state,
    prune_checkpoints,
    save_models,
    save_training_state,
    tensor_bytes,
)
from .steps import IterationRunner, Networks, Trained
from .validation import ValidationFailed, legacy_best, make_validator

log = logging.getLogger("esrforge")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains the networks of ``config`` in ``dirs``, resuming from ``resume`` when given."""

    def __init__(
        self, config: Config, dirs: ExperimentDirs, resume: Path | None, dist: DistributedContext
    ) -> None:
        if config.train is None or config.datasets.train is None:
            raise ValueError("train.py needs the train and datasets.train sections")
        self.config, self.train, self.dirs, self.dist = config, config.train, dirs, dist
        self.device = dist.device
        configure_backends(self.device)
        self.precision = Precision(config.fp16, config.bf16, self.device, config.fp32)
        _seed_everything(self.train.manual_seed + dist.rank)
        self.nets = self._build_networks()
        self.losses = [build_loss(options).to(self.device) for options in self.train.losses]
        self.schedulers = {
            name: build_scheduler(trained.optimizer, self.train) for name, trained in self._trained().items()
        }
        self.ema = (
            ModelEMA(self.nets.generator.net, self.train.ema_decay) if self.train.ema_decay > 0 else None
        )
        data = config.datasets.train
        degradation = data.degradation
        generators = StepGenerators(self.train.manual_seed, dist.rank, self.device)
        self.compiled = compile_wanted(self.train.compile, self.device)
        discriminator = self.nets.discriminator.net if self.nets.discriminator is not None else None
        self.runner = IterationRunner(
            self.nets,
            self.losses,
            self.train,
            self.precision,
            config.scale,
            generators,
            degradation.usm if degradation is not None else UsmOptions(),
            training_forwards(
                self.nets.generator.net,
                discriminator,
                self.losses,
                self.compiled,
                graphs_wanted(self.train.cuda_graphs, self.device),
            ),
        )
        self.degrader = (
            Degrader(degradation, config.scale, data.target_size, self.train.manual_seed, dist.rank)
            if degradation is not None
            else None
        )
        dataset = build_dataset(data, config.scale)
        self.loader = make_train_loader(dataset, data, seed=self.train.manual_seed, device=self.device)
        self.validator = make_validator(config, dirs, dist)
        self.step = 0
        self.guard = SkipGuard(self.train.max_nonfinite_steps)
        self.stop_vote = dist.stop_vote()
        self._stop_signal: int | None = None
        self._stopping = False  # every process agrees on it: set from all signals at the end of a step
        self._saved_at: int | None = None
        if resume is not None:
            self._load_state(resume)
        elif self.train.start_step:
            self._start_at(self.train.start_step)

    def log_summary(self) -> None:
        """What this run trains, on what, and its step schedule: the head of the training log."""
        config, train = self.config, self.train
        assert config.datasets.train is not None
        sizes = [
            f"{name} {count_parameters(trained.net):,} parameters"
            for name, trained in self._trained().items()
        ]
        log.info(
            "experiment %s in %s: %s on %s (%s), %s, %d process(es)",
            config.name,
            self.dirs.root,
            ", ".join(sizes),
            self.device,
            self.precision.describe(),
            describe_compile(self.compiled, self.runner.forwards.graphs),
            self.dist.world_size,
        )
        batch = config.datasets.train.batch_size
        effective = batch * train.accumulate_steps * self.dist.world_size
        accumulated = f" x {train.accumulate_steps} accumulated" if train.accumulate_steps > 1 else ""
        log.info(
            "%d training images, batch %d per process%s%s; steps %d to %d",
            len(cast(Sized, self.loader.loader.dataset)),
            batch,
            accumulated,
            f" ({effective} per optimiser step)" if effective != batch else "",
            self.step,
            train.niter,
        )
        for line in describe_schedule(train.losses, train.niter):
            log.info("%s", line)
        if self.degrader is not None:
            log.info("%s", self.degrader.describe())

    def _log_result(self) -> None:
        """The closing line of a finished run: where its model is, and its best validation score."""
        score = self.validator.summary() if self.validator is not None else ""
        log.info("finished %d steps: %s%s", self.step, self.dirs.models / f"{self.step}_G.pth", score)

    def _trained(self) -> dict[str, Trained]:
        nets = {"G": self.nets.generator}
        if self.nets.discriminator is not None:
            nets["D"] = self.nets.discriminator
        return nets

    def _build_networks(self) -> Networks:
        train = self.train
        assert train is not None
        generator = self._placed(build_generator(self.config))
        nets = Networks(self._trained_net(generator, train.lr_G, train.betas_G, train.weight_decay_G))
        discriminator = build_discriminator(self.config)
        if discriminator is not None:
            nets.discriminator = self._trained_net(
                self._placed(discriminator), train.lr_D, train.betas_D, train.weight_decay_D
            )
        return nets

    def _placed(self, net: nn.Module) -> nn.Module:
        """``net`` on the device, in the memory format, with the same weights in every process."""
        net = to_channels_last(net.to(self.device), self.config.channels_last)
        self.dist.broadcast_parameters(net)
        return net

    def _trained_net(self, net: nn.Module, lr: float, betas: tuple[float, float], decay: float) -> Trained:
        optimizer = build_optimizer(net.parameters(), lr, betas, decay)
        return Trained(net, optimizer, self.precision.grad_scaler(), self.dist.gradient_reducer(net))

    # --- state -----------------------------------------------------------------------------------

    def _state(self, pools: list[Any] | None) -> dict[str, Any]:
        trained = self._trained()
        return {
            "step": self.step,
            "epoch": self.loader.epoch,
            "precision": self.precision.name,
            "networks": {k: t.net.state_dict() for k, t in trained.items()},
            "optimizers": {k: t.optimizer.state_dict() for k, t in trained.items()},
            "scalers": {k: t.scaler.state_dict() for k, t in trained.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "loader": self.loader.state_dict(),
            "pools": pools,
            "best": self.validator.best if self.validator is not None else None,
        }

    def _load_state(self, path: Path) -> None:
        if self.config.path.pretrain_model_generator is not None:
            log.warning("resuming from %s: path.pretrain_model_generator is ignored", path)
        state = load_training_state(path)
        load_networks({key: trained.net for key, trained in self._trained().items()}, state, path)
        for key, trained in self._trained().items():
            load_optimizer_state(trained.optimizer, state["optimizers"][key], f"{path}: {key}")
            trained.scaler.load_state_dict(state["scalers"][key])
            self.schedulers[key].load_state_dict(state["schedulers"][key])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA turned on for this resume: average from the resumed generator on
                self.ema = ModelEMA(self.nets.generator.net, self.train.ema_decay)
                log.info("%s has no EMA weights: the EMA starts from the resumed generator", path)
        if self.validator is not None and state.get("best") is not None:
            self.validator.best = legacy_best(state["best"])
        self.loader.load_state_dict(state["loader"])
        if self.degrader is not None and self.degrader.pool is not None:
            load_pool(self.degrader.pool, state.get("pools"), self.dist.rank, self.device, path)
        self.precision.check_resumed(state.get("precision"), path)
        self.step = int(state["step"])
        self._saved_at = self.step  # that state is on disk: saving it again at once would only rewrite it
        log.info("resumed from %s at step %d", path, self.step)

    def _start_at(self, step: int) -> None:
        """Begin at ``step`` of the schedule with fresh optimisers (``train.start_step``)."""
        for scheduler in self.schedulers.values():
            scheduler.seek(step)
        self.step = step
        if self.config.path.pretrain_model_generator is None:
            log.warning("train.start_step is %d but path.pretrain_model_generator is not set", step)
        log.info("starting at step %d of the schedule with fresh optimisers", step)

    def save(self, collective: bool = True) -> None:
        """Write models/<step>_*.pth and training_state/<step>.state (main process only).

        ``collective``: every process calls this now, so the main one can gather their pair pools.
        """
        pool = self.degrader.pool if self.degrader is not None else None
        pools = gather_pools(pool, self.dist, collective)
        if not self.dist.is_main:
            return
        weights = {"G": self.nets.generator.net.state_dict()}
        if self.ema is not None:
            weights["G_ema"] = self.ema.module.state_dict()
        if self.nets.discriminator is not None:
            weights["D"] = self.nets.discriminator.net.state_dict()
        state = self._state(pools)
        needed, free = tensor_bytes(weights) + tensor_bytes(state), free_bytes(self.dirs.root)
        if free < needed:
            raise TrainingStopped(
                self._not_saved(f"it needs {needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free")
            )
        try:
            save_models(self.dirs, self.step, weights)
            save_training_state(self.dirs, self.step, state)
        except DiskFullError as err:
            raise TrainingStopped(self._not_saved(f"no space left on device writing {err.path}")) from None
        if self.config.logger.keep_last is not None:
            protected = {phase.start for phase in phases(self.train.losses, self.train.niter)}
            prune_checkpoints(
                self.dirs, self.config.logger.keep_last, protected | set(self.config.logger.keep_steps)
            )
        log.info("saved checkpoint at step %d", self.step)

    def _not_saved(self, why: str) -> str:
        """The one-line message of a checkpoint that could not be written."""
        kept = self.dirs.newest_state()
        previous = f"{kept} (step {kept.stem}) is the newest complete state" if kept else "no earlier state"
        return (
            f"cannot save the checkpoint of step {self.step} in {self.dirs.root}: {why}; kept: {previous}. "
            "Free some space and run again to resume from it"
        )

    # --- loop ------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_signal is not None:
            raise KeyboardInterrupt
        self._stop_signal = signum
        log.warning("%s received: saving at the end of this step", signal.Signals(signum).name)

    def run(self) -> None:
        """Train until ``train.niter`` steps, a stop signal, or too many non-finite losses in a row."""
        train = self.train
        assert train is not None
        if self.dist.is_main:
            self.log_summary()
        if self.step >= train.niter:
            log.info("the run is at step %d, train.niter is %d: nothing to train", self.step, train.niter)
            return
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        reporter = make_reporter(self.config, self.dirs, self.dist.is_main, self.step)
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        phase_starts = {phase.start for phase in phases(train.losses, train.niter)} | {self.step}
        slow = slow_steps(phase_starts, self.runner.forwards.graphs) if self.compiled else {}
        try:
            batches = iter(self.loader)
            while self.step < train.niter and not self._stopping:
                start = time.perf_counter()
                try:
                    # with a degradation, the LR is made on the device: it can run out of memory too
                    inputs = [self._inputs(batches, i) for i in range(train.accumulate_steps)]
                    loaded = time.perf_counter()
                    result = self.runner.run(inputs, self.step)
                except torch.OutOfMemoryError:
                    raise TrainingStopped(self._out_of_memory_message()) from None
                self.guard.record(self.step, result.skipped)
                if self.ema is not None:
                    self.ema.update(self.nets.generator.net, taken=~result.skipped["generator"])
                for scheduler in self.schedulers.values():
                    scheduler.step()
                if self.step in slow:
                    took = time.perf_counter() - start
                    log.info("step %d took %.1f s, %s included", self.step, took, slow[self.step])
                self.step += 1
                reporter.record(result.values, loaded - start, time.perf_counter() - start)
                self._periodic(reporter)
            self.guard.check()
            if self.step >= train.niter or self._stopping:
                self._save_unless_saved()
            if self.step >= train.niter and self.dist.is_main:
                self._log_result()
        finally:
            self.stop_vote.close()
            reporter.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _out_of_memory_message(self) -> str:
        data = self.config.datasets.train
        assert data is not None
        hints = self.precision.memory_hint() + self.runner.forwards.memory_hint()
        return (
            f"out of {self.device} memory at step {self.step} with datasets.train.batch_size {data.batch_size} "
            f"and target_size {data.target_size}; lower either (halving the batch with train.accumulate_steps: "
            f"2 keeps the effective batch){hints}. The last saved checkpoint is intact"
        )

    def _inputs(
        self, batches: Iterator[dict[str, torch.Tensor]], part: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """LR and HR of the next batch (the ``part``-th of this step's) on the device; with a degradation
        the LR is made here from the HR."""
        try:
            batch = next(batches)
        except UnusableDataError:
            if self.step > 0:  # the networks are fine: keep the steps since the last checkpoint
                self._save_unless_saved(collective=False)  # the other processes may load on
            raise
        if self.degrader is None:
            return self._to_device(batch["lq"]), self._to_device(batch["hq"])
        iteration = self.step * self.train.accumulate_steps + part  # the step itself without accumulation
        degraded = self.degrader(batch["hq"].to(self.device, non_blocking=True), iteration)
        return self._to_device(degraded.lq), self._to_device(degraded.hq)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        return to_channels_last(tensor, self.config.channels_last)

    def _periodic(self, reporter: Reporter) -> None:
        train, logger, step = self.train, self.config.logger, self.step
        assert train is not None
        if step % logger.print_freq == 0 or step % logger.save_checkpoint_freq == 0:
            self.guard.check()  # the one read of the device's skip flags
        if step % logger.print_freq == 0:
            rates = {k: float(s.get_last_lr()[0]) for k, s in self.schedulers.items()}
            reporter.flush(step, self.loader.epoch, rates)
        if (
            self.validator is not None
            and train.val_freq
            and (step % train.val_freq == 0 or step == train.niter)
        ):  # before saving: the state of this step then holds its best models and scores
            model = self.ema.module if self.ema is not None else self.nets.generator.net
            try:
                self.validator.run(model, step, reporter)
            except ValidationFailed as err:  # on every process: the networks are fine, keep their steps
                self._save_unless_saved()
                raise TrainingStopped(
                    f"validation at step {step} failed: {err}; the checkpoint of step {step} is saved: mend "
                    "datasets.val (or set train.val_freq: 0) and run again to resume"
                ) from err
            reporter.plot()
        if step % logger.save_checkpoint_freq == 0:
            self.save()
            self._saved_at = step
        self._agree_on_stopping()

    def _agree_on_stopping(self) -> None:
        """Stop when any process got a signal: all processes leave the loop after the same step.

        Distributed, the vote is agreed one step late (see StopVote), so that no step waits for the others.
        """
        self._stopping = self.stop_vote.cast(self._stop_signal is not None)

    def _save_unless_saved(self, collective: bool = True) -> None:
        if self._saved_at != self.step:
            self.save(collective)
