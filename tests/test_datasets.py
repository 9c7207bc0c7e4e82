"""Training and validation datasets, the resumable sampler and the training loader."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from esrforge.data.base import DATASETS, TrainDatasetOptions, ValDatasetOptions
from esrforge.data.chunks import ChunkOptions, run_chunking
from esrforge.data.datasets import FullImageDataset, HRPatchDataset
from esrforge.data.imageio import read_image
from esrforge.data.imresize import imresize
from esrforge.data.loader import ResumableSampler, SampleKey, make_train_loader
from esrforge.data.manifest import MANIFEST_NAME

RNG = np.random.default_rng(1)


def noise(height: int, width: int, channels: int | None = 3) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def folder_of(tmp_path: Path, name: str, images: dict[str, np.ndarray]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file, image in images.items():
        assert cv2.imwrite(str(folder / file), image)
    return folder


def train_options(dataroot: Path, **kwargs) -> TrainDatasetOptions:
    return TrainDatasetOptions(**{"type": "HRPatchDataset", "dataroot": dataroot, "target_size": 8, **kwargs})


def as_uint8(tensor: torch.Tensor) -> np.ndarray:
    """A [0, 1] CxHxW tensor back to the HxWxC uint8 image it came from (exact for 8-bit sources)."""
    return np.rint(tensor.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    folder = folder_of(tmp_path, "src", {"a.png": noise(24, 30), "b.png": noise(20, 20)})
    run_chunking([folder], tmp_path / "hr", ChunkOptions(crop_size=12, step=6), workers=1, progress=False)
    return tmp_path / "hr" / MANIFEST_NAME


def test_registered_by_type():
    assert DATASETS.get("HRPatchDataset").cls is HRPatchDataset
    assert DATASETS.get("FullImageDataset").options is ValDatasetOptions


def test_manifest_patches_have_the_right_shape_and_range(manifest):
    dataset = HRPatchDataset(train_options(manifest), scale=2)
    assert len(dataset) == len(manifest.read_text().splitlines())
    sample = dataset[SampleKey(0, 0, 0)]
    assert sample["hq"].shape == (3, 8, 8) and sample["lq"].shape == (3, 4, 4)
    for tensor in sample.values():
        assert tensor.dtype == torch.float32 and tensor.min() >= 0 and tensor.max() <= 1


def test_a_folder_of_chunks_is_read_through_its_manifest_and_so_is_a_validation_set(manifest):
    chunks = manifest.parent
    cv2.imwrite(str(chunks / "stray.png"), noise(16, 16))  # not a chunk: the manifest leaves it out
    listed = len(manifest.read_text().splitlines())
    assert len(HRPatchDataset(train_options(chunks), scale=2)) == listed
    val = FullImageDataset(ValDatasetOptions(type="FullImageDataset", dataroot=manifest), scale=2)
    assert len(val) == listed


def test_a_dataroot_file_that_is_no_manifest_is_named(tmp_path):
    image = folder_of(tmp_path, "src", {"a.png": noise(16, 16)}) / "a.png"
    with pytest.raises(ValueError, match=f"{image}: not a chunk manifest"):
        HRPatchDataset(train_options(image), scale=2)


def test_on_the_fly_lr_is_imresize_of_the_augmented_hq(manifest):
    dataset = HRPatchDataset(train_options(manifest), scale=2)
    for index, epoch in itertools.product(range(len(dataset)), range(3)):
        sample = dataset[SampleKey(index, epoch, 5)]
        np.testing.assert_array_equal(as_uint8(sample["lq"]), imresize(as_uint8(sample["hq"]), 0.5))


def test_paired_lr_stays_aligned_through_flips_and_rotations(tmp_path):
    lr = {f"{n}.png": noise(10, 12) for n in "abc"}
    hr = {name: np.repeat(np.repeat(image, 2, axis=0), 2, axis=1) for name, image in lr.items()}  # 2x2 blocks
    options = train_options(folder_of(tmp_path, "hr", hr), dataroot_lq=folder_of(tmp_path, "lr", lr))
    dataset = HRPatchDataset(options, scale=2)
    seen = set()
    for index, epoch in itertools.product(range(3), range(8)):
        sample = dataset[SampleKey(index, epoch, 0)]
        hq, lq = as_uint8(sample["hq"]), as_uint8(sample["lq"])
        np.testing.assert_array_equal(hq[::2, ::2], lq)
        seen.add(hq.tobytes())
    assert len(seen) == 24  # crops and flips differ between keys


def test_corrupt_and_small_files_are_skipped_and_counted(tmp_path):
    folder = folder_of(tmp_path, "mixed", {"good.png": noise(16, 16), "small.png": noise(6, 30)})
    (folder / "corrupt.png").write_bytes(b"garbage")
    dataset = HRPatchDataset(train_options(folder), scale=2)
    assert len(dataset) == 3
    for epoch in range(4):
        for index in range(3):
            assert dataset[SampleKey(index, epoch, 0)]["hq"].shape == (3, 8, 8)
    assert dataset.skipped == {"unreadable": 1, "too small": 1}  # each bad file read once


def test_empty_dataset_names_dataroot(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"dataroot .*empty"):
        HRPatchDataset(train_options(empty), scale=2)
    with pytest.raises(ValueError, match=r"dataroot .*empty"):
        FullImageDataset(ValDatasetOptions(type="FullImageDataset", dataroot=empty), scale=4)


def test_small_chunks_in_a_manifest_are_left_out(manifest):
    with pytest.raises(ValueError, match="no usable images"):
        HRPatchDataset(train_options(manifest, target_size=16), scale=2)


def test_sample_depends_only_on_seed_epoch_and_index(manifest):
    first, second = (HRPatchDataset(train_options(manifest), scale=2) for _ in range(2))
    key = SampleKey(3, 2, 11)
    for a, b in zip(first[key].values(), second[key].values(), strict=True):
        assert torch.equal(a, b)
    others = [first[SampleKey(3, epoch, 11)]["hq"] for epoch in range(6)]
    assert any(not torch.equal(others[0], other) for other in others[1:])


def test_sampler_resumes_with_identical_indices():
    sampler = ResumableSampler(7, seed=3)
    stream = iter(sampler)
    head = [next(stream) for _ in range(10)]  # crosses into the second epoch
    state = sampler.state_dict()
    assert state == {"seed": 3, "epoch": 1, "position": 3}
    expected = [next(stream) for _ in range(20)]
    fresh = ResumableSampler(7, seed=999)
    fresh.load_state_dict(state)
    assert list(itertools.islice(iter(fresh), 20)) == expected
    assert sorted(k.index for k in head[:7]) == list(range(7))


def test_sampler_shards_each_epoch_between_ranks():
    ranks = [ResumableSampler(10, seed=1, num_replicas=3, rank=r) for r in range(3)]
    shares = [r.epoch_indices(4) for r in ranks]
    assert all(len(s) == 4 for s in shares)
    assert set(np.concatenate(shares)) == set(range(10))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resume_reproduces_batches_whatever_the_worker_count(manifest, workers):
    options = train_options(manifest, batch_size=3, n_workers=workers)
    dataset = HRPatchDataset(options, scale=2)
    reference = iter(make_train_loader(dataset, train_options(manifest, batch_size=3, n_workers=0), seed=4))
    expected = [next(reference) for _ in range(5)]
    loader = make_train_loader(dataset, options, seed=4)
    stream = iter(loader)
    for batch in expected[:3]:
        assert torch.equal(next(stream)["hq"], batch["hq"])
    state = loader.state_dict()
    assert state == {"seed": 4, "epoch": 9 // len(dataset), "position": 9 % len(dataset)}
    resumed = make_train_loader(dataset, options, seed=0)
    resumed.load_state_dict(state)
    stream = iter(resumed)
    for batch in expected[3:]:
        actual = next(stream)
        assert torch.equal(actual["hq"], batch["hq"]) and torch.equal(actual["lq"], batch["lq"])


def test_full_image_dataset_crops_to_a_multiple_of_the_scale(tmp_path):
    images = {"a.png": noise(23, 30), "b.png": noise(16, 17, None), "c.png": noise(9, 9)}
    folder = folder_of(tmp_path, "val", images)
    dataset = FullImageDataset(ValDatasetOptions(type="FullImageDataset", dataroot=folder), scale=4)
    sample = dataset[0]
    assert sample["name"] == "a" and sample["hq"].shape == (3, 20, 28) and sample["lq"].shape == (3, 5, 7)
    hr = read_image(folder / "a.png")[:20, :28]
    np.testing.assert_array_equal(as_uint8(sample["hq"]), hr)
    np.testing.assert_array_equal(as_uint8(sample["lq"]), imresize(hr, 0.25))
    grey = dataset[1]
    assert grey["hq"].shape == (3, 16, 16) and torch.equal(grey["hq"][0], grey["hq"][2])
    limited = FullImageDataset(ValDatasetOptions(type="FullImageDataset", dataroot=folder, max_images=2), 4)
    assert len(limited) == 2


KILLED_PARENT = """
import os, signal, sys, time
sys.path.insert(0, {codes!r})
import torch
from torch.utils.data import DataLoader, Dataset
from esrforge.data.loader import make_val_loader

class Slow(Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, index):
        with open({pid_file!r}, "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(120)  # busy in an item: PyTorch's own watchdog cannot notice the parent's death
        return torch.zeros(1)

iterator = iter(make_val_loader(Slow()))
while not os.path.exists({pid_file!r}) or not open({pid_file!r}).read():
    time.sleep(0.01)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_loader_workers_die_with_a_killed_parent(tmp_path):
    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "parent.py"
    script.write_text(
        KILLED_PARENT.format(codes=str(Path(__file__).parents[1] / "codes"), pid_file=str(pid_file))
    )
    parent = subprocess.run([sys.executable, str(script)], stderr=subprocess.PIPE, text=True, timeout=120)
    assert parent.returncode == -signal.SIGKILL, parent.stderr[-2000:]  # stderr closed: no worker holds it
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (
        not Path(f"/proc/{worker}/status").exists() or "zombie" in Path(f"/proc/{worker}/status").read_text()
    )


def test_a_worker_whose_parent_is_already_gone_exits_at_start():
    code = "from esrforge.data.loader import die_with_parent; die_with_parent(-1); print('still running')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "still running" not in done.stdout
