"""RRDBNet and the VGG discriminators: shapes, keys, parameter counts, init and option checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from esrforge.fields.errors import OptionValueError
from esrforge.networks import (
    NETWORKS,
    RRDBNet,
    RRDBNetOptions,
    VGGDiscriminatorBN,
    VGGDiscriminatorGN,
    VGGDiscriminatorGNOptions,
    VGGDiscriminatorOptions,
    build_network,
    upsample_plan,
)

TINY: dict[str, Any] = {"nf": 8, "nb": 1, "gc": 4}


def conv(module: nn.Module, name: str) -> nn.Conv2d:
    found = module.get_submodule(name)
    assert isinstance(found, nn.Conv2d)
    return found


def tiny(**kwargs: Any) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(RRDBNetOptions(**{**TINY, **kwargs}))


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_rrdb_output_shape(scale: int) -> None:
    out = tiny(scale=scale)(torch.rand(2, 3, 8, 12))
    assert out.shape == (2, 3, 8 * scale, 12 * scale)


@pytest.mark.parametrize(("scale", "in_nc", "out_nc"), [(4, 1, 1), (2, 4, 3), (1, 3, 1), (8, 1, 4)])
def test_rrdb_channel_variants(scale: int, in_nc: int, out_nc: int) -> None:
    out = tiny(scale=scale, in_nc=in_nc, out_nc=out_nc)(torch.rand(1, in_nc, 8, 8))
    assert out.shape == (1, out_nc, 8 * scale, 8 * scale)


@pytest.mark.parametrize(
    ("scale", "unshuffle", "first_in", "ups"),
    [
        (1, True, 48, 2),
        (2, True, 12, 2),
        (4, True, 3, 2),
        (8, True, 3, 3),
        (1, False, 3, 0),
        (2, False, 3, 1),
    ],
)
def test_rrdb_keys_follow_basicsr(scale: int, unshuffle: bool, first_in: int, ups: int) -> None:
    net = tiny(scale=scale, pixel_unshuffle=unshuffle)
    sd = net.state_dict()
    assert list(sd)[:2] == ["conv_first.weight", "conv_first.bias"]
    assert sd["conv_first.weight"].shape == (8, first_in, 3, 3)
    assert sorted(k for k in sd if k.startswith("conv_up")) == [
        f"conv_up{i}.{p}" for i in range(1, ups + 1) for p in ("bias", "weight")
    ]
    body = {k for k in sd if k.startswith("body.")}
    params = ("weight", "bias")
    assert body == {f"body.0.rdb{r}.conv{c}.{p}" for r in (1, 2, 3) for c in range(1, 6) for p in params}
    assert {"conv_body.weight", "conv_hr.weight", "conv_last.weight"} <= set(sd)
    assert net(torch.rand(1, 3, 8, 8)).shape[-1] == 8 * scale


def test_upsample_plan() -> None:
    assert [upsample_plan(s) for s in (1, 2, 4, 8)] == [(4, 2), (2, 2), (1, 2), (1, 3)]
    assert [upsample_plan(s, False) for s in (1, 2, 4, 8)] == [(1, 0), (1, 1), (1, 2), (1, 3)]


@pytest.mark.parametrize(("scale", "count"), [(4, 16_697_987), (2, 16_703_171), (1, 16_723_907)])
def test_rrdb_full_parameter_count(scale: int, count: int) -> None:
    net = RRDBNet(RRDBNetOptions(scale=scale))
    assert sum(p.numel() for p in net.parameters()) == count


def test_rrdb_gradient_reaches_conv_first() -> None:
    net = tiny(scale=2)
    net(torch.rand(1, 3, 8, 8)).square().mean().backward()
    grad = net.conv_first.weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("init", ["basicsr", "dlas"])
def test_rrdb_init_scales_dense_blocks_and_keeps_the_rest_at_pytorch_default(init: str) -> None:
    """basicsr (the default): x0.1 Kaiming in the dense blocks only, as BasicSR; dlas: on every conv."""
    torch.manual_seed(0)
    net = RRDBNet(RRDBNetOptions(nf=64, nb=1, gc=32, init=init))
    dense = conv(net, "body.0.rdb1.conv5")
    assert abs(dense.weight.std().item() / (0.1 * (2.0 / dense.weight[0].numel()) ** 0.5) - 1) < 0.05
    assert dense.bias is not None and dense.bias.abs().sum() == 0
    for name in ("conv_first", "conv_body", "conv_up1", "conv_hr", "conv_last"):
        outer = conv(net, name)
        fan_in = outer.weight[0].numel()
        expected = 0.1 * (2.0 / fan_in) ** 0.5 if init == "dlas" else (1 / fan_in) ** 0.5 / 3**0.5
        assert abs(outer.weight.std().item() / expected - 1) < 0.1, name
        assert outer.bias is not None and (outer.bias.abs().sum() == 0) == (init == "dlas"), name


def test_rrdb_default_init_trains_faster_from_scratch_than_dlas() -> None:
    """From scratch, 160 L1 steps with the default init fit smooth colour images far better than DLAS's."""
    torch.manual_seed(1)
    target = F.interpolate(torch.rand(8, 3, 6, 6), size=(32, 32), mode="bilinear", align_corners=False)
    lq = F.interpolate(target, size=(8, 8), mode="area")
    losses = {}
    for init in ("basicsr", "dlas"):
        torch.manual_seed(0)
        net = RRDBNet(RRDBNetOptions(nf=32, nb=2, gc=8, init=init))
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.9, 0.99))
        for _ in range(160):
            loss = (net(lq) - target).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses[init] = loss.item()
    assert losses["basicsr"] < 0.6 * losses["dlas"], losses


def test_rrdb_channels_last_matches() -> None:
    net = tiny(scale=2)
    x = torch.rand(1, 3, 8, 8)
    expected = net(x)
    net = net.to(memory_format=torch.channels_last)
    out = net(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_rrdb_unshuffle_needs_divisible_size() -> None:
    with pytest.raises(ValueError, match="divisible by 4, got 6x8"):
        tiny(scale=1)(torch.rand(1, 3, 6, 8))


@pytest.mark.parametrize(("key", "value"), [("scale", 3), ("nb", 0), ("nf", -1), ("gc", 0), ("in_nc", 0)])
def test_rrdb_options_validated(key: str, value: int) -> None:
    kwargs: dict[str, Any] = {key: value}
    with pytest.raises(OptionValueError) as info:
        RRDBNetOptions(type="RRDBNet", **kwargs)
    assert info.value.key == key


def test_registry_builds_networks() -> None:
    assert {"RRDBNet", "VGGDiscriminatorGN", "VGGDiscriminatorBN"} <= set(NETWORKS.names())
    net = build_network(RRDBNetOptions(type="RRDBNet", scale=2, **TINY))
    assert isinstance(net, RRDBNet) and net.options.scale == 2
    d = build_network(VGGDiscriminatorGNOptions(type="VGGDiscriminatorGN", nf=8, image_size=32))
    assert isinstance(d, VGGDiscriminatorGN)
    assert NETWORKS.get("VGGDiscriminatorBN").options is VGGDiscriminatorOptions


@pytest.mark.parametrize("cls", [VGGDiscriminatorGN, VGGDiscriminatorBN])
@pytest.mark.parametrize("size", [96, 128])
def test_discriminator_logit_shape(cls: type[VGGDiscriminatorGN | VGGDiscriminatorBN], size: int) -> None:
    d = cls(VGGDiscriminatorGNOptions(type=cls.__name__, nf=8, image_size=size))
    assert d(torch.rand(2, 3, size, size)).shape == (2, 1)
    assert d.linear1.in_features == 64 * (size // 32) ** 2


def test_discriminator_layers_and_norms() -> None:
    gn, bn = (
        VGGDiscriminatorGN(VGGDiscriminatorGNOptions(nf=8, image_size=32)),
        VGGDiscriminatorBN(VGGDiscriminatorOptions(nf=8, image_size=32)),
    )
    convs = [f"conv{s}_{i}" for s in range(5) for i in range(2)]
    assert [n for n, m in gn.named_children() if isinstance(m, nn.Conv2d)] == convs
    assert conv(gn, "conv0_0").bias is not None
    assert all(conv(gn, n).bias is None for n in convs[1:])
    norms = [f"bn{n[4:]}" for n in convs[1:]]
    assert [n for n, m in gn.named_children() if isinstance(m, nn.GroupNorm)] == norms
    assert all(m.num_groups == 8 and m.affine for m in gn.modules() if isinstance(m, nn.GroupNorm))
    assert [n for n, m in bn.named_children() if isinstance(m, nn.BatchNorm2d)] == norms
    assert "bn4_1.running_mean" in bn.state_dict() and "bn4_1.running_mean" not in gn.state_dict()
    assert (conv(gn, "conv4_1").out_channels, gn.linear2.out_features) == (64, 1)


def test_discriminator_gn_is_per_sample() -> None:
    d = VGGDiscriminatorGN(VGGDiscriminatorGNOptions(nf=8, image_size=32))
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(d(x)[:1], d(x[:1]))


def test_discriminator_wrong_size_is_one_line() -> None:
    d = VGGDiscriminatorGN(VGGDiscriminatorGNOptions(nf=8, image_size=96))
    with pytest.raises(ValueError) as info:
        d(torch.rand(1, 3, 128, 128))
    assert str(info.value) == "discriminator expects 3x96x96 input (image_size: 96), got 3x128x128"
    with pytest.raises(ValueError, match="got 1x96x96"):
        d(torch.rand(1, 1, 96, 96))


@pytest.mark.parametrize("options", [VGGDiscriminatorOptions, VGGDiscriminatorGNOptions])
@pytest.mark.parametrize("size", [100, 16, 0])
def test_discriminator_image_size_multiple_of_32(options: type[VGGDiscriminatorOptions], size: int) -> None:
    with pytest.raises(OptionValueError) as info:
        options(type="VGGDiscriminatorGN", image_size=size)
    assert info.value.key == "image_size"


def test_discriminator_gn_needs_nf_multiple_of_8() -> None:
    with pytest.raises(OptionValueError) as info:
        VGGDiscriminatorGN(VGGDiscriminatorGNOptions(nf=12, image_size=32))
    assert info.value.key == "nf"
    assert VGGDiscriminatorBN(VGGDiscriminatorOptions(nf=12, image_size=32))(
        torch.rand(2, 3, 32, 32)
    ).shape == (2, 1)


def test_bicubic_skip_starts_near_bicubic_and_survives_a_checkpoint(tmp_path):
    from esrforge.networks.checkpoint import load_generator

    torch.manual_seed(0)
    net = RRDBNet(RRDBNetOptions(nf=8, nb=1, gc=4, scale=4, bicubic_skip=True)).eval()
    x = torch.rand(1, 3, 12, 12)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        out = net(x)
    assert out.shape == bicubic.shape
    assert 0 < float((out - bicubic).abs().mean()) < 0.05  # the residual starts small
    torch.save(net.state_dict(), tmp_path / "skip.pth")
    loaded = load_generator(tmp_path / "skip.pth").module.eval()
    assert loaded.options.bicubic_skip
    with torch.no_grad():
        assert torch.equal(loaded(x), out)
