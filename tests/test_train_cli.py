"""train.py as a user runs it: --dry-run, one-line errors with exit code 2, the experiment folder."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from esrforge.cli.common import run_program
from esrforge.cli.train import main
from esrforge.data.imageio import write_image
from esrforge.fields.errors import OptionError
from esrforge.losses.schedule import phases
from esrforge.options.loader import load_config
from esrforge.training.experiment import prepare_experiment, resume_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A tiny valid GAN config with two 48x48 training images."""
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(data / f"img{i}.png", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    raw = {
        "name": "tiny",
        "gpu_ids": [],
        "datasets": {
            "train": {"type": "HRPatchDataset", "dataroot": "data", "target_size": 32, "batch_size": 2},
            "val": {"type": "FullImageDataset", "dataroot": "data"},
        },
        "networks": {
            "generator": {"type": "RRDBNet", "nf": 8, "nb": 1, "gc": 4},
            "discriminator": {"type": "VGGDiscriminatorGN", "nf": 8, "image_size": 32},
        },
        "path": {"experiments_root": "experiments"},
        "train": {
            "niter": 10,
            "losses": [
                {"type": "pixel", "weight": 0.05},
                {"type": "perceptual", "pretrained": False, "after": 5},
                {"type": "gan", "weight": 0.02, "after": 5},
                {"type": "gradient_penalty", "after": 5},
            ],
        },
    }
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_dry_run_builds_and_summarises(config_file, caplog):
    caplog.set_level("INFO", logger="esrforge")
    assert run_program(lambda: main(["-opt", str(config_file), "--dry-run"])) == 0
    text = caplog.text
    assert "generator RRDBNet" in text and "discriminator VGGDiscriminatorGN" in text
    assert "steps 0-4: pixel" in text and "steps 5-9: pixel, perceptual, gan, gradient_penalty" in text
    assert "dataset train (HRPatchDataset): 2 images" in text
    assert "would train on cpu (" in text and "torch.compile off" in text
    assert not (config_file.parent / "experiments").exists()  # a dry run writes nothing


def test_dry_run_shows_the_compile_choice(config_file, caplog):
    caplog.set_level("INFO", logger="esrforge")
    overrides = ["--set", "train.compile=true", "train.cuda_graphs=true"]
    assert run_program(lambda: main(["-opt", str(config_file), "--dry-run", *overrides])) == 0
    assert "torch.compile on" in caplog.text and "torch.compile off" not in caplog.text
    assert "train.cuda_graphs: CUDA graphs are for CUDA; this run on cpu goes without them" in caplog.text


def test_overrides_reach_the_built_networks(config_file, caplog):
    caplog.set_level("INFO", logger="esrforge")
    assert (
        run_program(lambda: main(["-opt", str(config_file), "--dry-run", "--set", "networks.generator.nb=2"]))
        == 0
    )
    nb1 = load_config(config_file).networks.generator
    nb2 = load_config(config_file, ["networks.generator.nb=2"]).networks.generator
    assert nb1.nb == 1 and nb2.nb == 2


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "codes" / "train.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_config_is_one_line_exit_2(config_file):
    text = config_file.read_text().replace("nb: 1", "nbb: 1")
    config_file.write_text(text)
    result = run_script("-opt", str(config_file), "--dry-run")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(config_file) in lines[0] and "networks.generator.nbb" in lines[0] and "'nb'" in lines[0]


def test_dry_run_script_runs_without_installation(config_file):
    result = run_script("-opt", str(config_file), "--dry-run", "--set", "train.niter=20")
    assert result.returncode == 0, result.stderr
    assert "steps 5-19" in result.stderr


def test_dry_run_tells_where_a_start_step_starts(config_file, caplog):
    caplog.set_level("INFO", logger="esrforge")
    args = ["-opt", str(config_file), "--dry-run", "--set", "train.niter=20", "train.start_step=5"]
    assert run_program(lambda: main(args)) == 0
    assert "would start at step 5 of the schedule" in caplog.text


def test_experiment_folder_is_never_overwritten(config_file):
    config = load_config(config_file)
    dirs = prepare_experiment(config, resuming=False)
    for sub in ("models", "training_state", "val_images", "tb_logger"):
        assert (dirs.root / sub).is_dir()
    frozen = list(dirs.root.glob("config_*.yml"))
    assert len(frozen) == 1 and load_config(frozen[0]) == config
    prepare_experiment(config, resuming=False)  # nothing saved yet (a start that failed): reused
    for record in (dirs.tb_logger / "events", dirs.history, dirs.models / "10_G.pth"):
        record.write_bytes(b"")  # a run that trained here, even one that saved no checkpoint
        with pytest.raises(OptionError, match="already exists"):
            prepare_experiment(config, resuming=False)
        record.unlink()
    (dirs.models / "10_G.pth").write_bytes(b"")
    prepare_experiment(config, resuming=False, archive=True)
    assert len(list(dirs.root.parent.glob("tiny_archived_*"))) == 1


def test_archive_starts_afresh_also_with_resume_state_auto(config_file, caplog):
    caplog.set_level("INFO", logger="esrforge")
    args = ["-opt", str(config_file), "--set", "train.niter=2", "path.resume_state=auto"]
    assert run_program(lambda: main(args)) == 0
    assert (
        run_program(lambda: main([*args[:-2], "train.niter=3", "path.resume_state=auto", "--archive"])) == 0
    )
    assert "resumed from" not in caplog.text
    experiments = config_file.parent / "experiments"
    archived = list(experiments.glob("tiny_archived_*"))
    assert len(archived) == 1 and (archived[0] / "models" / "2_G.pth").is_file()
    assert sorted(p.name for p in (experiments / "tiny" / "training_state").iterdir()) == ["3.state"]
    state = experiments / "tiny" / "training_state" / "3.state"
    assert run_program(lambda: main([*args[:-1], f"path.resume_state={state}", "--archive"])) == 2
    assert "path.resume_state: expected null or auto with --archive, which starts afresh" in caplog.text


def test_resume_auto_picks_newest_complete_state(config_file):
    config = load_config(config_file, ["path.resume_state=auto"])
    assert resume_path(config) is None
    dirs = prepare_experiment(config, resuming=False)
    for name in ("1000.state", "20000.state", "3000.state", ".30000.state.tmp"):
        (dirs.training_state / name).write_bytes(b"")
    assert resume_path(config) == dirs.training_state / "20000.state"


def test_phases_of_the_recipe():
    config = load_config(
        REPO / "options" / "train_div2k_esrgan.yml",
        [f"datasets.train.dataroot={REPO}", f"datasets.val.dataroot={REPO}"],
    )
    assert config.train is not None
    table = phases(config.train.losses, config.train.niter)
    assert [(p.start, p.end) for p in table] == [(0, 100000), (100000, 500000)]
    assert table[0].active == (0,) and table[1].active == (0, 1, 2, 3, 4)


def test_a_resume_that_does_not_fit_the_config_is_one_line_and_optimiser_settings_follow_it(
    config_file, caplog
):
    caplog.set_level("INFO", logger="esrforge")
    args = ["-opt", str(config_file), "--set", "path.resume_state=auto"]
    assert run_program(lambda: main([*args, "train.niter=2"])) == 0
    run = config_file.parent / "experiments" / "tiny"
    state = run / "training_state" / "2.state"
    for dry in ([], ["--dry-run"]):  # a dry run loads the state as the run would
        caplog.clear()
        argv = [*args, "train.niter=3", "networks.generator.nb=2", *dry]
        assert run_program(partial(main, argv)) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and errors[0].startswith(f"{state}: checkpoint does not fit RRDBNet: "), (
            errors
        )
        assert "missing keys (" in errors[0] and "(G network); the networks changed since it was" in errors[0]
    # and the weights a run starts from
    model = run / "models" / "2_G.pth"
    bigger = [f"path.pretrain_model_generator={model}", "networks.generator.nf=16", "--dry-run"]
    assert run_program(lambda: main(["-opt", str(config_file), "--set", *bigger])) == 2
    assert f"{model}: checkpoint does not match the RRDBNet options: nf 16 in config, 8" in caplog.text
    assert run_program(lambda: main([*args[:-1], f"path.resume_state={model}", "train.niter=3"])) == 2
    assert f"{model}: not a training state (no step, networks, optimizers)" in caplog.text
    changed = ["train.niter=3", "train.betas_G=[0.5, 0.9]", "train.weight_decay_G=0.01"]
    assert run_program(lambda: main([*args, *changed])) == 0
    assert (
        "G: Adam betas (0.5, 0.9), weight decay 0.01 from the config (saved: (0.9, 0.99), 0)" in caplog.text
    )
    state = torch.load(run / "training_state" / "3.state", weights_only=True)
    group = state["optimizers"]["G"]["param_groups"][0]
    assert tuple(group["betas"]) == (0.5, 0.9) and group["weight_decay"] == 0.01


def test_the_inference_compile_key_in_a_training_config_is_pointed_out(config_file, caplog):
    caplog.set_level("INFO", logger="esrforge")
    assert run_program(lambda: main(["-opt", str(config_file), "--dry-run", "--set", "compile=true"])) == 0
    assert (
        "compile: true is for test.py and process_video.py; training compiles with train.compile"
        in caplog.text
    )
    assert "torch.compile off" in caplog.text


def test_errors_found_after_loading_name_the_config_file(config_file, caplog):
    raw = yaml.safe_load(config_file.read_text())
    del raw["train"]
    config_file.write_text(yaml.safe_dump(raw))
    assert run_program(lambda: main(["-opt", str(config_file)])) == 2
    assert f"{config_file}: train: missing required section for train.py" in caplog.text


@pytest.mark.parametrize(("rank", "said"), [("0", True), ("1", False)])
def test_under_torchrun_a_config_error_is_said_by_the_first_process_only(
    config_file, logs, monkeypatch, rank, said
):
    monkeypatch.setenv("RANK", rank)
    assert run_program(lambda: main(["-opt", str(config_file), "--set", "train.lr_GG=1"])) == 2
    assert ("did you mean 'lr_G'" in logs.text) == said
