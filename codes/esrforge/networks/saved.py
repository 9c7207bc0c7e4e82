"""Generator files that say what they hold: weights plus the options that build their network.

``.safetensors`` files written here carry metadata (``esrforge.architecture``, ``esrforge.options``
as JSON, ``esrforge.scale``, and where known ``esrforge.step`` and ``esrforge.config``);
:func:`~esrforge.networks.checkpoint.load_generator` builds the network from those options instead
of recognising it from the tensors. ``.pth`` files hold the plain state dict, as BasicSR tools read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from ..fields.convert import Resolver, convert, to_data
from ..fields.errors import OptionError
from ..fileio import atomic_write_bytes, atomic_write_with
from .base import NetworkOptions

PREFIX = "esrforge."
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Prefixes left by DistributedDataParallel / DataParallel and torch.compile."""


def strip_prefixes(key: str) -> str:
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def plain_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies without wrapper prefixes (``module.`` from DDP, ``_orig_mod.`` from compile)."""
    return {strip_prefixes(k): v.detach().cpu().contiguous() for k, v in state_dict.items()}


def save_generator(
    path: Path,
    state_dict: Mapping[str, torch.Tensor],
    options: NetworkOptions | None = None,
    step: int | None = None,
    config: str | None = None,
) -> None:
    """Write weights to ``path`` atomically: ``.safetensors`` with metadata, or a plain ``.pth``."""
    tensors = plain_tensors(state_dict)
    if path.suffix == ".safetensors":
        atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata(options, step, config)))
    elif path.suffix == ".pth":
        atomic_write_with(path, lambda handle: torch.save(tensors, handle))
    else:
        raise ValueError(f"{path}: expected a .pth or .safetensors file name")


def metadata(options: NetworkOptions | None, step: int | None, config: str | None) -> dict[str, str]:
    """The string metadata of a generator file."""
    data: dict[str, str] = {}
    if options is not None:
        description = options.describe()
        data.update(architecture=description.architecture, scale=str(description.scale))
        data["options"] = json.dumps(to_data(options))
    if step is not None:
        data["step"] = str(step)
    if config is not None:
        data["config"] = config
    return {PREFIX + k: v for k, v in data.items()}


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` holds safetensors, whatever its name (``.safetensors``, or a ``.pth`` renamed): its
    8-byte header length is followed by the JSON header."""
    if path.suffix == ".safetensors":
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") > 1


def read_metadata(path: Path) -> dict[str, str]:
    """The esrforge metadata of a safetensors file (without the prefix); empty for other files."""
    if not path.is_file() or not is_safetensors(path):
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw: dict[str, str] = handle.metadata() or {}
    except (SafetensorError, OSError):
        return {}  # read_state_dict reports what is wrong with the file
    return {k.removeprefix(PREFIX): v for k, v in raw.items() if k.startswith(PREFIX)}


def saved_options(path: Path) -> NetworkOptions | None:
    """The network options a generator file records, or None when it records none."""
    text = read_metadata(path).get("options")
    if text is None:
        return None
    try:
        data: Any = json.loads(text)
        options: NetworkOptions = convert(NetworkOptions, data, "options", Resolver(path.parent, False))
    except (json.JSONDecodeError, OptionError) as error:
        raise ValueError(f"{path}: its esrforge.options metadata is unusable ({error})") from None
    return options
