"""RRDBNet checkpoint layouts: recognise them, rename to BasicSR keys, read the hyperparameters."""

from __future__ import annotations

import re
from typing import Any, Literal

from .base import StateDict

Layout = Literal["basicsr", "esrgan", "old"]

# xinntao/ESRGAN RRDBNet_arch.py names -> BasicSR names.
_ESRGAN_RENAMES = (
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\."), r"body.\1.rdb\2."),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv(\d)\."), r"conv_up\1."),
    (re.compile(r"^HRconv\."), "conv_hr."),
)
# Old sequential arch: model.0 conv, model.1 = ShortcutBlock(sub = RRDBs + trunk conv), then per x2
# stage (Upsample, conv, LeakyReLU), then HR conv, LeakyReLU, last conv.
_OLD_BODY = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_TRUNK_CONV = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_OLD_TOP = re.compile(r"^model\.(\d+)\.(weight|bias)$")
_BODY = re.compile(r"^body\.(\d+)\.")
_UP = re.compile(r"^conv_up\d+\.weight$")


def preview(keys: list[str], limit: int = 4) -> str:
    """``a, b, c, d and 7 more`` for error messages."""
    shown = ", ".join(keys[:limit])
    return f"{shown} and {len(keys) - limit} more" if len(keys) > limit else shown


def detect_layout(state_dict: StateDict) -> Layout | None:
    """Which RRDBNet naming ``state_dict`` uses; None when it is none of them."""
    if "model.0.weight" in state_dict and any(k.startswith("model.1.sub.") for k in state_dict):
        return "old"
    if "trunk_conv.weight" in state_dict or any(k.startswith("RRDB_trunk.") for k in state_dict):
        return "esrgan"
    if "conv_first.weight" in state_dict and any(_BODY.match(k) for k in state_dict):
        return "basicsr"
    return None


def to_basicsr_layout(state_dict: StateDict) -> StateDict:
    """``state_dict`` renamed to BasicSR keys; keys that fit no rule are kept so a strict load lists them."""
    layout = detect_layout(state_dict)
    if layout == "old":
        return _rename_old(state_dict)
    if layout == "esrgan":
        return {_rename_esrgan(k): v for k, v in state_dict.items()}
    if layout == "basicsr":
        return dict(state_dict)
    raise ValueError(
        "not an RRDBNet checkpoint: expected BasicSR keys (conv_first, body.N.rdbK.convJ), original "
        f"ESRGAN keys (RRDB_trunk, trunk_conv) or old model.N keys; found {preview(sorted(state_dict))}"
    )


def _rename_esrgan(key: str) -> str:
    for pattern, replacement in _ESRGAN_RENAMES:
        key = pattern.sub(replacement, key)
    return key


def _old_top_names(state_dict: StateDict) -> dict[int, str]:
    """Map the old layout's top-level conv indices (``model.N``) to BasicSR module names."""
    indices = sorted({int(m.group(1)) for k in state_dict if (m := _OLD_TOP.match(k))} - {0})
    stages = len(indices) - 2
    expected = [3 * k for k in range(1, stages + 1)] + [3 * stages + 2, 3 * stages + 4]
    if stages < 0 or indices != expected:
        found = ", ".join(f"model.{i}" for i in indices)
        raise ValueError(
            f"unexpected old-arch RRDBNet layout: top-level convs at {found or 'none'}; expected upsampling "
            "convs at model.3, model.6, ... followed by the HR conv at +2 and the last conv at +4"
        )
    names = {0: "conv_first", indices[-2]: "conv_hr", indices[-1]: "conv_last"}
    names.update({3 * k: f"conv_up{k}" for k in range(1, stages + 1)})
    return names


def _rename_old(state_dict: StateDict) -> StateDict:
    top = _old_top_names(state_dict)
    trunk_conv = {int(m.group(1)) for k in state_dict if (m := _OLD_TRUNK_CONV.match(k))}
    out: StateDict = {}
    for key, tensor in state_dict.items():
        if m := _OLD_BODY.match(key):
            key = f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"
        elif (m := _OLD_TRUNK_CONV.match(key)) and trunk_conv == {int(m.group(1))}:
            key = f"conv_body.{m.group(2)}"
        elif (m := _OLD_TOP.match(key)) and int(m.group(1)) in top:
            key = f"{top[int(m.group(1))]}.{m.group(2)}"
        out[key] = tensor
    return out


def _shape(state_dict: StateDict, key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"RRDBNet checkpoint has no {key!r} (keys: {preview(sorted(state_dict))})")
    return tuple(state_dict[key].shape)


def rrdb_fields(state_dict: StateDict) -> dict[str, Any]:
    """The RRDBNet options (as keywords) that a BasicSR-layout ``state_dict`` was trained with."""
    nf, first_in = _shape(state_dict, "conv_first.weight")[:2]
    out_nc = _shape(state_dict, "conv_last.weight")[0]
    gc = _shape(state_dict, "body.0.rdb1.conv1.weight")[0]
    nb = 1 + max(int(m.group(1)) for k in state_dict if (m := _BODY.match(k)))
    stages = sum(1 for k in state_dict if _UP.match(k))
    if stages > 3:
        raise ValueError(f"RRDBNet checkpoint has {stages} upsampling convs (x{2**stages}); at most 3 (x8)")
    in_nc, scale, unshuffle = first_in, 2**stages, True
    factor = next((f for f in (2, 4) if stages == 2 and first_in == out_nc * f * f), 1)
    if factor > 1:
        in_nc, scale = first_in // (factor * factor), 4 // factor
    elif stages < 2:
        unshuffle = False
    return dict(
        in_nc=in_nc,
        out_nc=out_nc,
        nf=nf,
        nb=nb,
        gc=gc,
        scale=scale,
        pixel_unshuffle=unshuffle,
        bicubic_skip="bicubic_skip" in state_dict,
    )
