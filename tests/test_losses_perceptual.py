"""Perceptual loss: VGG19 layer names, truncation, frozen features, weights loading and the offline error."""

from __future__ import annotations

from urllib.error import URLError

import pytest
import torch
from torch import nn

from esrforge.fields.errors import OptionValueError
from esrforge.losses import (
    VGG19_LAYERS,
    GeneratorContext,
    PerceptualLoss,
    PerceptualOptions,
    vgg19_layer_names,
)


def ctx(fake, real) -> GeneratorContext:
    lq = torch.zeros(1, 3, 4, 4)
    return GeneratorContext(lq, fake, real, lambda x: x, lq, (0, 0), 4)


@pytest.fixture(scope="module")
def conv5_4() -> PerceptualLoss:
    torch.manual_seed(0)
    return PerceptualLoss(PerceptualOptions(type="perceptual", pretrained=False))


def test_layer_names():
    names = vgg19_layer_names()
    assert len(names) == 37
    assert VGG19_LAYERS["conv5_4"] == 34 and VGG19_LAYERS["relu5_4"] == 35
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"] and names[-1] == "pool5"


def test_truncated_frozen_eval(conv5_4):
    assert len(conv5_4.vgg) == 35 and isinstance(conv5_4.vgg[34], nn.Conv2d)
    assert not any(p.requires_grad for p in conv5_4.parameters())
    conv5_4.train()
    assert conv5_4.training and not conv5_4.vgg.training
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in conv5_4.modules())


def test_zero_for_identical_positive_otherwise_and_grad(conv5_4):
    real = torch.rand(2, 3, 32, 32)
    assert conv5_4(ctx(real.clone(), real)).item() == 0.0
    fake = (real + 0.1 * torch.randn_like(real)).requires_grad_(True)
    value = conv5_4(ctx(fake, real))
    assert value.item() > 0
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_layer_weights_pre_and_post_relu():
    torch.manual_seed(0)
    loss = PerceptualLoss(
        PerceptualOptions(type="perceptual", pretrained=False, layer_weights={"conv1_1": 2.0, "relu1_1": 0.5})
    )
    assert len(loss.vgg) == 2
    x = torch.rand(1, 3, 8, 8)
    feats = loss.features(x)
    assert (feats["conv1_1"] < 0).any()  # kept before the (not in-place) ReLU
    assert torch.equal(feats["relu1_1"], feats["conv1_1"].clamp(min=0))
    real = torch.rand(1, 3, 8, 8)
    ref = loss.features(real)
    expected = 2.0 * (feats["conv1_1"] - ref["conv1_1"]).abs().mean()
    expected += 0.5 * (feats["relu1_1"] - ref["relu1_1"]).abs().mean()
    assert loss(ctx(x, real)).item() == pytest.approx(expected.item(), rel=1e-5)


def test_options_validation():
    with pytest.raises(OptionValueError, match="layer_weights"):
        PerceptualOptions(type="perceptual", layer_weights={"conv6_1": 1.0})
    with pytest.raises(OptionValueError, match="layer_weights"):
        PerceptualOptions(type="perceptual", layer_weights={})


def test_weights_path(tmp_path):
    state = {"features.0.weight": torch.randn(64, 3, 3, 3), "features.0.bias": torch.randn(64)}
    state["classifier.0.bias"] = torch.randn(4)  # unrelated keys are ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loss = PerceptualLoss(
        PerceptualOptions(type="perceptual", layer_weights={"conv1_1": 1.0}, weights_path=path)
    )
    conv = loss.vgg[0]
    assert isinstance(conv, nn.Conv2d) and torch.equal(conv.weight, state["features.0.weight"])
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        PerceptualLoss(PerceptualOptions(type="perceptual", weights_path=tmp_path / "missing.pth"))


def test_weights_that_are_not_vgg19_or_not_readable_are_one_line(tmp_path, monkeypatch):
    wrong, torn = tmp_path / "wrong.pth", tmp_path / "torn.pth"
    torch.save({"features.0.weight": torch.randn(8, 3, 3, 3)}, wrong)
    torch.save({"features.0.weight": torch.randn(64, 3, 3, 3)}, torn)
    torn.write_bytes(torn.read_bytes()[:300])
    one_conv = {"layer_weights": {"conv1_1": 1.0}}
    with pytest.raises(
        ValueError, match=f"perceptual loss: {wrong} does not hold torchvision's vgg19 weights"
    ):
        PerceptualLoss(PerceptualOptions(type="perceptual", weights_path=wrong, **one_conv))
    with pytest.raises(ValueError, match=f"weights_path {torn} is not a readable PyTorch file") as info:
        PerceptualLoss(PerceptualOptions(type="perceptual", weights_path=torn, **one_conv))
    assert "\n" not in str(info.value)
    # an interrupted download left a torn file in torchvision's cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(torn.read_bytes())
    with pytest.raises(ValueError, match=r"the cached vgg19 weights .* are unreadable") as info:
        PerceptualLoss(PerceptualOptions(type="perceptual"))
    assert str(cached) in str(info.value) and "Delete the file" in str(info.value)


def test_offline_error_names_url_and_target(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError) as info:
        PerceptualLoss(PerceptualOptions(type="perceptual"))
    message = str(info.value)
    assert "\n" not in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "weights_path" in message
