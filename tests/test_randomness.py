"""Per-step random generators: a step's draws depend on (seed, rank, step) alone."""

from __future__ import annotations

import random

import numpy as np
import torch

from esrforge.randomness import StepGenerators, derive_seeds, randint, uniform


def draws(generators: StepGenerators, step: int) -> list[float]:
    """What a step draws: from the step's generators and from the global ones."""
    generators.reseed(step)
    like = torch.zeros(())
    return [
        float(uniform((), like, generators)),
        int(randint(1000, generators)),
        random.random(),
        float(np.random.rand()),
        float(torch.rand(())),
    ]


def test_a_steps_draws_do_not_depend_on_what_was_drawn_before() -> None:
    first = draws(StepGenerators(seed=5), 7)
    other = StepGenerators(seed=5)
    for step in range(3):  # a run that did other steps, and drew more in between
        draws(other, step)
        torch.rand(100)
        np.random.rand(10)
    assert draws(other, 7) == first


def test_steps_ranks_and_seeds_draw_differently() -> None:
    base = draws(StepGenerators(seed=5, rank=0), 7)
    for generators, step in ((StepGenerators(seed=5, rank=1), 7), (StepGenerators(seed=6), 7)):
        assert draws(generators, step) != base
    assert draws(StepGenerators(seed=5), 8) != base
    assert len({seed for step in range(1000) for seed in derive_seeds(3, 0, 0, step)}) == 3000
