"""``python codes/scripts/inspect_model.py MODEL [--param-key KEY] [--check]``.

Says what a checkpoint (or an exported ONNX file) is, as test.py, process_video.py and train.py will see it: the architecture (ours
or spandrel's), scale, channels, the size its input must be a multiple of, the precisions it runs in,
whether it tiles, its parameter count, and the ``networks.generator`` section that builds it again (to
fine-tune it). ``--check`` also runs it on a small smooth image, whole and in tiles, and reports the
output size and how far the tiled result is from the whole one.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from ..fields.convert import to_data
from ..inference.onnx_model import load_onnx
from ..inference.tiling import upscale
from ..networks import LoadedNetwork, load_generator
from ..networks.saved import read_metadata
from ..probes import probe_input
from .common import exit_with

log = logging.getLogger("esrforge")
CHECK_SIZE, CHECK_TILE, CHECK_MARGIN = 192, 48, 16


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Say what a model checkpoint is and how esrforge runs it.")
    parser.add_argument("model", type=Path, help="a .pth or .safetensors checkpoint, or an exported .onnx")
    parser.add_argument("--param-key", help="checkpoint entry holding the weights (default: params_ema, ...)")
    parser.add_argument("--check", action="store_true", help="also run it whole and tiled on a small image")
    return parser.parse_args(argv)


def check(loaded: LoadedNetwork) -> None:
    """Run the model on a smooth image, whole and in tiles; log the output size and the tiled difference."""
    description = loaded.description
    image = probe_input(description, (CHECK_SIZE, CHECK_SIZE))[0]
    with torch.no_grad():
        whole = upscale(loaded.module, image, description=description)
        tiled = upscale(loaded.module, image, CHECK_TILE, CHECK_MARGIN, CHECK_MARGIN, description=description)
    if not torch.isfinite(whole).all():
        raise ValueError(f"{description.architecture}: the output has NaN or infinite values")
    difference = float((tiled - whole).abs().max())
    log.info(
        "check: %dx%d -> %dx%d; %d px tiles (pad and overlap %d) differ from the whole image by at most %.2g (of 1)",
        CHECK_SIZE,
        CHECK_SIZE,
        whole.shape[-1],
        whole.shape[-2],
        CHECK_TILE,
        CHECK_MARGIN,
        difference,
    )


def log_origin(path: Path, loaded: LoadedNetwork) -> None:
    """What an esrforge ``.safetensors`` file records: the network (built from its options, which
    load_generator does not log) and the training step and experiment it came from."""
    saved = read_metadata(path)
    if "options" in saved:
        log.info("%s: %s", path, loaded.description.line())
    origin = [
        f"{label} {saved[key]}" for key, label in (("step", "step"), ("config", "experiment")) if key in saved
    ]
    if origin:
        log.info("%s: saved by esrforge at %s", path, ", ".join(origin))


def load(path: Path, key: str | None) -> LoadedNetwork:
    """The model as test.py loads it: an ONNX file in onnxruntime (which logs what it is), else a checkpoint."""
    if path.suffix.lower() != ".onnx":
        return load_generator(path, key=key)
    if key is not None:
        raise ValueError(f"--param-key: {path} is an ONNX file, which holds one network")
    return load_onnx(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    loaded = load(args.model, args.param_key)
    loaded.module.eval()
    log_origin(args.model, loaded)
    parameters = sum(p.numel() for p in loaded.module.parameters())
    if parameters:  # an ONNX graph holds its weights as constants
        log.info("%s: %s parameters", args.model, f"{parameters:,}")
    section = yaml.safe_dump({"networks": {"generator": to_data(loaded.options)}}, sort_keys=False)
    log.info("the config section that builds it (to fine-tune it with path.pretrain_model_generator):")
    for line in section.rstrip().splitlines():
        log.info("  %s", line)
    if args.check:
        check(loaded)
    return 0


def run() -> None:
    exit_with(main)
