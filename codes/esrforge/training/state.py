"""Checkpoint files: network weights, the whole training state, pruning.

``models/<step>_<tag>.pth`` holds one network's plain CPU state dict (``G``, ``G_ema``, ``D``), as test.py
and BasicSR-style tools read it. ``training_state/<step>.state`` holds everything needed to resume. Both
are written atomically (a temporary file renamed over the target) and hold only tensors, numbers,
strings and containers, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections import OrderedDict
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..degradations.pipeline import PairPool
from ..fileio import atomic_write_with
from ..logs import first_line
from ..networks.checkpoint import load_checked
from ..networks.saved import save_generator
from .distributed import DistributedContext
from .experiment import STATE_SUFFIX, ExperimentDirs

log = logging.getLogger(__name__)
MODEL_SUFFIX = ".pth"
_TAG = re.compile(r"[A-Za-z0-9_]+")
_MODEL_STEM = re.compile(r"([0-9]+)_([A-Za-z0-9_]+)")
# What torch.load(weights_only=True) reads back, by exact type: numpy scalars subclass float but are refused.
_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device)
_MAPPINGS = (dict, OrderedDict)
_SEQUENCES = (list, tuple, torch.Size)


def _save(obj: object, path: Path) -> None:
    atomic_write_with(path, lambda handle: torch.save(obj, handle))


def save_weights(path: Path, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Write one network's weights to ``path`` atomically: a plain dict of contiguous CPU tensors.

    Wrapper prefixes (``module.`` from DDP, ``_orig_mod.`` from torch.compile) are removed from the keys.
    """
    save_generator(Path(path), state_dict)


def save_models(
    dirs: ExperimentDirs, step: int, weights: Mapping[str, Mapping[str, torch.Tensor]]
) -> list[Path]:
    """Write each ``tag: state_dict`` to ``models/<step>_<tag>.pth`` with :func:`save_weights`."""
    paths = []
    for tag, state in weights.items():
        if not _TAG.fullmatch(tag) or tag.startswith("best"):
            raise ValueError(f"model tag {tag!r}: expected letters, digits or '_', not starting with 'best'")
        path = dirs.models / f"{step}_{tag}{MODEL_SUFFIX}"
        save_weights(path, state)
        paths.append(path)
    return paths


def _check_plain(value: object, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` could not read back, naming where it is."""
    if isinstance(value, dict) and type(value) in _MAPPINGS:
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(
                    f"training state: key {key!r} of {where} is {type(key).__name__}, not str or int"
                )
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple) and type(value) in _SEQUENCES:
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif type(value) not in _SCALARS and not isinstance(value, torch.Tensor):
        raise TypeError(
            f"training state: {where} is {type(value).__name__}; store tensors, numbers, strings, "
            "lists, tuples or dicts"
        )


def tensor_bytes(value: object) -> int:
    """Bytes of the tensors in nested dicts, lists and tuples (about what saving them writes)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(item) for item in value)
    return 0


def save_training_state(dirs: ExperimentDirs, step: int, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``training_state/<step>.state`` (a TypeError names anything not storable)."""
    plain = dict(payload)
    _check_plain(plain, "payload")
    path = dirs.training_state / f"{step}{STATE_SUFFIX}"
    _save(plain, path)
    return path


def load_networks(nets: Mapping[str, nn.Module], state: Mapping[str, Any], path: Path) -> None:
    """Load each network's weights (``G``, ``D``) from the training state read from ``path``; one line when
    one is missing or no longer fits the config's network."""
    for key, net in nets.items():
        if key not in state["networks"]:
            raise ValueError(f"{path}: the training state has no {key} network")
        try:
            load_checked(net, dict(state["networks"][key]), path, strict=True)
        except ValueError as error:
            raise ValueError(
                f"{error} ({key} network); the networks changed since it was saved: start a new run "
                "(another name, or --archive)"
            ) from None


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a file written by :func:`save_training_state`, tensors on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such training state file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        detail = first_line(error)
        steps = [int(p.stem) for p in path.parent.glob(f"*{STATE_SUFFIX}") if p.stem.isdigit()]
        earlier = sorted(step for step in steps if path.stem.isdigit() and step < int(path.stem))
        before = path.with_name(f"{earlier[-1]}{STATE_SUFFIX}") if earlier else None
        hint = f"; path.resume_state: {before} resumes from the one before" if before is not None else ""
        raise ValueError(
            f"{path}: not a readable training state, truncated or corrupt ({detail}){hint}"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a training state (holds a {type(state).__name__}, not a dict)")
    missing = [key for key in ("step", "networks", "optimizers") if key not in state]
    if missing:
        raise ValueError(
            f"{path}: not a training state (no {', '.join(missing)}); path.resume_state takes a "
            "training_state/<step>.state file, path.pretrain_model_generator a model"
        )
    return state


def _prunable(paths: list[tuple[int, Path]], keep_last: int, protected: Collection[int]) -> list[Path]:
    """The paths whose step is neither among the ``keep_last`` highest nor in ``protected``."""
    kept = set(sorted({step for step, _ in paths}, reverse=True)[:keep_last]) | set(protected)
    return [path for step, path in paths if step not in kept]


def saved_models(dirs: ExperimentDirs) -> dict[str, list[tuple[int, Path]]]:
    """``{tag: [(step, path), ...]}`` of the ``models/<step>_<tag>.pth`` files, by step (``best_*`` left out)."""
    by_tag: dict[str, list[tuple[int, Path]]] = {}
    for path in dirs.models.glob(f"*{MODEL_SUFFIX}"):
        match = _MODEL_STEM.fullmatch(path.stem)
        if match and not match[2].startswith("best"):
            by_tag.setdefault(match[2], []).append((int(match[1]), path))
    return {tag: sorted(paths) for tag, paths in by_tag.items()}


def prune_checkpoints(dirs: ExperimentDirs, keep_last: int, protected: Collection[int] = ()) -> list[Path]:
    """Delete all but the newest ``keep_last`` steps of each model tag and of the training states.

    Only ``models/<step>_<tag>.pth`` and ``training_state/<step>.state`` are candidates; the steps in
    ``protected``, ``best_*`` and other files are never touched. Returns the deleted paths.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last: expected a positive count, got {keep_last}")
    by_tag = saved_models(dirs)
    states = [
        (int(p.stem), p)
        for p in dirs.training_state.glob(f"*{STATE_SUFFIX}")
        if re.fullmatch("[0-9]+", p.stem)
    ]
    doomed = [p for group in (*by_tag.values(), states) for p in _prunable(group, keep_last, protected)]
    for path in doomed:
        path.unlink(missing_ok=True)
        log.debug("removed old checkpoint %s", path)
    return doomed


def gather_pools(pool: PairPool | None, dist: DistributedContext, collective: bool) -> list[Any] | None:
    """Every process's training-pair pool on the main process, for its training state.

    ``collective``: all processes are saving now; otherwise (one process stopping alone) it keeps its own.
    """
    if pool is None:
        return None
    return dist.gather_to_main(pool.state_dict()) if collective else [pool.state_dict()]


def load_pool(pool: PairPool, pools: list[Any] | None, rank: int, device: torch.device, path: Path) -> None:
    """Give this process its pool back from a training state (an old state without one: it fills again)."""
    if pools is None:
        return
    if rank < len(pools):
        pool.load_state_dict(pools[rank], device)
    else:
        log.warning("%s has no pair pool for process %d: it fills again", path, rank)
