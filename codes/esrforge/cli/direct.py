"""The direct form of test.py and process_video.py: command-line flags that stand for config keys.

Each program maps its flags (argparse ``dest`` names) to config keys. The map builds the config the
flags describe, refuses the flags beside ``-opt``, and names the flag the user typed in error messages.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..fields.errors import OptionError
from ..inference.tiling import DEFAULT_OVERLAP, DEFAULT_PAD

Config = TypeVar("Config")

MODEL_FLAGS = {
    "model": "path.pretrain_model_generator",
    "scale": "scale",
    "param_key": "path.param_key",
    "tile": "inference.tile_size",
    "tile_pad": "inference.tile_pad",
    "tile_overlap": "inference.tile_overlap",
    "tile_batch": "inference.tile_batch_size",
    "half": "fp16",
    "bf16": "bf16",
    "fp32": "fp32",
    "compile": "compile",
    "cpu": "gpu_ids",
}
"""The flags :func:`add_model_arguments` adds, and their config keys."""


def parse_tile(text: str) -> str | int | None:
    """``auto``, ``0`` (whole images) or a tile size."""
    if text == "auto":
        return text
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, 0 or a size in pixels, got {text!r}") from None
    return size or None


def add_model_arguments(group: argparse._ArgumentGroup, unit: str) -> None:
    """The model, tiling and precision flags (:data:`MODEL_FLAGS`); ``unit``: "images" or "frames"."""
    group.add_argument(
        "--model",
        type=Path,
        help="generator checkpoint (.pth or .safetensors): any RRDB layout, SRVGGNetCompact, or any model spandrel knows",
    )
    group.add_argument("--scale", type=int, help="expected upscaling factor (checked against the checkpoint)")
    group.add_argument(
        "--param-key", help="checkpoint entry holding the weights (default: params_ema, params, ...)"
    )
    group.add_argument(
        "--tile", type=parse_tile, default="auto", help=f"tile size, auto, or 0 for whole {unit}"
    )
    group.add_argument("--tile-pad", type=int, default=DEFAULT_PAD, help="context pixels per tile side")
    group.add_argument(
        "--tile-overlap", type=int, default=DEFAULT_OVERLAP, help="feathered pixels between tiles"
    )
    group.add_argument("--tile-batch", type=int, default=1, help="tiles per forward pass")
    group.add_argument("--half", action="store_true", help="float16 on CUDA")
    group.add_argument(
        "--bf16", action="store_true", help="bfloat16 (only fast on GPUs and AVX-512-BF16/AMX CPUs)"
    )
    group.add_argument(
        "--fp32", action="store_true", help="float32 only (no automatic bf16 on AVX-512-BF16/AMX CPUs)"
    )
    group.add_argument(
        "--compile", action="store_true", help="torch.compile the network (the first tile compiles it)"
    )
    group.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is available")


def flag(dest: str) -> str:
    """The option string of an argparse ``dest``."""
    return "--" + dest.replace("_", "-")


def direct_data(args: argparse.Namespace, flags: Mapping[str, str], base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with every flag of ``flags`` set at its config key (``--cpu`` becomes ``gpu_ids``)."""
    data = dict(base)
    for dest, key in flags.items():
        value = getattr(args, dest)
        if dest == "cpu":
            value = [0] if torch.cuda.is_available() and not value else []
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = str(value) if isinstance(value, Path) else value
    return data


def config_from_args(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    flags: Mapping[str, str],
    load: Callable[[Path, Sequence[str]], Config],
    from_data: Callable[[dict[str, Any], str, Path], Config],
    base: dict[str, Any],
    input_name: str,
) -> Config:
    """The config of ``-opt`` (with ``--set``), or the one the direct form's flags describe."""
    direct = [flag(d) for d in flags if getattr(args, d) != parser.get_default(d)]
    if args.opt is not None:
        if direct:
            raise ValueError(
                f"{', '.join(direct)}: not used with -opt; change the config with --set key=value"
            )
        return load(args.opt, args.overrides)
    if args.overrides:
        raise ValueError("--set needs -opt CONFIG")
    if args.model is None or args.input is None:
        raise ValueError(f"give -opt CONFIG, or --model CHECKPOINT and --input {input_name}")
    try:
        return from_data(direct_data(args, flags, base), "", Path.cwd())
    except OptionError as err:
        err.key = next((flag(d) for d, key in flags.items() if key == err.key), err.key)
        raise
