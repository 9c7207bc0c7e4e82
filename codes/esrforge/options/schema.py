"""The schema of a training config: one frozen dataclass per section.

Field names follow DLAS and BasicSR (``name``, ``scale``, ``datasets.train``, ``networks.generator``,
``path.resume_state``, ``train.niter``, ``logger.print_freq``, ...). Relative paths are resolved against
the folder that holds the config file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..data.base import TrainDatasetOptions, ValDatasetOptions
from ..fields import InputPath, option, require, require_folder_name
from ..losses.base import LossOptions
from ..metrics.base import MetricOptions, check_unique_names
from ..metrics.pixel import PsnrOptions, SsimOptions
from ..networks.base import NetworkOptions
from .model import GeneratorSection, ModelConfig, WeightsSection


@dataclass(frozen=True, kw_only=True)
class DatasetsSection:
    """The data a run reads."""

    train: TrainDatasetOptions | None = option(None, doc="training patches; required by train.py")
    val: ValDatasetOptions | list[ValDatasetOptions] | None = option(
        None,
        doc="validation images: one set or a list of sets, each scored and logged apart (the first one "
        "chooses the best models); null: no validation",
    )

    def __post_init__(self) -> None:
        labels = [val.label for val in self.val_sets]
        for i, label in enumerate(labels):
            require(labels.index(label) == i, f"val[{i}].name", f"a name other than {label!r} (taken)", label)

    @property
    def val_sets(self) -> list[ValDatasetOptions]:
        """The validation sets, first one first (none without validation)."""
        if self.val is None:
            return []
        return self.val if isinstance(self.val, list) else [self.val]


@dataclass(frozen=True, kw_only=True)
class NetworksSection(GeneratorSection):
    """The networks, each selected by ``type``."""

    generator: NetworkOptions = option(
        doc="the super-resolution network, e.g. type: RRDBNet, SRVGGNetCompact or spandrel"
    )
    discriminator: NetworkOptions | None = option(
        None, doc="the GAN discriminator, e.g. type: VGGDiscriminatorGN; needed by gan losses"
    )


@dataclass(frozen=True, kw_only=True)
class PathSection(WeightsSection):
    """Where weights come from (the generator's: see WeightsSection) and where the run writes."""

    experiments_root: Path = option(Path("../experiments"), doc="folder that holds experiments/<name>/")
    pretrain_model_discriminator: InputPath | None = option(None, doc="discriminator weights to start from")
    resume_state: Literal["auto"] | InputPath | None = option(
        None, doc="a training_state/<step>.state to resume from; auto: the newest complete one, if any"
    )


@dataclass(frozen=True, kw_only=True)
class TrainSection:
    """Optimisation: schedule, optimisers and losses."""

    niter: int = option(doc="total number of training steps")
    start_step: int = option(
        0,
        doc="begin at this step of the schedule with fresh optimisers: loss windows, lr_steps and niter keep "
        "their meaning (e.g. 100000 with path.pretrain_model_generator = the L1 model: the GAN phase alone)",
    )
    val_freq: int = option(2000, doc="validate every N steps; 0: never")
    manual_seed: int = option(0, doc="seed of every random number generator")
    lr_G: float = option(2e-4, doc="generator learning rate (Adam)")
    lr_D: float = option(2e-4, doc="discriminator learning rate (Adam)")
    betas_G: tuple[float, float] = option((0.9, 0.99), doc="generator Adam betas")
    betas_D: tuple[float, float] = option((0.9, 0.99), doc="discriminator Adam betas")
    weight_decay_G: float = option(0.0, doc="generator weight decay")
    weight_decay_D: float = option(0.0, doc="discriminator weight decay")
    lr_scheme: Literal["MultiStepLR", "CosineAnnealingRestartLR"] = option(
        "MultiStepLR", doc="learning-rate schedule applied to both optimisers"
    )
    lr_steps: list[int] = option(
        factory=list, doc="MultiStepLR: steps at which the rate is multiplied by lr_gamma"
    )
    lr_gamma: float = option(0.5, doc="MultiStepLR: factor applied at each of lr_steps")
    restart_periods: list[int] = option(
        factory=list, doc="CosineAnnealingRestartLR: length of each cosine cycle in steps"
    )
    restart_weights: list[float] = option(
        factory=list, doc="CosineAnnealingRestartLR: learning-rate multiplier at the start of each cycle"
    )
    eta_min: float = option(1e-7, doc="CosineAnnealingRestartLR: lowest learning rate")
    warmup_iter: int = option(0, doc="linear learning-rate warm-up over the first N steps; 0: none")
    grad_clip: float | None = option(None, doc="clip each network's gradient norm to this value; null: off")
    ema_decay: float = option(
        0.0, doc="decay of the generator's exponential moving average; 0: off (e.g. 0.999)"
    )
    step_order: tuple[Literal["discriminator", "generator"], ...] = option(
        ("discriminator", "generator"), doc="order of the optimiser steps within one iteration"
    )
    max_nonfinite_steps: int = option(
        5, doc="stop after this many consecutive steps with a non-finite loss (each one is skipped)"
    )
    accumulate_steps: int = option(
        1,
        doc="batches whose gradients make one optimiser step (an effective batch this many times "
        "datasets.train.batch_size per process); niter, the schedule and logging count optimiser steps",
    )
    compile: bool | None = option(
        None,
        doc="torch.compile the generator, the discriminator (unless a gradient penalty needs its double "
        "backward) and the losses' networks; null: on CUDA, off on the CPU (where it measured slower)",
    )
    cuda_graphs: bool = option(
        False,
        doc="on CUDA, replay the compiled networks' forward and backward as CUDA graphs (torch.compile "
        "mode reduce-overhead), for steps bound by kernel launches; the graphs keep their own memory pool; "
        "needs compile true or null; off CUDA, ignored with a warning",
    )
    losses: list[LossOptions] = option(doc="the losses, each with type, weight, after and optional before")

    def __post_init__(self) -> None:
        require(self.niter > 0, "niter", "a positive number of steps", self.niter)
        require(
            0 <= self.start_step < self.niter,
            "start_step",
            f"a step in [0, niter={self.niter})",
            self.start_step,
        )
        require(self.val_freq >= 0, "val_freq", "0 or a positive number of steps", self.val_freq)
        require(0 <= self.manual_seed < 2**63, "manual_seed", "a seed in [0, 2**63)", self.manual_seed)
        for net in ("G", "D"):
            lr, betas = getattr(self, f"lr_{net}"), getattr(self, f"betas_{net}")
            require(0 < lr < math.inf, f"lr_{net}", "a positive, finite learning rate", lr)
            require(all(0 <= b < 1 for b in betas), f"betas_{net}", "two betas in [0, 1)", list(betas))
            decay = getattr(self, f"weight_decay_{net}")
            require(0 <= decay < math.inf, f"weight_decay_{net}", "0 or a positive weight decay", decay)
        require(
            self.grad_clip is None or 0 < self.grad_clip < math.inf,
            "grad_clip",
            "a positive gradient norm, or null for none",
            self.grad_clip,
        )
        require(
            self.lr_steps == sorted(self.lr_steps), "lr_steps", "steps in increasing order", self.lr_steps
        )
        require(0 < self.lr_gamma <= 1, "lr_gamma", "a factor in (0, 1]", self.lr_gamma)
        require(self.warmup_iter >= 0, "warmup_iter", "0 or more steps", self.warmup_iter)
        require(0 <= self.ema_decay < 1, "ema_decay", "a decay in [0, 1)", self.ema_decay)
        require(
            self.max_nonfinite_steps > 0, "max_nonfinite_steps", "a positive count", self.max_nonfinite_steps
        )
        require(len(self.losses) > 0, "losses", "at least one loss", self.losses)
        require(self.accumulate_steps > 0, "accumulate_steps", "a positive count", self.accumulate_steps)
        require(
            not (self.cuda_graphs and self.compile is False),
            "cuda_graphs",
            "false while compile is false (CUDA graphs replay compiled networks)",
            self.cuda_graphs,
        )
        require(
            sorted(self.step_order) == ["discriminator", "generator"],
            "step_order",
            "discriminator and generator, each once",
            list(self.step_order),
        )
        if self.lr_scheme == "CosineAnnealingRestartLR":
            require(
                len(self.restart_periods) > 0, "restart_periods", "at least one period", self.restart_periods
            )
            require(
                all(period > 0 for period in self.restart_periods),
                "restart_periods",
                "positive numbers of steps",
                self.restart_periods,
            )
            require(
                all(weight > 0 for weight in self.restart_weights),
                "restart_weights",
                "positive multipliers",
                self.restart_weights,
            )
            require(0 <= self.eta_min < math.inf, "eta_min", "0 or a positive learning rate", self.eta_min)
            require(
                len(self.restart_weights) in (0, len(self.restart_periods)),
                "restart_weights",
                f"one weight per period ({len(self.restart_periods)})",
                self.restart_weights,
            )


@dataclass(frozen=True, kw_only=True)
class ValidationSection:
    """How validation scores a model and which score picks the best one."""

    metrics: list[MetricOptions] = option(
        factory=lambda: [PsnrOptions(), SsimOptions()],
        doc="metrics of every validation set, e.g. {type: psnr}, {type: ssim}, {type: lpips, net: alex}, "
        "{type: dists}; each keeps models/best_<name>_G.pth (psnr_y, ssim_y, lpips_alex, dists, ...)",
    )
    report: str = option(
        "auto",
        doc="the metric whose best model the closing line reports (e.g. lpips_alex); auto: the first "
        "perceptual metric (lpips, dists) in a run with a gan loss, else the first metric",
    )

    def __post_init__(self) -> None:
        require(len(self.metrics) > 0, "metrics", "at least one metric", self.metrics)
        check_unique_names(self.metrics, "metrics")
        names = [m.name for m in self.metrics]
        require(self.report in ["auto", *names], "report", f"auto or one of {', '.join(names)}", self.report)


@dataclass(frozen=True, kw_only=True)
class WandbSection:
    """Weights & Biases as a second logger (needs ``pip install wandb``)."""

    project: str = option("esrforge", doc="wandb project")
    entity: str | None = option(None, doc="wandb team or user; null: your default")
    mode: Literal["online", "offline"] = option(
        "online", doc="offline: write the run under experiments/<name>/wandb/ only (wandb sync uploads it)"
    )


@dataclass(frozen=True, kw_only=True)
class LoggerSection:
    """What a run reports and how often it saves."""

    print_freq: int = option(100, doc="write a line to the log file every N steps")
    save_checkpoint_freq: int = option(5000, doc="save weights and training state every N steps")
    use_tb_logger: bool = option(True, doc="write TensorBoard events to experiments/<name>/tb_logger/")
    wandb: WandbSection | None = option(None, doc="also log to Weights & Biases; null: off")
    keep_last: int | None = option(
        None,
        doc="keep only the newest N checkpoints; null: keep all. Those at the start of a loss phase "
        "(e.g. 100000, the end of the L1 phase) and those in keep_steps are never deleted",
    )
    keep_steps: list[int] = option(factory=list, doc="steps whose checkpoints keep_last never deletes")

    def __post_init__(self) -> None:
        require(self.print_freq > 0, "print_freq", "a positive number of steps", self.print_freq)
        require(
            self.save_checkpoint_freq > 0,
            "save_checkpoint_freq",
            "a positive number of steps",
            self.save_checkpoint_freq,
        )
        if self.keep_last is not None:
            require(self.keep_last > 0, "keep_last", "a positive count or null", self.keep_last)


@dataclass(frozen=True, kw_only=True)
class Config(ModelConfig):
    """A whole training config (the model keys: see ModelConfig)."""

    name: str = option(doc="experiment name; the run writes to experiments/<name>/")
    scale: int = option(4, doc="upscaling factor (the generator's; the data's LR is HR / scale)")
    networks: NetworksSection = option(doc="generator and discriminator")
    path: PathSection = option(factory=PathSection, doc="input weights, resume state and output folder")
    datasets: DatasetsSection = option(factory=DatasetsSection, doc="training and validation data")
    train: TrainSection | None = option(None, doc="optimisation settings; required by train.py")
    validation: ValidationSection = option(
        factory=ValidationSection, doc="validation metrics and the choice of the best model"
    )
    logger: LoggerSection = option(factory=LoggerSection, doc="logging and checkpoint frequency")

    def __post_init__(self) -> None:
        require_folder_name(self.name)
        super().__post_init__()

    @property
    def experiment_dir(self) -> Path:
        """``experiments_root/<name>``."""
        return self.path.experiments_root / self.name
