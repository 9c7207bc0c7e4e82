"""Turn parsed YAML into typed option dataclasses, and back.

The dataclass annotations are the schema: unknown keys, wrong types, missing required keys and missing
input paths each raise :class:`OptionError` with the dotted key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from ..registry import Registry, unknown_name_message
from .declare import MustExist
from .errors import OptionError, OptionValueError


def is_under(key: str, roots: Iterable[str]) -> bool:
    """Whether ``key`` is one of ``roots`` or inside one (``a.b`` and ``a[0]`` are inside ``a``)."""
    return any(key == root or key.startswith((f"{root}.", f"{root}[")) for root in roots)


@dataclass(frozen=True)
class Resolver:
    """How paths in a config resolve, and whether input paths must exist (``check_paths``).

    Relative paths resolve against ``base_dir`` (a config file's folder), except under the keys in
    ``command_line`` (set with ``--set``): those were typed in a shell, so they resolve against the
    working folder.
    """

    base_dir: Path
    check_paths: bool = True
    command_line: tuple[str, ...] = ()

    def base_for(self, key: str) -> Path:
        """The folder a relative path at ``key`` is relative to."""
        return Path.cwd() if is_under(key, self.command_line) else self.base_dir


def join(key: str, name: str | int) -> str:
    """Extend a dotted key path with a field name or a list index."""
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else name


def polymorphic_registry(tp: Any) -> Registry[Any] | None:
    """The registry of an options class whose concrete class is chosen by its ``type`` key."""
    registry = getattr(tp, "registry", None) if isinstance(tp, type) else None
    return registry if isinstance(registry, Registry) else None


def _names_for(registry: Registry[Any], base: type) -> list[str]:
    """Registered names whose options class fits where ``base`` is expected."""
    return [n for n in registry.names() if issubclass(registry.get(n).options, base)]


def describe(tp: Any) -> str:
    """A short English description of a schema type, used in error messages and the reference."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        inner = describe(args[0])
        return f"{inner} that exists" if MustExist in args[1:] else inner
    if origin in (Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {_plural(describe(args[0]))}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(describe(args[0]))}"
        return f"a list of {len(args)} {_plural(describe(args[0]))}"
    if origin is dict:
        return f"a mapping of names to {_plural(describe(args[1]))}"
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    if tp in simple:
        return simple[tp]
    registry = polymorphic_registry(tp)
    if registry is not None:
        return f"a {registry.kind} mapping with a 'type' key"
    return "a mapping"


def _plural(text: str) -> str:
    text = re.sub(r"^an? ", "", text)
    return text if text.endswith("s") or " or " in text else f"{text}s"


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


def _mismatch(tp: Any, value: Any, key: str) -> OptionError:
    return OptionError(key, f"expected {describe(tp)}, got {_got(value)}")


def convert(tp: Any, value: Any, key: str, resolver: Resolver) -> Any:
    """Check ``value`` against the schema type ``tp`` and return it typed (paths resolved)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        result = convert(args[0], value, key, resolver)
        if MustExist in args[1:] and resolver.check_paths and not Path(result).exists():
            raise OptionError(key, f"path does not exist: {result}")
        return result
    if origin in (Union, types.UnionType):
        return _convert_union(tp, args, value, key, resolver)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        known = [str(a) for a in args]
        if isinstance(value, str):
            raise OptionError(
                key, unknown_name_message("value", value, known).replace("unknown value", "got")
            )
        raise _mismatch(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise _mismatch(tp, value, key)
        return [convert(args[0], v, join(key, i), resolver) for i, v in enumerate(value)]
    if origin is tuple:
        return _convert_tuple(tp, args, value, key, resolver)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _mismatch(tp, value, key)
        return {k: convert(args[1], v, join(key, k), resolver) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, key, resolver)
    return _convert_scalar(tp, value, key, resolver)


def _convert_union(tp: Any, args: tuple[Any, ...], value: Any, key: str, resolver: Resolver) -> Any:
    if value is None and type(None) in args:
        return None
    members = [a for a in args if a is not type(None)]
    errors: list[OptionError] = []
    for member in members:
        try:
            return convert(member, value, key, resolver)
        except OptionError as err:
            errors.append(err)
    # One member whose shape fits (e.g. the path of a "auto"-or-path key) explains the problem best.
    specific = [e for e in errors if e.key != key or "does not exist" in e.message]
    if len(members) == 1 or specific:
        raise (specific or errors)[0]
    raise _mismatch(tp, value, key)


def _convert_tuple(tp: Any, args: tuple[Any, ...], value: Any, key: str, resolver: Resolver) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _mismatch(tp, value, key)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(convert(args[0], v, join(key, i), resolver) for i, v in enumerate(value))
    if len(value) != len(args):
        raise _mismatch(tp, value, key)
    return tuple(
        convert(a, v, join(key, i), resolver) for i, (a, v) in enumerate(zip(args, value, strict=True))
    )


def _convert_scalar(tp: Any, value: Any, key: str, resolver: Resolver) -> Any:
    if tp is Any:
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    if tp is Path and isinstance(value, str) and value:
        return resolve_path(value, key, resolver.base_for(key))
    raise _mismatch(tp, value, key)


def resolve_path(text: str, key: str, base_dir: Path) -> Path:
    """Expand ``~`` and ``$VAR``/``${VAR}`` and make the path absolute against ``base_dir``."""
    for match in re.finditer(r"\$(\w+)|\$\{(\w+)\}", text):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise OptionError(key, f"environment variable ${name} in {text!r} is not set")
    path = Path(os.path.expandvars(text)).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _convert_dataclass(cls: type, value: Any, key: str, resolver: Resolver) -> Any:
    registry = polymorphic_registry(cls)
    if registry is not None:
        if not isinstance(value, dict) or "type" not in value:
            raise OptionError(key, f"expected a mapping with a 'type' key naming a {registry.kind}")
        name, known = value["type"], _names_for(registry, cls)
        if not isinstance(name, str) or name not in known:
            message = unknown_name_message(f"{registry.kind} type", str(name), known)
            raise OptionError(join(key, "type"), message)
        cls = registry.get(name).options
    if not isinstance(value, dict):
        raise OptionError(key, f"expected a mapping, got {_got(value)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in value:
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(fields)}"
            raise OptionError(join(key, str(name)), f"unknown key{hint}")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = convert(hints[name], value[name], join(key, name), resolver)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise OptionError(join(key, name), f"missing required key (expected {describe(hints[name])})")
    try:
        return cls(**kwargs)
    except OptionValueError as err:
        raise err.at(key) if key else err from None


def to_data(obj: Any) -> Any:
    """The plain YAML-ready form of an options object: mappings, lists, strings and numbers."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
