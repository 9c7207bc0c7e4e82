"""The configuration reference (docs/config-reference.md), generated from the option dataclasses.

``python -m esrforge.options.reference > docs/config-reference.md`` rewrites it; a test fails when the
committed file differs from what the schema generates.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

from ..fields.convert import describe, polymorphic_registry, to_data
from .schema import Config

HEADER = """# Configuration reference

Generated from the option dataclasses by `python -m esrforge.options.reference`; do not edit by hand.
Relative paths resolve against the folder of the config file, and those given with `--set` against the
current folder; `~` and `$VARIABLES` expand. Every key can be overridden on the command line:
`--set train.lr_G=1e-4 networks.generator.nb=6`.
"""


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = to_data(field.default)
    elif field.default_factory is not dataclasses.MISSING:
        value = to_data(field.default_factory())
        if dataclasses.is_dataclass(field.default_factory):
            return "(section)"
    else:
        return "**required**"
    if value is None:
        return "null"
    return f"`{str(value).lower()}`" if isinstance(value, bool) else f"`{value}`"


def _inner(tp: Any) -> Any:
    """The dataclass inside ``X | None``, ``list[X]`` or ``Annotated[X, ...]``, if any."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = _inner(arg)
        if found is not None:
            return found
    return None


def _table(cls: type, key: str, lines: list[str], seen: set[type]) -> None:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    lines += ["", f"### `{key}`" if key else "### top level", ""]
    if cls.__doc__:
        lines += [cls.__doc__.strip().splitlines()[0], ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, type]] = []
    for field in fields:
        doc = field.metadata.get("doc", "")
        lines.append(f"| `{field.name}` | {describe(hints[field.name])} | {_default(field)} | {doc} |")
        inner = _inner(hints[field.name])
        if inner is not None:
            suffix = "[]" if typing.get_origin(hints[field.name]) is list else ""
            nested.append((f"{key}.{field.name}{suffix}" if key else f"{field.name}{suffix}", inner))
    for sub_key, sub in nested:
        registry = polymorphic_registry(sub)
        if registry is None:
            if sub not in seen:
                seen.add(sub)
                _table(sub, sub_key, lines, seen)
            continue
        for name in registry.names():
            options = registry.get(name).options
            if issubclass(options, sub) and options not in seen:
                seen.add(options)
                _table(options, f"{registry.kind} type: {name}", lines, seen)


def reference() -> str:
    """The whole reference as Markdown."""
    lines = [HEADER.rstrip()]
    _table(Config, "", lines, set())
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the reference, or write it to the path given as the only argument."""
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(reference(), encoding="utf-8")
    else:
        sys.stdout.write(reference())


if __name__ == "__main__":
    main()
