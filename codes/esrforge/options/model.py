"""The model section that train, test and video configs share: the network, its weights, device, precision.

Key names follow BasicSR / DLAS: ``scale``, ``gpu_ids``, ``networks.generator``,
``path.pretrain_model_generator``, ``path.param_key``, ``path.strict_load``. Each config adds its own keys
to these sections (a training config a discriminator, a test config the results folder).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import InputPath, OptionValueError, option, require
from ..networks.base import NetworkOptions


@dataclass(frozen=True, kw_only=True)
class GeneratorSection:
    """The network; optional where the checkpoint's tensors tell what it is."""

    generator: NetworkOptions | None = option(
        None,
        doc="the super-resolution network (type: RRDBNet, SRVGGNetCompact, spandrel); null: the one the "
        "checkpoint's tensors hold (any RRDB layout, SRVGGNetCompact, or any architecture spandrel knows)",
    )


@dataclass(frozen=True, kw_only=True)
class WeightsSection:
    """Where the generator's weights come from."""

    pretrain_model_generator: InputPath | None = option(
        None,
        doc="generator weights (.pth or .safetensors): ours, BasicSR / Real-ESRGAN (params_ema), original "
        "ESRGAN, model.N, or any model spandrel loads (SwinIR, HAT, DAT, SPAN, Compact, ...)",
    )
    param_key: str | None = option(
        None, doc="checkpoint entry that holds the weights; null: params_ema, then params, ..."
    )
    strict_load: bool = option(True, doc="refuse weights with missing or unexpected keys")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The keys every config that runs a generator has."""

    scale: int | None = option(None, doc="upscaling factor; null: the network's")
    gpu_ids: list[int] = option(
        factory=lambda: [0], doc="CUDA devices to use (inference: the first); []: the CPU"
    )
    fp16: bool = option(False, doc="float16 on CUDA (inference on the CPU: fp32 with a warning)")
    bf16: bool = option(
        False,
        doc="bfloat16 (CUDA, or CPUs with AVX-512-BF16/AMX; slower on others); on such CPUs training uses it "
        "by itself and inference picks it when it stays within 45 dB of fp32",
    )
    fp32: bool = option(
        False, doc="float32 only: no automatic bf16 (training, inference) on CPUs with AVX-512-BF16/AMX"
    )
    channels_last: bool = option(True, doc="run convolutions in channels_last memory format")
    compile: bool = option(
        False,
        doc="torch.compile the network (on CUDA with CUDA graphs): the first tile compiles it (a minute on a "
        "CPU), a second tile shape once more with dynamic shapes; the tiles of an image (and of every frame of "
        "a video) share one shape",
    )
    networks: GeneratorSection = option(factory=GeneratorSection, doc="the network")
    path: WeightsSection = option(factory=WeightsSection, doc="the generator weights")

    def __post_init__(self) -> None:
        if self.scale is not None:
            require(self.scale >= 1, "scale", "a positive upscaling factor or null", self.scale)
        require(all(i >= 0 for i in self.gpu_ids), "gpu_ids", "device indices >= 0", self.gpu_ids)
        require(not (self.fp16 and self.bf16), "bf16", "fp16 and bf16 not both true", self.bf16)
        require(not (self.fp32 and (self.fp16 or self.bf16)), "fp32", "fp32 without fp16 or bf16", self.fp32)
        generator = self.networks.generator
        if generator is not None and self.scale is not None:
            try:
                found = generator.describe().scale
            except OptionValueError as err:  # raised while building the network to describe it
                raise err.at("networks.generator") from None
            key = f"networks.generator.{generator.scale_key}" if generator.scale_key else "networks.generator"
            require(found == self.scale, key, f"a x{self.scale} network (the top-level scale)", f"x{found}")

    def require_weights(self) -> None:
        """Inference needs ``path.pretrain_model_generator``."""
        require(
            self.path.pretrain_model_generator is not None,
            "path.pretrain_model_generator",
            "the generator weights to run",
            None,
        )
