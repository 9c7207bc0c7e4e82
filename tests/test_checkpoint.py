"""Checkpoint reading and loading: wrappers, foreign RRDBNet layouts, safety, and one-line errors."""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from conftest import to_esrgan_names
from esrforge.networks import (
    RRDBNet,
    RRDBNetOptions,
    VGGDiscriminatorBN,
    VGGDiscriminatorGN,
    VGGDiscriminatorGNOptions,
    detect_layout,
    load_generator,
    load_into,
    read_state_dict,
)
from esrforge.networks.base import NetworkOptions

TINY: dict[str, Any] = {"nf": 8, "nb": 2, "gc": 4}


def conv(module: nn.Module, name: str) -> nn.Conv2d:
    found = module.get_submodule(name)
    assert isinstance(found, nn.Conv2d)
    return found


def tiny(**kwargs: Any) -> RRDBNet:
    return RRDBNet(RRDBNetOptions(**{**TINY, **kwargs})).eval()


def generator(path: Path, options: NetworkOptions | None = None, **kwargs: Any) -> Any:
    """The module :func:`load_generator` returns."""
    return load_generator(path, options, **kwargs).module


def into(model: Any, path: Path, **kwargs: Any) -> Any:
    """:func:`load_into` with the model's own options."""
    return load_into(model, model.options, path, **kwargs)


def detect_rrdb(sd: dict[str, Tensor]) -> tuple[RRDBNetOptions, dict[str, Tensor]]:
    found = RRDBNetOptions.from_state_dict(sd)
    assert found is not None
    return found


def same_output(a: RRDBNet, b: RRDBNet) -> None:
    x = torch.rand(1, a.options.in_nc, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def one_line_error(excinfo: pytest.ExceptionInfo[BaseException], *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def to_old_arch(sd: dict[str, Tensor], nb: int) -> dict[str, Tensor]:
    """Our keys as the old sequential arch numbers its modules.

    model = [conv_first, ShortcutBlock(sub=[RRDB]*nb + [conv_body]), (Upsample, conv, LReLU) per x2 stage,
    conv_hr, LReLU, conv_last]; each RDB conv is a (conv, act) sequential, so its conv is ``.0``.
    """
    stages = sum(1 for k in sd if k.startswith("conv_up") and k.endswith("weight"))
    top = {"conv_first": 0, "conv_hr": 3 * stages + 2, "conv_last": 3 * stages + 4}
    top.update({f"conv_up{k}": 3 * k for k in range(1, stages + 1)})
    out = {}
    for key, value in sd.items():
        module, param = key.rsplit(".", 1)
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)$", module):
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{param}"] = value
        elif module == "conv_body":
            out[f"model.1.sub.{nb}.{param}"] = value
        else:
            out[f"model.{top[module]}.{param}"] = value
    return out


def test_basicsr_wrapper_prefers_params_ema(tmp_path: Path) -> None:
    ema, online = tiny(), tiny()
    path = tmp_path / "net_g.pth"
    torch.save({"params": online.state_dict(), "params_ema": ema.state_dict()}, path)
    same_output(generator(path), ema)
    same_output(generator(path, key="params"), online)
    assert read_state_dict(path).keys() == ema.state_dict().keys()


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "net", "generator", "params"])
def test_other_wrappers_and_ddp_prefix(tmp_path: Path, wrapper: str) -> None:
    net = tiny()
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: {f"module.{k}": v for k, v in net.state_dict().items()}, "iter": 7}, path)
    same_output(into(tiny(), path), net)


@pytest.mark.parametrize(("scale", "unshuffle"), [(1, True), (2, True), (4, True), (8, True), (1, False)])
def test_basicsr_layout_strict_and_detected(tmp_path: Path, scale: int, unshuffle: bool) -> None:
    net = tiny(scale=scale, pixel_unshuffle=unshuffle, in_nc=1, out_nc=1)
    path = tmp_path / "net.pth"
    torch.save(net.state_dict(), path)
    loaded = generator(path)
    assert loaded.options == net.options
    same_output(loaded, net)


@pytest.mark.parametrize("scale", [4, 8])
def test_original_esrgan_layout(tmp_path: Path, scale: int) -> None:
    net = tiny(scale=scale)
    sd = to_esrgan_names(net.state_dict())
    assert "RRDB_trunk.1.RDB3.conv5.weight" in sd and "HRconv.bias" in sd
    path = tmp_path / "RRDB_ESRGAN.pth"
    torch.save(sd, path)
    assert detect_layout(sd) == "esrgan"
    same_output(generator(path, RRDBNetOptions(type="RRDBNet", scale=scale, **TINY)), net)


@pytest.mark.parametrize(("scale", "last"), [(1, 4), (2, 7), (4, 10), (8, 13)])
def test_old_sequential_layout(tmp_path: Path, scale: int, last: int) -> None:
    net = tiny(scale=scale, pixel_unshuffle=False)
    sd = to_old_arch(net.state_dict(), nb=TINY["nb"])
    assert f"model.{last}.weight" in sd and "model.1.sub.2.weight" in sd
    assert "model.1.sub.0.RDB1.conv1.0.weight" in sd
    path = tmp_path / "old.pth"
    torch.save(sd, path)
    options, converted = detect_rrdb(sd)
    assert converted.keys() == net.state_dict().keys()
    assert (options.scale, options.nb, options.nf, options.gc) == (scale, 2, 8, 4)
    same_output(generator(path), net)


def test_old_layout_with_unexpected_indices_is_refused() -> None:
    sd = to_old_arch(tiny().state_dict(), nb=2)
    sd["model.12.weight"] = sd.pop("model.10.weight")
    with pytest.raises(ValueError, match=r"unexpected old-arch RRDBNet layout: top-level convs at model\.3"):
        detect_rrdb(sd)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    net = tiny(scale=2)
    path = tmp_path / "net_g.safetensors"
    save_file(net.state_dict(), path)
    same_output(generator(path), net)
    for cls in (VGGDiscriminatorGN, VGGDiscriminatorBN):
        options = VGGDiscriminatorGNOptions(type=cls.__name__, nf=8, image_size=32)
        d = cls(options)
        save_file(d.state_dict(), tmp_path / "d.safetensors")
        fresh = into(cls(options), tmp_path / "d.safetensors")
        assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in d.state_dict().items())
    renamed = path.rename(tmp_path / "net_g.pth")  # safetensors under a .pth name: read by its content
    same_output(generator(renamed), net)


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_code_carrying_pickle_is_refused(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"params": {"conv_first.weight": torch.zeros(1)}, "hook": Evil(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError) as info:
        generator(path)
    message = one_line_error(info, str(path), "refused")
    assert not marker.exists()
    if writer == "torch":
        assert "objects other than tensors" in message and "system" in message


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        read_state_dict(tmp_path / "nope.pth")
    one_line_error(missing, "nope.pth", "not found")
    rng = random.Random(0)
    junk = [(f"junk{i}.pth", rng.randbytes(64)) for i in range(50)]
    for name, data in [*junk, ("empty.pth", b""), ("bad.safetensors", b"garbage")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError) as info:
            read_state_dict(tmp_path / name)
        one_line_error(info, name)
    net = tiny()
    torch.save(net.state_dict(), tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as cut:
        read_state_dict(tmp_path / "cut.pth")
    one_line_error(cut, "cut.pth", "not a readable PyTorch checkpoint")
    (tmp_path / "README.md").write_text("# not weights\n")
    with pytest.raises(ValueError) as text:
        read_state_dict(tmp_path / "README.md")
    one_line_error(text, "README.md", "not a PyTorch checkpoint (expected a .pth/.pt file or .safetensors)")


def test_no_state_dict_in_file(tmp_path: Path) -> None:
    torch.save({"iter": 5, "optimizers": [1, 2]}, tmp_path / "state.pth")
    with pytest.raises(ValueError) as info:
        read_state_dict(tmp_path / "state.pth")
    one_line_error(info, "state.pth", "no state dict found", "iter, optimizers")
    with pytest.raises(ValueError) as key:
        read_state_dict(tmp_path / "state.pth", key="params")
    one_line_error(key, "has no 'params' entry")
    d = VGGDiscriminatorGN(VGGDiscriminatorGNOptions(nf=8, image_size=32))
    torch.save(d.state_dict(), tmp_path / "d.pth")
    with pytest.raises(ValueError) as not_rrdb:
        generator(tmp_path / "d.pth")
    one_line_error(not_rrdb, "d.pth", "not a model esrforge or spandrel recognises", "keys: bn0_1.bias")


def test_options_mismatch_names_file_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "nb2.pth"
    torch.save(tiny().state_dict(), path)
    wanted = RRDBNetOptions(type="RRDBNet", nf=8, nb=23, gc=4)
    with pytest.raises(ValueError) as info:
        generator(path, wanted)
    one_line_error(info, str(path), "nb 23 in config, 2 in checkpoint")
    with pytest.raises(ValueError) as into_error:
        into(RRDBNet(RRDBNetOptions(nf=8, nb=2, gc=4, scale=2)), path)
    one_line_error(into_error, "scale 2 in config, 4 in checkpoint")


def test_ambiguous_channels_resolved_by_options(tmp_path: Path) -> None:
    """A 12-in, 3-out x4 net looks like Real-ESRGAN x2; options that fit the tensors win."""
    net = tiny(in_nc=12, out_nc=3)
    path = tmp_path / "net.pth"
    torch.save(net.state_dict(), path)
    assert detect_rrdb(net.state_dict())[0].scale == 2
    loaded = generator(path, net.options)
    assert loaded.options == net.options
    same_output(loaded, net)


def test_missing_and_unexpected_keys_listed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = tiny()
    sd = net.state_dict()
    del sd["conv_hr.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["conv_body.weight"] = torch.zeros(8, 8, 1, 1)
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError) as info:
        into(tiny(), path)
    reshaped = "conv_body.weight [8, 8, 1, 1] vs [8, 8, 3, 3]"
    one_line_error(info, "1 missing keys (conv_hr.bias)", "1 unexpected keys (extra.weight)", reshaped)
    with caplog.at_level(logging.WARNING):
        loaded = into(tiny(), path, strict=False)
    assert "conv_hr.bias" in caplog.text
    assert torch.equal(loaded.state_dict()["body.1.rdb3.conv5.weight"], sd["body.1.rdb3.conv5.weight"])


def test_many_missing_keys_are_counted(tmp_path: Path) -> None:
    d = VGGDiscriminatorGN(VGGDiscriminatorGNOptions(nf=8, image_size=32))
    sd = {k: v for k, v in d.state_dict().items() if not k.startswith("bn")}
    torch.save(sd, tmp_path / "d.pth")
    with pytest.raises(ValueError) as info:
        into(d, tmp_path / "d.pth")
    one_line_error(info, "VGGDiscriminatorGN", "18 missing keys", "and 14 more")


def test_non_strict_transfer_from_x4_to_x2(tmp_path: Path) -> None:
    source = tiny()
    path = tmp_path / "x4.pth"
    torch.save(source.state_dict(), path)
    x2 = RRDBNetOptions(type="RRDBNet", scale=2, **TINY)
    with pytest.raises(ValueError, match="scale 2 in config, 4 in checkpoint"):
        generator(path, x2)
    model = generator(path, x2, strict=False)
    assert model.options.scale == 2
    assert torch.equal(conv(model, "conv_up2").weight, conv(source, "conv_up2").weight)
    assert model.conv_first.weight.shape == (8, 12, 3, 3)
