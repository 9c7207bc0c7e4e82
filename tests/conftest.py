"""Helpers shared by the tests: a tiny training config with every recipe loss, exact state comparison."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
import torchvision
import yaml

from esrforge.data.imageio import write_image
from esrforge.networks import RRDBNet, RRDBNetOptions
from esrforge.training.curves import History
from esrforge.training.precision import Precision

REPO = Path(__file__).resolve().parents[1]

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
"""Marks a test that needs a CUDA device (bench/gpu_check.sh runs them where one is lent)."""


def write_blocky_images(folder: Path, count: int = 3, size: int = 100) -> None:
    """``count`` RGB PNGs of ``size`` px: 8 px colour blocks plus noise (edges and texture for the losses)."""
    rng = np.random.default_rng(1)
    for i in range(count):
        base = rng.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3)).astype(np.float32)
        image = np.kron(base, np.ones((8, 8, 1)))[:size, :size] + rng.normal(0, 8, (size, size, 3))
        write_image(folder / f"img{i}.png", np.clip(image, 0, 255).astype(np.uint8))


AUTO_PRECISION = "fp32=false"
"""The tiny configs train in float32 even on CPUs with bf16 instructions (``fp32: true``), since runs in
subprocesses (torchrun, killed runs) do not see ``no_automatic_bf16``; this override lifts that for a
test that sets ``fp16`` or ``bf16`` or wants the automatic choice."""


def tiny_gan_config(root: Path, niter: int = 6) -> Path:
    """Every loss of the recipe, EMA and validation, on 96 px tiles and a 1-block RRDB."""
    write_blocky_images(root / "data")
    raw = {
        "name": "run",
        "gpu_ids": [],
        "fp32": True,  # see AUTO_PRECISION
        "datasets": {
            "train": {
                "type": "HRPatchDataset",
                "dataroot": "data",
                "target_size": 96,
                "batch_size": 2,
                "n_workers": 1,
            },
            "val": {"type": "FullImageDataset", "dataroot": "data", "max_images": 1},
        },
        "networks": {
            "generator": {"type": "RRDBNet", "nf": 8, "nb": 1, "gc": 4},
            "discriminator": {"type": "VGGDiscriminatorGN", "nf": 8, "image_size": 64},
        },
        "path": {"experiments_root": "experiments"},
        "train": {
            "niter": niter,
            "val_freq": 3,
            "ema_decay": 0.9,
            "lr_steps": [4],
            "losses": [
                {"type": "pixel", "weight": 0.05},
                {"type": "perceptual", "pretrained": False, "after": 2},
                {"type": "translational", "patch_size": 64, "after": 2},
                {"type": "gan", "weight": 0.02, "after": 2},
                {"type": "gradient_penalty", "after": 2},
            ],
        },
        "logger": {"print_freq": 2, "save_checkpoint_freq": 3, "use_tb_logger": True},
    }
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


SMALL_GENERATORS = {
    "RRDBNet": {"nf": 8, "nb": 1, "gc": 4},
    "SRVGGNetCompact": {"num_feat": 8, "num_conv": 2},
}
"""Sizes that make a shipped config's generator tiny, by type."""


def tiny_realesrgan_config(root: Path, niter: int = 6, name: str = "train_realesrgan_x4") -> Path:
    """options/<name>.yml scaled down: every degradation op, the pool, USM targets, U-Net D.

    HR patches of 48 px are degraded and cut to 32 / 8 px pairs; the validation LR is degraded too.
    """
    write_blocky_images(root / "data", size=64)
    raw = yaml.safe_load((REPO / "options" / f"{name}.yml").read_text())
    raw.update(name="run", gpu_ids=[], fp32=True)  # see AUTO_PRECISION
    train_data = raw["datasets"]["train"]
    train_data.update(dataroot="data", target_size=32, batch_size=2, n_workers=1)
    train_data["degradation"].update(patch_size=48, queue_size=4)
    raw["datasets"]["val"].update(dataroot="data", max_images=2)
    generator = raw["networks"]["generator"]
    generator.update(SMALL_GENERATORS[generator["type"]])
    raw["networks"]["discriminator"].update(num_feat=8)
    raw["path"] = {"experiments_root": "experiments"}
    raw["train"].update(niter=niter, val_freq=3, lr_steps=[niter])
    for loss in raw["train"]["losses"]:
        if loss["type"] == "perceptual":
            loss["pretrained"] = False
    for metric in raw.get("validation", {}).get("metrics", []):
        if metric["type"] in ("lpips", "dists"):
            metric["pretrained"] = False  # random backbones: no ImageNet weights in tests
    raw["logger"] = {"print_freq": 2, "save_checkpoint_freq": 3, "use_tb_logger": False}
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def torchrun(
    script: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in 2 CPU processes (gloo) under torchrun, one thread each; with ``check``, it must
    succeed."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run(
        [*command, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    assert result.returncode == 0 or not check, result.stderr[-3000:]
    return result


def tensors_equal(a: object, b: object) -> bool:
    """Deep equality of nested state with tensors compared exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


def to_esrgan_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys written the way xinntao/ESRGAN's RRDBNet_arch.py names them."""
    renames = [
        (r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2."),
        (r"^conv_body\.", "trunk_conv."),
        (r"^conv_up(\d)\.", r"upconv\1."),
        (r"^conv_hr\.", "HRconv."),
    ]
    out = {}
    for key, value in sd.items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


@pytest.fixture
def random_imagenet(monkeypatch: pytest.MonkeyPatch) -> None:
    """ImageNet backbones (LPIPS, DISTS, the perceptual loss) get random weights instead of torchvision's
    download: the loading path runs as on a user's machine, without the files."""

    def random_state(arch: str, weights_path: Path | None, who: str) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        features = torchvision.models.get_model(arch, weights=None).features
        return {f"features.{k}": v for k, v in features.state_dict().items()}

    monkeypatch.setattr("esrforge.pretrained.imagenet_state_dict", random_state)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """caplog that sees esrforge's INFO records whichever tests ran before (a CLI run sets the logger up,
    a test alone leaves it at the root's WARNING) and after a test turned propagation off."""
    monkeypatch.setattr(logging.getLogger("esrforge"), "propagate", True)
    caplog.set_level(logging.INFO, logger="esrforge")
    return caplog


@pytest.fixture(autouse=True)
def no_automatic_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training and inference run in fp32 unless a test asks otherwise: the CPUs that run the suite differ
    in whether they have bf16 instructions, and with them both would pick bf16 by themselves."""
    monkeypatch.setattr("esrforge.inference.precision.cpu_has_bf16", lambda: False)
    monkeypatch.setattr("esrforge.training.precision.cpu_has_bf16", lambda: False)


def force_autocast(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """Training autocasts to ``dtype`` on the CPU too (fp16 normally falls back to float32 there)."""
    original = Precision.__init__

    def forced(self: Precision, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.dtype = dtype

    monkeypatch.setattr(Precision, "__init__", forced)


def compare_runs(straight: Path, resumed: Path, step: int) -> None:
    """Weights (G, G_ema, D), training state, best models and history at ``step`` of two runs are equal."""
    for name in (f"{step}_G.pth", f"{step}_G_ema.pth", f"{step}_D.pth"):
        a = torch.load(straight / "models" / name, weights_only=True)
        b = torch.load(resumed / "models" / name, weights_only=True)
        assert tensors_equal(a, b), name
    a = torch.load(straight / "training_state" / f"{step}.state", weights_only=True)
    b = torch.load(resumed / "training_state" / f"{step}.state", weights_only=True)
    for key in (
        "networks",
        "optimizers",
        "schedulers",
        "scalers",
        "ema",
        "loader",
        "pools",
        "step",
        "epoch",
        "best",
    ):
        assert tensors_equal(a[key], b[key]), key
    # The best model of each metric, and the history of every loss and score, are the same too.
    best = sorted(p.name for p in (straight / "models").glob("best_*_G.pth"))
    assert best and best == sorted(p.name for p in (resumed / "models").glob("best_*_G.pth"))
    for name in best:
        a = torch.load(straight / "models" / name, weights_only=True)
        assert tensors_equal(a, torch.load(resumed / "models" / name, weights_only=True)), name

    def history(run: Path) -> tuple[list[int], list[dict[str, float]]]:
        """The steps of its records, and its validation scores (a loss line of a resumed run averages
        only the steps since the resume: the same weights, another mean)."""
        records = History(run / "history.jsonl").read()
        scores = [{k: v for k, v in r.items() if k == "step" or k.startswith("val/")} for r in records]
        return sorted({r["step"] for r in records}), [r for r in scores if len(r) > 1]

    assert history(straight) == history(resumed) and history(straight)[1]
    assert (resumed / "curves.png").is_file()


# --- video ---------------------------------------------------------------------------------------

PTS_MS = [0, 40, 80, 150, 200, 300, 340, 380, 460, 500, 520, 600]
"""Variable frame rate: 12 frames over 0.64 s."""
SAMPLE_RATE = 48000


def frame_pattern(index: int, width: int, height: int) -> np.ndarray:
    """A gradient with a square that moves one step per frame."""
    y, x = np.mgrid[:height, :width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, index * 20)], axis=2)
    image[2 * index : 2 * index + 6, 2 * index : 2 * index + 8] = 255
    return image.astype(np.uint8)


def make_video(
    path: Path,
    width: int = 32,
    height: int = 24,
    audio: bool = True,
    subtitles: bool = False,
    pts_ms: Sequence[int] = PTS_MS,
    display: tuple[float, bool] | None = None,
) -> Path:
    """12 VFR frames (h264) at ``pts_ms``, optionally a 0.64 s sine in AAC, two SubRip subtitles and two
    chapters, and a display matrix (``display``: degrees counter-clockwise, mirrored)."""
    ms = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"crf": "10"})
        video.width, video.height, video.pix_fmt = width, height, "yuv444p"
        video.codec_context.time_base = ms
        if display is not None:
            video.set_display_rotation(display[0], hflip=display[1])
        packets = []
        for index, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(frame_pattern(index, width, height), format="rgb24")
            frame.pts, frame.time_base = pts, ms
            packets += video.encode(frame)
        packets += video.encode(None)
        if audio:
            sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(SAMPLE_RATE * 0.64)) / SAMPLE_RATE)
            for start in range(0, len(tone), 1024):
                chunk = av.AudioFrame.from_ndarray(
                    tone[None, start : start + 1024].astype(np.float32), "fltp", "mono"
                )
                chunk.sample_rate, chunk.pts, chunk.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
                packets += sound.encode(chunk)
            packets += sound.encode(None)
        if subtitles:
            chapter = {"id": 1, "start": 0, "end": 300, "time_base": ms, "metadata": {"title": "One"}}
            container.set_chapters(
                [chapter, {**chapter, "id": 2, "start": 300, "end": 640, "metadata": {"title": "Two"}}]
            )
            text = container.add_mux_stream("subrip")
            text.metadata["language"] = "fra"
            for pts, line in ((50, b"Bonjour"), (400, b"Au revoir")):
                packet = av.Packet(line)
                packet.pts = packet.dts = pts
                packet.duration, packet.time_base, packet.stream = 100, ms, text
                packets.append(packet)
        for packet in sorted(packets, key=lambda p: float((p.dts or 0) * p.time_base)):
            container.mux(packet)
    return path


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [round(float(f.time), 6) for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks gain nothing from threads, and OpenMP spinning stalls them on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def x2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny x2 RRDBNet state dict, for the video tests."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_x2.pth"
    torch.save(RRDBNet(RRDBNetOptions(nf=8, nb=1, gc=4, scale=2)).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame VFR h264 clip with AAC audio (:func:`make_video`)."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")
