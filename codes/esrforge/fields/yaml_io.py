"""YAML reading with YAML 1.2 floats (``1e-4`` is a number) and rejection of duplicate keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..fileio import atomic_write_text
from .errors import OptionError

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float and refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (line {mark.line + 1})", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes one line with the position."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise OptionError("", f"invalid YAML: {where}{problem}", source) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a config file into a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OptionError("", "config file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise OptionError("", f"cannot read config file ({err})", str(path)) from None
    data = parse_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OptionError(
            "", f"expected a mapping of keys at the top level, got {type(data).__name__}", str(path)
        )
    return data


def dump_yaml(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as block-style YAML, keys in their given order, atomically."""
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
