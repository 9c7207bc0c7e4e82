"""The metadata an esrforge ONNX file carries (``metadata_props``), written at export, read by test.py.

All values are strings (ONNX's rule). ``generator`` is the JSON of the ``networks.generator`` options
that build the network again in PyTorch; ``precision`` is the arithmetic inside the graph and
``io_dtype`` that of its input and output; ``input_size`` is ``dynamic`` or the fixed ``HxW``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from .. import __version__
from ..fields import OptionError
from ..fields.convert import Resolver, convert, to_data
from ..networks.base import Description, LoadedNetwork, NetworkOptions

FORMAT_KEY, FORMAT_VERSION = "esrforge_onnx", "1"
TILINGS = ("supported", "discouraged", "internal")
Precision = Literal["fp32", "fp16"]


@dataclass(frozen=True)
class OnnxInfo:
    """What an esrforge ONNX file says about itself."""

    description: Description
    """The network's description; ``dtypes`` is float32 only: the file's precision is fixed."""
    options: NetworkOptions
    precision: Precision
    input_size: tuple[int, int] | None
    """Fixed ``(height, width)`` of the input, or None when height and width are dynamic."""

    def line(self) -> str:
        """``RRDBNet x4, 3 -> 3 channels, input multiple of 1, ONNX fp16 (float32 in and out), input 256x256``."""
        d = self.description
        size = "dynamic input size" if self.input_size is None else "input {}x{}".format(*self.input_size)
        return (
            f"{d.architecture} x{d.scale}, {d.in_channels} -> {d.out_channels} channels, input multiple of "
            f"{d.size_multiple}, ONNX {self.precision} (float32 in and out), {size}, tiling {d.tiling}"
        )


def to_props(
    loaded: LoadedNetwork, precision: Precision, input_size: tuple[int, int] | None
) -> dict[str, str]:
    """The ``metadata_props`` of an export of ``loaded``."""
    d = loaded.description
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "producer": f"esrforge {__version__}",
        "architecture": d.architecture,
        "scale": str(d.scale),
        "in_channels": str(d.in_channels),
        "out_channels": str(d.out_channels),
        "size_multiple": str(d.size_multiple),
        "min_size": str(d.min_size),
        "tiling": d.tiling,
        "precision": precision,
        "io_dtype": "float32",
        "input_size": "dynamic" if input_size is None else "{}x{}".format(*input_size),
        "generator": json.dumps(to_data(loaded.options), sort_keys=True),
    }


def from_props(props: Mapping[str, str], path: Path) -> OnnxInfo:
    """Read :func:`to_props`'s metadata back; one-line ValueError naming ``path`` when it is not there."""
    if props.get(FORMAT_KEY) != FORMAT_VERSION:
        raise ValueError(
            f"{path}: not an ONNX file exported by esrforge (no {FORMAT_KEY}: {FORMAT_VERSION} metadata); "
            "export the checkpoint with codes/scripts/export.py"
        )
    try:
        tiling = props["tiling"]
        if tiling not in TILINGS or props["precision"] not in ("fp32", "fp16"):
            raise ValueError(f"tiling {tiling!r} / precision {props['precision']!r}")
        description = Description(
            props["architecture"],
            int(props["scale"]),
            int(props["in_channels"]),
            int(props["out_channels"]),
            size_multiple=int(props["size_multiple"]),
            min_size=int(props["min_size"]),
            dtypes=(torch.float32,),
            tiling=tiling,  # type: ignore[arg-type]
        )
        size = props["input_size"]
        input_size = None if size == "dynamic" else _size(size)
        options = convert(
            NetworkOptions,
            json.loads(props["generator"]),
            "generator",
            Resolver(path.parent, check_paths=False),
        )
    except KeyError as err:
        raise ValueError(f"{path}: the esrforge metadata lacks {err}") from None
    except (ValueError, OptionError) as err:
        raise ValueError(f"{path}: unreadable esrforge metadata ({err})") from None
    return OnnxInfo(description, options, props["precision"], input_size)  # type: ignore[arg-type]


def _size(text: str) -> tuple[int, int]:
    height, width = text.split("x")
    return int(height), int(width)
