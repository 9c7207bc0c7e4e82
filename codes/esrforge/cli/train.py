"""``python codes/train.py -opt options/<config>.yml [--set key=value ...] [--dry-run]``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence, Sized
from typing import cast

from ..data.base import build_dataset
from ..degradations.pipeline import Degrader
from ..devices import select_device
from ..fields.errors import OptionError
from ..logs import setup_logging
from ..losses import build_loss
from ..losses.schedule import describe_schedule
from ..metrics import build_metric
from ..options.loader import load_config
from ..options.schema import Config, TrainSection
from ..training.build import build_discriminator, build_generator, count_parameters
from ..training.compiled import compile_wanted, describe_compile, graphs_wanted
from ..training.distributed import DistributedContext
from ..training.experiment import ExperimentDirs, prepare_experiment, resume_path
from ..training.precision import Precision
from ..training.state import load_networks, load_training_state
from ..training.trainer import Trainer, TrainingStopped
from .common import add_overrides_argument, exit_with

log = logging.getLogger("esrforge")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train an ESRGAN generator (and discriminator) from a YAML config."
    )
    parser.add_argument("-opt", "--opt", required=True, help="the YAML config file")
    add_overrides_argument(parser, "train.lr_G=1e-4 networks.generator.nb=6")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the config, build everything it describes, print a summary",
    )
    parser.add_argument(
        "--archive",
        action="store_true",
        help="move an existing experiment folder aside and start afresh (also with path.resume_state: auto)",
    )
    return parser.parse_args(argv)


def train_section(config: Config) -> TrainSection:
    """``config.train``; train.py also needs ``datasets.train``."""
    if config.train is None:
        raise OptionError("train", "missing required section for train.py")
    if config.datasets.train is None:
        raise OptionError("datasets.train", "missing required section for train.py")
    if config.compile and config.train.compile is not True:
        log.warning("compile: true is for test.py and process_video.py; training compiles with train.compile")
    return config.train


def summarise(config: Config) -> None:
    """Build the networks, losses and datasets of ``config`` and log what they are."""
    train = train_section(config)
    log.info("experiment %s -> %s", config.name, config.experiment_dir)
    resume = resume_path(config)
    if resume is not None:
        log.info("would resume from %s", resume)
    elif train.start_step:
        log.info("would start at step %d of the schedule with fresh optimisers", train.start_step)
    elif (dirs := ExperimentDirs(config.experiment_dir)).root.exists():
        log.info(
            "the experiment folder exists without a training state: a run would start at the beginning in it"
            if config.path.resume_state == "auto" or not dirs.holds_work()
            else "the experiment folder exists: a run would refuse it (use --archive or path.resume_state: auto)"
        )
    device = select_device(config.gpu_ids)
    compiled = compile_wanted(train.compile, device)
    log.info(
        "would train on %s (%s), %s",
        device,
        Precision(config.fp16, config.bf16, device, config.fp32).describe(),
        describe_compile(compiled, compiled and graphs_wanted(train.cuda_graphs, device)),
    )
    generator = build_generator(config)
    log.info(
        "generator %s: %s parameters", config.networks.generator.type, f"{count_parameters(generator):,}"
    )
    discriminator = build_discriminator(config)
    if discriminator is not None and config.networks.discriminator is not None:
        log.info(
            "discriminator %s: %s parameters",
            config.networks.discriminator.type,
            f"{count_parameters(discriminator):,}",
        )
    if resume is not None:  # the state must read and fit the networks, as the run will load it
        nets = {"G": generator} | ({"D": discriminator} if discriminator is not None else {})
        load_networks(nets, load_training_state(resume), resume)
    for loss in train.losses:
        build_loss(loss)
    for line in describe_schedule(train.losses, train.niter):
        log.info("%s", line)
    patches = config.datasets.train
    if patches is not None and patches.degradation is not None:
        degrader = Degrader(patches.degradation, config.scale, patches.target_size, train.manual_seed)
        log.info("%s", degrader.describe())
    if config.datasets.val_sets:
        metrics = [build_metric(options, config.scale) for options in config.validation.metrics]
        log.info("validation metrics: %s", ", ".join(metric.name for metric in metrics))
    sets = [("train", config.datasets.train)] + [(f"val {v.label}", v) for v in config.datasets.val_sets]
    for split, data in sets:
        if data is not None:
            dataset = build_dataset(data, config.scale)
            log.info(
                "dataset %s (%s): %d images from %s",
                split,
                data.type,
                len(cast(Sized, dataset)),
                data.dataroot,
            )


def train(config: Config, archive: bool) -> int:
    """Train ``config`` in its experiment folder (under torchrun: one process per GPU)."""
    with DistributedContext.from_env(config.gpu_ids) as dist:
        if archive and config.path.resume_state not in (None, "auto"):
            raise OptionError(
                "path.resume_state", "expected null or auto with --archive, which starts afresh"
            )
        resume = None if archive else resume_path(config)  # --archive: a fresh run beside the old one
        dirs = ExperimentDirs(config.experiment_dir)
        if dist.is_main:
            # With resume_state: auto, a folder whose run was stopped before its first checkpoint is reused.
            continuing = not archive and (resume is not None or config.path.resume_state == "auto")
            dirs = prepare_experiment(config, resuming=continuing, archive=archive)
            setup_logging(dirs.log_file)
            if resume is None and continuing and dirs.log_file.stat().st_size:
                log.info("no training state in %s yet: training starts at the beginning", dirs.training_state)
        dist.barrier()
        try:
            Trainer(config, dirs, resume, dist).run()
        except TrainingStopped as err:
            log.error("%s", err)
            if err.__cause__ is not None:  # shown with ESRFORGE_DEBUG=1
                log.debug("the run stopped on", exc_info=err.__cause__)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.opt, args.overrides)
    try:
        if args.dry_run:
            summarise(config)
            log.info("dry run: the config is valid and everything it describes was built")
            return 0
        train_section(config)
        return train(config, args.archive)
    except OptionError as err:  # a key the run found wrong (a missing section, a folder in the way)
        err.source = err.source or str(args.opt)
        raise


def run() -> None:
    """Console-script entry point."""
    exit_with(main)
