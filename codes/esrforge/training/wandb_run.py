"""Weights & Biases as a second logger: one wandb run per experiment, continued by resumed runs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text
from ..options.schema import WandbSection

RUN_ID = "run_id"


def start_wandb(options: WandbSection, folder: Path, name: str, config: dict[str, Any]) -> Any:
    """A wandb run logging under ``folder``; the id kept there makes a resumed run continue it."""
    import wandb

    folder.mkdir(parents=True, exist_ok=True)
    id_file = folder / RUN_ID
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        run_id = uuid.uuid4().hex[:12]
        atomic_write_text(id_file, run_id)
    return wandb.init(
        project=options.project,
        entity=options.entity,
        mode=options.mode,
        dir=str(folder),
        name=name,
        id=run_id,
        resume="allow",
        config=config,
    )
