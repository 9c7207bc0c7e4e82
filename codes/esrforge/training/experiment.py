"""The experiment folder ``experiments/<name>/`` and what it holds."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..fields.convert import to_data
from ..fields.errors import OptionError
from ..fields.yaml_io import dump_yaml
from ..fileio import remove_temporaries
from ..options.schema import Config

STATE_SUFFIX = ".state"


@dataclass(frozen=True)
class ExperimentDirs:
    """The folders and files of one experiment."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def training_state(self) -> Path:
        return self.root / "training_state"

    @property
    def val_images(self) -> Path:
        return self.root / "val_images"

    @property
    def val_lq(self) -> Path:
        """LR of the validation images made with the training degradation (``datasets.val.degrade``)."""
        return self.root / "val_lq"

    @property
    def tb_logger(self) -> Path:
        return self.root / "tb_logger"

    @property
    def log_file(self) -> Path:
        return self.root / "train.log"

    @property
    def history(self) -> Path:
        """Every logged scalar, one JSON line per step and kind (see :mod:`esrforge.training.curves`)."""
        return self.root / "history.jsonl"

    @property
    def curves(self) -> Path:
        """The picture of the loss and metric curves."""
        return self.root / "curves.png"

    @property
    def wandb(self) -> Path:
        """wandb's files, and the run id a resumed run continues."""
        return self.root / "wandb"

    def holds_work(self) -> bool:
        """Whether a run trained here: anything but the log, the config copies and empty folders (a run
        whose start failed, a typo in a path say, leaves only those)."""
        records = (self.models, self.training_state, self.val_images, self.tb_logger, self.wandb)
        return self.history.exists() or any(any(folder.iterdir()) for folder in records if folder.is_dir())

    def newest_state(self) -> Path | None:
        """The training state with the highest step, or None (temporary files are ignored)."""
        states = [p for p in self.training_state.glob(f"*{STATE_SUFFIX}") if p.stem.isdigit()]
        return max(states, key=lambda p: int(p.stem), default=None)


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def resume_path(config: Config) -> Path | None:
    """The state file to resume from: ``path.resume_state``, or the newest one when it is ``auto``."""
    wanted = config.path.resume_state
    if wanted == "auto":
        return ExperimentDirs(config.experiment_dir).newest_state()
    return wanted


def prepare_experiment(config: Config, resuming: bool, archive: bool = False) -> ExperimentDirs:
    """Create ``experiments/<name>/`` with its sub-folders and a frozen copy of the resolved config.

    An existing folder is reused when resuming, or when no run trained in it (:meth:`ExperimentDirs.holds_work`);
    with ``archive`` it is renamed to ``<name>_archived_<time>`` first; otherwise it is an error, never an
    overwrite.
    """
    dirs = ExperimentDirs(config.experiment_dir)
    if dirs.root.exists() and (dirs.holds_work() or archive) and not resuming:
        if not archive:
            raise OptionError(
                "name",
                f"experiment folder {dirs.root} already exists; set path.resume_state: auto to continue it, "
                "choose another name, or pass --archive to move the old one aside",
            )
        archived = dirs.root.with_name(f"{dirs.root.name}_archived_{_timestamp()}")
        dirs.root.rename(archived)
    for folder in (dirs.models, dirs.training_state, dirs.val_images, dirs.tb_logger):
        folder.mkdir(parents=True, exist_ok=True)
    remove_temporaries(dirs.root)  # partial files of writes a killed run had begun, in every folder
    dump_yaml(to_data(config), dirs.root / f"config_{_timestamp()}.yml")
    return dirs
