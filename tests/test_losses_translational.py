"""Translational loss: zero for a translation-equivariant generator, positive otherwise; geometry checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esrforge.fields.errors import OptionValueError
from esrforge.losses import GeneratorContext, TranslationalLoss, TranslationalOptions
from esrforge.losses.translational import intersection

SCALE, TILE, PATCH = 2, 16, 12  # LR tile 8, LR patch 6, corner overlap 2·12 − 16 = 8 HR px


def nearest(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=SCALE, mode="nearest")


class PaddedConvUp(nn.Module):
    """A zero-padded conv before nearest upsampling: outputs near a patch border depend on the border."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return nearest(self.conv(x))


def make_loss(offsets, **kwargs) -> TranslationalLoss:
    opts = TranslationalOptions(type="translational", patch_size=PATCH, offsets=offsets, **kwargs)
    opts.check_geometry(SCALE, TILE)
    return TranslationalLoss(opts)


def run(loss: TranslationalLoss, generator) -> Tensor:
    lq_tile = torch.rand(2, 3, TILE // SCALE, TILE // SCALE)
    hq_tile = nearest(lq_tile)
    lq, hq, box = loss.sample_main_patch(lq_tile, hq_tile, SCALE)
    assert lq.shape[-1] == PATCH // SCALE and hq.shape[-1] == PATCH
    assert torch.equal(hq, nearest(lq))  # the HR patch matches the LR patch
    fake = generator(lq)
    return loss(GeneratorContext(lq, fake, hq, generator, lq_tile, box, SCALE))


@pytest.mark.parametrize("offsets", ["corners", "random"])
def test_equivariant_generator_gives_zero(offsets):
    torch.manual_seed(0)
    loss = make_loss(offsets)
    for _ in range(10):
        assert torch.allclose(run(loss, nearest), torch.zeros(()))


@pytest.mark.parametrize("offsets", ["corners", "random"])
def test_border_dependent_generator_gives_positive_and_grad_flows(offsets):
    torch.manual_seed(0)
    loss = make_loss(offsets, min_overlap=4)
    generator = PaddedConvUp()
    for _ in range(5):
        generator.zero_grad()
        value = run(loss, generator)
        assert value.item() > 0
        value.backward()
        assert generator.conv.weight.grad is not None and generator.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("offsets", ["corners", "random"])
def test_second_patch_in_the_main_batch_gives_the_same_loss_and_gradients(offsets):
    """The trainer's path (G on both patches in one batch) equals the loss running G itself."""
    loss = make_loss(offsets)
    generator = PaddedConvUp()
    lq_tile = torch.rand(2, 3, TILE // SCALE, TILE // SCALE)
    lq, hq, box = loss.sample_main_patch(lq_tile, nearest(lq_tile), SCALE)
    values, grads = [], []
    for batched in (False, True):
        generator.zero_grad()
        torch.manual_seed(3)  # the same second patch both times
        if batched:
            lq_second, second = loss.sample_second_patch(lq_tile, box, SCALE)
            fake, fake_second = generator(torch.cat([lq, lq_second])).chunk(2)
            ctx = GeneratorContext(lq, fake, hq, generator, lq_tile, box, SCALE, None, second, fake_second)
        else:
            ctx = GeneratorContext(lq, generator(lq), hq, generator, lq_tile, box, SCALE)
        value = loss(ctx)
        value.backward()
        values.append(value.detach())
        grads.append(generator.conv.weight.grad.clone())
    assert values[0] > 0
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_corners_geometry():
    torch.manual_seed(0)
    loss = make_loss("corners")
    lq_tile = torch.rand(1, 3, 8, 8)
    _, _, box = loss.sample_main_patch(lq_tile, nearest(lq_tile), SCALE)
    assert box == (0, 0)
    corners = [(0, 0), (0, 2), (2, 0), (2, 2)]
    assert intersection(corners, 6, SCALE) == (4, 12, 4, 12)  # the central (2·12 − 16)² square


def test_random_second_boxes_respect_grid_and_overlap():
    loss = make_loss("random", min_overlap=8)
    boxes = loss._shifted((1, 2), tile=8, size=6, scale=SCALE)
    assert (1, 2) not in boxes and boxes
    for top, left in boxes:
        assert abs(top - 1) * SCALE <= PATCH - 8 and abs(left - 2) * SCALE <= PATCH - 8
        assert 0 <= top <= 2 and 0 <= left <= 2


def test_main_patch_positions_vary_in_random_mode():
    torch.manual_seed(0)
    loss = make_loss("random")
    lq_tile = torch.rand(1, 3, 8, 8)
    seen = {loss.sample_main_patch(lq_tile, nearest(lq_tile), SCALE)[2] for _ in range(50)}
    assert len(seen) > 1 and all(0 <= t <= 2 and 0 <= left <= 2 for t, left in seen)


def test_tile_shape_mismatch():
    loss = make_loss("corners")
    with pytest.raises(ValueError, match="HR tile"):
        loss.sample_main_patch(
            torch.rand(1, 3, TILE // SCALE, TILE // SCALE), torch.rand(1, 3, 18, 18), SCALE
        )
    with pytest.raises(ValueError, match="square"):
        loss.sample_main_patch(torch.rand(1, 3, 9, 10), torch.rand(1, 3, 18, 20), SCALE)


def opts(**kwargs) -> TranslationalOptions:
    return TranslationalOptions(type="translational", **{"patch_size": 96, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"patch_size": 0}, "patch_size"),
        ({"min_overlap": 97}, "min_overlap"),
        ({"min_overlap": 0}, "min_overlap"),
    ],
)
def test_options_reject(kwargs, key):
    with pytest.raises(OptionValueError) as info:
        opts(**kwargs)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("kwargs", "scale", "tile", "key"),
    [
        ({"patch_size": 90}, 4, 128, "patch_size"),  # not a multiple of the scale
        ({"patch_size": 128}, 4, 128, "patch_size"),  # as large as the tile
        ({"patch_size": 132}, 4, 128, "patch_size"),
        ({}, 4, 256, "patch_size"),  # corners need 2·patch > tile
        ({"offsets": "random", "min_overlap": 94}, 4, 128, "min_overlap"),
    ],
)
def test_check_geometry_rejects(kwargs, scale, tile, key):
    with pytest.raises(OptionValueError) as info:
        opts(**kwargs).check_geometry(scale, tile)
    assert info.value.key == key


def test_recipe_geometry_accepted():
    opts().check_geometry(4, 128)
    assert opts(offsets="random", patch_size=64).overlap == 32
