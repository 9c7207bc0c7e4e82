"""Seconds per training step of the recipe config, for each precision, in the L1 and the GAN phase.

Run from the repository root: ``python bench/train_speed.py [--quick] [--steps 30]``.
It trains ``options/train_div2k_esrgan.yml`` (RRDB 64/23/32, GroupNorm discriminator, batch 16, GT 128)
on synthetic 256 px images with train.py itself: the L1 phase trains the generator alone, the GAN phase
has every loss of the recipe on (the perceptual loss with random VGG weights, which costs the same).
A step's time is the wall time between the starts of consecutive steps (after a CUDA synchronise),
so it covers the whole loop (data, forward, backward, optimisers, EMA, schedulers, logging);
the first ``--warmup`` steps (set-up, cuDNN autotuning) are left out.
``--quick`` (for CPUs) uses an RRDB 16/2/8, a discriminator of width 16 and batch 4; ``--batch 2`` gives
the peers' CPU workloads (``../shared/peers``: psnr_full, esrgan_gan). Each precision (on CPUs with
AVX-512-BF16/AMX: fp32 and bf16) runs with each ``--compile`` setting (off, on, and graphs: compiled
with CUDA graphs). The figures go to stdout, train.py's progress bars and log to stderr. On CUDA each
setting also prints its peak allocated memory.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "codes"))

from esrforge.cli.train import train  # noqa: E402
from esrforge.data.imageio import write_image  # noqa: E402
from esrforge.devices import cpu_has_bf16  # noqa: E402
from esrforge.options.loader import load_config  # noqa: E402
from esrforge.probes import smooth_image  # noqa: E402
from esrforge.training import trainer  # noqa: E402
from esrforge.training.steps import IterationRunner, StepResult  # noqa: E402

CONFIG = REPO / "options" / "train_div2k_esrgan.yml"
GAN_PHASE = [f"train.losses[{i}].after=0" for i in range(1, 5)]
"""The recipe's perceptual, translational, GAN and penalty losses from step 0 (normally from 100k)."""
QUICK = [
    "networks.generator.nf=16",
    "networks.generator.nb=2",
    "networks.generator.gc=8",
    "networks.discriminator.nf=16",
    "datasets.train.batch_size=4",
]


def write_images(folder: Path, count: int = 32, size: int = 256) -> None:
    """``count`` smooth random ``size`` px RGB images."""
    for i in range(count):
        image = (smooth_image(size, size, seed=i) * 255).round().byte().permute(1, 2, 0).numpy()
        write_image(folder / f"{i:03d}.png", image)


class TimedRunner(IterationRunner):
    """The trainer's step runner, noting when each step starts."""

    starts: ClassVar[list[float]] = []

    def run(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], step: int) -> StepResult:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        TimedRunner.starts.append(time.perf_counter())
        return super().run(batches, step)


def seconds_per_step(overrides: list[str], warmup: int, steps: int, name: str) -> float:
    """Mean seconds per step of the recipe config with ``overrides``, after ``warmup`` steps."""
    config = load_config(CONFIG, [*overrides, f"train.niter={warmup + steps + 1}", f"name={name}"])
    TimedRunner.starts = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if train(config, archive=False) != 0:
        raise SystemExit(f"{name}: training failed")
    starts = TimedRunner.starts
    return (starts[-1] - starts[warmup]) / steps


def main() -> None:
    trainer.IterationRunner = TimedRunner  # type: ignore[misc]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small network and batch, for CPUs")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=10, help="steps before the timed ones")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "fp16", "bf16"), default=None)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader processes")
    parser.add_argument("--batch", type=int, default=None, help="batch size (the peers' CPU cases: 2)")
    parser.add_argument("--phases", nargs="+", choices=("L1", "GAN"), default=["L1", "GAN"])
    parser.add_argument(
        "--compile",
        nargs="+",
        choices=("off", "on", "graphs"),
        default=["off"],
        help="train.compile settings; graphs: compiled, with train.cuda_graphs (CUDA)",
    )
    parser.add_argument("--accumulate", type=int, default=1, help="train.accumulate_steps")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    precisions = args.precisions or (
        ["fp32", "fp16", "bf16"] if cuda else ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root / "data")
        common = [
            f"datasets.train.dataroot={root / 'data'}",
            f"datasets.val.dataroot={root / 'data'}",
            f"datasets.train.n_workers={args.workers}",
            f"path.experiments_root={root / 'experiments'}",
            f"gpu_ids={[0] if cuda else []}",
            "path.resume_state=null",
            "train.val_freq=0",
            "train.losses[1].pretrained=false",
            "logger.use_tb_logger=false",
            "logger.print_freq=100000",
            *(QUICK if args.quick else []),
            *([f"datasets.train.batch_size={args.batch}"] if args.batch else []),
            f"train.accumulate_steps={args.accumulate}",
        ]
        device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
        network = "RRDB 16/2/8" if args.quick else "RRDB 64/23/32"
        batch = args.batch or (4 if args.quick else 16)
        accumulated = f" x {args.accumulate} accumulated" if args.accumulate > 1 else ""
        print(f"== s/step, train_div2k_esrgan.yml ({network}, batch {batch}{accumulated}, GT 128), {device}")
        peak = f" {'peak GiB':>9}" if cuda else ""
        print(f"{'phase':>6} {'precision':>10} {'compile':>8} {'s/step':>8} {'steps/s':>8}{peak}")
        for phase in args.phases:
            extra = GAN_PHASE if phase == "GAN" else []
            for precision, compiled in itertools.product(precisions, args.compile):
                flags = [*common, *extra, f"train.compile={compiled != 'off'}"]
                flags.append(f"train.cuda_graphs={compiled == 'graphs'}")
                flags.append(f"{precision}=true")  # fp32=true: no automatic bf16 on the CPU
                name = f"{phase}_{precision}_{compiled}"
                per_step = seconds_per_step(flags, args.warmup, args.steps, name)
                peak = f" {torch.cuda.max_memory_allocated() / 2**30:9.2f}" if cuda else ""
                print(
                    f"{phase:>6} {precision:>10} {compiled:>8} {per_step:8.3f} {1 / per_step:8.2f}{peak}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
