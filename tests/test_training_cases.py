"""Corner cases that cost long runs: GAN phase from a saved PSNR model, non-finite gradients, penalties
under fp16, a disk that fills up while a checkpoint is written."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from conftest import AUTO_PRECISION, force_autocast, tiny_gan_config
from esrforge import fileio
from esrforge.cli.common import run_program
from esrforge.cli.train import main
from esrforge.losses import penalty
from esrforge.losses.pixel import PixelLoss
from esrforge.training import state, trainer
from esrforge.training.steps import IterationRunner, loss_names

Record = tuple[int, tuple[str, ...], float, float]


def record_steps(monkeypatch: pytest.MonkeyPatch) -> list[Record]:
    """(step, active losses, lr_G, lr_D) of every step the trainer runs from now on."""
    records: list[Record] = []
    run = IterationRunner.run

    def recorded(self: IterationRunner, batches: list[tuple[torch.Tensor, torch.Tensor]], step: int):
        result = run(self, batches, step)
        names = set(loss_names(self.losses))
        active = tuple(sorted(k for k in result.values if k in names or k.removeprefix("d_") in names))
        assert self.nets.discriminator is not None
        rates = [t.optimizer.param_groups[0]["lr"] for t in (self.nets.generator, self.nets.discriminator)]
        records.append((step, active, rates[0], rates[1]))
        return result

    monkeypatch.setattr(IterationRunner, "run", recorded)
    return records


def test_gan_phase_from_a_saved_psnr_model_keeps_the_continuous_schedule(tmp_path, monkeypatch):
    """train.start_step: losses, both learning rates and niter as in the continuous run from that step."""
    config = tiny_gan_config(tmp_path, niter=8)
    windows = [f"train.losses[{i}].after=4" for i in range(1, 5)]
    common = ["-opt", str(config), "--set", "train.val_freq=0", "train.lr_steps=[5, 7]", *windows]
    continuous = record_steps(monkeypatch)
    keep = ["logger.save_checkpoint_freq=2", "logger.keep_last=1"]
    assert run_program(lambda: main([*common, "name=continuous", *keep])) == 0
    models = tmp_path / "experiments" / "continuous" / "models"
    # keep_last deletes old checkpoints but never the one that ends the L1 phase (step 4 here)
    assert sorted(p.name for p in models.glob("*_G.pth")) == ["4_G.pth", "8_G.pth"]
    gan = record_steps(monkeypatch)
    start = ["name=gan", "train.start_step=4", f"path.pretrain_model_generator={models / '4_G.pth'}"]
    assert run_program(lambda: main([*common, *start])) == 0
    assert [r[0] for r in gan] == [4, 5, 6, 7]
    assert gan == continuous[4:8]  # (continuous also saw the GAN run: the wrappers nest)
    assert continuous[3][1] == ("pixel",) and "d_gan" in gan[0][1] and "translational" in gan[0][1]
    log = (tmp_path / "experiments" / "gan" / "train.log").read_text()
    assert "starting at step 4 of the schedule with fresh optimisers" in log
    assert (tmp_path / "experiments" / "gan" / "models" / "8_G.pth").is_file()


class NanGradient(torch.autograd.Function):
    """Identity forward, NaN gradient: a finite loss whose backward is not."""

    @staticmethod
    def forward(ctx: object, value: torch.Tensor) -> torch.Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("nan")


def test_nonfinite_gradients_of_a_finite_loss_skip_the_step_and_stop(tmp_path, monkeypatch, caplog):
    config = tiny_gan_config(tmp_path, niter=20)
    original = PixelLoss.forward
    steps = record_steps(monkeypatch)

    def forward(self: PixelLoss, ctx):
        value = original(self, ctx)
        return NanGradient.apply(value) if len(steps) >= 4 else value

    monkeypatch.setattr(PixelLoss, "forward", forward)
    # logging every step: the guard reads its flags when the loop logs or saves
    overrides = [
        "train.max_nonfinite_steps=3",
        "train.val_freq=0",
        "train.losses[1].after=100",
        "logger.print_freq=1",
    ]
    assert run_program(lambda: main(["-opt", str(config), "--set", *overrides])) == 1
    run = tmp_path / "experiments" / "run"
    assert sorted(p.name for p in (run / "training_state").iterdir()) == ["3.state", "6.state"]
    assert len(steps) == 7  # steps 0-3 fine, 4-6 with NaN gradients, then it stops
    assert "non-finite generator loss or gradient, step skipped" in caplog.text
    for name in ("6_G.pth", "6_D.pth"):
        weights = torch.load(run / "models" / name, weights_only=True)
        assert all(bool(torch.isfinite(t).all()) for t in weights.values()), name


def test_every_input_gradient_penalty_runs_in_float32_under_fp16(tmp_path, monkeypatch):
    """wgan_gp differentiates through D's input like the real-sample penalties: no fp16 double backward."""
    force_autocast(monkeypatch, torch.float16)
    dtypes: list[torch.dtype] = []
    norms = penalty.gradient_norms

    def recorded(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        dtypes.append(outputs.dtype)
        return norms(outputs, inputs)

    monkeypatch.setattr(penalty, "gradient_norms", recorded)
    config = tiny_gan_config(tmp_path, niter=3)
    overrides = [AUTO_PRECISION, "fp16=true", "train.val_freq=0", "train.losses[4].variant=wgan_gp"]
    assert run_program(lambda: main(["-opt", str(config), "--set", *overrides])) == 0
    assert dtypes and set(dtypes) == {torch.float32}


# --- a full disk ------------------------------------------------------------------------------


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def fill_at_second_save(monkeypatch: pytest.MonkeyPatch, fill: Callable[[], None]) -> None:
    """Call ``fill()`` just before the trainer's second checkpoint."""
    save = trainer.Trainer.save
    calls = {"n": 0}

    def filling(self: trainer.Trainer) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            fill()
        save(self)

    monkeypatch.setattr(trainer.Trainer, "save", filling)


def test_a_checkpoint_write_that_hits_a_full_disk_is_one_line(tmp_path, monkeypatch, caplog):
    """A patched writer fails as torch's does on a full disk; the previous checkpoint is named as kept."""
    config = tiny_gan_config(tmp_path, niter=6)
    torch_save = torch.save

    def full(obj: object, handle: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1594816 vs 1594704")

    def fill() -> None:
        monkeypatch.setattr(state.torch, "save", full)
        monkeypatch.setattr(fileio, "free_bytes", lambda folder: 4096)

    fill_at_second_save(monkeypatch, fill)
    args = ["-opt", str(config), "--set", "train.val_freq=0", "path.resume_state=auto"]
    assert run_program(lambda: main(args)) == 1
    run = tmp_path / "experiments" / "run"
    (line,) = error_lines(caplog)
    assert "cannot save the checkpoint of step 6" in line and "no space left on device writing" in line
    assert f"kept: {run / 'training_state' / '3.state'} (step 3)" in line and "Traceback" not in caplog.text
    assert sorted(p.name for p in (run / "training_state").iterdir()) == ["3.state"]
    monkeypatch.setattr(state.torch, "save", torch_save)
    monkeypatch.undo()  # space freed: the run resumes from step 3 and finishes
    assert run_program(lambda: main(args)) == 0
    assert (run / "training_state" / "6.state").is_file()


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``folder`` (skips the test where mounting is not allowed)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=False
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("checked", [True, False], ids=["free-space-check", "write-fails"])
def test_a_small_filled_filesystem_stops_training_in_one_line(tmp_path, monkeypatch, caplog, checked):
    config = tiny_gan_config(tmp_path, niter=6)
    with small_disk(tmp_path / "disk", "32m") as disk:
        filler = disk / "filler"

        def fill() -> None:
            free = fileio.free_bytes(disk)
            filler.write_bytes(b"\0" * max(free - (16 << 10 if checked else 200 << 10), 0))
            if not checked:  # let the write start and hit the full disk
                monkeypatch.setattr(trainer, "free_bytes", lambda folder: 1 << 40)

        fill_at_second_save(monkeypatch, fill)
        args = ["-opt", str(config), "--set", "train.val_freq=0", f"path.experiments_root={disk}"]
        assert run_program(lambda: main([*args, "path.resume_state=auto"])) == 1
        (line,) = error_lines(caplog)
        assert "cannot save the checkpoint of step 6" in line and "(step 3)" in line, line
        assert ("MiB are free" in line) == checked and ("no space left on device" in line) != checked
        assert "Traceback" not in caplog.text
        states = disk / "run" / "training_state"
        assert sorted(p.name for p in states.iterdir()) == ["3.state"]  # no partial file left
        filler.unlink()
        monkeypatch.undo()
        assert run_program(lambda: main([*args, "path.resume_state=auto"])) == 0
        assert (states / "6.state").is_file()
