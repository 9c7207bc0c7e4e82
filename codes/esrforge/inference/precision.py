"""The compute precision of an inference run.

fp16 / bf16 run where asked, once a probe image shows the network runs in them: cast to the half
precision, or, where a cast network fails (spandrel's Swin-family networks build their attention masks
in float32 at sizes other than their training size), under autocast with float32 weights. Unasked, a
CPU with AVX-512-BF16 or AMX runs in bf16 when the probe's output stays within
:data:`MIN_AUTO_BF16_PSNR` of float32's.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..devices import cpu_has_bf16
from ..networks import Description
from ..options.model import ModelConfig
from ..probes import probe_input, probe_side, psnr

log = logging.getLogger(__name__)

MIN_AUTO_BF16_PSNR = 45.0
"""Least PSNR (dB) of bf16's output from fp32's on a probe image for inference to pick bf16 by itself."""
PROBE_SIDE = 64
NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class ComputePrecision:
    """How a network runs: in ``dtype``, its weights cast to it or (``autocast``) kept in float32."""

    dtype: torch.dtype = torch.float32
    autocast: bool = False
    automatic: bool = False
    """bf16 chosen without being asked for (a CPU with bf16 instructions)."""

    @property
    def name(self) -> str:
        """``fp32``, ``fp16`` or ``bf16``, and ``(autocast)`` for float32 weights."""
        return NAMES[self.dtype] + (" (autocast)" if self.autocast else "")


def compute_dtype(config: ModelConfig, device: torch.device, description: Description) -> torch.dtype:
    """float16 / bfloat16 / float32 as asked, falling back to float32 where the device or network lacks it."""
    wanted = torch.float16 if config.fp16 else torch.bfloat16 if config.bf16 else torch.float32
    if config.fp16 and device.type == "cpu":
        log.warning("fp16 needs CUDA: running in fp32 on the CPU (bf16 is the CPU's half precision)")
        return torch.float32
    if not description.supports(wanted):
        log.warning("%s does not run correctly in %s: running in fp32", description.architecture, wanted)
        return torch.float32
    if config.bf16 and device.type == "cpu" and not cpu_has_bf16():
        log.warning("bf16: this CPU has no AVX-512-BF16 or AMX, where bf16 is slower than fp32")
    return wanted


def probe_size(description: Description) -> tuple[int, int]:
    """A probe image's size: not square, so that it differs from any network's training size."""
    side = probe_side(description, PROBE_SIDE)
    return side, probe_side(description, side + 1)


def probe_half(
    model: nn.Module, description: Description, dtype: torch.dtype, device: torch.device
) -> tuple[ComputePrecision, float] | None:
    """How ``model`` (float32, on ``device``) runs in ``dtype``, and the PSNR (dB) of its output from
    float32's on a probe image; None when it runs neither cast nor under autocast."""
    probe = probe_input(description, probe_size(description)).to(device)
    with torch.inference_mode():
        full = model(probe).float().clamp(0, 1)
        for autocast in (False, True):
            try:
                if autocast:
                    with torch.autocast(device.type, dtype=dtype):
                        half = model(probe)
                else:
                    # a copy: casting the model itself and back would round its weights
                    half = copy.deepcopy(model).to(dtype=dtype)(probe.to(dtype))
            except RuntimeError as err:
                log.debug(
                    "%s in %s%s fails: %s", description.architecture, dtype, " autocast" * autocast, err
                )
                continue
            return ComputePrecision(dtype, autocast), psnr(half.float().clamp(0, 1), full)
    return None


def choose_precision(
    config: ModelConfig, model: nn.Module, description: Description, device: torch.device, deep: bool = False
) -> ComputePrecision:
    """The precision to run ``model`` (float32, on ``device``) in: as asked where it runs in it, else bf16
    by itself where the CPU has bf16 instructions and the probe stays close to float32, else float32.
    ``deep``: every output has more than 8 bits per channel (bf16 keeps 8), so none is chosen by itself."""
    asked = compute_dtype(config, device, description)
    if asked != torch.float32:
        return _checked(model, description, asked, device)
    if device.type != "cpu" or config.fp32 or config.fp16 or config.bf16 or not cpu_has_bf16():
        return ComputePrecision()
    if deep:
        log.info("fp32: the output has more than 8 bits per channel (--bf16 forces bf16)")
        return ComputePrecision()
    if not description.supports(torch.bfloat16):
        return ComputePrecision()
    probed = probe_half(model, description, torch.bfloat16, device)
    if probed is None:
        log.info("fp32: %s does not run in bf16 on this CPU", description.architecture)
        return ComputePrecision()
    precision, quality = probed
    if not quality >= MIN_AUTO_BF16_PSNR:
        log.info(
            "fp32: bf16 would be %.1f dB PSNR from fp32 on a probe image, under %.0f dB (--bf16 forces it)",
            quality,
            MIN_AUTO_BF16_PSNR,
        )
        return ComputePrecision()
    log.info(
        "%s on this CPU (AVX-512-BF16/AMX): %.1f dB PSNR from fp32 on a probe image; images and frames of "
        "more than 8 bits run in fp32; --fp32 keeps fp32 for all",
        precision.name,
        quality,
    )
    return ComputePrecision(precision.dtype, precision.autocast, automatic=True)


def _checked(
    model: nn.Module, description: Description, dtype: torch.dtype, device: torch.device
) -> ComputePrecision:
    """``dtype`` as asked, once the probe ran in it; float32 where it does not run or gives NaN."""
    probed = probe_half(model, description, dtype, device)
    if probed is None or math.isnan(probed[1]):
        log.warning(
            "%s %s on a probe image: running in fp32",
            description.architecture,
            f"fails in {NAMES[dtype]}" if probed is None else f"gives NaN in {NAMES[dtype]}",
        )
        return ComputePrecision()
    precision, quality = probed
    report = log.info if quality >= MIN_AUTO_BF16_PSNR else log.warning
    report("%s: %.1f dB PSNR from fp32 on a probe image", precision.name, quality)
    return precision
