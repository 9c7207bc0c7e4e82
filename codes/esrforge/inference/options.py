"""The schema of a test (inference) config, read with the same machinery as training configs.

Key names follow BasicSR / DLAS test configs: ``name``, ``datasets.test.dataroot`` (the input image or
folder), ``datasets.test.dataroot_GT``, and the model keys every config shares (``scale``, ``gpu_ids``,
``networks.generator``, optional: the checkpoint's tensors tell what it is, ``path.pretrain_model_generator``:
see :mod:`esrforge.options.model`). Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..fields import InputPath, option, require, require_folder_name
from ..fields.yaml_io import read_yaml
from ..options.loader import Moves, load_typed
from ..options.model import ModelConfig, WeightsSection
from .tiling import TileOptions

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("png", "tif", "jpg", "webp")


@dataclass(frozen=True, kw_only=True)
class TestDatasetOptions:
    """The images to upscale, and optionally their ground truth."""

    __test__ = False  # not a pytest test class

    name: str = option("", doc="label used in logs")
    dataroot: InputPath = option(doc="input image or folder of images (LR; the GT images with downscale_gt)")
    dataroot_GT: InputPath | None = option(
        None,
        doc="folder of ground-truth images, matched by file name (or one image for one input image): "
        "PSNR/SSIM-Y are reported",
    )
    downscale_gt: bool = option(
        False, doc="DLAS mode: dataroot holds GT images and the inputs are their MATLAB bicubic downscales"
    )
    recursive: bool = option(False, doc="also read sub-folders (their structure is kept in the output)")

    def __post_init__(self) -> None:
        require(
            not (self.downscale_gt and self.dataroot_GT is not None),
            "dataroot_GT",
            "null with downscale_gt (dataroot then holds the GT)",
            str(self.dataroot_GT),
        )


@dataclass(frozen=True, kw_only=True)
class TestDatasetsSection:
    """The data a test run reads."""

    __test__ = False

    test: TestDatasetOptions = option(doc="the images to upscale")


@dataclass(frozen=True, kw_only=True)
class TestPathSection(WeightsSection):
    """Where the weights come from (see WeightsSection; required here) and where the results go."""

    __test__ = False

    results_root: Path = option(Path("../results"), doc="folder that holds results/<name>/")
    output: Path | None = option(None, doc="write the images here instead of results_root/<name>")


@dataclass(frozen=True, kw_only=True)
class InferenceSection(TileOptions):
    """Tiling (see TileOptions), output files and metrics."""

    suffix: str | None = option(
        None, doc="outputs are named <stem>_<suffix>.<ext>; null: x<scale>; '': <stem>"
    )
    ext: Literal["png", "tif", "jpg", "webp"] = option("png", doc="output format (png and tif keep 16 bits)")
    alpha_upsampler: Literal["bicubic", "model"] = option(
        "bicubic", doc="how an alpha channel is enlarged: bicubic (fast) or by the network as grey"
    )
    crop_border: int | None = option(None, doc="pixels shaved per side before PSNR/SSIM; null: the scale")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.suffix:
            require("/" not in self.suffix, "suffix", "a file-name part without '/'", self.suffix)
        if self.crop_border is not None:
            require(self.crop_border >= 0, "crop_border", "0 or more pixels", self.crop_border)


@dataclass(frozen=True, kw_only=True)
class TestConfig(ModelConfig):
    """A whole test config (the model keys: see ModelConfig)."""

    __test__ = False

    name: str = option(doc="run name; images go to results_root/<name>/")
    datasets: TestDatasetsSection = option(doc="the images to upscale")
    path: TestPathSection = option(doc="weights and output folder")
    inference: InferenceSection = option(factory=InferenceSection, doc="tiling, output files, metrics")

    def __post_init__(self) -> None:
        require_folder_name(self.name)
        super().__post_init__()
        self.require_weights()

    @property
    def output_dir(self) -> Path:
        """``path.output``, or ``path.results_root/<name>``."""
        return self.path.output or self.path.results_root / self.name


TRAINING_ONLY = {
    "": ("train", "logger"),
    "datasets": ("train",),
    "networks": ("discriminator",),
    "path": ("experiments_root", "pretrain_model_discriminator", "resume_state"),
}
"""Parts of a training config that a test run ignores, by section ("" is the top level)."""


def is_training_config(data: dict[str, Any]) -> bool:
    """Whether raw config ``data`` is a training config (it has train/logger or datasets.train/val)."""
    datasets = data.get("datasets")
    return (
        "train" in data
        or "logger" in data
        or (isinstance(datasets, dict) and bool({"train", "val"} & set(datasets)))
    )


def from_training_config(data: dict[str, Any]) -> tuple[dict[str, Any], Moves]:
    """The test run a training config describes, as DLAS's test.py reads it; and how keys moved.

    The generator comes from ``networks.generator`` and its weights from ``path.pretrain_model_generator``;
    the images from ``datasets.test`` when given (e.g. with ``--set``), else from ``datasets.val``: its
    HR images are downscaled by MATLAB bicubic and the outputs scored against them (with its
    ``dataroot_lq``, those LR images are upscaled instead). Training-only parts are left out with one
    info line.
    """
    ignored = [key for key in TRAINING_ONLY[""] if key in data]
    training_path = data.get("path")
    root = training_path.get("experiments_root") if isinstance(training_path, dict) else None
    experiments = Path(str(root or "../experiments"))
    data = {key: value for key, value in data.items() if key not in TRAINING_ONLY[""]}
    for section in ("datasets", "networks", "path"):
        part = data.get(section)
        if isinstance(part, dict):
            ignored += [f"{section}.{key}" for key in TRAINING_ONLY[section] if key in part]
            data[section] = {key: value for key, value in part.items() if key not in TRAINING_ONLY[section]}
    moves: Moves = {}
    datasets = data.get("datasets") or {}
    val = datasets.pop("val", None)
    if isinstance(val, list) and val:  # several validation sets: the first one
        val = val[0]
    if "test" not in datasets and isinstance(val, dict):
        test: dict[str, Any] = {"name": val.get("name", "")}
        if val.get("dataroot_lq") is not None:
            test.update(dataroot=val["dataroot_lq"], dataroot_GT=val.get("dataroot"))
            moves.update({"datasets.val.dataroot_lq": "datasets.test.dataroot"})
            moves.update({"datasets.val.dataroot": "datasets.test.dataroot_GT"})
        else:
            test.update(dataroot=val.get("dataroot"), downscale_gt=True)
            moves["datasets.val.dataroot"] = "datasets.test.dataroot"
        datasets["test"] = test
        source = "datasets.val"
    else:
        source = "datasets.test"
        if val is not None:
            ignored.append("datasets.val")
    data["datasets"] = datasets
    path = data.setdefault("path", {})
    if isinstance(path, dict):  # results/ beside experiments/
        path.setdefault("results_root", (experiments.parent / "results").as_posix())
    log.info(
        "a training config: test.py upscales %s with networks.generator; ignored: %s",
        source,
        ", ".join(ignored) or "nothing",
    )
    return data, moves


def config_from_data(
    data: dict[str, Any], source: str, base_dir: Path, overrides: Sequence[str] = ()
) -> TestConfig:
    """Check raw config ``data`` (from ``source``; paths relative to ``base_dir``) and type it.

    A training config is read as DLAS's test.py reads it (see :func:`from_training_config`).
    """
    reshape = from_training_config if is_training_config(data) else None
    return load_typed(TestConfig, data, source, base_dir, overrides, reshape=reshape)


def load_test_config(path: Path | str, overrides: Sequence[str] = ()) -> TestConfig:
    """Read a test config file, apply ``--set`` overrides and return the checked :class:`TestConfig`."""
    path = Path(path)
    return config_from_data(read_yaml(path), str(path), path.resolve().parent, overrides)
