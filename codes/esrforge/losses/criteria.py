"""Element-wise distances shared by the pixel, perceptual and translational losses."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Criterion = Literal["l1", "mse", "l2", "charbonnier"]
"""``l1``: mean absolute error; ``mse`` (alias ``l2``): mean squared error; ``charbonnier``: see below."""

FeatureCriterion = Literal["l1", "mse", "l2"]
"""The criteria without a tuning constant, for losses that do not expose one."""

DEFAULT_CHARBONNIER_EPS = 1e-3


def distance(criterion: Criterion, a: Tensor, b: Tensor, eps: float = DEFAULT_CHARBONNIER_EPS) -> Tensor:
    """Mean distance between ``a`` and ``b``; Charbonnier is ``mean(sqrt((a - b)^2 + eps^2))``."""
    if criterion == "l1":
        return F.l1_loss(a, b)
    if criterion in ("mse", "l2"):
        return F.mse_loss(a, b)
    if criterion == "charbonnier":
        return torch.sqrt((a - b).square() + eps * eps).mean()
    raise ValueError(f"unknown criterion {criterion!r}; expected one of: l1, mse, l2, charbonnier")
