"""train.py end to end on the CPU: signals, unusable data, out of memory, non-finite losses, torchrun, precisions."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import AUTO_PRECISION, CUDA, REPO, force_autocast, tensors_equal, tiny_gan_config, torchrun
from esrforge.cli.common import run_program
from esrforge.cli.train import main
from esrforge.data.datasets import HRPatchDataset
from esrforge.data.imageio import write_image
from esrforge.inference.scoring import val_loader
from esrforge.losses.pixel import PixelLoss
from esrforge.networks import RRDBNet, RRDBNetOptions
from esrforge.options.loader import load_config
from esrforge.training.distributed import DistributedContext
from esrforge.training.experiment import ExperimentDirs
from esrforge.training.reporting import Reporter
from esrforge.training.steps import IterationRunner
from esrforge.training.validation import Validator, ValSet


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_and_exits_cleanly(tmp_path):
    """As torchrun, Slurm or systemd stop a job: the loader workers get the SIGTERM too."""
    config = tiny_gan_config(tmp_path, niter=10_000)
    process = subprocess.Popen(
        [sys.executable, str(REPO / "codes" / "train.py"), "-opt", str(config), "--set", "train.val_freq=0"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    states = tmp_path / "experiments" / "run" / "training_state"
    deadline = time.monotonic() + 240
    while not (states.is_dir() and list(states.glob("*.state"))) and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    steps = sorted(int(p.stem) for p in states.glob("*.state"))
    assert steps and "SIGTERM received" in err
    tail = err[err.index("SIGTERM received") :]
    assert f"saved checkpoint at step {steps[-1]}" in tail  # the state of the step it stopped at


def test_images_that_vanish_mid_run_keep_the_steps_done_and_end_in_one_line(tmp_path, monkeypatch, caplog):
    config = tiny_gan_config(tmp_path)
    loads = {"n": 0}
    original = HRPatchDataset._load

    def load(self, index):
        loads["n"] += 1
        return original(self, index) if loads["n"] <= 4 else None  # batch 2: two steps, then nothing reads

    monkeypatch.setattr(HRPatchDataset, "_load", load)
    overrides = ["datasets.train.n_workers=0", "logger.save_checkpoint_freq=100", "train.val_freq=100"]
    assert run_program(lambda: main(["-opt", str(config), "--set", *overrides])) == 2
    assert "draws in a row found no usable image" in caplog.text
    states = tmp_path / "experiments" / "run" / "training_state"
    assert [p.name for p in states.iterdir()] == ["2.state"]


def test_a_bad_validation_image_keeps_the_steps_done_and_ends_in_one_line(tmp_path, logs):
    config = tiny_gan_config(tmp_path, niter=6)
    write_image(tmp_path / "val" / "tiny.png", np.zeros((3, 3, 3), np.uint8))  # smaller than the scale
    overrides = [f"datasets.val.dataroot={tmp_path / 'val'}", "train.val_freq=2"]
    overrides += ["logger.save_checkpoint_freq=100", "path.resume_state=auto"]
    assert run_program(lambda: main(["-opt", str(config), "--set", *overrides])) == 1
    errors = [r.getMessage() for r in logs.records if r.levelname == "ERROR"]
    assert errors == [
        f"validation at step 2 failed: {tmp_path / 'val' / 'tiny.png'}: 3x3 is smaller than the scale 4; the "
        "checkpoint of step 2 is saved: mend datasets.val (or set train.val_freq: 0) and run again to resume"
    ]
    run = tmp_path / "experiments" / "run"
    assert [p.name for p in (run / "training_state").iterdir()] == ["2.state"]
    write_image(tmp_path / "val" / "tiny.png", np.zeros((8, 8, 3), np.uint8))  # no room for the crop border
    assert run_program(lambda: main(["-opt", str(config), "--set", *overrides])) == 1
    assert (
        "validation at step 4 failed: validation val: tiny: psnr_y: crop_border 4 does not fit" in logs.text
    )
    write_image(tmp_path / "val" / "tiny.png", np.zeros((32, 32, 3), np.uint8))
    assert run_program(lambda: main(["-opt", str(config), "--set", *overrides])) == 0
    assert "resumed from" in logs.text and (run / "models" / "6_G.pth").is_file()


@pytest.mark.slow
def test_a_bad_validation_image_on_one_process_stops_both_after_saving(tmp_path):
    """Each process scores its share of the images: the one that meets the bad image must not leave the
    other waiting in the sum of the scores, and both save the step's checkpoint together."""
    config = tiny_gan_config(tmp_path, niter=4)
    write_image(tmp_path / "val" / "a.png", np.zeros((32, 32, 3), np.uint8))  # process 0's share
    write_image(tmp_path / "val" / "b.png", np.zeros((3, 3, 3), np.uint8))  # process 1's
    overrides = [
        f"datasets.val.dataroot={tmp_path / 'val'}",
        "datasets.val.max_images=2",
        "train.val_freq=2",
        "logger.save_checkpoint_freq=100",
    ]
    result = torchrun(REPO / "codes" / "train.py", "-opt", str(config), "--set", *overrides, check=False)
    assert result.returncode != 0
    assert f"validation at step 2 failed: {tmp_path / 'val' / 'b.png'}: 3x3 is smaller" in result.stderr
    assert "validation at step 2 failed: on another process (its log names the image)" in result.stderr
    states = tmp_path / "experiments" / "run" / "training_state"
    assert [p.name for p in states.iterdir()] == ["2.state"]


def test_out_of_memory_stops_with_advice(tmp_path, monkeypatch, caplog):
    config = tiny_gan_config(tmp_path)
    original = IterationRunner.run

    def run(self, batches, step):
        if step == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, batches, step)

    monkeypatch.setattr(IterationRunner, "run", run)
    assert run_program(lambda: main(["-opt", str(config)])) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "memory at step 2 with datasets.train.batch_size 2" in errors[0], errors
    # on the CPU, whose fp16 runs in float32: bf16, in place of the tiny config's fp32: true
    assert "set bf16: true in place of fp32: true" in errors[0] and "train.accumulate_steps: 2" in errors[0]
    assert "Traceback" not in caplog.text


def test_unusable_data_in_a_worker_is_one_line(tmp_path, caplog):
    config = tiny_gan_config(tmp_path)
    for image in (tmp_path / "data").iterdir():
        image.write_bytes(b"not an image")
    assert run_program(lambda: main(["-opt", str(config)])) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("HRPatchDataset: 50 draws in a row"), errors
    assert "Traceback" not in errors[0] and "\n" not in errors[0]


def test_nonfinite_losses_stop_training_and_keep_the_checkpoint(tmp_path, monkeypatch):
    config = tiny_gan_config(tmp_path, niter=20)
    original = PixelLoss.forward

    def forward(self, ctx):
        value = original(self, ctx)
        return value * float("nan") if os.environ.get("NAN_FROM_NOW") else value

    monkeypatch.setattr(PixelLoss, "forward", forward)
    calls = {"n": 0}
    from esrforge.training import steps

    run = steps.IterationRunner.run

    def counted(self, batches, step):
        calls["n"] += 1
        if step == 4:
            monkeypatch.setenv("NAN_FROM_NOW", "1")
        return run(self, batches, step)

    monkeypatch.setattr(steps.IterationRunner, "run", counted)
    # logging every step: the guard reads its flags when the loop logs or saves
    overrides = [
        "train.max_nonfinite_steps=3",
        "train.val_freq=0",
        "train.losses[1].after=100",
        "logger.print_freq=1",
    ]
    assert run_program(lambda: main(["-opt", str(config), "--set", *overrides])) == 1
    states = tmp_path / "experiments" / "run" / "training_state"
    assert sorted(p.name for p in states.iterdir()) == ["3.state", "6.state"]
    assert calls["n"] == 7  # steps 0-3 fine, 4-6 non-finite, then it stops
    weights = torch.load(tmp_path / "experiments" / "run" / "models" / "6_G.pth", weights_only=True)
    assert all(
        bool(torch.isfinite(t).all()) for t in weights.values()
    )  # skipped steps never reach the weights


DDP_WORKER = """
import os, sys
sys.path.insert(0, {codes!r})
import torch
from esrforge.training import trainer
original = trainer.Trainer.run
def run(self):
    original(self)
    rank = int(os.environ["RANK"])
    torch.save(self.nets.generator.net.state_dict(), os.path.join({out!r}, f"G_rank{{rank}}.pt"))
    torch.save(self.nets.discriminator.net.state_dict(), os.path.join({out!r}, f"D_rank{{rank}}.pt"))
    with open(os.path.join({out!r}, f"val_rank{{rank}}.txt"), "w") as f:
        f.write(str(len(self.validator.sets[0].loader)))
trainer.Trainer.run = run
from esrforge.cli.train import run as train
sys.argv = ["train.py", "-opt", {config!r}, "--set", "train.val_freq=4", "datasets.val.max_images=3"]
train()
"""


@pytest.mark.slow
def test_two_process_gloo_run_keeps_ranks_identical(tmp_path):
    config = tiny_gan_config(tmp_path, niter=4)
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER.format(codes=str(REPO / "codes"), out=str(tmp_path), config=str(config)))
    result = torchrun(script)
    for net in ("G", "D"):
        a = torch.load(tmp_path / f"{net}_rank0.pt", weights_only=True)
        b = torch.load(tmp_path / f"{net}_rank1.pt", weights_only=True)
        assert tensors_equal(a, b), net
    models = tmp_path / "experiments" / "run" / "models"
    written = ["3_G.pth", "4_G.pth", "best_psnr_y_G.pth", "best_ssim_y_G.pth"]
    assert sorted(p.name for p in models.glob("*_G.pth")) == written  # by rank 0 alone
    log = (tmp_path / "experiments/run/train.log").read_text()
    assert "process 1 of 2" in result.stderr or "process 1 of 2" in log
    # Validation is split over the ranks (2 images and 1); the reduced means equal one process's.
    assert [(tmp_path / f"val_rank{r}.txt").read_text() for r in (0, 1)] == ["2", "1"]
    logged = re.search(r"validation at step 4 on data: psnr_y ([\d.]+), ssim_y ([\d.]+)", log)
    assert logged is not None, log
    single = load_config(config, ["datasets.val.max_images=3"])
    assert single.datasets.val is not None
    model = RRDBNet(RRDBNetOptions(nf=8, nb=1, gc=4))
    model.load_state_dict(torch.load(models / "4_G_ema.pth", weights_only=True))
    val = single.datasets.val_sets[0]
    dirs = ExperimentDirs(tmp_path / "single")
    validator = Validator([ValSet(val, val_loader(val, 4))], single, dirs, DistributedContext())
    scores = validator.run(model, 4, Reporter(None, False, 0, 4))["data"]
    assert abs(scores["psnr_y"] - float(logged.group(1))) < 1e-3
    assert abs(scores["ssim_y"] - float(logged.group(2))) < 1e-4
    assert len(list((tmp_path / "experiments/run/val_images/data/4").glob("*.png"))) == 3  # from both ranks


def test_a_cpu_with_bf16_instructions_trains_in_bf16_and_validates_in_float32(tmp_path, monkeypatch, caplog):
    """The automatic choice: training steps autocast to bf16, validation runs in float32, and resuming with
    fp32: true warns that the state was trained in bf16."""
    monkeypatch.setattr("esrforge.training.precision.cpu_has_bf16", lambda: True)
    outputs: list[tuple[bool, torch.dtype]] = []
    forward = RRDBNet.forward

    def recorded(self: RRDBNet, x: torch.Tensor) -> torch.Tensor:
        out = forward(self, x)
        outputs.append((torch.is_grad_enabled(), out.dtype))
        return out

    monkeypatch.setattr(RRDBNet, "forward", recorded)
    config = tiny_gan_config(tmp_path, niter=2)
    args = ["-opt", str(config), "--set", "train.val_freq=2", "path.resume_state=auto"]
    assert run_program(lambda: main([*args, AUTO_PRECISION])) == 0
    assert "(bf16: automatic on this CPU with AVX-512-BF16/AMX; fp32: true keeps float32)" in caplog.text
    assert {dtype for grad, dtype in outputs if grad} == {torch.bfloat16}  # the training steps
    assert {dtype for grad, dtype in outputs if not grad} == {torch.float32}  # validation
    assert "validation at step 2" in caplog.text
    caplog.clear()
    outputs.clear()
    assert run_program(lambda: main([*args, "train.niter=3"])) == 0  # the tiny config's fp32: true
    assert "on cpu (float32)" in caplog.text
    assert re.search(r"2\.state was trained in bf16; this run continues in float32", caplog.text)
    assert {dtype for _, dtype in outputs} == {torch.float32}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_paths_run_under_cpu_autocast(tmp_path, monkeypatch, precision):
    """The fp16/bf16 code paths (penalised float32 passes inside fp16 runs too), on CPU autocast."""
    force_autocast(monkeypatch, torch.float16 if precision == "fp16" else torch.bfloat16)
    config = tiny_gan_config(tmp_path, niter=3)
    assert run_program(lambda: main(["-opt", str(config), "--set", AUTO_PRECISION, f"{precision}=true"])) == 0
    weights = torch.load(tmp_path / "experiments" / "run" / "models" / "3_G.pth", weights_only=True)
    assert all(t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in weights.values())


@CUDA
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision_trains_and_resumes(tmp_path, precision):
    """Every loss of the recipe under autocast on CUDA; stop at step 3, resume to 6 from the saved state."""
    config = tiny_gan_config(tmp_path)
    args = [
        "-opt",
        str(config),
        "--set",
        "gpu_ids=[0]",
        AUTO_PRECISION,
        f"{precision}=true",
        "path.resume_state=auto",
    ]
    assert run_program(lambda: main([*args, "train.niter=3"])) == 0
    assert run_program(lambda: main([*args, "train.niter=6"])) == 0
    run_dir = tmp_path / "experiments" / "run"
    weights = torch.load(run_dir / "models" / "6_G.pth", weights_only=True)
    assert all(t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in weights.values())
    state = torch.load(run_dir / "training_state" / "6.state", weights_only=True)
    assert state["step"] == 6
    scaler = state["scalers"]["G"]
    assert ("scale" in scaler) == (precision == "fp16")  # a gradient scaler only for float16
