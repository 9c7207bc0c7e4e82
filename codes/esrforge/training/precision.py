"""Device choice, mixed precision (autocast and gradient scaling) and memory format."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, TypeVar, overload

import torch
from torch import nn

log = logging.getLogger(__name__)
Net = TypeVar("Net", bound=nn.Module)


def configure_backends(device: torch.device) -> None:
    """Let cuDNN pick the fastest convolution algorithms on CUDA (training patches have a fixed size)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@overload
def to_channels_last(value: Net, enabled: bool) -> Net: ...


@overload
def to_channels_last(value: torch.Tensor, enabled: bool) -> torch.Tensor: ...


def to_channels_last(value: nn.Module | torch.Tensor, enabled: bool) -> nn.Module | torch.Tensor:
    """A module or 4-D tensor in channels_last memory format when ``enabled``; anything else unchanged."""
    if not enabled:
        return value
    if isinstance(value, torch.Tensor):
        return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
    return value.to(memory_format=torch.channels_last)


class ResumableGradScaler(torch.amp.GradScaler):
    """A CUDA GradScaler that starts afresh from the empty state a run without fp16 saved."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.is_enabled() and not state_dict:
            log.info("the resumed state has no fp16 gradient scaler; starting a fresh one")
            return
        super().load_state_dict(state_dict)


class Precision:
    """Autocast and gradient scaling for ``fp16`` / ``bf16`` on CUDA; full float32 elsewhere."""

    def __init__(self, fp16: bool, bf16: bool, device: torch.device) -> None:
        if fp16 and bf16:
            raise ValueError("fp16 and bf16 are both true; choose one")
        self.device = device
        requested = "fp16" if fp16 else "bf16" if bf16 else None
        self.dtype: torch.dtype | None = None
        """The autocast dtype; None: float32 without autocast."""
        if requested and device.type != "cuda":
            log.info(
                "%s asks for CUDA mixed precision, but the device is %s: running in float32",
                requested,
                device,
            )
        elif requested:
            self.dtype = torch.float16 if fp16 else torch.bfloat16

    def autocast(self, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
        """The context the forward passes and losses run in (float32 when not ``enabled``)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled)

    def grad_scaler(self) -> ResumableGradScaler:
        """A new gradient scaler for one optimiser: enabled for fp16 only, a pass-through otherwise."""
        return ResumableGradScaler("cuda", enabled=self.dtype == torch.float16)
