"""Every architecture spandrel knows: recognised from a checkpoint's tensors, or built by ``type: spandrel``.

spandrel (the loader behind chaiNNer and traiNNer-redux) detects SwinIR, HAT, DAT, SPAN, OmniSR,
PLKSR, Compact, ... from the key names and shapes of a state dict. esrforge reads the file itself (safe:
no pickle that carries code is run) and hands spandrel the tensors only.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..fields import OptionError, OptionValueError, option
from ..fields.convert import Resolver, convert
from ..registry import unknown_name_message
from .base import NETWORKS, Description, NetworkOptions, StateDict

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor
# spandrel is imported where it is used: it imports torchvision, whose import takes seconds, and a run of
# an RRDB or compact model needs neither.

YAML_TYPES = (bool, int, float, str)


@functools.cache
def architectures() -> dict[str, type[nn.Module]]:
    """spandrel's network classes by name (SPAN, SwinIR, RealPLKSR, ...)."""
    import spandrel

    classes: dict[str, type[nn.Module]] = {}
    for support in spandrel.MAIN_REGISTRY:
        module = importlib.import_module(f"spandrel.architectures.{support.architecture.id}")
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, nn.Module):
                classes[name] = value
    return classes


def _type_of(default: Any) -> Any:
    """The schema type of a YAML-expressible default, or None when it is not one (a class, a function)."""
    if default is None:
        return Any
    if isinstance(default, YAML_TYPES):
        return type(default)
    if isinstance(default, (list, tuple)) and all(isinstance(v, YAML_TYPES) for v in default):
        kinds = {type(v) for v in default}
        kinds = {float} if kinds == {int, float} else kinds
        item = kinds.pop() if len(kinds) == 1 else Any
        return list[item] if isinstance(default, list) else tuple[item, ...]  # type: ignore[valid-type]
    return None


@functools.cache
def params_schema(arch: str) -> type:
    """A dataclass of the constructor keywords of ``arch`` that a config can set (typed from the
    annotations, else from the defaults; keywords whose default is a class or function are left out)."""
    cls = architectures()[arch]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # annotations that do not resolve: type from the defaults
        hints = {}
    fields: list[tuple[str, Any, Any]] = []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        default = parameter.default
        kind = hints.get(name) or (_type_of(default) if default is not inspect.Parameter.empty else Any)
        if default is not inspect.Parameter.empty and _type_of(default) is None:
            continue
        if default is inspect.Parameter.empty:
            value = dataclasses.field()
        elif isinstance(default, (list, dict)):
            value = dataclasses.field(default_factory=functools.partial(copy.deepcopy, default))
        else:
            value = dataclasses.field(default=default)
        fields.append((name, kind, value))
    return dataclasses.make_dataclass(f"{arch}Params", fields, frozen=True, kw_only=True)


def _freeze(value: Any) -> Any:
    return tuple(map(_freeze, value)) if isinstance(value, (list, tuple)) else value


def _thaw(value: Any) -> Any:
    return list(map(_thaw, value)) if isinstance(value, tuple) else value


@dataclass(frozen=True, kw_only=True)
class SpandrelOptions(NetworkOptions):
    """Any architecture spandrel has, built from its constructor's keywords (checked against its signature)."""

    type: str = option("spandrel", doc="registered network")

    arch: str = option(doc="spandrel's class name: SPAN, SwinIR, HAT, DAT, OmniSR, RealPLKSR, Compact, ...")
    params: dict[str, Any] = option(
        factory=dict,
        doc="keywords of the class's constructor (its defaults for those left out), e.g. {upscale: 2}",
    )

    def __post_init__(self) -> None:
        known = sorted(architectures())
        if self.arch not in known:
            raise OptionValueError("arch", unknown_name_message("spandrel architecture", self.arch, known))
        try:
            typed = convert(
                params_schema(self.arch), self.params, "params", Resolver(Path.cwd(), check_paths=False)
            )
        except OptionError as err:
            raise OptionValueError(err.key, err.message) from None
        object.__setattr__(self, "params", {k: getattr(typed, k) for k in self.params})

    def build(self) -> nn.Module:
        try:
            return architectures()[self.arch](**self.params)
        except Exception as err:  # the class's own checks of its keywords
            raise OptionValueError("params", f"{self.arch} refused these keywords: {err}") from None

    def describe(self) -> Description:
        return _describe(self.arch, tuple(sorted((k, _freeze(v)) for k, v in self.params.items())))

    def adapt_state_dict(self, state_dict: StateDict, strict: bool) -> StateDict:
        """The tensors as spandrel loads them for this architecture (some rename or drop keys)."""
        descriptor = detect(state_dict)
        found = type(descriptor.model).__name__
        if found != self.arch:
            raise ValueError(
                f"checkpoint is a {found} model, the config's networks.generator.arch is {self.arch}"
            )
        return descriptor.model.state_dict()


@NETWORKS.register(SpandrelOptions, name="spandrel")
def build_spandrel(options: SpandrelOptions) -> nn.Module:
    """The spandrel class of ``options.arch`` with ``options.params``."""
    return options.build()


@functools.cache
def _describe(arch: str, params: tuple[tuple[str, Any], ...]) -> Description:
    """The description spandrel gives of a freshly built ``arch`` (it reads it from the tensors)."""
    model = SpandrelOptions(type="spandrel", arch=arch, params={k: _thaw(v) for k, v in params}).build()
    return description_of(detect(model.state_dict()))


def detect(state_dict: StateDict) -> ImageModelDescriptor[Any]:
    """spandrel's descriptor of ``state_dict`` (ValueError when it is no image-to-image model spandrel knows)."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    try:
        descriptor = ModelLoader().load_from_state_dict(dict(state_dict))
    except UnsupportedModelError:
        raise ValueError("spandrel does not recognise the architecture") from None
    except Exception as err:  # an architecture matched but its loader failed: a missing tensor, a bad shape
        raise ValueError(f"spandrel could not load it: {_summary(err)}") from None
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError(
            f"a {descriptor.purpose} model ({descriptor.architecture.name}); esrforge runs image-to-image models"
        )
    return descriptor


def _summary(err: Exception, limit: int = 200) -> str:
    """``err`` in one line of at most about ``limit`` characters (torch lists every mismatched tensor)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else f"{text[:limit]} ..."


def description_of(descriptor: ImageModelDescriptor[Any]) -> Description:
    """Our description of a spandrel model."""
    requirements = descriptor.size_requirements
    dtypes: tuple[torch.dtype, ...] = (torch.float32,)
    dtypes += (torch.float16,) if descriptor.supports_half else ()
    dtypes += (torch.bfloat16,) if descriptor.supports_bfloat16 else ()
    tiling = "internal" if requirements.square else descriptor.tiling.name.lower()  # SUPPORTED, ...
    return Description(
        type(descriptor.model).__name__,
        descriptor.scale,
        descriptor.input_channels,
        descriptor.output_channels,
        size_multiple=requirements.multiple_of,
        min_size=requirements.minimum,
        dtypes=dtypes,
        tiling=tiling,  # type: ignore[arg-type]
    )


class SpandrelModel(nn.Module):
    """A loaded spandrel model run exactly as spandrel runs it (its padding, call and output clamp)."""

    def __init__(self, descriptor: ImageModelDescriptor[Any]) -> None:
        super().__init__()
        self.model = descriptor.model
        self.descriptor = descriptor

    def forward(self, x: Tensor) -> Tensor:
        return self.descriptor(x)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """The architecture's own tensors, named as its checkpoints name them (no wrapper prefix)."""
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


def spandrel_options(descriptor: ImageModelDescriptor[Any]) -> SpandrelOptions:
    """The ``type: spandrel`` options that build the descriptor's model again (its YAML-expressible keywords;
    one whose value does not fit the type its default suggests is left out)."""
    arch = type(descriptor.model).__name__
    schema = {f.name for f in dataclasses.fields(params_schema(arch))}
    hyper = getattr(descriptor.model, "hyperparameters", {})
    params = {k: _thaw(v) for k, v in hyper.items() if k in schema}
    while True:
        try:
            return SpandrelOptions(type="spandrel", arch=arch, params=params)
        except OptionValueError as err:
            name = err.key.removeprefix("params.").split(".")[0].split("[")[0]
            if name not in params:
                raise
            del params[name]
