"""Frames/s of process_video on a synthesised 480p clip (854x480, 30 fps, with an AAC track), x4 RRDB.

Run from the repository root: ``python bench/video.py [--quick] [--frames N] [--nf 64 --nb 23]``;
``--arch compact`` runs SRVGGNetCompact 64/16 (realesr-animevideov3's size) instead.
A 64/23/32 RRDB takes about a minute per 480p frame on a 2-core CPU: ``--quick`` uses a 16/2/16
network and 6 frames. Besides the whole job it times the network alone on one frame and the decoding
alone, so the cost of decoding, encoding, segments and the final remux shows as the difference.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "codes"))

from esrforge.cli.process_video import main as process_video  # noqa: E402
from esrforge.inference.images import to_tensor  # noqa: E402
from esrforge.inference.tiling import TileOptions, Upscaler  # noqa: E402
from esrforge.networks import RRDBNet, RRDBNetOptions, SRVGGNetCompact, SRVGGNetCompactOptions  # noqa: E402
from esrforge.video.source import VideoSource  # noqa: E402

WIDTH, HEIGHT, FPS = 854, 480, 30


def synthesise(path: Path, frames: int) -> None:
    """A moving gradient with noise (so the encoder has work), and a sine in AAC."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:HEIGHT, :WIDTH]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "18"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream("aac", rate=48000, layout="stereo")
        for index in range(frames):
            image = np.stack([(x + 8 * index) % 256, (y + 4 * index) % 256, (x + y) % 256], axis=2)
            image = (image + rng.integers(0, 24, image.shape)).clip(0, 255).astype(np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        samples = int(48000 * frames / FPS)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(np.stack([tone[start : start + 1024]] * 2), "fltp", "stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48000, start, Fraction(1, 48000)
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 16/2/16 RRDB and 6 frames")
    parser.add_argument("--frames", type=int, help="frames in the clip (default 3; 6 with --quick)")
    parser.add_argument("--nf", type=int, help="RRDB features (default 64; 16 with --quick)")
    parser.add_argument("--nb", type=int, help="RRDB blocks (default 23; 2 with --quick)")
    parser.add_argument("--tile", default="auto", help="--tile of process_video (auto: 256 on the CPU)")
    parser.add_argument("--codec", default="libx264", help="--codec of process_video")
    parser.add_argument("--half", action="store_true", help="float16 on CUDA (--half of process_video)")
    parser.add_argument(
        "--arch", choices=("rrdb", "compact"), default="rrdb", help="compact: SRVGGNetCompact 64/16"
    )
    args = parser.parse_args()
    frames = args.frames or (6 if args.quick else 3)
    nf, nb = args.nf or (16 if args.quick else 64), args.nb or (2 if args.quick else 23)
    gc = 16 if args.quick else 32
    logging.basicConfig(level=logging.WARNING)
    device = "cuda" if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    described = f"RRDB x4 nf {nf} nb {nb} gc {gc}" if args.arch == "rrdb" else "SRVGGNetCompact x4 64/16"
    print(f"{frames} frames {WIDTH}x{HEIGHT} -> {WIDTH * 4}x{HEIGHT * 4}, {described}, {device}")
    with tempfile.TemporaryDirectory() as tmp:
        clip, model = Path(tmp) / "clip.mp4", Path(tmp) / "model.pth"
        synthesise(clip, frames)
        torch.manual_seed(0)
        network = (
            RRDBNet(RRDBNetOptions(nf=nf, nb=nb, gc=gc, scale=4))
            if args.arch == "rrdb"
            else SRVGGNetCompact(SRVGGNetCompactOptions(num_feat=64, num_conv=16, upscale=4))
        ).eval()
        torch.save(network.state_dict(), model)

        started = time.perf_counter()
        with VideoSource(clip) as source:
            decoded = sum(1 for _ in source.frames())
        decode_fps = decoded / (time.perf_counter() - started)

        with VideoSource(clip) as source:
            first = next(source.frames()).image
        tile = None if args.tile in ("0", "none") else args.tile if args.tile == "auto" else int(args.tile)
        on_device = network.to("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if args.half else None
        upscaler = Upscaler(on_device, TileOptions(tile_size=tile), dtype=dtype)
        upscaler(to_tensor(first), torch.uint8)  # warm-up: cuDNN / oneDNN choose their kernels
        started = time.perf_counter()
        upscaler(to_tensor(first), torch.uint8)
        network_seconds = time.perf_counter() - started

        output = Path(tmp) / "out.mp4"
        argv = ["--model", str(model), "--input", str(clip), "--output", str(output), "--tile", args.tile]
        started = time.perf_counter()
        process_video(
            [*argv, "--codec", args.codec, "--segment-seconds", "0.1", *(["--half"] if args.half else [])]
        )
        job_seconds = time.perf_counter() - started
        with av.open(str(output)) as result:
            written = sum(1 for _ in result.decode(video=0))
            audio = len(result.streams.audio)
    print(f"decode only:         {decode_fps:8.1f} frames/s")
    print(f"network, one frame:  {network_seconds:8.2f} s  ({1 / network_seconds:.3f} frames/s)")
    print(
        f"process_video:       {job_seconds:8.2f} s for {written} frames = {written / job_seconds:.3f} frames/s "
        f"(model load, decode, upscale, encode in segments of 0.1 s, remux; {audio} audio stream copied)"
    )


if __name__ == "__main__":
    main()
