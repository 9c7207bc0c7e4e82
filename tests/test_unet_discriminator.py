"""UNetDiscriminatorSN: BasicSR's state-dict keys, strict reloads, per-pixel logits and shape checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esrforge.fields.errors import OptionValueError
from esrforge.networks import (
    NETWORKS,
    UNetDiscriminatorSN,
    UNetDiscriminatorSNOptions,
    build_network,
    load_into,
)

# BasicSR 1.4.2 UNetDiscriminatorSN(UNetDiscriminatorSNOptions(num_in_ch=3, num_feat=64, skip_connection=True)).state_dict():
# spectral norm keeps weight_orig [out, in, k, k], u [out] and v [in * k * k]; conv0 and conv9 are plain.
BASICSR_KEYS: list[tuple[str, list[int]]] = [
    ("conv0.weight", [64, 3, 3, 3]),
    ("conv0.bias", [64]),
    ("conv1.weight_orig", [128, 64, 4, 4]),
    ("conv1.weight_u", [128]),
    ("conv1.weight_v", [1024]),
    ("conv2.weight_orig", [256, 128, 4, 4]),
    ("conv2.weight_u", [256]),
    ("conv2.weight_v", [2048]),
    ("conv3.weight_orig", [512, 256, 4, 4]),
    ("conv3.weight_u", [512]),
    ("conv3.weight_v", [4096]),
    ("conv4.weight_orig", [256, 512, 3, 3]),
    ("conv4.weight_u", [256]),
    ("conv4.weight_v", [4608]),
    ("conv5.weight_orig", [128, 256, 3, 3]),
    ("conv5.weight_u", [128]),
    ("conv5.weight_v", [2304]),
    ("conv6.weight_orig", [64, 128, 3, 3]),
    ("conv6.weight_u", [64]),
    ("conv6.weight_v", [1152]),
    ("conv7.weight_orig", [64, 64, 3, 3]),
    ("conv7.weight_u", [64]),
    ("conv7.weight_v", [576]),
    ("conv8.weight_orig", [64, 64, 3, 3]),
    ("conv8.weight_u", [64]),
    ("conv8.weight_v", [576]),
    ("conv9.weight", [1, 64, 3, 3]),
    ("conv9.bias", [1]),
]


def test_state_dict_matches_basicsr() -> None:
    net = UNetDiscriminatorSN(UNetDiscriminatorSNOptions(num_in_ch=3, num_feat=64, skip_connection=True))
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == BASICSR_KEYS
    assert sum(p.numel() for p in net.parameters()) == 4_376_897


def test_state_dict_reloads_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = UNetDiscriminatorSN(UNetDiscriminatorSNOptions(num_feat=8))
    source(torch.rand(1, 3, 16, 16))  # a training-mode forward advances the power iteration (u, v)
    path = tmp_path / "netD.pth"
    torch.save({"params": source.state_dict()}, path)
    options = UNetDiscriminatorSNOptions(num_feat=8)
    target = load_into(UNetDiscriminatorSN(options), options, path, strict=True)
    want, got = source.state_dict(), target.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    source.eval()
    target.eval()
    x = torch.rand(1, 3, 16, 24)
    assert torch.equal(source(x), target(x))


@pytest.mark.parametrize("skip_connection", [True, False])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 64)])
def test_per_pixel_logits_and_grads(skip_connection: bool, height: int, width: int) -> None:
    torch.manual_seed(0)
    net = UNetDiscriminatorSN(UNetDiscriminatorSNOptions(num_feat=8, skip_connection=skip_connection))
    x = torch.rand(2, 3, height, width, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 1, height, width)
    out.mean().backward()
    grads = [p.grad for p in net.parameters()] + [x.grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("shape", "got"), [((1, 3, 60, 64), "3x60x64"), ((1, 1, 64, 64), "1x64x64")])
def test_bad_input_shape_is_one_line(shape: tuple[int, ...], got: str) -> None:
    with pytest.raises(ValueError, match="multiples of 8") as info:
        UNetDiscriminatorSN(UNetDiscriminatorSNOptions(num_feat=8))(torch.rand(*shape))
    assert "\n" not in str(info.value) and str(info.value).endswith(f"got {got}")


def test_built_through_the_registry() -> None:
    assert NETWORKS.get("UNetDiscriminatorSN").options is UNetDiscriminatorSNOptions
    net = build_network(UNetDiscriminatorSNOptions(type="UNetDiscriminatorSN", num_feat=8))
    assert isinstance(net, UNetDiscriminatorSN) and net.options.num_feat == 8
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    plain = build_network(
        UNetDiscriminatorSNOptions(type="UNetDiscriminatorSN", num_feat=8, skip_connection=False)
    )
    assert isinstance(plain, UNetDiscriminatorSN) and not plain.options.skip_connection
    assert plain(torch.rand(1, 3, 16, 8)).shape == (1, 1, 16, 8)


@pytest.mark.parametrize("key", ["num_in_ch", "num_feat"])
def test_options_validated(key: str) -> None:
    with pytest.raises(OptionValueError) as info:
        UNetDiscriminatorSNOptions(type="UNetDiscriminatorSN", **{key: 0})
    assert info.value.key == key
