"""Checkpoint files: weights for tools, the whole training state, atomic writes and pruning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from esrforge.networks import read_state_dict
from esrforge.training.ema import ModelEMA
from esrforge.training.experiment import ExperimentDirs
from esrforge.training.optim import MultiStepLR, build_optimizer
from esrforge.training.precision import Precision
from esrforge.training.state import (
    load_training_state,
    prune_checkpoints,
    save_models,
    save_training_state,
    save_weights,
)


@pytest.fixture
def dirs(tmp_path: Path) -> ExperimentDirs:
    return ExperimentDirs(tmp_path / "experiment")


def payload(step: int) -> dict[str, Any]:
    torch.manual_seed(step)
    net = nn.Conv2d(3, 4, 3)
    optimizer = build_optimizer(net.parameters(), 1e-3, (0.9, 0.99), 0.0)
    scheduler = MultiStepLR(optimizer, [2], 0.5)
    net(torch.randn(1, 3, 5, 5)).mean().backward()
    optimizer.step()
    scheduler.step()
    return {
        "step": step,
        "epoch": 3,
        "networks": {"G": net.state_dict()},
        "optimizers": {"G": optimizer.state_dict()},
        "schedulers": {"G": scheduler.state_dict()},
        "scalers": {"G": Precision(False, False, torch.device("cpu")).grad_scaler().state_dict()},
        "ema": ModelEMA(net, 0.999).state_dict(),
        "sampler": {"seed": 0, "epoch": 3, "position": 7},
        "best": {"psnr": 27.5, "step": None},
    }


def assert_same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


def test_save_models_writes_plain_cpu_state_dicts(dirs: ExperimentDirs) -> None:
    net = nn.Sequential(nn.Conv2d(3, 3, 3)).to(memory_format=torch.channels_last)
    wrapped = {f"module.{k}": v for k, v in net.state_dict().items()}
    paths = save_models(dirs, 5000, {"G": wrapped, "G_ema": net.state_dict()})
    assert [p.name for p in paths] == ["5000_G.pth", "5000_G_ema.pth"]
    for path in paths:
        loaded = torch.load(path, weights_only=True)
        assert loaded.keys() == net.state_dict().keys()
        assert all(v.device.type == "cpu" and v.is_contiguous() for v in loaded.values())
        assert_same(read_state_dict(path), net.state_dict())
    with pytest.raises(ValueError, match="model tag"):
        save_models(dirs, 1, {"best_G": net.state_dict()})
    save_weights(dirs.models / "best_G.pth", wrapped)
    assert_same(read_state_dict(dirs.models / "best_G.pth"), net.state_dict())


def test_training_state_round_trip(dirs: ExperimentDirs) -> None:
    saved = payload(10)
    path = save_training_state(dirs, 10, saved)
    assert path == dirs.training_state / "10.state" and dirs.newest_state() == path
    loaded = load_training_state(path)
    assert_same(loaded, saved)
    net = nn.Conv2d(3, 4, 3)
    optimizer = build_optimizer(net.parameters(), 1e-3, (0.9, 0.99), 0.0)
    scheduler = MultiStepLR(optimizer, [2], 0.5)
    net.load_state_dict(loaded["networks"]["G"])
    optimizer.load_state_dict(loaded["optimizers"]["G"])
    scheduler.load_state_dict(loaded["schedulers"]["G"])
    assert scheduler.state_dict() == saved["schedulers"]["G"]


def test_unstorable_values_are_named(dirs: ExperimentDirs) -> None:
    with pytest.raises(TypeError, match=r"payload\['best'\]\['psnr'\] is float64"):
        save_training_state(dirs, 1, {"best": {"psnr": np.float64(1.0)}})
    with pytest.raises(TypeError, match=r"payload\['epochs'\]\[1\] is object"):
        save_training_state(dirs, 1, {"epochs": [1, object()]})
    assert not dirs.training_state.exists() or not any(dirs.training_state.iterdir())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_state_is_a_one_line_error(dirs: ExperimentDirs, damage: str) -> None:
    path = save_training_state(dirs, 10, payload(10))
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}[damage]
    )
    with pytest.raises(ValueError, match="not a readable training state") as error:
        load_training_state(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert "resumes from the one before" not in str(error.value)
    for step in (4, 8):  # earlier states: the error names the newest of them
        save_training_state(dirs, step, payload(step))
    with pytest.raises(ValueError, match=f"path.resume_state: {dirs.training_state / '8.state'} resumes"):
        load_training_state(path)
    with pytest.raises(FileNotFoundError, match="no such training state"):
        load_training_state(dirs.training_state / "99.state")


def test_interrupted_writes_keep_the_previous_checkpoint(
    dirs: ExperimentDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = payload(10)
    state = save_training_state(dirs, 10, old)
    weights = save_models(dirs, 10, {"G": old["networks"]["G"]})[0]
    real_save = torch.save

    def killed(obj: Any, handle: Any) -> None:
        real_save(obj, handle)
        handle.truncate(handle.tell() // 2)
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", killed)
    for write in (
        lambda: save_training_state(dirs, 10, payload(20)),
        lambda: save_training_state(dirs, 20, payload(20)),
        lambda: save_models(dirs, 10, {"G": payload(20)["networks"]["G"]}),
    ):
        with pytest.raises(KeyboardInterrupt):
            write()
    assert_same(load_training_state(state), old)
    assert_same(torch.load(weights, weights_only=True), old["networks"]["G"])
    assert sorted(p.name for p in dirs.root.rglob("*") if p.is_file()) == ["10.state", "10_G.pth"]
    assert dirs.newest_state() == state


def test_prune_keeps_the_newest_steps_and_foreign_files(dirs: ExperimentDirs) -> None:
    names = [f"{step}_{tag}.pth" for step in (1000, 2000, 3000) for tag in ("G", "G_ema")]
    names += ["500_D.pth", "best_G.pth", "1000_best_G.pth", "G_final.pth", "x_G.pth", "notes.txt"]
    states = ["1000.state", "2000.state", "3000.state", "old.state", ".4000.state.abc.tmp"]
    for name in names:
        (dirs.models / name).parent.mkdir(parents=True, exist_ok=True)
        (dirs.models / name).write_bytes(b"")
    for name in states:
        (dirs.training_state / name).parent.mkdir(parents=True, exist_ok=True)
        (dirs.training_state / name).write_bytes(b"")
    removed = prune_checkpoints(dirs, keep_last=2)
    assert sorted(p.name for p in removed) == ["1000.state", "1000_G.pth", "1000_G_ema.pth"]
    assert sorted(p.name for p in dirs.models.iterdir()) == sorted(
        set(names) - {"1000_G.pth", "1000_G_ema.pth"}
    )
    assert sorted(p.name for p in dirs.training_state.iterdir()) == sorted(set(states) - {"1000.state"})
    assert [p.name for p in prune_checkpoints(dirs, keep_last=1)] != []
    assert dirs.newest_state() == dirs.training_state / "3000.state"
    assert (dirs.models / "3000_G.pth").exists() and (dirs.models / "500_D.pth").exists()
    with pytest.raises(ValueError, match="keep_last"):
        prune_checkpoints(dirs, keep_last=0)


def test_prune_never_deletes_protected_steps(dirs: ExperimentDirs) -> None:
    """The end of a loss phase (100000_G.pth, which the docs say to keep) and listed steps survive."""
    for step in (95000, 100000, 105000, 110000):
        for path in (dirs.models / f"{step}_G.pth", dirs.training_state / f"{step}.state"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    removed = prune_checkpoints(dirs, keep_last=1, protected={0, 100000})
    assert sorted(p.name for p in removed) == ["105000.state", "105000_G.pth", "95000.state", "95000_G.pth"]
    assert sorted(p.name for p in dirs.models.iterdir()) == ["100000_G.pth", "110000_G.pth"]
