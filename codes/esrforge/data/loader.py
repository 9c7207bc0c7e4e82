"""DataLoaders for training and validation, with a sampler whose position can be saved and resumed.

The training sampler is infinite: epoch ``e`` is a permutation of the dataset drawn from ``(seed, e)``,
padded to a multiple of the number of processes and split between them as DistributedSampler does.
It yields :class:`SampleKey` ``(index, epoch, seed)``; the dataset seeds its per-sample randomness
(crop position, flips) from the key, so a sample depends only on the key, never on the worker count
or on which worker loads it. :class:`TrainLoader` counts the batches handed to the training loop, so
its ``state_dict()`` is the position after them even though workers have prefetched further.

Loader workers die with the process that started them (:func:`die_with_parent`): a training run killed
at any instant leaves no worker behind.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from .base import TrainDatasetOptions


@dataclass(frozen=True)
class SampleKey:
    """Which sample to load and the seed material of its randomness."""

    index: int
    epoch: int
    seed: int


class ResumableSampler(Sampler[SampleKey]):
    """Endless shuffled epochs; ``state_dict()`` holds seed, epoch and position within this rank's share."""

    def __init__(
        self, size: int, *, seed: int = 0, shuffle: bool = True, num_replicas: int = 1, rank: int = 0
    ):
        if size < 1:
            raise ValueError(f"ResumableSampler: the dataset is empty (size {size})")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"ResumableSampler: rank {rank} is not in [0, {num_replicas})")
        self.size = size
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.position = 0

    @property
    def epoch_length(self) -> int:
        """Samples this rank draws per epoch (the dataset size split between ranks, rounded up)."""
        return math.ceil(self.size / self.num_replicas)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """This rank's dataset indices for ``epoch``, in order."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle else None
        if order is None:
            order = np.arange(self.size)
        total = self.epoch_length * self.num_replicas
        padded = np.resize(order, total)  # repeats the start of the permutation, as DistributedSampler pads
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[SampleKey]:
        while True:
            indices = self.epoch_indices(self.epoch)
            while self.position < len(indices):
                index = int(indices[self.position])
                self.position += 1
                yield SampleKey(index, self.epoch, self.seed)
            self.epoch += 1
            self.position = 0

    def state_dict(self) -> dict[str, int]:
        """Where the next sample comes from: ``{"seed", "epoch", "position"}``."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a ``state_dict()`` (a position past the epoch's end moves on to the next epoch)."""
        missing = {"seed", "epoch", "position"} - set(state)
        if missing:
            raise ValueError(f"sampler state lacks {', '.join(sorted(missing))}")
        self.seed = int(state["seed"])
        self.epoch, self.position = self.advance(int(state["epoch"]), int(state["position"]), 0)

    def advance(self, epoch: int, position: int, samples: int) -> tuple[int, int]:
        """``(epoch, position)`` after drawing ``samples`` more from ``(epoch, position)``."""
        total = position + samples
        return epoch + total // self.epoch_length, total % self.epoch_length


class TrainLoader:
    """An endless iterator of training batches whose ``state_dict()`` counts only batches handed out."""

    def __init__(self, loader: DataLoader, sampler: ResumableSampler, batch_size: int) -> None:
        self.loader = loader
        self.sampler = sampler
        self.batch_size = batch_size
        self._start = sampler.state_dict()
        self._consumed = 0

    def __iter__(self) -> Iterator[Any]:
        """Start the DataLoader's iterator now (it draws its worker seeds from torch's generator)."""
        self.sampler.load_state_dict(self.state_dict())  # discard what workers prefetched last time
        self._start, self._consumed = self.sampler.state_dict(), 0
        return self._count(iter(self.loader))

    def _count(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            self._consumed += self.batch_size
            yield batch

    @property
    def epoch(self) -> int:
        return self.state_dict()["epoch"]

    def state_dict(self) -> dict[str, int]:
        """The sampler state right after the last batch this iterator yielded."""
        epoch, position = self.sampler.advance(self._start["epoch"], self._start["position"], self._consumed)
        return {"seed": self._start["seed"], "epoch": epoch, "position": position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state``; takes effect on the next ``iter()``."""
        self.sampler.load_state_dict(state)
        self._start, self._consumed = self.sampler.state_dict(), 0


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when the thread that created it exits (Linux)."""


def die_with_parent(parent: int, worker_id: int = 0) -> None:
    """Worker init: SIGKILL this worker when ``parent`` dies, and exit now if it is already gone; leave the
    parent's process group.

    PyTorch's workers poll for a dead parent, but their watchdog records the parent's pid only after
    start-up, so a parent killed while a worker starts leaves that worker waiting forever (holding its
    memory, and the terminal's or a pipe's stderr open). Elsewhere than Linux the check at start is all.
    A signal sent to the whole process group (SIGTERM: how torchrun, Slurm and systemd stop a job;
    Ctrl-C's SIGINT) is the parent's to handle: it finishes the step and saves, which needs its workers.
    In a group of their own they do not get it; the loader still stops them by their pid.
    """
    if hasattr(os, "setpgid"):  # POSIX
        os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def worker_init() -> functools.partial[None]:
    """The ``worker_init_fn`` of every loader: :func:`die_with_parent` of this process."""
    return functools.partial(die_with_parent, os.getpid())


def make_train_loader(
    dataset: Dataset, options: TrainDatasetOptions, *, seed: int, device: torch.device | str = "cpu"
) -> TrainLoader:
    """Batches of ``options.batch_size`` per process, sharded across processes under torch.distributed.

    Workers are persistent, memory is pinned when ``device`` is CUDA, and ``prefetch_factor`` applies
    when ``n_workers > 0``.
    """
    rank, world_size = distributed_rank()
    sampler = ResumableSampler(len(dataset), seed=seed, num_replicas=world_size, rank=rank)  # type: ignore[arg-type]
    workers = options.n_workers
    loader = DataLoader(
        dataset,
        batch_size=options.batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=options.prefetch_factor if workers > 0 else None,
        pin_memory=torch.device(device).type == "cuda",
        drop_last=True,
        worker_init_fn=worker_init() if workers > 0 else None,
    )
    return TrainLoader(loader, sampler, options.batch_size)


def make_val_loader(dataset: Dataset, rank: int = 0, world_size: int = 1) -> DataLoader:
    """One whole image per batch, in order; one worker reads the next image while the model runs.

    Under torch.distributed each process takes every ``world_size``-th image from ``rank`` on.
    """
    shard = list(range(rank, len(cast(Sized, dataset)), world_size))
    return DataLoader(dataset, batch_size=1, sampler=shard, num_workers=1, worker_init_fn=worker_init())
