"""Read network weights safely (safetensors or tensor-only pickles) and load them into networks."""

from __future__ import annotations

import dataclasses
import logging
import pickle
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from .layouts import StateDict, detect_rrdb, preview, to_basicsr_layout
from .rrdb import RRDBNet, RRDBNetOptions, upsample_plan

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
# Prefixes left by DistributedDataParallel / DataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _lines(error: BaseException) -> list[str]:
    return [line.strip() for line in str(error).splitlines() if line.strip()]


def _first_line(error: BaseException) -> str:
    return (_lines(error) or [type(error).__name__])[0]


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
        detail = next((line for line in lines if line.startswith("Unsupported")), _first_line(error))
        raise ValueError(
            f"{path}: not a tensor-only PyTorch checkpoint, refused without running it ({detail})"
        ) from None
    except Exception as error:  # a corrupt pickle can fail in the unpickler with almost any exception
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({_first_line(error)})") from None


def _read_safetensors(path: Path) -> StateDict:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({_first_line(error)})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def strip_prefixes(key: str) -> str:
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


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
    raw = _read_safetensors(path) if path.suffix == ".safetensors" else _read_pickle(path)
    return _unwrap(raw, path, key)


def _structure(options: RRDBNetOptions) -> tuple[int, ...]:
    """What the tensors of an RRDBNet with ``options`` look like (equal structure: same weights fit)."""
    factor, stages = upsample_plan(options.scale, options.pixel_unshuffle)
    return (options.nf, options.nb, options.gc, options.in_nc * factor**2, options.out_nc, stages)


def _option_mismatch(wanted: RRDBNetOptions, found: RRDBNetOptions) -> str | None:
    """None when the weights for ``found`` fit ``wanted``, else ``nb 23 in config, 6 in checkpoint; ...``."""
    if _structure(wanted) == _structure(found):
        return None
    fields = [f.name for f in dataclasses.fields(wanted) if f.name != "type"]
    return "; ".join(
        f"{name} {getattr(wanted, name)} in config, {getattr(found, name)} in checkpoint"
        for name in fields
        if getattr(wanted, name) != getattr(found, name)
    )


def _generator_state(
    path: Path, state_dict: StateDict, options: RRDBNetOptions | None, strict: bool
) -> tuple[RRDBNetOptions, StateDict]:
    """Rename ``state_dict`` to our layout and settle the options to build the generator with."""
    try:
        if options is not None and not strict:
            return options, to_basicsr_layout(state_dict)
        found, converted = detect_rrdb(state_dict)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if options is None:
        log.info("%s: detected RRDBNet %s", path, found)
        return found, converted
    mismatch = _option_mismatch(options, found)
    if mismatch:
        raise ValueError(f"{path}: checkpoint does not match the RRDBNet options: {mismatch}")
    return options, converted


def _load_checked(model: nn.Module, state_dict: StateDict, path: Path, strict: bool) -> None:
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


def load_generator(
    path: str | Path, options: RRDBNetOptions | None = None, strict: bool = True, key: str | None = None
) -> RRDBNet:
    """An RRDBNet with the weights of ``path`` (any known layout); its options come from the tensors.

    Given ``options`` must agree with the checkpoint; with ``strict=False`` they win, and tensors that
    do not fit are skipped with a warning (fine-tuning, e.g. from x4 to x2).
    """
    path = Path(path)
    options, state_dict = _generator_state(path, read_state_dict(path, key), options, strict)
    kwargs = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name != "type"}
    model = RRDBNet(**kwargs)
    _load_checked(model, state_dict, path, strict)
    return model


def load_into(model: Net, path: str | Path, strict: bool = True, key: str | None = None) -> Net:
    """Load the weights of ``path`` into ``model`` (any registered network) and return it.

    For an :class:`RRDBNet` the foreign layouts are converted and checked against its options.
    """
    path = Path(path)
    state_dict = read_state_dict(path, key)
    if isinstance(model, RRDBNet):
        state_dict = _generator_state(path, state_dict, model.options, strict)[1]
    _load_checked(model, state_dict, path, strict)
    return model
