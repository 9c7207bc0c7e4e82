"""The training-quality protocol of ../shared/reference/quality-protocol.md, run with esrforge's trainer.

    python bench/quality_protocol.py [--seeds 0 1] [--init basicsr] [--steps 3000] [--shared ../shared]

A PSNR-oriented run that answers "does esrforge train an SR network as well as BasicSR does": RRDB
32/6/32 x4, L1, Adam 2e-4 (0.9, 0.99), batch 8 of 24 px LR patches, 3000 steps on the 535 480 px crops
of the 12 shared photos, scored on Set5 and Set14 at steps 1000, 2000 and 3000 (about 35 minutes a
seed on 2 CPU cores). It prints the protocol's table for each seed beside BasicSR's figures and
writes it, with a picture of the L1 curves, to ``--out``. Rerunning resumes unfinished seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "codes"))

from esrforge.cli.train import train  # noqa: E402
from esrforge.data.chunks import ChunkOptions, run_chunking  # noqa: E402
from esrforge.data.imageio import list_images, read_image, write_image  # noqa: E402
from esrforge.fileio import atomic_write_text  # noqa: E402
from esrforge.logs import setup_logging  # noqa: E402
from esrforge.metrics.evaluate import mean_score  # noqa: E402
from esrforge.options.loader import load_config_data  # noqa: E402
from train_experiment import score  # noqa: E402

log = logging.getLogger("esrforge")

HR_FINGERPRINT = "dc5fe731b4ae19ec392a60295f80b454bafcce6feafa24192bbbd59fb275ed98"
LR_FINGERPRINT = "e9d35f3b8be0708e78bbc7f993df5c070600a02b6c15e109ffd1802f6b2a9939"
BASICSR = {1000: (26.51, 24.63, 0.0159), 2000: (27.47, 25.27, 0.0115), 3000: (28.62, 26.01, 0.0114)}
"""BasicSR 1.4.2 on the protocol, seed 0: step -> (Set5 PSNR-Y, Set14 PSNR-Y, training L1)."""
BASICSR_CURVE = [0.122, 0.046, 0.036, 0.029, 0.025, 0.022, 0.022, 0.019, 0.017, 0.016]
"""BasicSR's mean training L1 over each 100 steps from the start."""


def fingerprint(folder: Path) -> str:
    """sha256 over ``"<name> <sha256 of the RGB pixels>\\n"`` of every image, sorted by name."""
    lines = []
    for path in sorted(list_images(folder), key=lambda p: p.name):
        pixels = np.ascontiguousarray(read_image(path)[..., :3])
        lines.append(f"{path.name} {hashlib.sha256(pixels.tobytes()).hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def prepare_data(photos: Path, data: Path) -> None:
    """BasicSR's DIV2K sub-image cut of the photos (480 px, step 240) and MATLAB-bicubic LR; checks both sets."""
    options = ChunkOptions(crop_size=480, step=240, thresh_size=0, scale=4, lr_output=data / "lr")
    log.info("protocol data: %s", run_chunking([photos], data / "hr", options, workers=2).line())
    got = fingerprint(data / "hr")
    if got != HR_FINGERPRINT:
        raise SystemExit(f"{data / 'hr'}: fingerprint {got} is not the protocol's {HR_FINGERPRINT}")
    if fingerprint(data / "lr") != LR_FINGERPRINT:
        # BasicSR resizes in float32 and rounds half to even; esrforge in float64, half away from zero.
        # On these crops that moves about 150 of 23 million LR values by one level.
        log.warning("the LR set differs from the protocol's by float rounding (BasicSR resizes in float32)")
    log.info("the HR set matches the protocol's fingerprint")


def protocol_config(data: Path, out: Path, seed: int, steps: int, evals: list[int], init: str) -> dict:
    """The protocol as an esrforge training config (raw data, as a YAML file would hold it)."""
    return {
        "name": f"protocol_{init}_seed{seed}",
        "scale": 4,
        "gpu_ids": [],
        "datasets": {
            "train": {
                "type": "HRPatchDataset",
                "dataroot": str(data / "hr"),
                "dataroot_lq": str(data / "lr"),
                "target_size": 96,
                "use_flip": True,
                "use_rot": True,
                "batch_size": 8,
                "n_workers": 2,
            }
        },
        "networks": {"generator": {"type": "RRDBNet", "nf": 32, "nb": 6, "gc": 32, "init": init}},
        "path": {"experiments_root": str(out)},
        "train": {
            "niter": steps,
            "val_freq": 0,
            "manual_seed": seed,
            "lr_G": 2e-4,
            "betas_G": [0.9, 0.99],
            "losses": [{"type": "pixel", "criterion": "l1", "weight": 1.0}],
        },
        "logger": {
            "print_freq": 100,
            "save_checkpoint_freq": min(evals),
            "use_tb_logger": False,
        },
    }


def l1_curve(log_file: Path) -> dict[int, float]:
    """Mean training L1 of each 100-step window, by its last step, from the run's log (the last run wins)."""
    curve = {}
    for match in re.finditer(r"step (\d+) epoch \d+ .*?\bpixel ([0-9.e+-]+)", log_file.read_text()):
        curve[int(match[1])] = float(match[2])
    return curve


def plot_curves(curves: dict[str, dict[int, float]], path: Path) -> None:
    """Training L1 against steps (log scale) for each run and BasicSR, as a PNG."""
    width, height, margin = 720, 420, 50
    canvas = np.full((height, width, 3), 255, np.uint8)
    low, high = np.log10(0.008), np.log10(0.3)
    reference = {100 * (i + 1): v for i, v in enumerate(BASICSR_CURVE)}
    curves = {"BasicSR 1.4.2": reference, **{k: c for k, c in curves.items() if c}}
    last = max(max(c) for c in curves.values())

    def point(step: int, value: float) -> tuple[int, int]:
        x = margin + (width - 2 * margin) * step / last
        y = margin + (height - 2 * margin) * (high - np.log10(max(value, 1e-4))) / (high - low)
        return round(x), round(y)

    cv2.rectangle(canvas, (margin, margin), (width - margin, height - margin), (0, 0, 0), 1)
    for value in (0.01, 0.02, 0.05, 0.1, 0.2):
        y = point(0, value)[1]
        cv2.line(canvas, (margin, y), (width - margin, y), (220, 220, 220), 1)
        cv2.putText(canvas, f"{value:g}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    for step in range(0, last + 1, max(last // 6, 1)):
        x = point(step, 1.0)[0]
        cv2.putText(
            canvas, str(step), (x - 12, height - margin + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1
        )
    colours = [(200, 30, 30), (30, 30, 200), (30, 150, 30), (150, 30, 150)]
    for i, (label, curve) in enumerate(curves.items()):
        colour = (0, 0, 0) if i == 0 else colours[(i - 1) % len(colours)]
        points = np.array([point(s, v) for s, v in sorted(curve.items())], np.int32)
        cv2.polylines(canvas, [points], False, colour, 2)
        cv2.putText(
            canvas, label, (width - 260, margin + 20 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1
        )
    cv2.putText(canvas, f"training L1 per 100 steps, steps 0-{last}", (margin, 30), 0, 0.55, (0, 0, 0), 1)
    write_image(path, cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))


def run_seed(args: argparse.Namespace, data: Path, seed: int) -> tuple[list[str], dict[int, float]]:
    """Train one seed, score its checkpoints; the table rows and the L1 curve."""
    raw = protocol_config(data, args.out, seed, args.steps, args.eval_at, args.init)
    if args.bf16:  # the training in bf16 autocast; the scores stay fp32 (test.py --fp32)
        raw.update(bf16=True, name=f"{raw['name']}_bf16")
    else:  # the protocol trains in float32: no automatic bf16 on CPUs with AVX-512-BF16/AMX
        raw.update(fp32=True)
    config = load_config_data(raw, "quality protocol", REPO, [f"path.resume_state={args.resume}"])
    final = config.experiment_dir / "models" / f"{args.steps}_G.pth"
    if not final.exists() and train(config, archive=False) != 0:
        raise SystemExit(f"training {config.name} failed")
    curve = l1_curve(config.experiment_dir / "train.log")
    rows = []
    for step in args.eval_at:
        model = config.experiment_dir / "models" / f"{step}_G.pth"
        folder = args.out / "scores" / config.name / str(step)
        scores, _ = score(model, args.shared / "datasets" / "benchmark", folder, ("--tile", "0"))
        set5, set14 = (mean_score(scores[name]).psnr_y for name in ("Set5", "Set14"))
        window = [v for s, v in curve.items() if step - 100 < s <= step]
        reference = BASICSR.get(step)
        versus = f"{set5 - reference[0]:+.2f} / {set14 - reference[1]:+.2f}" if reference else "-"
        rows.append(
            f"| {seed} | {step} | {set5:.2f} | {set14:.2f} | {np.mean(window):.4f} | {versus} |"
            if window
            else f"| {seed} | {step} | {set5:.2f} | {set14:.2f} | - | {versus} |"
        )
    return rows, curve


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--init", choices=("basicsr", "dlas"), default="basicsr", help="RRDBNet init")
    parser.add_argument("--bf16", action="store_true", help="train in bf16 (CPUs with AVX-512-BF16/AMX)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-at", type=int, nargs="+", default=[1000, 2000, 3000])
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "quality_protocol")
    parser.add_argument("--resume", default="auto", help="path.resume_state of each run (auto: continue)")
    args = parser.parse_args()
    setup_logging()
    photos = args.shared / "datasets" / "photos"
    if not photos.is_dir() or not (args.shared / "datasets" / "benchmark").is_dir():
        raise SystemExit(f"needs {photos} and the benchmark sets beside it (the developers' shared data)")
    data = REPO / "datasets" / "quality_protocol"
    prepare_data(photos, data)
    rows, curves = [], {}
    for seed in args.seeds:
        seed_rows, curves[f"esrforge {args.init}, seed {seed}"] = run_seed(args, data, seed)
        rows += seed_rows
    head = [
        f"esrforge, RRDBNet init {args.init}, against BasicSR 1.4.2 (seed 0) on the same protocol",
        "",
        "| seed | step | Set5 PSNR-Y | Set14 PSNR-Y | training L1 (last 100 steps) | vs BasicSR (Set5 / Set14) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    reference = [f"| BasicSR | {s} | {a:.2f} | {b:.2f} | {c:.4f} | |" for s, (a, b, c) in BASICSR.items()]
    first = next(iter(curves.values()))
    per_100 = ", ".join(f"{first[s]:.3f}" for s in sorted(first)[:10]) or "-"
    report = (
        "\n".join([*head, *rows, *reference])
        + f"\n\nL1 per 100 steps from the start ({next(iter(curves))}): {per_100}\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"results_{args.init}.md", report)
    plot_curves(curves, args.out / f"l1_curves_{args.init}.png")
    print(report)


if __name__ == "__main__":
    main()
