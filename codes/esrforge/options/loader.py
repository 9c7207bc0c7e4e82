"""Load a config file, apply ``--set key=value`` overrides, and check it against the schema."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..fields.convert import Resolver, convert, is_under
from ..fields.errors import OptionError
from ..fields.yaml_io import parse_yaml, read_yaml
from ..networks.base import NETWORKS
from .checks import check_config
from .schema import Config

_INDEX = re.compile(r"\[(\d+)\]")


def split_key(key: str) -> list[str | int]:
    """``train.losses[0].weight`` (or ``train.losses.0.weight``) -> ``['train', 'losses', 0, 'weight']``."""
    parts: list[str | int] = []
    for part in _INDEX.sub(r".\1", key).split("."):
        if not part:
            raise OptionError(key, "malformed key in --set (empty part)")
        parts.append(int(part) if part.isdigit() else part)
    return parts


def apply_override(data: dict[str, Any], assignment: str) -> str:
    """Apply one ``key=value`` (value in YAML syntax) to the raw config; return the key."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OptionError("", f"--set expects key=value, got {assignment!r}")
    value = parse_yaml(text, f"--set {key}")
    parts = split_key(key)
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(str(p) for p in parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise OptionError(here, "no such list item to override")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise OptionError(here, "cannot set a key inside a value that is not a mapping")
            if node.get(part) is None:
                node[part] = [] if isinstance(parts[depth + 1], int) else {}
            node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise OptionError(key, "no such list item to override")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise OptionError(key, "cannot set a key inside a value that is not a mapping")
    return key


def inherit_scale(data: dict[str, Any]) -> None:
    """The generator's scale field (its options' ``scale_key``) defaults to the top-level ``scale``."""
    networks = data.get("networks")
    generator = networks.get("generator") if isinstance(networks, dict) else None
    if not isinstance(generator, dict) or not isinstance(data.get("scale"), int):
        return
    kind = generator.get("type")
    key = NETWORKS.get(kind).options.scale_key if isinstance(kind, str) and kind in NETWORKS else None
    if key is not None and key not in generator:
        generator[key] = data["scale"]


T = TypeVar("T")

Moves = dict[str, str]
"""Keys a :data:`Reshape` moved: old key (or the prefix of a section) -> new key."""

Reshape = Callable[[dict[str, Any]], tuple[dict[str, Any], Moves]]
"""Turns raw config data of another form into this schema's form (e.g. a training config for test.py)."""


def move_key(key: str, moves: Moves) -> str:
    """``key`` after the moves (the longest moved prefix wins)."""
    for old in sorted(moves, key=len, reverse=True):
        if is_under(key, [old]):
            return moves[old] + key[len(old) :]
    return key


def load_typed(
    schema: type[T],
    data: dict[str, Any],
    source: str,
    base_dir: Path,
    overrides: Sequence[str] = (),
    check_paths: bool = True,
    check: Callable[[T], None] | None = None,
    reshape: Reshape | None = None,
) -> T:
    """Apply ``overrides`` to raw config ``data`` (read from ``source``) and type it as ``schema``.

    Relative paths resolve against ``base_dir``, those set in ``overrides`` against the working folder;
    ``reshape`` (after the overrides) turns data of another form into the schema's; ``check`` runs
    cross-section checks on the result. Any error names ``source`` and the key as the file has it, and
    says so when the key came from ``--set``.
    """
    overridden: list[str] = []
    moves: Moves = {}
    try:
        for assignment in overrides:
            overridden.append(apply_override(data, assignment))
        if reshape is not None:
            data, moves = reshape(data)
            overridden = [move_key(key, moves) for key in overridden]
        inherit_scale(data)
        resolver = Resolver(base_dir=base_dir, check_paths=check_paths, command_line=tuple(overridden))
        config: T = convert(schema, data, "", resolver)
        if check is not None:
            check(config)
    except OptionError as err:
        if is_under(err.key, overridden):
            err.message += " (set with --set)"
        err.key = move_key(err.key, {new: old for old, new in moves.items()})
        err.source = err.source or source
        raise
    return config


def load_config_data(
    data: dict[str, Any], source: str, base_dir: Path, overrides: Sequence[str] = (), check_paths: bool = True
) -> Config:
    """Check raw training-config ``data`` (read from ``source``) and return the typed :class:`Config`."""
    return load_typed(Config, data, source, base_dir, overrides, check_paths, check_config)


def load_config(path: Path | str, overrides: Sequence[str] = (), check_paths: bool = True) -> Config:
    """Read the YAML file at ``path``, apply ``overrides`` and return the checked :class:`Config`.

    Relative paths in the file resolve against the file's folder, those in the overrides against the
    working folder.
    """
    path = Path(path)
    return load_config_data(read_yaml(path), str(path), path.resolve().parent, overrides, check_paths)
