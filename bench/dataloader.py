"""Training DataLoader throughput: batch 16, GT 128, x4, LR by MATLAB bicubic on the fly.

Run from the repository root: ``python bench/dataloader.py``. It chunks ../shared/datasets/photos into
a temporary folder (480 px chunks, as extract_subimages does by default) or, when that folder is
absent, writes synthetic 480 px chunks; then it times the loader with 0 workers (the rate of one
process, i.e. per worker) and with 2 workers, and compares with what a V100-class GPU consumes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "codes"))

from esrforge.data.base import TrainDatasetOptions  # noqa: E402
from esrforge.data.chunks import ChunkOptions, run_chunking  # noqa: E402
from esrforge.data.datasets import HRPatchDataset  # noqa: E402
from esrforge.data.loader import make_train_loader  # noqa: E402
from esrforge.data.manifest import MANIFEST_NAME  # noqa: E402

PHOTOS = REPO.parent / "shared" / "datasets" / "photos"
GPU_NEEDS = 1.5 * 16
"""Samples/s an ESRGAN x4 step at batch 16 consumes on a V100-class GPU (about 1.5 it/s)."""


def make_chunks(folder: Path) -> Path:
    """Chunk the shared photos, or write smooth synthetic 480 px images when they are absent."""
    source = PHOTOS
    if not PHOTOS.is_dir():
        print(f"{PHOTOS} not found: using synthetic 480 px chunks")
        source = folder / "synthetic"
        source.mkdir()
        rng = np.random.default_rng(0)
        for i in range(64):
            small = rng.integers(0, 256, size=(60, 60, 3), dtype=np.uint8)
            cv2.imwrite(
                str(source / f"{i:03d}.png"), cv2.resize(small, (480, 480), interpolation=cv2.INTER_CUBIC)
            )
    run_chunking([source], folder / "hr", ChunkOptions(), workers=2, progress=False)
    return folder / "hr" / MANIFEST_NAME


def samples_per_second(dataset: HRPatchDataset, workers: int, batches: int) -> float:
    options = TrainDatasetOptions(
        type="HRPatchDataset",
        dataroot=dataset.options.dataroot,
        target_size=128,
        batch_size=16,
        n_workers=workers,
    )
    stream = iter(make_train_loader(dataset, options, seed=0))
    for _ in range(3):  # start-up and first prefetch
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * 16 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="batches timed per setting")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_chunks(Path(tmp))
        options = TrainDatasetOptions(type="HRPatchDataset", dataroot=manifest, target_size=128)
        dataset = HRPatchDataset(options, scale=4)
        print(f"{len(dataset)} chunks of 480 px; batch 16, GT 128, x4, flips and rotations")
        per_worker = samples_per_second(dataset, 0, args.batches)
        print(f"0 workers (one process): {per_worker:.0f} samples/s")
        two = samples_per_second(dataset, 2, args.batches)
        print(f"2 workers: {two:.0f} samples/s")
    verdict = "meets" if per_worker >= GPU_NEEDS else "does not meet"
    print(f"a V100-class GPU needs about {GPU_NEEDS:.0f} samples/s (1.5 it/s x 16): one worker {verdict} it")


if __name__ == "__main__":
    main()
