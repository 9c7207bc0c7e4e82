"""Config loading: schema errors, overrides, paths and cross-section checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from esrforge.fields.convert import to_data
from esrforge.fields.errors import OptionError
from esrforge.options.loader import load_config, load_config_data
from esrforge.options.schema import Config

REPO = Path(__file__).resolve().parents[1]


def small_config(data_dir: Path) -> dict[str, Any]:
    """A complete, valid config as raw data (a tiny GAN run)."""
    return {
        "name": "tiny",
        "scale": 4,
        "gpu_ids": [],
        "datasets": {
            "train": {
                "type": "HRPatchDataset",
                "dataroot": str(data_dir),
                "target_size": 32,
                "batch_size": 2,
            },
            "val": {"type": "FullImageDataset", "dataroot": str(data_dir)},
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
                {"type": "gan", "weight": 0.02, "after": 5},
                {"type": "gradient_penalty", "after": 5},
            ],
        },
    }


@pytest.fixture
def write(tmp_path: Path):
    """Write raw config data to ``tmp_path/config.yml`` and return its path."""

    def _write(data: dict[str, Any] | str) -> Path:
        path = tmp_path / "config.yml"
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return _write


@pytest.fixture
def raw(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "data").mkdir()
    return small_config(tmp_path / "data")


def error_of(path: Path, overrides: tuple[str, ...] = ()) -> OptionError:
    with pytest.raises(OptionError) as info:
        load_config(path, overrides)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(str(path))
    return info.value


def test_valid_config_is_typed(write, raw, tmp_path):
    config = load_config(write(raw))
    assert isinstance(config, Config)
    assert config.networks.generator.nb == 1
    assert config.networks.generator.scale == 4  # inherited from the top-level scale
    assert config.train is not None and config.train.betas_G == (0.9, 0.99)
    assert config.experiment_dir == tmp_path / "experiments" / "tiny"
    assert type(config.train.losses[0]).__name__ == "PixelOptions"


def test_unknown_key_suggests_near_match(write, raw):
    raw["networks"]["generator"]["nbb"] = 6
    err = error_of(write(raw))
    assert err.key == "networks.generator.nbb"
    assert "did you mean 'nb'" in str(err)


def test_unknown_top_level_key(write, raw):
    raw["model"] = "extensibletrainer"
    err = error_of(write(raw))
    assert err.key == "model" and "unknown key" in err.message


def test_wrong_type_names_key_and_expectation(write, raw):
    raw["train"]["niter"] = "lots"
    err = error_of(write(raw))
    assert err.key == "train.niter"
    assert "expected an integer, got 'lots'" in err.message


def test_bool_is_not_an_integer(write, raw):
    raw["networks"]["generator"]["nb"] = True
    assert error_of(write(raw)).key == "networks.generator.nb"


def test_missing_required_key(write, raw):
    del raw["train"]["niter"]
    err = error_of(write(raw))
    assert err.key == "train.niter" and "missing required key" in err.message


def test_missing_input_path(write, raw, tmp_path):
    raw["path"]["pretrain_model_generator"] = "weights/none.pth"
    err = error_of(write(raw))
    assert err.key == "path.pretrain_model_generator"
    assert str(tmp_path / "weights" / "none.pth") in err.message


def test_unknown_type_suggests_registered_name(write, raw):
    raw["networks"]["generator"]["type"] = "RRDBnet"
    err = error_of(write(raw))
    assert err.key == "networks.generator.type"
    assert "did you mean 'RRDBNet'" in err.message


def test_dataset_type_must_fit_its_section(write, raw):
    raw["datasets"]["train"]["type"] = "FullImageDataset"
    err = error_of(write(raw))
    assert err.key == "datasets.train.type" and "HRPatchDataset" in err.message


def test_out_of_range_value_from_post_init(write, raw):
    raw["networks"]["generator"]["nb"] = 0
    assert error_of(write(raw)).key == "networks.generator.nb"
    raw["networks"]["generator"]["nb"] = 1
    raw["train"]["losses"][0]["weight"] = -1
    assert error_of(write(raw)).key == "train.losses[0].weight"


@pytest.mark.parametrize(
    "override",
    [
        "train.grad_clip=0",
        "train.grad_clip=-1",
        "train.lr_G=.inf",
        "train.betas_D=[0.9, 1.5]",
        "train.weight_decay_G=-1",
        "train.manual_seed=-1",
        "train.manual_seed=99999999999999999999999",
    ],
)
def test_optimiser_values_that_would_stall_or_reverse_training_are_refused(write, raw, override):
    key = override.split("=")[0]
    assert error_of(write(raw), (override,)).key == key


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.restart_periods=[0]", "train.restart_periods"),
        ("train.restart_weights=[-1]", "train.restart_weights"),
        ("train.eta_min=-1e-3", "train.eta_min"),
    ],
)
def test_cosine_schedule_values_are_checked(write, raw, override, key):
    cosine = ("train.lr_scheme=CosineAnnealingRestartLR", "train.restart_periods=[10]")
    assert error_of(write(raw), (*cosine, override)).key == key


def test_every_step_needs_an_active_generator_loss(write, raw):
    path = write(raw)
    err = error_of(path, ("train.losses[0].before=5", "train.losses[1].after=6"))
    assert err.key == "train.losses" and "none is at steps 5-5" in err.message
    # steps before train.start_step are never run
    late = ("train.losses[0].after=5", "train.losses[1].after=5", "train.start_step=5")
    started = load_config(path, late).train
    assert started is not None and started.start_step == 5
    err = error_of(path, ("train.losses[0].after=7", "train.losses[1].after=7", "train.start_step=5"))
    assert "none is at steps 5-6" in err.message
    assert (
        "none is at steps 0-4"
        in error_of(path, ("train.losses[0].after=100", "train.losses[1].after=100")).message
    )


def test_a_generator_is_not_taken_as_the_discriminator(write, raw):
    raw["networks"]["discriminator"] = {"type": "RRDBNet", "nf": 8, "nb": 1, "gc": 4}
    err = error_of(write(raw))
    assert (
        err.key == "networks.discriminator.type" and "got RRDBNet, a x4 3 -> 3 channel network" in err.message
    )


def test_training_needs_an_rgb_generator(write, raw):
    raw["networks"]["generator"].update(in_nc=1, out_nc=1)
    err = error_of(write(raw))
    assert err.key == "networks.generator" and "got a 1 -> 1 channel RRDBNet" in err.message


def test_bad_literal_suggests(write, raw):
    raw["train"]["losses"][1]["gan_type"] = "raggan"
    err = error_of(write(raw))
    assert err.key == "train.losses[1].gan_type" and "did you mean 'ragan'" in err.message


def test_malformed_yaml_gives_position(write):
    err = error_of(write("name: x\nnetworks:\n  generator: {type: RRDBNet\n"))
    assert "invalid YAML" in err.message and "line" in err.message


def test_duplicate_key_is_refused(write):
    err = error_of(write("name: a\nname: b\n"))
    assert "given twice" in err.message


def test_top_level_must_be_a_mapping(write):
    assert "mapping" in error_of(write("- a\n- b\n")).message


def test_missing_config_file(tmp_path):
    assert "not found" in error_of(tmp_path / "nope.yml").message


def test_scientific_notation_is_a_float(write, raw):
    raw_text = yaml.safe_dump(raw).replace("niter: 10", "niter: 10\n  lr_G: 1e-4")
    config = load_config(write(raw_text))
    assert config.train is not None and config.train.lr_G == pytest.approx(1e-4)


def test_overrides_are_typed(write, raw):
    path = write(raw)
    config = load_config(path, ["train.lr_G=1e-4", "networks.generator.nb=6", "train.losses[0].weight=0.5"])
    assert config.train is not None
    assert config.train.lr_G == pytest.approx(1e-4)
    assert config.networks.generator.nb == 6
    assert config.train.losses[0].weight == 0.5
    config = load_config(path, ["train.losses.1.after=7", "logger.keep_last=3"])
    assert config.train is not None and config.train.losses[1].after == 7
    assert config.logger.keep_last == 3


def test_override_errors(write, raw):
    path = write(raw)
    err = error_of(path, ("networks.generator.nb=six",))
    assert err.key == "networks.generator.nb" and "(set with --set)" in err.message
    assert error_of(path, ("networks.generator.nbb=6",)).key == "networks.generator.nbb"
    assert "key=value" in error_of(path, ("train.lr_G",)).message
    assert "no such list item" in error_of(path, ("train.losses[9].weight=1",)).message


def test_paths_expand_home_and_environment(write, raw, tmp_path, monkeypatch):
    monkeypatch.setenv("ESRFORGE_TEST_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    raw["datasets"]["train"]["dataroot"] = "${ESRFORGE_TEST_DATA}"
    raw["datasets"]["val"]["dataroot"] = "~/data"
    config = load_config(write(raw))
    assert config.datasets.train is not None and config.datasets.train.dataroot == tmp_path / "data"
    assert config.datasets.val is not None and config.datasets.val.dataroot == tmp_path / "data"
    raw["datasets"]["val"]["dataroot"] = "$ESRFORGE_UNSET_VARIABLE/x"
    monkeypatch.delenv("ESRFORGE_UNSET_VARIABLE", raising=False)
    message = error_of(write(raw)).message
    assert "$ESRFORGE_UNSET_VARIABLE" in message and "is not set" in message


def test_relative_paths_resolve_against_config_folder_or_working_folder(raw, tmp_path, monkeypatch):
    sub = tmp_path / "configs"
    sub.mkdir()
    raw["datasets"]["train"]["dataroot"] = "../data"
    (sub / "c.yml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(REPO)
    config = load_config(sub / "c.yml")
    assert config.datasets.train is not None and config.datasets.train.dataroot == tmp_path / "data"
    assert config.path.experiments_root == sub / "experiments"
    # A path typed with --set is relative to the working folder, as in any shell command.
    (tmp_path / "typed").mkdir()
    monkeypatch.chdir(tmp_path)
    config = load_config(sub / "c.yml", ["datasets.train.dataroot=typed", "path.experiments_root=runs"])
    assert config.datasets.train is not None and config.datasets.train.dataroot == tmp_path / "typed"
    assert config.path.experiments_root == tmp_path / "runs"


def test_resume_state_auto_or_existing_path(write, raw, tmp_path):
    raw["path"]["resume_state"] = "auto"
    assert load_config(write(raw)).path.resume_state == "auto"
    raw["path"]["resume_state"] = "missing.state"
    err = error_of(write(raw))
    assert err.key == "path.resume_state" and "does not exist" in err.message


def test_gan_needs_a_discriminator(write, raw):
    del raw["networks"]["discriminator"]
    err = error_of(write(raw))
    assert err.key == "train.losses[1]" and "networks.discriminator" in err.message


def test_discriminator_size_must_match_what_it_sees(write, raw):
    raw["networks"]["discriminator"]["image_size"] = 64
    err = error_of(write(raw))
    assert err.key == "networks.discriminator.image_size" and "target_size" in err.message


def test_translational_geometry_checked_at_load(write, raw):
    raw["train"]["losses"].append({"type": "translational", "patch_size": 24, "offsets": "corners"})
    raw["networks"]["discriminator"]["image_size"] = 32
    err = error_of(write(raw))
    assert err.key == "networks.discriminator.image_size" and "patch_size" in err.message
    raw["train"]["losses"][-1]["patch_size"] = 40
    assert error_of(write(raw)).key.startswith("train.losses[3]")
    raw["train"]["losses"][-1]["patch_size"] = 26  # not a multiple of the scale
    assert error_of(write(raw)).key.startswith("train.losses[3]")


def test_generator_scale_must_match(write, raw):
    raw["networks"]["generator"]["scale"] = 2
    assert error_of(write(raw)).key == "networks.generator.scale"


def test_resolved_config_round_trips(write, raw, tmp_path):
    config = load_config(write(raw))
    again = load_config_data(to_data(config), "frozen", tmp_path / "elsewhere")
    assert again == config


@pytest.mark.parametrize("name", ["train_div2k_esrgan.yml", "train_div2k_esrgan_reference.yml"])
def test_shipped_recipe_configs_load(name, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = load_config(
        REPO / "options" / name,
        [f"datasets.train.dataroot={data}", f"datasets.val.dataroot={data}"],
    )
    assert config.train is not None and config.train.niter == 500000
    assert config.networks.generator.nf == 64 and config.networks.generator.nb == 23


# The learning rate of each phase: (first step, lr_G, lr_D); D only trains from step 100000.
RECIPE_RATES = [(0, 2e-4, 2e-4), (140000, 1e-4, 1e-4), (180000, 5e-5, 5e-5), (200000, 2.5e-5, 2.5e-5)]
RECIPE_RATES += [(240000, 1.25e-5, 1.25e-5)]
PAPER_RATES = [(0, 2e-4, 2e-4), (100000, 1e-4, 1e-4), (150000, 5e-5, 5e-5), (200000, 2.5e-5, 2.5e-5)]
PAPER_RATES += [(300000, 1.25e-5, 1.25e-5), (400000, 6.25e-6, 6.25e-6)]


@pytest.mark.parametrize(
    ("name", "rates"),
    [("train_div2k_esrgan.yml", RECIPE_RATES), ("train_div2k_esrgan_reference.yml", PAPER_RATES)],
)
def test_shipped_configs_learning_rate_per_phase(name, rates, tmp_path):
    """The reference config is the ESRGAN paper's: L1 at 2e-4, GAN at 1e-4 halved 50k/100k/200k/300k in."""
    from esrforge.training.optim import build_scheduler

    config = load_config(
        REPO / "options" / name, [f"datasets.train.dataroot={tmp_path}", f"datasets.val.dataroot={tmp_path}"]
    )
    assert config.train is not None
    net = torch.nn.Linear(1, 1)
    schedulers = {
        key: build_scheduler(torch.optim.Adam(net.parameters(), lr=lr), config.train)
        for key, lr in (("G", config.train.lr_G), ("D", config.train.lr_D))
    }
    ends = [start - 1 for start, _, _ in rates[1:]] + [config.train.niter - 1]
    for (start, lr_g, lr_d), end in zip(rates, ends, strict=True):
        for step in (start, end):
            got = [schedulers[k].lr_at(step)[0] for k in ("G", "D")]
            assert got == pytest.approx([lr_g, lr_d]), (step, got)
