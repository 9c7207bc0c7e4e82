"""Random draws of a training step that depend only on (seed, rank, step), so a resumed run repeats them.

Every random choice the training step makes (discriminator input noise, translational patch corners,
gradient-penalty interpolates, on-the-fly degradations) draws from a :class:`StepGenerators`, which
the trainer re-seeds at the start of each step. Nothing a resume changes (how many steps the
process has run, what the data loader or validation drew, which process it is) can shift them, so
no generator state needs saving. Re-seeding also seeds Python's, NumPy's and torch's global
generators from the same key, for code that draws from those (dropout, stochastic depth in other
architectures, degradations written with ``np.random``).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seeds(count: int, *parts: int) -> list[int]:
    """``count`` 63-bit seeds mixed from ``parts`` (NumPy's SeedSequence: nearby inputs give unrelated seeds)."""
    words = np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(count, np.uint64)
    return [int(word) & (2**63 - 1) for word in words]


class StepGenerators:
    """A CPU generator and one on the training device, re-seeded per step by :meth:`reseed`."""

    def __init__(self, seed: int, rank: int = 0, device: torch.device | str = "cpu") -> None:
        self.seed = seed
        self.rank = rank
        self.cpu = torch.Generator()
        device = torch.device(device)
        self.device = self.cpu if device.type == "cpu" else torch.Generator(device)

    def reseed(self, step: int) -> None:
        """Seed both generators and the global ones from ``(seed, rank, step)``: the draws of ``step`` begin."""
        cpu, device, shared = derive_seeds(3, self.seed, self.rank, step)
        self.cpu.manual_seed(cpu)
        if self.device is not self.cpu:
            self.device.manual_seed(device)
        random.seed(shared)
        np.random.seed(shared % 2**32)
        torch.manual_seed(shared)  # and every CUDA device's generator

    def on(self, device: torch.device) -> torch.Generator:
        """The generator for tensors on ``device``."""
        return self.cpu if device.type == "cpu" else self.device


def randint(high: int, generators: StepGenerators | None, size: tuple[int, ...] = ()) -> torch.Tensor:
    """Integers in ``[0, high)`` on the CPU from ``generators`` (torch's global generator when None)."""
    return torch.randint(high, size, generator=generators.cpu if generators is not None else None)


def uniform(shape: tuple[int, ...], like: torch.Tensor, generators: StepGenerators | None) -> torch.Tensor:
    """``U[0, 1)`` of ``shape`` with ``like``'s dtype and device, from ``generators`` (global when None)."""
    source = generators.on(like.device) if generators is not None else None
    return torch.rand(shape, generator=source, device=like.device, dtype=like.dtype)
