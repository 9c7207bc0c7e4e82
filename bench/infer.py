"""Inference speed and memory of the tiled upscaler with an x4 RRDBNet 64/23/32 (random weights).

Also the compact network against it (``compact`` section): SRVGGNetCompact 64/16 (realesr-animevideov3)
and 64/32 (realesr-general-x4v3) vs the RRDB, images/s on the same inputs with test.py's CPU tiling.

    python bench/infer.py [--quick] [--device cpu|cuda] [--precision fp32|fp16|bf16] [--repeats N]
                          [--compile] [--realesrgan-path DIR]

Prints, for 256x256 and 1280x720 inputs (``--quick``: 128x128 and 320x180), images/s untiled, tiled
with ``--tile`` and with test.py's default ``tile_size: auto`` (default pad/overlap); the CPU's fp32 NCHW / fp32 channels_last / bf16 speeds with the bf16 error; the
peak RSS of a 4096x4096 input with 256 tiles (``--quick``: 1024x1024), measured in child processes;
and, when ``realesrgan`` 0.3.0 imports (from ``--realesrgan-path``), RealESRGANer on the same inputs.

Peak RSS on the CPU is measured in two parts, because the real network needs hours for 4096x4096 on a
small CPU: the pipeline (input, output, blending buffers) with a stub network of negligible cost, and
the activations of one tile with the real network; their sum bounds the real run. With ``--device
cuda`` the activations live on the GPU and the real network runs the whole image.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "codes"))

from esrforge.devices import cpu_has_bf16
from esrforge.inference import DEFAULT_OVERLAP, DEFAULT_PAD, TileOptions, Upscaler
from esrforge.inference.precision import MIN_AUTO_BF16_PSNR
from esrforge.networks import SRVGGNetCompact, SRVGGNetCompactOptions, load_generator
from esrforge.probes import psnr, smooth_image
from measure import DTYPES, best_time, build_model, tiled_size, work_ratio
from tiling import realesrgan, seams


def flops_per_lr_pixel(model: nn.Module) -> float:
    """Multiply-adds per LR pixel of a conv net: each conv's weight count times its output pixels per LR pixel."""
    sizes: dict[nn.Conv2d, int] = {}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: sizes.__setitem__(mod, out.shape[-1] * out.shape[-2]))
        for m in convs
    ]
    parameter = next(model.parameters())
    with torch.no_grad():
        model(torch.zeros(1, 3, 16, 16, device=parameter.device, dtype=parameter.dtype))
    for hook in hooks:
        hook.remove()
    return float(sum(conv.weight.numel() * pixels for conv, pixels in sizes.items())) / 256


def compact(args: argparse.Namespace, device: torch.device) -> None:
    """images/s of SRVGGNetCompact beside the RRDB on the same inputs and tiling."""
    dtype = DTYPES[args.precision]
    torch.manual_seed(0)
    models = {f"RRDBNet 64/{args.nb}/32": build_model(args.nb, device, dtype)}
    for convs in (16, 32):
        net = SRVGGNetCompact(SRVGGNetCompactOptions(num_feat=64, num_conv=convs, upscale=4)).eval()
        models[f"SRVGGNetCompact 64/{convs}"] = net.to(device=device, dtype=dtype).to(
            memory_format=torch.channels_last
        )
    tile = None if device.type == "cuda" else 256  # what test.py's tile_size auto runs on the CPU
    print(f"\n== compact vs RRDB, x4, {args.precision}, {device}, tile {tile or 'none'}")
    print(f"{'network':>24} {'GMAC/LR Mpx':>12} {'input':>10} {'s/image':>9} {'images/s':>9} {'x RRDB':>7}")
    for height, width in args.sizes:
        image = smooth_image(height, width)
        reference = None
        for name, model in models.items():
            upscaler = Upscaler(model, TileOptions(tile_size=tile))
            upscaler(smooth_image(16, 16))  # first-call set-up
            seconds = best_time(partial(upscaler, image, torch.uint8), args.repeats)
            reference = reference or seconds
            macs = flops_per_lr_pixel(model) * 1e6 / 1e9
            print(
                f"{name:>24} {macs:12.1f} {width}x{height:<5} {seconds:9.3f} {1 / seconds:9.3f} "
                f"{reference / seconds:7.1f}"
            )


def throughput(args: argparse.Namespace, device: torch.device) -> dict[tuple[int, int, str], float]:
    """s/image per ``(height, width, mode)``, printed with the work ratio and throughput."""
    times: dict[tuple[int, int, str], float] = {}
    model = build_model(args.nb, device, DTYPES[args.precision])
    upscaler_warm = Upscaler(model, TileOptions(tile_size=None))
    upscaler_warm(smooth_image(16, 16))  # first-call set-up (oneDNN / cuDNN)
    print(f"\n== images/s, x4 RRDBNet 64/{args.nb}/32, {args.precision}, {device}")
    cuda = device.type == "cuda"
    peak_header = f" {'peak GiB':>9}" if cuda else ""
    print(
        f"{'input':>10} {'tiling':>22} {'work':>6} {'s/image':>9} {'images/s':>9} {'LR Mpx/s':>9}{peak_header}"
    )
    for height, width in args.sizes:
        image = smooth_image(height, width)
        tiled = tiled_size(args, height, width)
        settings: dict[str, int | str | None] = {"untiled": None, "tiled": tiled, "auto": "auto"}
        for mode, compiled in itertools.product(args.modes, (False, True) if args.compile else (False,)):
            options = TileOptions(
                tile_size=settings[mode],  # type: ignore[arg-type]
                tile_pad=args.pad,
                tile_overlap=args.overlap,
                tile_batch_size=args.batch,
            )
            upscaler = Upscaler(model, options, compiled=compiled)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            first = best_time(partial(upscaler, image, torch.uint8), 1) if compiled else 0.0
            seconds = best_time(partial(upscaler, image, torch.uint8), args.repeats)
            times[height, width, mode + " compiled" * compiled] = seconds
            tile = upscaler.tile  # auto: what it chose
            label = "untiled" if tile is None else f"tile {tile} pad {args.pad} ov {args.overlap}"
            label = f"auto: {label}" if mode == "auto" else label
            ratio = work_ratio(height, width, tile, args.overlap, args.pad)
            rate = height * width / seconds / 1e6
            print(
                f"{width}x{height:<5} {label:>22} {ratio:6.2f} {seconds:9.2f} {1 / seconds:9.3f} {rate:9.4f}"
                + (f" {torch.cuda.max_memory_allocated(device) / 2**30:9.2f}" if cuda else "")
                + (f"  compiled (first image {first:.1f} s)" if compiled else "")
            )
    return times


def precisions(args: argparse.Namespace) -> None:
    """CPU: fp32 NCHW vs fp32 channels_last vs bf16 channels_last, with bf16's error, on a real-ish model
    and on the trained checkpoints of ``--trained``; and what test.py's automatic choice picks."""
    size = 48 if args.quick else 96
    image = smooth_image(size, size)[None]
    models = {
        f"RRDBNet 64/{args.nb}/32 x4 (real-ish weights)": build_model(
            args.nb, torch.device("cpu"), torch.float32, realish=True
        )
    }
    models.update({str(path): load_generator(path).module.eval() for path in args.trained})
    print(f"\n== CPU precisions, {size}x{size} input; this CPU has bf16 instructions: {cpu_has_bf16()}")
    for name, model in models.items():
        print(f"-- {name}")
        reference, quality = None, 0.0
        for label, dtype, memory_format in (
            ("fp32 NCHW", torch.float32, torch.contiguous_format),
            ("fp32 channels_last", torch.float32, torch.channels_last),
            ("bf16 channels_last", torch.bfloat16, torch.channels_last),
        ):
            net = model.to(dtype=dtype).to(memory_format=memory_format)
            x = image.to(dtype=dtype).contiguous(memory_format=memory_format)
            with torch.inference_mode():
                net(x)  # oneDNN builds its kernels for this shape on the first call
                seconds = best_time(partial(net, x), args.repeats)
                out = net(x).float().clamp(0, 1)
            line = f"{label:>20}: {seconds:7.2f} s"
            if reference is None:
                reference = out
            else:
                err = (out - reference).abs() * 255
                quality = psnr(out, reference)
                line += f"  vs fp32: max {err.max():.2f}/255, {float((err > 1).float().mean()) * 100:.2f}% > 1/255, {quality:.1f} dB"
            print(line)
        choice = "bf16" if cpu_has_bf16() and quality >= MIN_AUTO_BF16_PSNR else "fp32"
        print(
            f"{'automatic choice':>20}: {choice} (bf16 when the CPU has it and >= {MIN_AUTO_BF16_PSNR:.0f} dB)"
        )


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it ignores the parent's before exec)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_rss(args: argparse.Namespace) -> None:
    """(Child process) upscale one image and print the peak RSS as JSON."""
    device = torch.device(args.device)
    if args.child == "stub":
        model: nn.Module = nn.Sequential(
            nn.Upsample(scale_factor=4, mode="nearest"), nn.Conv2d(3, 3, 1)
        ).eval()
    else:
        model = build_model(args.nb, device, DTYPES[args.precision])
    image = (smooth_image(args.child_size, args.child_size) * 255).round().to(torch.uint8)
    base = peak_rss_mib()
    start = time.perf_counter()
    upscaler = Upscaler(model.to(device), TileOptions(tile_size=args.child_tile))
    out = upscaler(image.float() / 255, torch.uint8)
    seconds = time.perf_counter() - start
    print(
        json.dumps({"base_mib": base, "peak_mib": peak_rss_mib(), "seconds": seconds, "out": list(out.shape)})
    )


def measure_rss(
    args: argparse.Namespace, kind: str, size: int, tile: int | None, nb: int
) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", kind, "--child-size", str(size), "--nb", str(nb)]
    command += ["--device", args.device, "--precision", args.precision]
    command += ["--child-tile", str(tile or 0)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    data: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def memory(args: argparse.Namespace) -> None:
    size = 1024 if args.quick else 4096
    tile = 256
    print(f"\n== peak RSS, {size}x{size} input (x4: {4 * size}x{4 * size} uint8 output), tile {tile}")
    output_mib = (4 * size) ** 2 * 3 / 2**20
    print(
        f"   for scale: the uint8 output alone is {output_mib:.0f} MiB; float32 output + weight map {output_mib * 16 / 3:.0f} MiB"
    )
    pipeline = measure_rss(args, "stub", size, tile, args.nb)
    print(
        f"   pipeline (stub network): peak {pipeline['peak_mib']:.0f} MiB "
        f"(+{pipeline['peak_mib'] - pipeline['base_mib']:.0f} over start-up), {pipeline['seconds']:.1f} s"
    )
    crop = tile + args.overlap + 2 * args.pad
    nb = 1 if args.quick and args.device == "cpu" else args.nb
    one = measure_rss(args, "real", crop, None, nb)
    extra = one["peak_mib"] - one["base_mib"]
    print(
        f"   one {crop}x{crop} tile, real network 64/{nb}/32: +{extra:.0f} MiB over start-up, {one['seconds']:.1f} s"
    )
    print(f"   => a {size}x{size} run needs about {pipeline['peak_mib'] + extra:.0f} MiB at most")
    if args.device == "cuda":
        real = measure_rss(args, "real", size, tile, args.nb)
        print(f"   real network on {args.device}: peak {real['peak_mib']:.0f} MiB, {real['seconds']:.1f} s")


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    return int(height), int(width)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes on a 2-core CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=DTYPES, default="fp32")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--nb", type=int, default=23, help="RRDB blocks (23: ESRGAN)")
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile size of the tiled runs (default 256, quick 128; at most half the input)",
    )
    parser.add_argument(
        "--trained", type=Path, nargs="*", default=[], help="trained checkpoints for the precisions section"
    )
    parser.add_argument(
        "--compile", action="store_true", help="speed section: each mode also through torch.compile"
    )
    parser.add_argument("--batch", type=int, default=1, help="tiles per forward pass")
    parser.add_argument("--pad", type=int, default=DEFAULT_PAD, help="context pixels per tile side")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="feathered band width")
    parser.add_argument(
        "--sizes", type=_size, nargs="+", help="input sizes as HxW (default 256x256 720x1280)"
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("untiled", "tiled", "auto"),
        default=["untiled", "tiled", "auto"],
        help="tiled: --tile; auto: test.py's default (tile_size auto)",
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=("speed", "precision", "memory", "compact", "seams", "realesrgan"),
    )
    parser.add_argument(
        "--realesrgan-path", help="folder holding realesrgan 0.3.0 and basicsr (pip --target)"
    )
    parser.add_argument("--child", choices=("stub", "real"), help=argparse.SUPPRESS)
    parser.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-tile", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sizes is None:
        args.sizes = [(128, 128), (180, 320)] if args.quick else [(256, 256), (720, 1280)]
    args.tile = args.tile or (128 if args.quick else 256)
    if args.child_tile == 0:
        args.child_tile = None
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child_rss(args)
        return
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    ours = throughput(args, device) if "speed" not in args.skip else {}
    if "precision" not in args.skip and device.type == "cpu":
        precisions(args)
    if "memory" not in args.skip:
        memory(args)
    if "compact" not in args.skip:
        compact(args, device)
    if "seams" not in args.skip:
        seams(args, device)
    if "realesrgan" not in args.skip:
        realesrgan(args, device, ours)


if __name__ == "__main__":
    main()
