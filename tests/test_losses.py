"""Loss registry and window, pixel criteria, GAN terms, discriminator input noise, gradient penalties."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from esrforge.fields.errors import OptionValueError
from esrforge.losses import (
    LOSSES,
    DiscriminatorContext,
    DiscriminatorInputNoise,
    GanLoss,
    GanOptions,
    GeneratorContext,
    GradientPenaltyLoss,
    GradientPenaltyOptions,
    LossOptions,
    PixelLoss,
    PixelOptions,
    build_loss,
    discriminator_stats,
    make_discriminate,
)


def softplus(z: float) -> float:
    return math.log1p(math.exp(z))


def gen_ctx(fake: Tensor, real: Tensor, discriminate=None) -> GeneratorContext:
    lq = torch.zeros(fake.shape[0], 3, 2, 2)
    return GeneratorContext(lq, fake, real, lambda x: x, lq, (0, 0), 1, discriminate)


def test_registry_names_and_build():
    assert {"pixel", "perceptual", "gan", "gradient_penalty", "translational"} <= set(LOSSES.names())
    assert LossOptions.registry is LOSSES
    assert isinstance(build_loss(PixelOptions(type="pixel")), PixelLoss)
    with pytest.raises(TypeError, match="PixelOptions"):
        build_loss(GanOptions(type="pixel"))


def test_window():
    opts = PixelOptions(type="pixel", after=10, before=20)
    assert [opts.active(s) for s in (0, 9, 10, 19, 20)] == [False, False, True, True, False]
    assert PixelOptions(type="pixel", after=5).active(10**9)
    with pytest.raises(OptionValueError, match="before"):
        PixelOptions(type="pixel", after=10, before=10)
    with pytest.raises(OptionValueError, match="weight"):
        PixelOptions(type="pixel", weight=-1.0)


@pytest.mark.parametrize(
    ("criterion", "expected"),
    [
        ("l1", (0.5 + 1.0 + 0.0 + 2.0) / 4),
        ("mse", (0.25 + 1.0 + 0.0 + 4.0) / 4),
        ("l2", (0.25 + 1.0 + 0.0 + 4.0) / 4),
        ("charbonnier", sum(math.sqrt(d * d + 0.1**2) for d in (0.5, 1.0, 0.0, 2.0)) / 4),
    ],
)
def test_pixel_criteria(criterion, expected):
    fake = torch.tensor([0.5, -1.0, 3.0, 2.0]).view(1, 1, 2, 2)
    real = torch.tensor([0.0, 0.0, 3.0, 0.0]).view(1, 1, 2, 2)
    loss = PixelLoss(PixelOptions(type="pixel", criterion=criterion, eps=0.1))
    assert loss(gen_ctx(fake, real)).item() == pytest.approx(expected, rel=1e-6)


D_REAL = [2.0, -1.0]
D_FAKE = [0.5, -0.5]


def logits(values: list[float]) -> Tensor:
    return torch.tensor(values).view(-1, 1)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def bce_hand(zs: list[float], target_real: bool) -> float:
    return mean([softplus(-z) if target_real else softplus(z) for z in zs])


def test_gan_vanilla_values():
    loss = GanLoss(GanOptions(type="gan", gan_type="vanilla"))
    g = loss(gen_ctx(logits(D_FAKE), logits(D_REAL), discriminate=lambda x: x))
    assert g.item() == pytest.approx(bce_hand(D_FAKE, True), rel=1e-6)
    d = loss.discriminator_loss(
        DiscriminatorContext(logits(D_REAL), logits(D_FAKE), logits(D_REAL), logits(D_FAKE), lambda x: x)
    )
    assert d.item() == pytest.approx(bce_hand(D_REAL, True) + bce_hand(D_FAKE, False), rel=1e-6)


def test_gan_ragan_values():
    loss = GanLoss(GanOptions(type="gan", gan_type="ragan"))
    real_rel = [r - mean(D_FAKE) for r in D_REAL]
    fake_rel = [f - mean(D_REAL) for f in D_FAKE]
    fake = logits(D_FAKE).requires_grad_(True)
    real = logits(D_REAL).requires_grad_(True)
    g = loss(gen_ctx(fake, real, discriminate=lambda x: x))
    assert g.item() == pytest.approx(0.5 * (bce_hand(real_rel, False) + bce_hand(fake_rel, True)), rel=1e-6)
    g.backward()
    assert real.grad is None and fake.grad is not None  # D(real) is detached on the generator side
    ctx = DiscriminatorContext(logits(D_REAL), logits(D_FAKE), logits(D_REAL), logits(D_FAKE), lambda x: x)
    d = loss.discriminator_loss(ctx)
    assert d.item() == pytest.approx(bce_hand(real_rel, True) + bce_hand(fake_rel, False), rel=1e-6)


def test_gan_needs_discriminator_and_stats():
    loss = GanLoss(GanOptions(type="gan"))
    assert loss.needs_discriminator and loss.side == "generator"
    with pytest.raises(RuntimeError, match="discriminator"):
        loss(gen_ctx(logits(D_FAKE), logits(D_REAL)))
    stats = discriminator_stats(logits(D_REAL), logits(D_FAKE))
    assert stats["d_real"].item() == pytest.approx(0.5) and stats["d_fake"].item() == pytest.approx(0.0)


def test_noise_range_freshness_and_identity():
    x = torch.zeros(2, 3, 8, 8)
    noise = DiscriminatorInputNoise(0.01)
    a, b = noise(x), noise(x)
    assert a.min() >= 0 and a.max() < 0.01 and a.std() > 0
    assert not torch.equal(a, b)
    state = torch.get_rng_state()
    assert DiscriminatorInputNoise(0.0)(x) is x
    assert torch.equal(torch.get_rng_state(), state)
    discriminate = make_discriminate(lambda t: t.sum(dim=(1, 2, 3)), 0.01)
    assert not torch.equal(discriminate(x), discriminate(x))
    with pytest.raises(ValueError, match="amplitude"):
        DiscriminatorInputNoise(-1.0)


class LinearD(nn.Module):
    """D(x) = sum(w * x) per sample, so grad_x D = w for every input."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: Tensor) -> Tensor:
        return (x * self.w).flatten(1).sum(1, keepdim=True)


def penalty_ctx(d: nn.Module, amplitude: float = 0.0, real_grad: bool = True) -> DiscriminatorContext:
    discriminate = make_discriminate(d, amplitude)
    real = torch.rand(3, 1, 2, 2).requires_grad_(real_grad)
    fake = torch.rand(3, 1, 2, 2)
    return DiscriminatorContext(real, fake, discriminate(real), discriminate(fake), discriminate)


W = torch.tensor([3.0, 0.0, 0.0, 4.0]).view(1, 1, 2, 2)  # |w| = 5


@pytest.mark.parametrize(
    ("variant", "expected", "real_grad"),
    [("one_centered", 2.0 * 16, True), ("r1", 2.0 / 2 * 25, True), ("wgan_gp", 2.0 * 16, False)],
)
def test_gradient_penalty_linear_d(variant, expected, real_grad):
    # c = 2, |w| = 5: one-centred c(|w|-1)^2 = 32 (grad 2c(|w|-1)w/|w|), r1 c/2|w|^2 = 25 (grad c·w)
    d = LinearD(W.clone())
    gp = GradientPenaltyLoss(
        GradientPenaltyOptions(type="gradient_penalty", variant=variant, coefficient=2.0)
    )
    assert gp.side == "discriminator" and gp.needs_real_grad is real_grad
    value = gp(penalty_ctx(d, amplitude=0.004, real_grad=real_grad))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()  # double backprop reaches D's weights
    expected_grad = 2.0 * W if variant == "r1" else 2 * 2.0 * 4 * W / 5
    assert d.w.grad is not None and torch.allclose(d.w.grad, expected_grad)


def test_gradient_penalty_needs_real_grad():
    gp = GradientPenaltyLoss(GradientPenaltyOptions(type="gradient_penalty"))
    with pytest.raises(RuntimeError, match="requires_grad"):
        gp(penalty_ctx(LinearD(W.clone()), real_grad=False))


def test_gradient_penalty_per_sample_norm():
    d = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Tanh(), nn.Flatten(), nn.Linear(8, 1))
    ctx = penalty_ctx(d)
    gp = GradientPenaltyLoss(GradientPenaltyOptions(type="gradient_penalty"))
    expected = 0.0
    for i in range(3):
        x = ctx.real[i : i + 1].detach().requires_grad_(True)
        (g,) = torch.autograd.grad(d(x).sum(), x)
        expected += 10.0 * (g.norm().item() - 1) ** 2 / 3
    assert gp(ctx).item() == pytest.approx(expected, rel=1e-5)
