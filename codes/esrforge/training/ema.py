"""An exponential moving average of the generator's weights, used for validation and saved as G_ema."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .distributed import unwrap_model


class ModelEMA:
    """``module`` holds ``decay * module + (1 - decay) * model`` after each :meth:`update`."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"ema_decay: expected a decay in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, taken: torch.Tensor | None = None) -> None:
        """Move the floating-point parameters towards ``model``'s and copy its buffers.

        ``taken``: a device flag, False where the generator's step was skipped: the average then stays.
        """
        source = dict(unwrap_model(model).named_parameters())
        averaged: list[torch.Tensor] = []
        online: list[torch.Tensor] = []
        for name, param in self.module.named_parameters():
            if param.is_floating_point():
                averaged.append(param)
                online.append(source[name].detach())
            else:
                param.copy_(source[name])
        if averaged and taken is None:
            torch._foreach_lerp_(averaged, online, 1.0 - self.decay)
        elif averaged and taken is not None:
            weight = taken.to(averaged[0].device, torch.float32) * (1.0 - self.decay)
            torch._foreach_lerp_(averaged, online, weight)  # type: ignore[call-overload]
        source_buffers = dict(unwrap_model(model).named_buffers())
        for name, buffer in self.module.named_buffers():
            buffer.copy_(source_buffers[name])

    def state_dict(self) -> dict[str, Any]:
        """The averaged network's state dict."""
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load averaged weights saved by :meth:`state_dict` (or any weights of the same network)."""
        self.module.load_state_dict(state)
