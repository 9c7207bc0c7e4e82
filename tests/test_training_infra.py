"""Optimisers, learning-rate schedules, the weight EMA, and the device / mixed-precision helpers."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import CUDA
from esrforge.devices import select_device
from esrforge.losses.base import LossOptions
from esrforge.options.schema import TrainSection
from esrforge.training.distributed import unwrap_model
from esrforge.training.ema import ModelEMA
from esrforge.training.optim import build_optimizer, build_scheduler
from esrforge.training.precision import Precision, configure_backends, to_channels_last


def train_section(**kwargs: Any) -> TrainSection:
    return TrainSection(niter=100, losses=[LossOptions(type="pixel")], **kwargs)


def schedule(train: TrainSection, steps: int, lr: float = 2e-4) -> tuple[list[float], Any, Any]:
    """The learning rate of each of ``steps`` iterations, plus the optimiser and scheduler after them."""
    optimizer = build_optimizer(nn.Linear(2, 2).parameters(), lr, (0.9, 0.99), 0.0)
    scheduler = build_scheduler(optimizer, train)
    return run(optimizer, scheduler, steps), optimizer, scheduler


def run(optimizer: torch.optim.Optimizer, scheduler: Any, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_build_optimizer_skips_frozen_parameters() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    net[0].requires_grad_(False)
    optimizer = build_optimizer(net.parameters(), 1e-3, (0.9, 0.99), 1e-4)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.Adam) and len(group["params"]) == 2
    assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-3, (0.9, 0.99), 1e-4)
    assert group["fused"]  # on the CPU too: a non-finite step is skipped on the device
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(net[0].parameters(), 1e-3, (0.9, 0.99), 0.0)


def test_multistep_halves_at_each_milestone() -> None:
    rates, _, _ = schedule(train_section(lr_steps=[4, 8], lr_gamma=0.5), 11)
    assert rates == pytest.approx([2e-4] * 4 + [1e-4] * 4 + [5e-5] * 3, rel=1e-12)


def test_warmup_ramps_linearly_then_follows_the_schedule() -> None:
    rates, _, _ = schedule(train_section(lr_steps=[6], warmup_iter=4), 8, lr=1.0)
    assert rates == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5, 0.5])


def test_cosine_restart_follows_basicsr() -> None:
    train = train_section(
        lr_scheme="CosineAnnealingRestartLR", restart_periods=[4, 4], restart_weights=[1, 0.5], eta_min=0.0
    )
    rates, _, _ = schedule(train, 11, lr=1.0)
    high, low = 0.5 * (1 + math.cos(math.pi / 4)), 0.5 * (1 - math.cos(math.pi / 4))
    expected = [1.0, high, 0.5, low, 0.0, 0.5 * high, 0.25, 0.5 * low, 0.0, 0.0, 0.0]
    assert rates == pytest.approx(expected, abs=1e-12)


def test_cosine_restart_weights_default_to_one_and_eta_min_is_the_floor() -> None:
    train = train_section(lr_scheme="CosineAnnealingRestartLR", restart_periods=[2, 2], eta_min=0.1)
    rates, _, _ = schedule(train, 6, lr=1.0)
    assert rates == pytest.approx([1.0, 0.55, 0.1, 0.55, 0.1, 0.1])


@pytest.mark.parametrize(
    "options",
    [
        {"lr_steps": [3, 6], "warmup_iter": 2},
        {"lr_scheme": "CosineAnnealingRestartLR", "restart_periods": [5, 7], "warmup_iter": 3},
    ],
)
def test_restored_scheduler_continues_identically(options: dict[str, Any]) -> None:
    train = train_section(**options)
    straight, _, _ = schedule(train, 16)
    first, optimizer, scheduler = schedule(train, 7)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    fresh = build_optimizer(nn.Linear(2, 2).parameters(), 2e-4, (0.9, 0.99), 0.0)
    restored = build_scheduler(fresh, train)
    fresh.load_state_dict(saved["optimizer"])
    restored.load_state_dict(saved["scheduler"])
    assert restored.state_dict() == scheduler.state_dict()
    assert first + run(fresh, restored, 9) == straight


def test_resuming_with_another_schedule_follows_the_config(logs: pytest.LogCaptureFixture) -> None:
    _, _, scheduler = schedule(train_section(lr_steps=[4]), 5)
    optimizer = build_optimizer(nn.Linear(2, 2).parameters(), 2e-4, (0.9, 0.99), 0.0)
    changed = build_scheduler(optimizer, train_section(lr_steps=[10]))
    changed.load_state_dict(scheduler.state_dict())
    assert changed.last_epoch == 5 and optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)
    assert "differs from the config" in logs.text


def test_ema_averages_parameters_and_copies_buffers() -> None:
    # DataParallel moves the model to the first GPU when there is one.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).to(device)
    ema = ModelEMA(nn.DataParallel(model), decay=0.9)
    assert ema.module is not model and not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    model.train()(torch.randn(8, 3, device=device))  # moves the BatchNorm running statistics
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    ema.update(nn.DataParallel(model))
    online = model.state_dict()
    for key, value in ema.state_dict().items():
        if key.endswith(("weight", "bias")):
            torch.testing.assert_close(value, 0.9 * before[key] + 0.1 * online[key])
        else:
            assert torch.equal(value, online[key]), key
    copy = ModelEMA(model, decay=0.5)
    copy.load_state_dict(ema.state_dict())
    assert all(torch.equal(v, ema.state_dict()[k]) for k, v in copy.state_dict().items())
    with pytest.raises(ValueError, match="ema_decay"):
        ModelEMA(model, decay=1.0)


def test_unwrap_model_removes_nested_wrappers() -> None:
    inner = nn.Linear(1, 1)
    assert unwrap_model(nn.DataParallel(nn.DataParallel(inner))) is inner
    assert unwrap_model(inner) is inner


def test_select_device(monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture) -> None:
    assert select_device([]) == torch.device("cpu") and not logs.records
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device([0]) == torch.device("cpu")
    assert len(logs.records) == 1 and "no CUDA device" in logs.text
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"device 2 does not exist; this machine has 2") as error:
        select_device([2])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="one device per process"):
        select_device([0], local_rank=1)


def test_precision_on_cpu_falls_back_to_float32(logs: pytest.LogCaptureFixture) -> None:
    precision = Precision(True, False, torch.device("cpu"))
    assert precision.dtype is None
    assert len(logs.records) == 1 and "float32" in logs.text
    with precision.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    scaler = precision.grad_scaler()
    assert not scaler.is_enabled() and scaler.state_dict() == {}
    loss = torch.tensor(2.0)
    assert scaler.scale(loss) is loss
    scaler.load_state_dict({"scale": 8.0})  # ignored: the scaler is off
    with pytest.raises(ValueError, match="both"):
        Precision(fp16=True, bf16=True, device=torch.device("cpu"))


def test_bf16_is_the_default_on_cpus_that_have_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """AVX-512-BF16/AMX CPUs train in bf16 unless fp32 or fp16 is set; other CPUs and CUDA keep float32."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr("esrforge.training.precision.cpu_has_bf16", lambda: True)
    automatic = Precision(False, False, cpu)
    assert automatic.dtype == torch.bfloat16 and automatic.automatic
    assert "automatic on this CPU" in automatic.describe() and "fp32: true" in automatic.describe()
    with automatic.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert Precision(False, False, cpu, fp32=True).dtype is None
    assert Precision(True, False, cpu).dtype is None  # fp16 asked: float32 on the CPU, as before
    assert Precision(False, True, cpu).describe() == "bf16"  # asked for: no "automatic"
    assert Precision(False, False, cuda).dtype is None
    monkeypatch.setattr("esrforge.training.precision.cpu_has_bf16", lambda: False)
    assert Precision(False, False, cpu).describe() == "float32"


def test_out_of_memory_advice_names_the_half_precision_of_the_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert Precision(False, False, cpu).memory_hint() == ", or set bf16: true (half the activation memory)"
    pinned = Precision(False, False, cpu, fp32=True)
    assert "set bf16: true in place of fp32: true" in pinned.memory_hint()
    assert "set fp16: true" in Precision(False, False, cuda).memory_hint()
    assert Precision(False, True, cpu).memory_hint() == ""  # already half precision


def test_a_state_trained_in_another_precision_is_named_at_resume(logs: pytest.LogCaptureFixture) -> None:
    precision = Precision(False, False, torch.device("cpu"))
    precision.check_resumed("float32", Path("a.state"))
    precision.check_resumed(None, Path("old.state"))  # written before states recorded it
    assert not logs.records
    precision.check_resumed("bf16", Path("b.state"))
    assert "b.state was trained in bf16; this run continues in float32" in logs.text


def test_channels_last_and_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    image = torch.zeros(1, 3, 4, 4)
    assert to_channels_last(image, False) is image
    assert to_channels_last(image, True).is_contiguous(memory_format=torch.channels_last)
    vector = torch.zeros(3)
    assert to_channels_last(vector, True) is vector
    conv = to_channels_last(nn.Conv2d(3, 3, 3), True)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_backends(torch.device("cpu"))
    assert not torch.backends.cudnn.benchmark
    configure_backends(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark


@CUDA
@pytest.mark.parametrize(("fp16", "dtype"), [(True, torch.float16), (False, torch.bfloat16)])
def test_precision_on_cuda(fp16: bool, dtype: torch.dtype) -> None:
    precision = Precision(fp16, not fp16, select_device([0]))
    ones = torch.ones(2, 2, device="cuda")
    with precision.autocast():
        assert (ones @ ones).dtype == dtype
    with precision.autocast(enabled=False):
        assert (ones @ ones).dtype == torch.float32
    scaler = precision.grad_scaler()
    assert scaler.is_enabled() == fp16
    fresh = Precision(True, False, torch.device("cuda")).grad_scaler()
    fresh.load_state_dict(scaler.state_dict())  # empty after bf16: a fresh scaler
    assert fresh.state_dict()["scale"] == 65536.0
