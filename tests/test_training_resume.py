"""Exact resume the hard way: runs killed with SIGKILL at random instants, also mid-checkpoint-write,
resumed each time, end bit-identical to an uninterrupted run; every recipe loss and EMA on, and the
Real-ESRGAN recipe with its degradation engine, pair pool and U-Net discriminator."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, compare_runs, tensors_equal, tiny_gan_config, tiny_realesrgan_config, torchrun
from esrforge.cli.common import run_program
from esrforge.cli.train import main

DRIVER = """
import io, os, signal, sys
sys.path.insert(0, {codes!r})
from esrforge.training import state, steps

kill_at = int(os.environ.get("KILL_AT_STEP", "-1"))
kill_in_write = os.environ.get("KILL_IN_STATE_WRITE") == "1"
run = steps.IterationRunner.run

def run_or_die(self, batches, step):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return run(self, batches, step)

save = state._save

def save_half_then_die(obj, path):
    if not path.name.endswith(".state"):
        return save(obj, path)
    buffer = io.BytesIO()
    state.torch.save(obj, buffer)
    def write(handle):
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    state.atomic_write_with(path, write)

steps.IterationRunner.run = run_or_die
if kill_in_write:
    state._save = save_half_then_die
from esrforge.cli.train import run as train
sys.argv = ["train.py", *sys.argv[1:]]
train()
"""

NITER = 12


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["esrgan", "realesrgan"])
def test_runs_killed_at_random_instants_resume_bit_exact(tmp_path, recipe):
    """The straight run loads its data in the training process; the killed launches alternate between a
    loader worker and none, so a resume with another worker count continues exactly too."""
    make_config = tiny_realesrgan_config if recipe == "realesrgan" else tiny_gan_config
    config = make_config(tmp_path, niter=NITER)
    common = ["train.val_freq=4", "logger.use_tb_logger=false"]
    straight_run = ["-opt", str(config), "--set", "name=straight", "datasets.train.n_workers=0", *common]
    assert run_program(lambda: main(straight_run)) == 0
    straight = tmp_path / "experiments" / "straight"

    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(codes=str(REPO / "codes")))
    command = [
        sys.executable,
        str(script),
        "-opt",
        str(config),
        "--set",
        "name=killed",
        "path.resume_state=auto",
    ]
    command += common
    killed = tmp_path / "experiments" / "killed"
    rng = random.Random(recipe)
    workers = itertools.cycle([1, 0])

    def launch(**variables: str) -> subprocess.Popen[str]:
        # The same threads as the straight run: float sums split over other thread counts round differently.
        env = {**os.environ, **variables}
        loading = f"datasets.train.n_workers={next(workers)}"
        return subprocess.Popen([*command, loading], env=env, stderr=subprocess.PIPE, text=True)

    # 1. at the start of a random step after the first state (step 3); 2. halfway through writing the
    # next training state.
    for variables in ({"KILL_AT_STEP": str(rng.randint(4, NITER - 2))}, {"KILL_IN_STATE_WRITE": "1"}):
        process = launch(**variables)
        _, err = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, err[-2000:]
    assert list(killed.glob("training_state/.*.tmp")), "the kill mid-write left no partial state file"
    # 3. twice at a random instant once the resumed run trains (a run that finished first is fine too).
    log = killed / "train.log"
    for _ in range(2):
        resumes = log.read_text().count("resumed from")
        process = launch()
        deadline = time.monotonic() + 120
        while log.read_text().count("resumed from") == resumes and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=300)
        assert process.returncode in (0, -signal.SIGKILL), err[-2000:]
    process = launch()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    assert not list(killed.rglob(".*.tmp"))  # partial files of killed writes are cleared on resume
    assert log.read_text().count("resumed from") == 4  # every launch after the first resumed
    compare_runs(straight, killed, NITER)


@pytest.mark.slow
def test_ema_turned_on_at_resume_starts_from_the_resumed_generator(tmp_path):
    config = tiny_gan_config(tmp_path, niter=3)
    args = ["-opt", str(config), "--set", "path.resume_state=auto", "train.val_freq=0"]
    assert run_program(lambda: main([*args, "train.ema_decay=0"])) == 0
    assert run_program(lambda: main([*args, "train.ema_decay=0.9", "train.niter=4"])) == 0
    models = tmp_path / "experiments" / "run" / "models"
    before = torch.load(models / "3_G.pth", weights_only=True)
    after = torch.load(models / "4_G.pth", weights_only=True)
    ema = torch.load(models / "4_G_ema.pth", weights_only=True)
    for key, value in ema.items():
        expected = before[key] + 0.1 * (after[key] - before[key])
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=key)


DDP_DRAWS = """
import json, os, sys
sys.path.insert(0, {codes!r})
from esrforge.losses import noise, translational
from esrforge.training import steps

draws, current = {{}}, {{"step": -1}}
run, uniform, randint = steps.IterationRunner.run, noise.uniform, translational.randint

def run_recorded(self, batches, step):
    current["step"] = step
    return run(self, batches, step)

def uniform_recorded(shape, like, generators):
    value = uniform(shape, like, generators)
    draws.setdefault(str(current["step"]), []).append(round(float(value.sum()), 6))
    return value

def randint_recorded(high, generators, size=()):
    value = randint(high, generators, size)
    draws.setdefault(str(current["step"]), []).append(value.tolist())
    return value

steps.IterationRunner.run = run_recorded
noise.uniform, translational.randint = uniform_recorded, randint_recorded
from esrforge.cli.train import run as train
sys.argv = ["train.py", *sys.argv[1:]]
try:
    train()
finally:
    out = os.path.join(os.environ["DRAWS_DIR"], f"rank{{os.environ['RANK']}}.json")
    with open(out, "w") as handle:
        json.dump(draws, handle)
"""


@pytest.mark.slow
def test_each_rank_draws_after_a_resume_what_an_uninterrupted_run_draws(tmp_path):
    """2 processes (gloo): D input noise and translational corners per rank, resumed at step 2 of 4."""
    config = tiny_gan_config(tmp_path, niter=4)
    script = tmp_path / "draws.py"
    script.write_text(DDP_DRAWS.format(codes=str(REPO / "codes")))

    def train(name: str, niter: int) -> dict[int, dict[str, list[object]]]:
        folder = tmp_path / f"draws_{name}_{niter}"
        folder.mkdir()
        args = ["-opt", str(config), "--set", f"name={name}", f"train.niter={niter}", "train.val_freq=0"]
        torchrun(script, *args, "path.resume_state=auto", env={"DRAWS_DIR": str(folder)})
        return {rank: json.loads((folder / f"rank{rank}.json").read_text()) for rank in (0, 1)}

    straight = train("straight", 4)
    train("resumed", 2)
    resumed = train("resumed", 4)
    assert "resumed from" in (tmp_path / "experiments" / "resumed" / "train.log").read_text()
    for rank in (0, 1):
        for step in ("2", "3"):  # the GAN phase starts at step 2: noise and corners are drawn
            assert straight[rank][step], (rank, step)
            assert resumed[rank][step] == straight[rank][step], (rank, step)
    assert straight[0]["3"] != straight[1]["3"]  # each rank draws its own noise


def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_auto(tmp_path):
    config = tiny_gan_config(tmp_path, niter=2)
    args = ["-opt", str(config), "--set", "train.val_freq=0", "logger.save_checkpoint_freq=100"]
    folder = tmp_path / "experiments" / "run"
    (folder / "training_state").mkdir(parents=True)
    (folder / "train.log").write_text("INFO a run that was killed at step 1\n")
    assert run_program(lambda: main([*args, "path.resume_state=auto"])) == 0
    log = (folder / "train.log").read_text()
    assert "killed at step 1" in log and "training starts at the beginning" in log
    assert (folder / "models" / "2_G.pth").is_file()
    # Without auto, a folder a run trained in is refused; one whose start failed (its log and config
    # copies, empty folders) is reused.
    assert run_program(lambda: main([*args, "path.resume_state=~"])) == 2
    for path in folder.iterdir():
        if path.name != "train.log" and not path.name.startswith("config_"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert run_program(lambda: main([*args, "path.resume_state=~"])) == 0
    assert "killed at step 1" in (folder / "train.log").read_text()


@pytest.mark.slow
def test_the_log_tells_the_run_and_a_finished_run_is_not_redone(tmp_path):
    config = tiny_gan_config(tmp_path, niter=6)
    args = ["-opt", str(config), "--set", "path.resume_state=auto"]
    assert run_program(lambda: main([*args, "train.niter=3"])) == 0
    assert run_program(lambda: main(args)) == 0
    run = tmp_path / "experiments" / "run"
    assert (run / "models" / "best_psnr_y_G.pth").is_file() and (
        run / "models" / "best_ssim_y_G.pth"
    ).is_file()
    assert list((run / "val_images" / "data" / "3").glob("*.png")) and list((run / "tb_logger").iterdir())
    log = (run / "train.log").read_text()
    # The log opens with what is trained, on what, and the schedule; a resumed run starts at its step.
    assert re.search(
        r"experiment run in .*: G [\d,]+ parameters, D [\d,]+ parameters on cpu \(float32\), torch.compile off",
        log,
    )
    assert "3 training images, batch 2 per process; steps 0 to 3" in log and "steps 3 to 6" in log
    assert "steps 2-5: pixel, perceptual, translational, gan, gradient_penalty" in log
    assert re.search(
        r"finished 6 steps: .*6_G\.pth; best validation psnr_y [\d.]+ on data at step [36] \(.*best_psnr_y_G\.pth\)",
        log,
    )
    # Run again when complete: nothing to train, and the last checkpoint is not rewritten.
    written = (run / "training_state" / "6.state").stat().st_mtime_ns
    assert run_program(lambda: main(args)) == 0
    assert (run / "training_state" / "6.state").stat().st_mtime_ns == written
    assert "the run is at step 6, train.niter is 6: nothing to train" in (run / "train.log").read_text()


@pytest.mark.slow
def test_each_rank_gets_its_own_pair_pool_back_when_resumed(tmp_path):
    """2 processes (gloo), Real-ESRGAN recipe with a pool: resumed at step 4 of 8, the run ends bit-identical."""
    config = tiny_realesrgan_config(tmp_path, niter=8)

    def train(name: str, niter: int) -> Path:
        args = [
            "-opt",
            str(config),
            "--set",
            f"name={name}",
            f"train.niter={niter}",
            "path.resume_state=auto",
        ]
        torchrun(REPO / "codes" / "train.py", *args, "train.val_freq=0", "logger.save_checkpoint_freq=4")
        return tmp_path / "experiments" / name

    straight = train("straight", 8)
    train("resumed", 4)
    resumed = train("resumed", 8)
    assert "resumed from" in (resumed / "train.log").read_text()
    a = torch.load(straight / "training_state" / "8.state", weights_only=True)
    b = torch.load(resumed / "training_state" / "8.state", weights_only=True)
    assert len(a["pools"]) == 2 and not tensors_equal(a["pools"][0], a["pools"][1])
    for key in ("networks", "optimizers", "pools"):
        assert tensors_equal(a[key], b[key]), key


SIGNAL_ONE_RANK = """
import os, signal, sys
sys.path.insert(0, {codes!r})
from esrforge.training import steps

run = steps.IterationRunner.run

def run_and_signal(self, batches, step):
    result = run(self, batches, step)
    if step == 2 and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGTERM)  # as if only this process were told to stop
    return result

steps.IterationRunner.run = run_and_signal
from esrforge.cli.train import run as train
sys.argv = ["train.py", *sys.argv[1:]]
train()
"""


@pytest.mark.slow
def test_a_signal_to_one_process_stops_all_at_the_same_step_with_a_checkpoint(tmp_path):
    config = tiny_realesrgan_config(tmp_path, niter=8)
    script = tmp_path / "signal_one.py"
    script.write_text(SIGNAL_ONE_RANK.format(codes=str(REPO / "codes")))
    torchrun(script, "-opt", str(config), "--set", "train.val_freq=0", "logger.save_checkpoint_freq=100")
    run = tmp_path / "experiments" / "run"
    # signalled after step 2 (3 steps done), the processes agree one step later: no step waits for the other
    assert sorted(p.name for p in (run / "training_state").iterdir()) == ["4.state"]
    assert len(torch.load(run / "training_state" / "4.state", weights_only=True)["pools"]) == 2
