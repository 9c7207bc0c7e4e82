"""``python codes/scripts/demo.py``: the whole job on a built-in default, in a few minutes on a CPU.

It copies photographs that ship with scikit-image, cuts the training ones into chunks, trains
``options/demo_x4.yml``, upscales a held-out photo with test.py, writes a bicubic | model | original
picture (the whole photo, then two native-resolution crops where the model gains most) and reports
the model's PSNR-Y gain over bicubic.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.chunks import ChunkOptions, run_chunking
from ..data.imageio import read_image, write_image
from ..data.imresize import imresize, mod_crop
from ..fields.errors import OptionError
from ..inference.compare import comparison
from ..metrics import calculate_psnr
from ..options.loader import load_config
from . import test as test_cli
from .common import add_overrides_argument, exit_with
from .train import train

log = logging.getLogger("esrforge")

REPO = Path(__file__).resolve().parents[3]
TRAIN_PHOTOS = ("astronaut.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg", "ihc.png", "coffee.png")
VAL_PHOTO = "chelsea.png"
HELD_OUT = "hubble_deep_field.jpg"


def skimage_photo(name: str) -> Path:
    """The path of a photograph bundled in scikit-image's ``data`` folder."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise OptionError("", "the demo needs scikit-image's photographs: pip install scikit-image")
    path = Path(spec.origin).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"scikit-image has no bundled {path}; reinstall scikit-image")
    return path


def prepare_data(root: Path) -> None:
    """Copy the photos into ``root/{hr,val,test}`` and cut the training ones into 128 px chunks."""
    for folder, names in (("hr", TRAIN_PHOTOS), ("val", (VAL_PHOTO,)), ("test", (HELD_OUT,))):
        for name in names:
            target = root / folder / f"{Path(name).stem}.png"
            if not target.exists():
                write_image(target, read_image(skimage_photo(name)))
    summary = run_chunking([root / "hr"], root / "chunks", ChunkOptions(crop_size=128, step=64), workers=2)
    log.info("demo data: %s", summary)


def side_by_side(hr: np.ndarray, sr: np.ndarray, scale: int) -> tuple[np.ndarray, float, float]:
    """``bicubic | model | original`` (whole, then native-resolution crops where the model gains most)
    and the PSNR-Y of bicubic and of the model against the original."""
    lr = imresize(hr, 1 / scale)
    bicubic = imresize(lr, scale)
    psnr_bicubic = calculate_psnr(bicubic, hr, crop_border=scale, y_channel=True)
    psnr_model = calculate_psnr(sr, hr, crop_border=scale, y_channel=True)
    picture = comparison([bicubic, sr, hr], ["bicubic", "model", "original"])
    return picture, psnr_bicubic, psnr_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train a small x4 model on built-in photos and show the result."
    )
    parser.add_argument("--config", type=Path, default=REPO / "options" / "demo_x4.yml")
    add_overrides_argument(parser, "train.niter=200")
    parser.add_argument("--output", type=Path, default=REPO / "results" / "demo", help="where results go")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides, check_paths=False)
    assert config.datasets.train is not None
    data_root = config.datasets.train.dataroot.parent
    prepare_data(data_root)
    config = load_config(args.config, [*args.overrides, f"datasets.val.dataroot={data_root / 'val'}"])
    if train(config, archive=True) != 0:
        return 1
    model = config.experiment_dir / "models" / f"{config.train.niter if config.train else 0}_G.pth"
    hr_path = data_root / "test" / f"{Path(HELD_OUT).stem}.png"
    results: Path = args.output
    status = test_cli.main(
        ["--model", str(model), "--input", str(hr_path), "--output", str(results), "--downscale-gt", "--cpu"]
    )
    if status != 0:
        return status
    hr = mod_crop(read_image(hr_path), config.scale)
    sr = read_image(results / f"{hr_path.stem}_x{config.scale}.png")  # test.py's name for it
    picture, psnr_bicubic, psnr_model = side_by_side(hr, sr, config.scale)
    out = results / f"{hr_path.stem}_bicubic_model_original.png"
    write_image(out, picture)
    gain = psnr_model - psnr_bicubic
    log.info(
        "held-out %s: bicubic %.2f dB, model %.2f dB PSNR-Y: gain %+.2f dB; picture %s",
        hr_path.name,
        psnr_bicubic,
        psnr_model,
        gain,
        out,
    )
    return 0 if gain > 0 else 1


def run() -> None:
    """Entry point of ``codes/scripts/demo.py``."""
    exit_with(main)
