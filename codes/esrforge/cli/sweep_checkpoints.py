"""``python codes/scripts/sweep_checkpoints.py experiments/<name> [--tags G_ema,G] [--metrics ...]``.

Scores every saved generator of a run (``models/<step>_<tag>.pth``) on the run's validation sets with
its validation metrics (or ``--metrics``), and writes ``checkpoints.csv`` and ``checkpoints.png`` (each
set and metric against the step, one line per tag) to ``--out`` (default: ``experiments/<name>/sweep``);
the log names the best checkpoint of each metric. The run's newest ``config_*.yml`` says what to build.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from ..inference.scoring import val_loader
from ..inference.sweeps import Candidate, score_candidates, write_results
from ..networks import build_network, load_into
from ..options.loader import load_config
from ..training.experiment import ExperimentDirs
from ..training.state import saved_models
from ..training.validation import validation_sets
from .common import exit_with
from .scoring import (
    add_scoring_arguments,
    build_metrics,
    check_scoring_arguments,
    metric_options,
    scoring_device,
)

log = logging.getLogger("esrforge")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Score every saved checkpoint of a run on its validation sets."
    )
    parser.add_argument("experiment", type=Path, help="the run's folder, experiments/<name>")
    parser.add_argument(
        "--tags", help="comma-separated model tags to score (default: G_ema if saved, else G)"
    )
    parser.add_argument("--every", type=int, default=1, help="score every N-th checkpoint (the last always)")
    parser.add_argument("--out", type=Path, help="folder of the results (default: <experiment>/sweep)")
    add_scoring_arguments(parser, None)
    args = parser.parse_args(argv)
    if args.every < 1:
        raise ValueError(f"--every: expected 1 or more, got {args.every}")
    args.out = args.out or args.experiment / "sweep"
    check_scoring_arguments(args, args.out)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dirs = ExperimentDirs(args.experiment)
    configs = sorted(dirs.root.glob("config_*.yml"))
    if not configs:
        raise FileNotFoundError(
            f"{dirs.root}: no config_*.yml (expected the folder of a run made by train.py)"
        )
    config = load_config(configs[-1], check_paths=False)
    if not config.datasets.val_sets:
        raise ValueError(f"{configs[-1]}: no datasets.val to score on")
    models = saved_models(dirs)
    tags = args.tags.split(",") if args.tags else ["G_ema" if "G_ema" in models else "G"]
    missing = [tag for tag in tags if tag not in models]
    if missing:
        raise FileNotFoundError(
            f"{dirs.models}: no <step>_{missing[0]}.pth (saved tags: {', '.join(models) or 'none'})"
        )
    device = scoring_device(args.device)
    sets = [(val, val_loader(val, config.scale)) for val in validation_sets(config, dirs, device)]
    options = metric_options(args.metrics) if args.metrics else config.validation.metrics
    metrics = build_metrics(options, config.scale, device)
    generator = config.networks.generator
    module = build_network(generator).to(device)
    candidates = []
    for tag in tags:
        saved = models[tag]
        chosen = saved[:: args.every] + ([saved[-1]] if (len(saved) - 1) % args.every else [])
        candidates += [
            Candidate(step, tag, partial(load_into, options=generator, path=path)) for step, path in chosen
        ]
    rows = score_candidates(
        module, generator.describe(), candidates, sets, metrics, "checkpoints", tile=args.tile
    )
    write_results(rows, metrics, args.out, "checkpoints", "step")
    return 0


def run() -> None:
    exit_with(main)
