"""A real training experiment: a small x4 RRDB trained on ../shared/datasets/photos, scored on Set5/Set14.

    python bench/train_experiment.py [--shared ../shared/datasets] [--l1-steps 2000] [--gan-steps 500]
                                     [--vgg-weights vgg19.pth] [--docs docs/experiment]
                                     [--precision auto|fp32|bf16]

1. cuts 11 of the 12 photos into 240 px chunks (the 12th, Wood.jpg, is held out for validation);
2. trains ``bench/experiment/l1_x4.yml`` (RRDB 32/6/16 with a bicubic skip, L1; about 30 minutes on a
   2-core CPU at 2,000 steps);
3. continues from that model with ``bench/experiment/gan_x4.yml`` (the recipe's GAN losses; the VGG
   perceptual loss too when ``--vgg-weights`` names ImageNet VGG19 weights);
4. upscales Set5 and Set14 with test.py (LR = MATLAB bicubic of the mod-cropped GT) with both models
   and prints PSNR/SSIM-Y against the published bicubic protocol;
5. writes ``results.md`` and crops (bicubic | L1 | GAN | original) into ``--docs``;
6. sweeps network interpolation between the L1 and the GAN model on Set14 (``interpolate.py --sweep``:
   PSNR/SSIM-Y, and LPIPS with ``--lpips``, which needs torchvision's AlexNet weights in its cache) and
   writes the table, the plot and the crop grid into ``--docs/interpolation``.

Everything it writes besides ``--docs`` goes under ``datasets/experiment`` and ``experiments/``. Rerunning
resumes finished stages (delete those folders to start over).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "codes"))

from esrforge.cli import interpolate as interpolate_cli  # noqa: E402
from esrforge.cli import test as test_cli  # noqa: E402
from esrforge.cli.train import train  # noqa: E402
from esrforge.data.chunks import ChunkOptions, run_chunking  # noqa: E402
from esrforge.data.imageio import read_image, write_image  # noqa: E402
from esrforge.data.imresize import imresize, mod_crop  # noqa: E402
from esrforge.fileio import atomic_write_text  # noqa: E402
from esrforge.inference.compare import crop_row  # noqa: E402
from esrforge.logs import setup_logging  # noqa: E402
from esrforge.metrics.evaluate import ImageScore, evaluate_folder, mean_score  # noqa: E402
from esrforge.options.loader import load_config  # noqa: E402
from esrforge.options.schema import Config  # noqa: E402

log = logging.getLogger("esrforge")

HERE = Path(__file__).resolve().parent / "experiment"
DATA = REPO / "datasets" / "experiment"
HELD_OUT = "Wood.jpg"
CROPS = {"Set14": [("baboon", 180, 250, 96), ("comic", 120, 40, 96)], "Set5": [("butterfly", 60, 80, 96)]}
"""Crops shown in the docs: (image stem, top, left, size) in HR pixels."""


def prepare_data(photos: Path) -> None:
    """Chunks of every photo but the held-out one, and a 512 px centre crop of the held-out one for validation."""
    train = DATA / "train_photos"
    train.mkdir(parents=True, exist_ok=True)
    for photo in sorted(photos.glob("*.jpg")):
        link = train / photo.name
        if photo.name != HELD_OUT and not link.exists():
            link.symlink_to(photo.resolve())
    val = DATA / "val" / f"{Path(HELD_OUT).stem}.png"
    if not val.exists():
        image = read_image(photos / HELD_OUT)
        top, left = (image.shape[0] - 512) // 2, (image.shape[1] - 512) // 2
        write_image(val, image[top : top + 512, left : left + 512])
    summary = run_chunking([train], DATA / "chunks", ChunkOptions(crop_size=240, step=240), workers=2)
    log.info("experiment data: %s", summary)


def stage(config_file: Path, overrides: list[str], suffix: str) -> tuple[Config, Path, float]:
    """Train one config, its name + ``suffix`` (skipped when its final generator exists); the config, that
    generator and the minutes."""
    config = load_config(config_file, overrides)
    if suffix:
        config = load_config(config_file, [*overrides, f"name={config.name}{suffix}"])
    assert config.train is not None
    final = config.experiment_dir / "models" / f"{config.train.niter}_G.pth"
    if final.exists():
        log.info("%s: %s exists, not retrained", config.name, final)
        return config, final, float("nan")
    start = time.perf_counter()
    if train(config, archive=False) != 0:
        raise SystemExit(f"training {config.name} failed")
    return config, final, (time.perf_counter() - start) / 60


def trained_precision(log_file: Path) -> str:
    """The precision the log's last run head names ("float32", "bf16: automatic on this CPU ...")."""
    text = log_file.read_text() if log_file.is_file() else ""
    heads = re.findall(r" INFO experiment .* on \S+ \((.+)\), \d+ process", text)
    return heads[-1] if heads else "precision not logged"


def score(
    model: Path, benchmark: Path, out: Path, extra: tuple[str, ...] = ()
) -> tuple[dict[str, list[ImageScore]], dict[str, Path]]:
    """Upscale Set5 and Set14 with test.py in fp32 (LR made from the GT, ``extra`` flags added); scores and folders."""
    scores, folders = {}, {}
    for name in ("Set5", "Set14"):
        folder = out / name
        args = ["--model", str(model), "--input", str(benchmark / name), "--output", str(folder)]
        if test_cli.main([*args, "--downscale-gt", "--cpu", "--fp32", *extra]) != 0:  # scores in fp32
            raise SystemExit(f"test.py failed on {benchmark / name}")
        scores[name], folders[name] = evaluate_folder(benchmark / name, folder, 4, 4), folder
    return scores, folders


def crops(benchmark: Path, folders: dict[str, dict[str, Path]], docs: Path) -> list[Path]:
    """bicubic | L1 | GAN | original crops of a few benchmark images, enlarged 2x (nearest) for viewing."""
    written = []
    for dataset, items in CROPS.items():
        for stem, top, left, size in items:
            hr = mod_crop(read_image(benchmark / dataset / f"{stem}.png"), 4)
            bicubic = imresize(imresize(hr, 0.25), 4.0)
            panels = [bicubic]
            for model in ("L1", "GAN"):
                panels.append(read_image(next(folders[model][dataset].glob(f"{stem}_*.png"))))
            panels.append(hr)
            picture = crop_row(panels, top, left, size)
            path = docs / f"{dataset.lower()}_{stem}_bicubic_l1_gan_original.png"
            write_image(path, picture)
            written.append(path)
    return written


def table(benchmark: Path, results: dict[str, dict[str, list[ImageScore]]]) -> str:
    """A markdown table of mean PSNR/SSIM-Y for bicubic and each model on Set5 and Set14."""
    lines = [
        "| model | Set5 PSNR-Y | Set5 SSIM-Y | Set14 PSNR-Y | Set14 SSIM-Y |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rows = {"bicubic": {name: evaluate_folder(benchmark / name, None, 4, 4) for name in ("Set5", "Set14")}}
    rows.update(results)
    for model, scores in rows.items():
        means = [mean_score(scores[name]) for name in ("Set5", "Set14")]
        cells = [f"{m.psnr_y:.2f} dB | {m.ssim_y:.4f}" for m in means]
        lines.append(f"| {model} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def sweep(l1: Path, gan: Path, benchmark: Path, out: Path, lpips: bool) -> str:
    """Interpolation between the two models on Set14; the markdown table of its scores."""
    metrics = "psnr_y,ssim_y" + (",lpips_alex" if lpips else "")
    args = ["--a", str(l1), "--b", str(gan), "--sweep", "0:1:0.2", "--gt", str(benchmark / "Set14")]
    if interpolate_cli.main([*args, "--out", str(out), "--metrics", metrics, "--device", "cpu"]) != 0:
        raise SystemExit("interpolate.py failed")
    rows = (out / "interpolation.csv").read_text().splitlines()
    header = rows[0].split(",")[1:]
    lines = ["| " + " | ".join(header) + " |", "|" + " ---: |" * len(header)]
    for text in rows[1:]:
        cells = text.split(",")[1:]
        lines.append("| " + " | ".join([cells[0]] + [f"{float(c):.4f}" for c in cells[1:]]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--l1-steps", type=int, default=2000)
    parser.add_argument("--gan-steps", type=int, default=500)
    parser.add_argument("--vgg-weights", type=Path, help="ImageNet VGG19 weights: adds the perceptual loss")
    parser.add_argument(
        "--lpips", action="store_true", help="score LPIPS too (AlexNet weights in torchvision's cache)"
    )
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "experiment")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="training precision; auto: bf16 on CPUs with AVX-512-BF16/AMX, else float32 (a forced one "
        "trains into experiment folders of its own)",
    )
    args = parser.parse_args()
    setup_logging()
    photos, benchmark = args.shared / "photos", args.shared / "benchmark"
    if not photos.is_dir() or not benchmark.is_dir():
        raise SystemExit(f"needs {photos} and {benchmark} (see the developers' shared data)")
    prepare_data(photos)
    data = [f"datasets.train.dataroot={DATA / 'chunks'}", f"datasets.val.dataroot={DATA / 'val'}"]
    l1_steps = [
        f"train.niter={args.l1_steps}",
        f"train.lr_steps=[{args.l1_steps // 2}, {args.l1_steps * 3 // 4}]",
    ]
    forced = [] if args.precision == "auto" else [f"{args.precision}=true"]
    suffix = "" if args.precision == "auto" else f"_{args.precision}"
    l1_config, l1_model, l1_minutes = stage(HERE / "l1_x4.yml", [*data, *l1_steps, *forced], suffix)
    gan = [*data, *forced, f"train.niter={args.gan_steps}", f"path.pretrain_model_generator={l1_model}"]
    if args.vgg_weights is not None:
        perceptual = f"{{type: perceptual, weight: 1.0, weights_path: {args.vgg_weights.resolve()}}}"
        gan.append(f"train.losses[4]={perceptual}")
    _, gan_model, gan_minutes = stage(HERE / "gan_x4.yml", gan, suffix)
    results, folders = {}, {}
    for label, model in (("L1", l1_model), ("GAN", gan_model)):
        results[label], folders[label] = score(
            model, benchmark, l1_config.experiment_dir.parent / f"experiment_scores{suffix}" / label
        )
    args.docs.mkdir(parents=True, exist_ok=True)
    pictures = crops(benchmark, folders, args.docs)
    report = table(benchmark, results)
    precision = trained_precision(l1_config.experiment_dir / "train.log")
    report += f"\nL1 stage: {args.l1_steps} steps, {l1_minutes:.1f} min; GAN stage: {args.gan_steps} steps, {gan_minutes:.1f} min"
    report += f" ({'with' if args.vgg_weights else 'without'} the perceptual loss); {precision}.\n"
    report += "\nNetwork interpolation on Set14, (1 - alpha) L1 + alpha GAN:\n\n"
    report += sweep(l1_model, gan_model, benchmark, args.docs / "interpolation", args.lpips)
    atomic_write_text(args.docs / "results.md", report)
    log.info("\n%s\ncrops: %s", report, ", ".join(str(p) for p in pictures))


if __name__ == "__main__":
    main()
