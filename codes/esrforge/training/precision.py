"""Device choice, mixed precision (autocast and gradient scaling) and memory format."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, TypeVar, overload

import torch
from torch import nn

from ..devices import cpu_has_bf16

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
    """Autocast and gradient scaling: ``fp16`` / ``bf16`` on CUDA, ``bf16`` on the CPU; float32 otherwise.

    On a CPU with AVX-512-BF16 or AMX, bf16 is the default unless ``fp32`` (or ``fp16``) is set: there it
    trains about 1.8x faster than float32 and reached float32's scores on the quality protocol.
    """

    def __init__(self, fp16: bool, bf16: bool, device: torch.device, fp32: bool = False) -> None:
        if fp16 and bf16:
            raise ValueError("fp16 and bf16 are both true; choose one")
        self.device, self.fp32 = device, fp32
        self.dtype: torch.dtype | None = None
        """The autocast dtype; None: float32 without autocast."""
        self.automatic = False
        """Whether bf16 was chosen without being asked for (a CPU with bf16 instructions)."""
        if device.type == "cuda" and (fp16 or bf16):
            self.dtype = torch.float16 if fp16 else torch.bfloat16
        elif bf16 and device.type == "cpu":
            self.dtype = torch.bfloat16
            if not cpu_has_bf16():
                log.warning("bf16: this CPU has no AVX-512-BF16 or AMX, where bf16 is slower than float32")
        elif fp16:
            log.info("fp16 asks for CUDA mixed precision, but the device is %s: running in float32", device)
        elif device.type == "cpu" and not fp32 and cpu_has_bf16():
            self.dtype, self.automatic = torch.bfloat16, True

    @property
    def name(self) -> str:
        """``float32``, ``fp16`` or ``bf16``."""
        return {None: "float32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def describe(self) -> str:
        """The name, and why bf16 when it was not asked for."""
        if self.automatic:
            return f"{self.name}: automatic on this CPU with AVX-512-BF16/AMX; fp32: true keeps float32"
        return self.name

    def check_resumed(self, saved: str | None, path: Path) -> None:
        """Warn when the state at ``path`` was trained in another precision (None: not recorded)."""
        if saved is not None and saved != self.name:
            choose = "fp32: true keeps float32" if self.automatic else "the fp16, bf16 and fp32 keys choose"
            log.warning("%s was trained in %s; this run continues in %s (%s)", path, saved, self.name, choose)

    def memory_hint(self) -> str:
        """The out-of-memory advice's precision part: half precision where the run is in float32."""
        if self.dtype is not None:
            return ""
        half = "fp16" if self.device.type == "cuda" else "bf16"  # fp16 on the CPU runs in float32
        instead = " in place of fp32: true" if self.fp32 else ""
        return f", or set {half}: true{instead} (half the activation memory)"

    def autocast(self, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
        """The context the forward passes and losses run in (float32 when not ``enabled``)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled)

    def grad_scaler(self) -> ResumableGradScaler:
        """A new gradient scaler for one optimiser: enabled for fp16 only, a pass-through otherwise."""
        return ResumableGradScaler("cuda", enabled=self.dtype == torch.float16)
