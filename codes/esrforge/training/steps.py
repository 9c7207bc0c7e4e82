"""One training iteration: the discriminator and generator steps over one batch or several accumulated ones.

Nothing here reads a device value: whether to skip a non-finite step is decided on the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
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
from .compiled import Forwards
from .distributed import GradientReducer
from .precision import Precision


@dataclass
class Trained:
    """A network with its optimiser and gradient scaler."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    reducer: GradientReducer | None = None
    """Averages the gradients over the processes during the backward; None for a single process."""


@dataclass
class Networks:
    """The generator and, for GAN training, the discriminator."""

    generator: Trained
    discriminator: Trained | None = None


@dataclass
class StepResult:
    """What one optimiser step produced, all on the device: detached scalars for logging (means over the
    accumulated batches) and, per network stepped, a flag that is True where its step was skipped."""

    values: dict[str, Tensor] = field(default_factory=dict)
    skipped: dict[str, Tensor] = field(default_factory=dict)

    def add(self, values: dict[str, Tensor], parts: int) -> None:
        """Add one batch's share (1 / ``parts``) of ``values``."""
        for key, value in values.items():
            share = value.detach() / parts if parts > 1 else value.detach()
            self.values[key] = self.values[key] + share if key in self.values else share


@dataclass
class Patches:
    """One batch cut for a step: the main patch and its HR (plain and sharpened), and the translational
    loss's second patch when it is active."""

    lq_tile: Tensor
    lq: Tensor
    hq: Tensor
    hq_usm: Tensor
    box: tuple[int, int]
    lq_second: Tensor | None = None
    second_box: tuple[int, int] | None = None


def loss_names(losses: list[Loss]) -> list[str]:
    """Log names for the losses: their type, with the list index where a type repeats."""
    types = [loss.options.type for loss in losses]
    return [t if types.count(t) == 1 else f"{t}{i}" for i, t in enumerate(types)]


def step_unless(optimizer: torch.optim.Optimizer, finite: Tensor) -> None:
    """``optimizer.step()`` where ``finite`` is True, decided on the device by optimisers that support it.

    Fused Adam (what ``build_optimizer`` makes) takes a ``found_inf`` flag, the protocol GradScaler uses:
    with it set, parameters, moments and step count stay as they were. Other optimisers read the flag.
    """
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = (~finite).float()  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif bool(finite):
        optimizer.step()


class IterationRunner:
    """Runs the discriminator and generator steps of one iteration in the configured order.

    Every random draw of step ``n`` comes from ``generators`` re-seeded for ``n``, so a resumed run
    draws exactly what an uninterrupted one would. ``forwards`` holds the (possibly compiled) callables
    the step runs the networks through; by default the networks themselves.
    """

    def __init__(
        self,
        nets: Networks,
        losses: list[Loss],
        train: TrainSection,
        precision: Precision,
        scale: int,
        generators: StepGenerators,
        usm: UsmOptions | None = None,
        forwards: Forwards | None = None,
    ) -> None:
        self.nets = nets
        self.losses = losses
        self.names = loss_names(losses)
        self.train = train
        self.precision = precision
        self.scale = scale
        self.generators = generators
        self.gan = next((loss for loss in losses if isinstance(loss, GanLoss)), None)
        self.translational = next((loss for loss in losses if isinstance(loss, TranslationalLoss)), None)
        self.usm = usm or UsmOptions()
        self.needs_usm = any(loss.options.gt_usm for loss in losses)
        self.forwards = forwards or Forwards(
            nets.generator.net, nets.discriminator.net if nets.discriminator is not None else None
        )
        noise = self.gan.options.noise if self.gan is not None else 0.0
        self.discriminate: Callable[[Tensor], Tensor] | None = (
            make_discriminate(self.forwards.discriminator, noise, self.generators)
            if self.forwards.discriminator is not None
            else None
        )

    def run(self, batches: Sequence[tuple[Tensor, Tensor]], step: int) -> StepResult:
        """One optimiser step of each network at ``step`` (0-based) on ``batches`` (LR, HR tiles): one
        batch, or the several whose gradients are accumulated.

        A network's step is skipped when its loss or a gradient is not finite on any process; the
        decision stays on the device (see :func:`step_unless`).
        """
        self.generators.reseed(step)
        self.forwards.new_step()
        patches = [self._cut(lq, hq, step) for lq, hq in batches]
        result = StepResult()
        # With one batch, one forward serves both steps; with several, each step runs its own so that
        # only one batch's graph is alive at a time (a discriminator step that comes first then runs
        # the generator without a graph, and the generator step runs it again).
        shared = self._forward(patches[0]) if len(patches) == 1 else None
        fakes: list[Tensor | None] = [shared[0] if shared is not None else None] * len(patches)
        d_active = self.gan is not None and self.gan.options.active(step)
        for which in self.train.step_order:
            if which == "discriminator" and d_active:
                self._discriminator_step(patches, fakes, step, result)
            elif which == "generator":
                self._generator_step(patches, shared, fakes, step, result)
        return result

    def _cut(self, lq_tile: Tensor, hq_tile: Tensor, step: int) -> Patches:
        """The patches of one batch that this step trains on (random draws of the translational loss)."""
        lq, hq, box = lq_tile, hq_tile, (0, 0)
        if self.translational is not None:
            lq, hq, box = self.translational.sample_main_patch(lq_tile, hq_tile, self.scale, self.generators)
        patches = Patches(lq_tile, lq, hq, hq, box)
        if self.translational is not None and self.translational.options.active(step):
            patches.lq_second, patches.second_box = self.translational.sample_second_patch(
                lq_tile, box, self.scale, self.generators
            )
        if self.needs_usm:  # Real-ESRGAN sharpens the HR after its crop and pool: the tile here
            top, left = box[0] * self.scale, box[1] * self.scale
            sharp = unsharp_mask(hq_tile.float(), self.usm).to(hq_tile.dtype)
            patches.hq_usm = sharp[..., top : top + hq.shape[-2], left : left + hq.shape[-1]]
        return patches

    def _forward(self, patches: Patches) -> tuple[Tensor, Tensor | None]:
        """The generator's output for the main patch and, when there is one, the second patch."""
        generator = self.forwards.generator
        with self.precision.autocast():
            if patches.lq_second is None:
                return generator(patches.lq), None
            # both patches in one forward: half the kernel launches of two
            fake, fake_second = generator(torch.cat([patches.lq, patches.lq_second])).chunk(2)
            return fake, fake_second

    def _discriminator_step(
        self, batches: list[Patches], fakes: list[Tensor | None], step: int, result: StepResult
    ) -> None:
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
        trained.optimizer.zero_grad(set_to_none=True)
        for patches, fake in zip(batches, fakes, strict=True):
            if fake is None:
                with torch.no_grad():
                    fake = self._forward(patches)[0]
            # float32: the penalised pass below may run outside autocast, where half inputs fail.
            fake = fake.detach().float()
            real = patches.hq_usm if gan.options.gt_usm else patches.hq
            real = real.detach().requires_grad_(needs_grad)
            # Double backward through float16 can underflow: penalised passes run in float32 under fp16.
            fp16_penalty = double_backward and self.precision.dtype == torch.float16
            with self.precision.autocast(enabled=not fp16_penalty):
                d_real = discriminate(real)
                d_fake = discriminate(fake)
                ctx = DiscriminatorContext(real, fake, d_real, d_fake, discriminate, self.generators)
                terms = {"d_gan": gan.options.d_weight * gan.discriminator_loss(ctx)}
                for name, loss in penalties:
                    terms[f"d_{name}"] = loss.options.weight * loss(ctx)
            self._backward(trained, terms, len(batches), result, last=patches is batches[-1])
            result.add(discriminator_stats(d_real, d_fake), len(batches))
        self._optimise(trained, "discriminator", result)

    def _generator_step(
        self,
        batches: list[Patches],
        shared: tuple[Tensor, Tensor | None] | None,
        fakes: list[Tensor | None],
        step: int,
        result: StepResult,
    ) -> None:
        """Accumulate the generator's gradients over ``batches`` and step; ``fakes`` gets each output."""
        if self.nets.discriminator is not None:
            self.nets.discriminator.net.requires_grad_(False)
        trained = self.nets.generator
        trained.optimizer.zero_grad(set_to_none=True)
        for index, patches in enumerate(batches):
            fake, fake_second = shared if shared is not None else self._forward(patches)
            fakes[index] = fake.detach()
            ctx = GeneratorContext(
                patches.lq,
                fake,
                patches.hq,
                self.forwards.generator,
                patches.lq_tile,
                patches.box,
                self.scale,
                self.discriminate,
                second_box=patches.second_box,
                fake_second=fake_second,
                generators=self.generators,
            )
            ctx_usm = dataclasses.replace(ctx, real=patches.hq_usm)
            terms: dict[str, Tensor] = {}
            with self.precision.autocast():
                for name, loss in zip(self.names, self.losses, strict=True):
                    if loss.side == "generator" and loss.options.active(step):
                        terms[name] = loss.options.weight * loss(ctx_usm if loss.options.gt_usm else ctx)
            total = self._backward(trained, terms, len(batches), result, last=patches is batches[-1])
            result.add({"g_total": total}, len(batches))
        self._optimise(trained, "generator", result)

    def _backward(
        self, trained: Trained, terms: dict[str, Tensor], parts: int, result: StepResult, last: bool
    ) -> Tensor:
        """Add the gradients of one batch's share of the summed ``terms``; returns their sum.

        A non-finite sum makes the gradients NaN, so that the gradients alone (averaged over the
        processes) decide whether to step, on every process alike. The ``last`` batch's backward
        also averages the gradients over the processes as it goes.
        """
        total = torch.stack([t.float() for t in terms.values()]).sum()
        result.add(terms, parts)
        poisoned = total * torch.where(torch.isfinite(total.detach()), 1.0, float("nan"))
        if last and trained.reducer is not None:
            trained.reducer.arm()
        trained.scaler.scale(poisoned / parts if parts > 1 else poisoned).backward()
        return total

    def _optimise(self, trained: Trained, which: str, result: StepResult) -> None:
        """Average the gradients over the processes, clip them, and step unless one is not finite."""
        if trained.reducer is not None:
            trained.reducer.finish()
        scaler, optimizer = trained.scaler, trained.optimizer
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
        grads = {p: p.grad for p in trained.net.parameters() if p.grad is not None}
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads.values()))))
        finite = torch.isfinite(norm)
        if self.train.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(list(grads), self.train.grad_clip, norm)
            result.values[f"{which}_grad_norm"] = norm.detach()
        if scaler.is_enabled():  # fused Adam takes the scaler's inf flag: no host sync either
            scaler.step(optimizer)
            scaler.update()
        else:
            step_unless(optimizer, finite)
        result.skipped[which] = ~finite
