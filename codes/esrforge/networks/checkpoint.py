"""Read network weights safely (safetensors or tensor-only pickles) and load them into networks."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..logs import first_line
from .base import NETWORKS, LoadedNetwork, NetworkOptions, StateDict, build_network
from .foreign import SpandrelModel, description_of, detect, spandrel_options
from .layouts import preview
from .saved import is_safetensors, saved_options, strip_prefixes

log = logging.getLogger(__name__)
Net = TypeVar("Net", bound=nn.Module)

# Wrapper keys that hold a state dict, most preferred first (EMA weights win over the online ones).
CONTAINER_KEYS = (
    "params_ema",
    "params-ema",
    "params",
    "state_dict",
    "model_state_dict",
    "generator_ema",
    "generator",
    "net_g",
    "netG",
    "model",
    "net",
)


def _lines(error: BaseException) -> list[str]:
    return [line.strip() for line in str(error).splitlines() if line.strip()]


def _read_pickle(path: Path) -> Any:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if not magic.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip archive, or a legacy pickle
        raise ValueError(f"{path}: not a PyTorch checkpoint (expected a .pth/.pt file or .safetensors)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = _lines(error)
        blocked = [line for line in lines if "GLOBAL" in line]
        if blocked:
            raise ValueError(
                f"{path}: contains objects other than tensors and was refused for safety "
                f"(nothing in it was run): {blocked[0]}"
            ) from None
        detail = next((line for line in lines if line.startswith("Unsupported")), first_line(error))
        raise ValueError(
            f"{path}: not a tensor-only PyTorch checkpoint, refused without running it ({detail})"
        ) from None
    except Exception as error:  # a corrupt pickle can fail in the unpickler with almost any exception
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({first_line(error)})") from None


def _read_safetensors(path: Path) -> StateDict:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({first_line(error)})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _unwrap(obj: Any, path: Path, key: str | None) -> StateDict:
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = preview(sorted(map(str, obj))) if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"{path}: has no {key!r} entry (found: {found})")
        obj = obj[key]
    while not _is_state_dict(obj):
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
        chosen = next((k for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if chosen is None:
            raise ValueError(
                f"{path}: no state dict found (top-level keys: {preview(sorted(map(str, obj))) or 'none'}); "
                f"expected a dict of tensors or one under {', '.join(CONTAINER_KEYS)}"
            )
        obj = obj[chosen]
    return {strip_prefixes(k): v for k, v in obj.items()}


def read_state_dict(path: str | Path, key: str | None = None) -> StateDict:
    """The state dict stored in ``path`` (``.safetensors`` or a tensor-only ``.pth``), on the CPU.

    Wrappers such as ``{'params_ema': ..., 'params': ...}`` are unwrapped (EMA first, see
    :data:`CONTAINER_KEYS`) unless ``key`` names the entry to use; ``module.`` prefixes are removed.
    Pickles that would construct anything but tensors and plain containers are refused, never run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    raw = _read_safetensors(path) if is_safetensors(path) else _read_pickle(path)
    return _unwrap(raw, path, key)


def load_checked(model: nn.Module, state_dict: StateDict, path: Path, strict: bool) -> None:
    """Load ``state_dict`` into ``model``; one-line errors (strict) or warnings listing what did not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [
        f"{k} {list(state_dict[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    problems = [
        f"{len(items)} {what} ({preview(items)})"
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("keys with another shape (checkpoint vs network)", reshaped),
        )
        if items
    ]
    name = type(model).__name__
    if problems and strict:
        raise ValueError(f"{path}: checkpoint does not fit {name}: {'; '.join(problems)}")
    usable = {k: v for k, v in state_dict.items() if k in own and v.shape == own[k].shape}
    if not usable:
        raise ValueError(f"{path}: no tensor of the checkpoint fits {name}: {'; '.join(problems)}")
    if problems:
        log.warning(
            "%s: loaded %d of %d tensors into %s: %s", path, len(usable), len(own), name, "; ".join(problems)
        )
    model.load_state_dict(usable, strict=strict)


def recognise(state_dict: StateDict, path: Path) -> LoadedNetwork:
    """The network whose weights ``state_dict`` holds: ours first (RRDBNet in every layout, SRVGGNetCompact),
    then any architecture spandrel knows; ValueError naming ``path`` when neither recognises it.

    A checkpoint ours recognise but cannot load strictly (a variant with extra layers) goes on to spandrel.
    """
    problems: list[str] = []
    for name in NETWORKS.names():
        try:
            found = NETWORKS.get(name).options.from_state_dict(state_dict)
            if found is None:
                continue
            options, converted = found
            module = build_network(options)
            load_checked(module, converted, path, strict=True)
            return LoadedNetwork(module, options, options.describe())
        except ValueError as error:
            problems.append(f"{name}: {str(error).removeprefix(f'{path}: ')}")
    try:
        descriptor = detect(state_dict)
    except ValueError as error:
        problems.append(str(error))
        raise ValueError(
            f"{path}: not a model esrforge or spandrel recognises ({'; '.join(problems)}); "
            f"keys: {preview(sorted(state_dict))}"
        ) from None
    return LoadedNetwork(SpandrelModel(descriptor), spandrel_options(descriptor), description_of(descriptor))


def load_generator(
    path: str | Path, options: NetworkOptions | None = None, strict: bool = True, key: str | None = None
) -> LoadedNetwork:
    """The network of ``options`` with the weights of ``path``; without options, the one a safetensors
    file's metadata records (see :mod:`~esrforge.networks.saved`), else the one the tensors hold.

    Given options must agree with the checkpoint; with ``strict=False`` they win, and tensors that
    do not fit are skipped with a warning (fine-tuning, e.g. from x4 to x2).
    """
    path = Path(path)
    options = options or saved_options(path)
    if options is None:
        loaded = recognise(read_state_dict(path, key), path)
        log.info("%s: %s", path, loaded.description.line())
        return loaded
    module = load_into(build_network(options), options, path, strict, key)
    return LoadedNetwork(module, options, options.describe())


def load_into(
    model: Net, options: NetworkOptions, path: str | Path, strict: bool = True, key: str | None = None
) -> Net:
    """Load the weights of ``path`` into ``model``, built from ``options`` (which adapt foreign layouts)."""
    path = Path(path)
    try:
        state_dict = options.adapt_state_dict(read_state_dict(path, key), strict)
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    load_checked(model, state_dict, path, strict)
    return model
