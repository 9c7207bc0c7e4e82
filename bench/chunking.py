"""Chunking speed on ../shared/datasets/photos with 1 and 2 worker processes: images/s and MB/s.

Run from the repository root: ``python bench/chunking.py [--lr]`` (``--lr`` also writes x4 LR chunks).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "codes"))

from esrforge.data.chunks import ChunkOptions, find_sources, run_chunking  # noqa: E402

PHOTOS = REPO.parent / "shared" / "datasets" / "photos"
MB = 1e6


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", action="store_true", help="also write x4 LR chunks")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to try")
    args = parser.parse_args()
    if not PHOTOS.is_dir():
        sys.exit(f"bench/chunking.py: {PHOTOS} not found; it needs the shared photos (see its README)")
    sources = find_sources([PHOTOS])
    in_bytes = sum(path.stat().st_size for path, _ in sources)
    print(f"{len(sources)} photos, {in_bytes / MB:.1f} MB of JPEG; crop 480, step 240, PNG, LR x4: {args.lr}")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "hr"
            options = ChunkOptions(lr_output=Path(tmp) / "lr" if args.lr else None)
            summary = run_chunking([PHOTOS], out, options, workers=workers, progress=False)
            out_bytes = folder_bytes(Path(tmp))
        seconds = summary.seconds
        print(
            f"workers {workers}: {summary.chunks} chunks in {seconds:.1f} s = {summary.images / seconds:.2f} images/s, "
            f"{in_bytes / MB / seconds:.2f} MB/s read, {out_bytes / MB / seconds:.1f} MB/s written"
        )


if __name__ == "__main__":
    main()
