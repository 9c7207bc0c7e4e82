"""Validation metrics: the registry, PSNR/SSIM as metrics, LPIPS and DISTS against hand computations,
backbone weights from a local file, and the offline error."""

import dataclasses
import importlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from esrforge.data.base import ValDatasetOptions
from esrforge.data.imageio import write_image
from esrforge.inference.scoring import score_set, val_loader
from esrforge.metrics import METRICS, build_metric, calculate_psnr, calculate_ssim, metric_named
from esrforge.metrics.base import quantize
from esrforge.networks import RRDBNet, RRDBNetOptions

VARIANTS = [v.name for n in METRICS.names() for v in METRICS.get(n).options.variants()]
TM_IMAGE = Path(importlib.import_module("torchmetrics.functional.image").__file__).parent


def random_weights(name: str):
    """The named variant with a random backbone (no ImageNet weights in tests)."""
    options = metric_named(name)
    return dataclasses.replace(options, pretrained=False) if hasattr(options, "pretrained") else options


def pair(seed=0, size=40, noise=0.08):
    g = torch.Generator().manual_seed(seed)
    hq = torch.rand(2, 3, size, size, generator=g)
    sr = (hq + noise * torch.randn(hq.shape, generator=g)).clamp(0, 1)
    return sr, hq


@pytest.mark.parametrize("name", VARIANTS)
def test_every_metric_scores_per_image_and_knows_which_way_is_better(name):
    torch.manual_seed(0)
    metric = build_metric(random_weights(name), scale=2)
    sr, hq = pair()
    close, _ = pair(noise=0.02)
    same, worse, nearer = metric(hq, hq), metric(sr, hq), metric(close, hq)
    assert same.shape == worse.shape == (2,) and same.dtype == torch.float64
    assert all(metric.better(float(n), float(w)) for n, w in zip(nearer, worse, strict=True))
    best = torch.full(
        (2,), float("inf") if name.startswith("psnr") else 1.0 if name.startswith("ssim") else 0.0
    )
    torch.testing.assert_close(same, best.double(), atol=1e-6, rtol=0)
    assert metric.perceptual == (not name.startswith(("psnr", "ssim")))


def test_metric_names_and_unknown_name():
    assert {"psnr_y", "psnr_rgb", "ssim_y", "ssim_rgb", "lpips_alex", "lpips_vgg", "dists"} <= set(VARIANTS)
    with pytest.raises(ValueError, match=r"unknown metric 'lpips_alexnet' \(did you mean 'lpips_alex'\?\)"):
        metric_named("lpips_alexnet")


@pytest.mark.parametrize("y_channel", [True, False])
def test_psnr_ssim_metrics_equal_the_published_numpy_functions_on_saved_images(y_channel):
    sr, hq = pair(size=48)
    to_png = lambda x: (quantize(x[0]).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
    for kind, reference in (("psnr", calculate_psnr), ("ssim", calculate_ssim)):
        options = dataclasses.replace(metric_named(f"{kind}_y"), y_channel=y_channel)
        value = float(build_metric(options, scale=4)(sr[:1], hq[:1])[0])
        assert value == pytest.approx(reference(to_png(sr), to_png(hq), 4, y_channel=y_channel), abs=1e-6)


def test_crop_border_defaults_to_the_scale_and_can_be_set():
    sr, hq = pair(size=40)
    sr[..., :3, :] = 1 - hq[..., :3, :]  # a bad top band, 3 pixels high
    psnr = lambda **kw: float(build_metric(dataclasses.replace(metric_named("psnr_y"), **kw), 4)(sr, hq)[0])  # noqa: E731
    assert psnr() > psnr(crop_border=0) + 3  # the band is shaved at scale 4
    with pytest.raises(ValueError, match="crop_border 20 does not fit"):
        psnr(crop_border=20)


def alexnet_relus(features, x):
    """The outputs of AlexNet's five ReLUs (LPIPS's layers), by hand."""
    out = []
    for index, layer in enumerate(features[:12]):
        x = layer(x)
        if index in (1, 4, 7, 9, 11):
            out.append(x)
    return out


def test_lpips_equals_a_hand_computation_of_the_v01_formula():
    torch.manual_seed(1)
    metric = build_metric(random_weights("lpips_alex"), scale=2)
    sr, hq = pair(size=36)
    value = metric(sr, hq)
    features = torchvision.models.alexnet(weights=None).features
    slices = [
        metric.net.net.slice1,
        metric.net.net.slice2,
        metric.net.net.slice3,
        metric.net.net.slice4,
        metric.net.net.slice5,
    ]
    layers = dict(features.named_children())
    for stage in slices:  # our backbone, as the metric holds it
        for name, layer in stage.named_children():
            layers[name].load_state_dict(layer.state_dict())
    lins = torch.load(
        TM_IMAGE / "lpips_models" / "alex.pth", map_location="cpu", weights_only=True
    )  # LPIPS v0.1's linear layers
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    crop = lambda x: quantize(x)[..., 2:-2, 2:-2]  # noqa: E731
    a, b = (((2 * crop(x) - 1) - shift) / scale for x in (sr, hq))
    total = torch.zeros(2)
    for k, (fa, fb) in enumerate(zip(alexnet_relus(features, a), alexnet_relus(features, b), strict=True)):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        total += F.conv2d((na - nb) ** 2, lins[f"lin{k}.model.1.weight"]).mean(dim=(1, 2, 3))
    torch.testing.assert_close(value.float(), total, atol=1e-5, rtol=1e-4)


def test_dists_equals_a_hand_computation_of_its_formula():
    torch.manual_seed(2)
    metric = build_metric(random_weights("dists"), scale=2)
    sr, hq = pair(size=48)
    value = metric(sr, hq)
    weights = torch.load(TM_IMAGE / "dists_models" / "weights.pt", map_location="cpu", weights_only=True)
    a, b = (metric.net.forward_once(quantize(x)[..., 2:-2, 2:-2]) for x in (sr, hq))
    channels = [3, 64, 128, 256, 512, 512]
    total = weights["alpha"].sum() + weights["beta"].sum()
    alphas = torch.split(weights["alpha"] / total, channels, dim=1)
    betas = torch.split(weights["beta"] / total, channels, dim=1)
    score = torch.zeros(2)
    for fa, fb, alpha, beta in zip(a, b, alphas, betas, strict=True):
        ma, mb = fa.mean((2, 3)), fb.mean((2, 3))
        va, vb = fa.var((2, 3), unbiased=False), fb.var((2, 3), unbiased=False)
        cov = (fa * fb).mean((2, 3)) - ma * mb
        structure = (2 * ma * mb + 1e-6) / (ma**2 + mb**2 + 1e-6)
        texture = (2 * cov + 1e-6) / (va + vb + 1e-6)
        score += (alpha.view(1, -1) * structure).sum(1) + (beta.view(1, -1) * texture).sum(1)
    torch.testing.assert_close(value.float(), 1 - score, atol=1e-5, rtol=1e-4)
    features = torchvision.models.vgg16(weights=None).features
    assert len(list(metric.net.parameters())) == len(list(features.parameters())) + 2  # VGG16 + alpha, beta


def test_backbone_weights_from_a_local_file(tmp_path):
    torch.manual_seed(3)
    state = {
        f"features.{k}": v for k, v in torchvision.models.alexnet(weights=None).features.state_dict().items()
    }
    path = tmp_path / "alexnet.pth"
    torch.save(state, path)
    metric = build_metric(dataclasses.replace(metric_named("lpips_alex"), weights_path=path), scale=2)
    torch.testing.assert_close(metric.net.net.slice1[0].weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(metric.net.net.slice5, "10").weight, state["features.10.weight"])
    with pytest.raises(
        FileNotFoundError, match=r"metric lpips_alex: weights_path .*missing.pth does not exist"
    ):
        build_metric(
            dataclasses.replace(metric_named("lpips_alex"), weights_path=tmp_path / "missing.pth"), 2
        )


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("lpips_vgg", "vgg16-397923af.pth"),
        ("dists", "vgg16-397923af.pth"),
        ("lpips_alex", "alexnet-owt-7be5be79.pth"),
    ],
)
def test_offline_without_the_backbone_says_which_file_to_get_and_where(tmp_path, monkeypatch, name, file):
    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as err:
        build_metric(metric_named(name), scale=4)
    message = str(err.value)
    assert message.startswith(f"metric {name}: cannot download") and "\n" not in message
    assert f"https://download.pytorch.org/models/{file}" in message
    assert str(tmp_path / "hub" / "checkpoints" / file) in message and "weights_path" in message


def test_an_image_a_metric_cannot_score_is_named_with_the_metric(tmp_path):
    write_image(tmp_path / "val" / "tiny.png", np.zeros((12, 12, 3), np.uint8))  # too small for AlexNet
    options = ValDatasetOptions(type="FullImageDataset", dataroot=tmp_path / "val")
    network = RRDBNetOptions(nf=8, nb=1, gc=4, scale=2)
    metric = build_metric(random_weights("lpips_alex"), scale=2)
    with pytest.raises(ValueError, match=r"^val: tiny: lpips_alex: .*too small") as error:
        score_set(RRDBNet(network), val_loader(options, 2), [metric], network.describe(), None, label="val")
    assert "\n" not in str(error.value)
