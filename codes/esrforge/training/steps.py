"""One training iteration: a single generator forward shared by the discriminator and generator steps."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..degradations.pipeline import UsmOptions, unsharp_mask
from ..losses.base import DiscriminatorContext, GeneratorContext, Loss
from ..losses.gan import GanLoss, discriminator_stats
from ..losses.noise import make_discriminate
from ..losses.translational import TranslationalLoss
from ..options.schema import TrainSection
from ..randomness import StepGenerators
from .distributed import DistributedContext
from .precision import Precision


@dataclass
class Trained:
    """A network with its optimiser and gradient scaler."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


@dataclass
class Networks:
    """The generator and, for GAN training, the discriminator."""

    generator: Trained
    discriminator: Trained | None = None


@dataclass
class StepResult:
    """What one iteration produced: detached scalars for logging, and whether a step was skipped."""

    values: dict[str, Tensor] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def loss_names(losses: list[Loss]) -> list[str]:
    """Log names for the losses: their type, with the list index where a type repeats."""
    types = [loss.options.type for loss in losses]
    return [t if types.count(t) == 1 else f"{t}{i}" for i, t in enumerate(types)]


class IterationRunner:
    """Runs the discriminator and generator steps of one iteration in the configured order.

    Every random draw of step ``n`` comes from ``generators`` re-seeded for ``n``, so a resumed run
    draws exactly what an uninterrupted one would.
    """

    def __init__(
        self,
        nets: Networks,
        losses: list[Loss],
        train: TrainSection,
        precision: Precision,
        scale: int,
        dist: DistributedContext | None = None,
        generators: StepGenerators | None = None,
        usm: UsmOptions | None = None,
    ) -> None:
        self.nets = nets
        self.losses = losses
        self.names = loss_names(losses)
        self.train = train
        self.precision = precision
        self.scale = scale
        self.dist = dist or DistributedContext()
        self.generators = generators or StepGenerators(train.manual_seed, self.dist.rank, self.dist.device)
        self.gan = next((loss for loss in losses if isinstance(loss, GanLoss)), None)
        self.translational = next((loss for loss in losses if isinstance(loss, TranslationalLoss)), None)
        self.usm = usm or UsmOptions()
        self.needs_usm = any(loss.options.gt_usm for loss in losses)
        noise = self.gan.options.noise if self.gan is not None else 0.0
        self.discriminate: Callable[[Tensor], Tensor] | None = (
            make_discriminate(nets.discriminator.net, noise, self.generators)
            if nets.discriminator is not None
            else None
        )

    def run(self, lq_tile: Tensor, hq_tile: Tensor, step: int) -> StepResult:
        """Train on one batch at ``step`` (0-based); non-finite losses or gradients skip their optimiser step."""
        generators = self.generators
        generators.reseed(step)
        lq, hq, box = lq_tile, hq_tile, (0, 0)
        lq_second, second_box, fake_second = None, None, None
        if self.translational is not None:
            lq, hq, box = self.translational.sample_main_patch(lq_tile, hq_tile, self.scale, generators)
            if self.translational.options.active(step):
                lq_second, second_box = self.translational.sample_second_patch(
                    lq_tile, box, self.scale, generators
                )
        # Real-ESRGAN sharpens the HR after its crop and pool: here, the tile the step trains on.
        hq_usm = self._sharpened(hq_tile, box, hq) if self.needs_usm else hq
        generator = self.nets.generator.net
        with self.precision.autocast():
            if lq_second is None:
                fake = generator(lq)
            else:  # both patches in one forward: half the kernel launches of two
                fake, fake_second = generator(torch.cat([lq, lq_second])).chunk(2)
        result = StepResult()
        d_active = self.gan is not None and self.gan.options.active(step)
        gan_real = hq_usm if self.gan is not None and self.gan.options.gt_usm else hq
        for which in self.train.step_order:
            if which == "discriminator" and d_active:
                # float32: the penalised pass below may run outside autocast, where half inputs fail.
                self._discriminator_step(fake.detach().float(), gan_real, step, result)
            elif which == "generator":
                ctx = GeneratorContext(
                    lq,
                    fake,
                    hq,
                    generator,
                    lq_tile,
                    box,
                    self.scale,
                    self.discriminate,
                    second_box=second_box,
                    fake_second=fake_second,
                    generators=generators,
                )
                self._generator_step(ctx, dataclasses.replace(ctx, real=hq_usm), step, result)
        return result

    def _sharpened(self, hq_tile: Tensor, box: tuple[int, int], hq: Tensor) -> Tensor:
        """The unsharp-masked HR of the region ``hq`` was cut from at ``box`` (LR pixels)."""
        top, left = box[0] * self.scale, box[1] * self.scale
        sharp = unsharp_mask(hq_tile.float(), self.usm).to(hq_tile.dtype)
        return sharp[..., top : top + hq.shape[-2], left : left + hq.shape[-1]]

    def _discriminator_step(self, fake: Tensor, real: Tensor, step: int, result: StepResult) -> None:
        trained, gan, discriminate = self.nets.discriminator, self.gan, self.discriminate
        assert trained is not None and gan is not None and discriminate is not None
        penalties = [
            (name, loss)
            for name, loss in zip(self.names, self.losses, strict=True)
            if loss.side == "discriminator" and loss.options.active(step)
        ]
        needs_grad = any(loss.needs_real_grad for _, loss in penalties)
        double_backward = any(loss.double_backward for _, loss in penalties)
        trained.net.requires_grad_(True)
        real = real.detach().requires_grad_(needs_grad)
        # Double backward through float16 can underflow: penalised passes run in float32 under fp16.
        with self.precision.autocast(enabled=not (double_backward and self.precision.dtype == torch.float16)):
            d_real = discriminate(real)
            d_fake = discriminate(fake)
            ctx = DiscriminatorContext(real, fake, d_real, d_fake, discriminate, self.generators)
            terms = {"d_gan": gan.options.d_weight * gan.discriminator_loss(ctx)}
            for name, loss in penalties:
                terms[f"d_{name}"] = loss.options.weight * loss(ctx)
        total = torch.stack([t.float() for t in terms.values()]).sum()
        result.values.update({k: v.detach() for k, v in terms.items()})
        result.values.update(discriminator_stats(d_real, d_fake))
        self._optimise(trained, total, "discriminator", result)

    def _generator_step(
        self, ctx: GeneratorContext, ctx_usm: GeneratorContext, step: int, result: StepResult
    ) -> None:
        """``ctx_usm`` is ``ctx`` with the sharpened HR as ``real``, for the losses with ``gt_usm``."""
        if self.nets.discriminator is not None:
            self.nets.discriminator.net.requires_grad_(False)
        terms: dict[str, Tensor] = {}
        with self.precision.autocast():
            for name, loss in zip(self.names, self.losses, strict=True):
                if loss.side == "generator" and loss.options.active(step):
                    terms[name] = loss.options.weight * loss(ctx_usm if loss.options.gt_usm else ctx)
        total = torch.stack([t.float() for t in terms.values()]).sum()
        result.values.update({k: v.detach() for k, v in terms.items()})
        result.values["g_total"] = total.detach()
        self._optimise(self.nets.generator, total, "generator", result)

    def _optimise(self, trained: Trained, total: Tensor, which: str, result: StepResult) -> None:
        """Backward and step, unless the loss or (without a gradient scaler) a gradient is not finite.

        A skipped step is reported in ``result.skipped``. Finiteness costs the one host sync per step
        that deciding to step needs; a gradient scaler (fp16) checks and skips inf gradients itself.
        """
        trained.optimizer.zero_grad(set_to_none=True)
        trained.scaler.scale(total).backward()
        if self.dist.distributed:
            self.dist.average_gradients(trained.net)
        finite = torch.isfinite(total.detach())
        if not trained.scaler.is_enabled():
            grads = [p.grad for p in trained.net.parameters() if p.grad is not None]
            if grads:
                finite = finite & torch.stack(torch._foreach_norm(grads)).sum().isfinite()
        # Every process must agree, or their weights would drift apart.
        if float(self.dist.all_reduce_mean(finite.float())) < 1.0:
            trained.optimizer.zero_grad(set_to_none=True)
            result.skipped.append(which)
            return
        if self.train.grad_clip is not None:
            trained.scaler.unscale_(trained.optimizer)
            result.values[f"{which}_grad_norm"] = torch.nn.utils.clip_grad_norm_(
                trained.net.parameters(), self.train.grad_clip
            ).detach()
        trained.scaler.step(trained.optimizer)
        trained.scaler.update()
