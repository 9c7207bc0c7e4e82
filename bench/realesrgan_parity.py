"""The Real-ESRGAN recipe against BasicSR / Real-ESRGAN: kernels, mask, JPEG, U-Net D, degradation speed.

    python bench/realesrgan_parity.py [--device cpu|cuda] [--batch 12] [--repeats 3] [--peer-python PATH]

Prints the time to degrade one Real-ESRGAN batch (``--batch`` HR patches of 400 px into 64 px LR with
options/train_realesrgan_x4.yml's pipeline; photos from ../shared/datasets/photos when present) with
the libjpeg and the kornia JPEG. With ``--peer-python`` (the python of the venv that
``../shared/peers/setup_peer_venv.sh`` builds) it also runs Real-ESRGAN's own ``feed_data`` pipeline
(BasicSR 1.4.2: kernels drawn as ``RealESRGANDataset`` does, ``filter2D``, its noises, ``DiffJPEG``,
``USMSharp``) on the same batch on the same device, and compares, for fixed parameters, BasicSR's
kernels, unsharp mask and JPEG with ours (largest absolute difference, or PSNR to libjpeg), and loads
the weights of BasicSR's ``UNetDiscriminatorSN`` into ours with strict key checking (largest output
difference on the same input).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "codes"))

from esrforge.data.imageio import list_images, read_image, to_float  # noqa: E402
from esrforge.degradations import kernels  # noqa: E402
from esrforge.degradations.jpeg import differentiable_jpeg, libjpeg  # noqa: E402
from esrforge.degradations.pipeline import DegradationSection, Degrader, UsmOptions, unsharp_mask  # noqa: E402
from esrforge.networks import UNetDiscriminatorSN, UNetDiscriminatorSNOptions, load_into  # noqa: E402
from esrforge.options.loader import load_typed  # noqa: E402

PHOTOS = REPO.parent / "shared" / "datasets" / "photos"
FIXED = {  # name: (BasicSR call, our kernel)
    "gaussian_aniso": (
        "bivariate_Gaussian(21, 2.0, 1.0, 0.5, isotropic=False)",
        lambda: kernels.gaussian(21, 2.0, 1.0, 0.5),
    ),
    "generalized_aniso": (
        "bivariate_generalized_Gaussian(21, 1.5, 0.8, -1.0, 0.7, isotropic=False)",
        lambda: kernels.generalized_gaussian(21, 1.5, 0.8, -1.0, 0.7),
    ),
    "plateau_aniso": (
        "bivariate_plateau(21, 1.5, 0.8, 1.0, 1.5, isotropic=False)",
        lambda: kernels.plateau(21, 1.5, 0.8, 1.0, 1.5),
    ),
    "sinc": ("circular_lowpass_kernel(math.pi / 3, 21)", lambda: kernels.sinc(21, math.pi / 3)),
}

PEER = r"""
import json, math, random, sys, time
import numpy as np, torch
from torch.nn import functional as F
from basicsr.data.degradations import (bivariate_Gaussian, bivariate_generalized_Gaussian, bivariate_plateau,
    circular_lowpass_kernel, random_add_gaussian_noise_pt, random_add_poisson_noise_pt, random_mixed_kernels)
from basicsr.utils import DiffJPEG, USMSharp
from basicsr.utils.img_process_util import filter2D as basicsr_filter2D

def filter2D(img, kernel):  # its .view() needs a contiguous input, which DiffJPEG's CPU output is not
    return basicsr_filter2D(img.contiguous(), kernel)

args = json.loads(sys.argv[1])
device = torch.device(args["device"])
batch = torch.from_numpy(np.load(args["batch"])).to(device)
out = {"kernels": {name: eval(call).tolist() for name, call in args["fixed"].items()}}
usm, jpeger = USMSharp().to(device), DiffJPEG(differentiable=False).to(device)
image = torch.from_numpy(np.load(args["image"])).to(device)
out["usm"] = usm(image).detach().cpu().numpy().tolist()
out["diffjpeg"] = {str(q): jpeger(image, quality=torch.tensor([float(q)], device=device)).detach().cpu().numpy().tolist() for q in (40, 90)}
KS = [2 * v + 1 for v in range(3, 11)]
FAM = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
PROB = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]

def kernel(sigma):
    size = random.choice(KS)
    if np.random.uniform() < 0.1:
        k = circular_lowpass_kernel(np.random.uniform(np.pi / 3 if size < 13 else np.pi / 5, np.pi), size, pad_to=False)
    else:
        k = random_mixed_kernels(FAM, PROB, size, sigma, sigma, [-math.pi, math.pi], [0.5, 4], [1, 2], noise_range=None)
    p = (21 - size) // 2
    return np.pad(k, ((p, p), (p, p)))

@torch.no_grad()
def feed_data(gt):
    n = gt.shape[0]
    k1 = torch.FloatTensor(np.stack([kernel([0.2, 3]) for _ in range(n)])).to(device)
    k2 = torch.FloatTensor(np.stack([kernel([0.2, 1.5]) for _ in range(n)])).to(device)
    sinc = torch.FloatTensor(np.stack([circular_lowpass_kernel(np.random.uniform(np.pi / 3, np.pi), random.choice(KS), pad_to=21) for _ in range(n)])).to(device)
    gt_usm = usm(gt)
    h, w = gt.shape[2:]
    out = filter2D(gt_usm, k1)
    kind = random.choices(["up", "down", "keep"], [0.2, 0.7, 0.1])[0]
    s = np.random.uniform(1, 1.5) if kind == "up" else np.random.uniform(0.15, 1) if kind == "down" else 1
    out = F.interpolate(out, scale_factor=s, mode=random.choice(["area", "bilinear", "bicubic"]))
    if np.random.uniform() < 0.5:
        out = random_add_gaussian_noise_pt(out, sigma_range=[1, 30], clip=True, rounds=False, gray_prob=0.4)
    else:
        out = random_add_poisson_noise_pt(out, scale_range=[0.05, 3], gray_prob=0.4, clip=True, rounds=False)
    out = jpeger(torch.clamp(out, 0, 1), quality=out.new_zeros(n).uniform_(30, 95))
    if np.random.uniform() < 0.8:
        out = filter2D(out, k2)
    kind = random.choices(["up", "down", "keep"], [0.3, 0.4, 0.3])[0]
    s = np.random.uniform(1, 1.2) if kind == "up" else np.random.uniform(0.3, 1) if kind == "down" else 1
    out = F.interpolate(out, size=(int(h / 4 * s), int(w / 4 * s)), mode=random.choice(["area", "bilinear", "bicubic"]))
    if np.random.uniform() < 0.5:
        out = random_add_gaussian_noise_pt(out, sigma_range=[1, 25], clip=True, rounds=False, gray_prob=0.4)
    else:
        out = random_add_poisson_noise_pt(out, scale_range=[0.05, 2.5], gray_prob=0.4, clip=True, rounds=False)
    if np.random.uniform() < 0.5:
        out = filter2D(F.interpolate(out, size=(h // 4, w // 4), mode=random.choice(["area", "bilinear", "bicubic"])), sinc)
        out = jpeger(torch.clamp(out, 0, 1), quality=out.new_zeros(n).uniform_(30, 95))
    else:
        out = jpeger(torch.clamp(out, 0, 1), quality=out.new_zeros(n).uniform_(30, 95))
        out = filter2D(F.interpolate(out, size=(h // 4, w // 4), mode=random.choice(["area", "bilinear", "bicubic"])), sinc)
    return torch.clamp((out * 255.0).round(), 0, 255) / 255.0

from basicsr.archs.discriminator_arch import UNetDiscriminatorSN
torch.manual_seed(0)
net_d = UNetDiscriminatorSN(UNetDiscriminatorSNOptions(3, 64, skip_connection=True)).eval()
torch.save({"params": net_d.state_dict()}, args["netd"])
with torch.no_grad():
    out["netd_logits"] = net_d(image.cpu()).numpy().tolist()

times = []
for repeat in range(args["repeats"] + 1):
    random.seed(repeat); np.random.seed(repeat); torch.manual_seed(repeat)
    start = time.perf_counter()
    lq = feed_data(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    times.append(time.perf_counter() - start)
out["seconds"] = times[1:]
out["lq_shape"] = list(lq.shape)
print(json.dumps(out))
"""


def photo_batch(count: int, size: int = 400) -> torch.Tensor:
    """``count`` 400 px crops of the shared photos (random noise texture if they are absent)."""
    paths = list_images(PHOTOS) if PHOTOS.is_dir() else []
    if not paths:
        return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0))
    crops = []
    for i in range(count):
        image = to_float(read_image(paths[i % len(paths)]))[..., :3]
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2 + 37 * (i // len(paths))
        crops.append(
            torch.from_numpy(
                np.ascontiguousarray(image[top : top + size, left : left + size].transpose(2, 0, 1))
            )
        )
    return torch.stack(crops)


def with_backend(ops: list[dict], backend: str) -> list[dict]:
    """``ops`` with every ``jpeg`` operation, at any depth of the groups, on ``backend``."""
    return [
        {**op, "backend": backend}
        if op["type"] == "jpeg"
        else {**op, "ops": with_backend(op["ops"], backend)}
        if "ops" in op
        else op
        for op in ops
    ]


def realesrgan_section(jpeg_backend: str) -> DegradationSection:
    """options/train_realesrgan_x4.yml's pipeline, without the pool, with the given JPEG."""
    raw = yaml.safe_load((REPO / "options" / "train_realesrgan_x4.yml").read_text())["datasets"]["train"][
        "degradation"
    ]
    raw.update(ops=with_backend(raw["ops"], jpeg_backend), queue_size=0)
    return load_typed(DegradationSection, raw, "bench", REPO)


def time_ours(batch: torch.Tensor, backend: str, repeats: int) -> list[float]:
    degrader = Degrader(realesrgan_section(backend), 4, 256, seed=0)
    times = []
    for step in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        degrader(batch, step)
        if batch.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]


def textured_crop(batch: torch.Tensor, size: int = 96) -> torch.Tensor:
    """The ``size`` px top-left crop of the batch with the most detail (the unsharp mask acts on edges)."""
    crops = batch[:, :, :size, :size]
    detail = (crops[..., 1:, :] - crops[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return crops[int(detail.argmax()) : int(detail.argmax()) + 1].contiguous()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a.astype(np.float64) - b) ** 2)))


def compare(peer: dict, image: torch.Tensor, netd: Path) -> dict[str, float]:
    """Largest absolute differences to BasicSR's kernels, mask and U-Net D; PSNR of each JPEG to libjpeg."""
    result = {
        f"kernel_{name}": float(np.abs(np.array(peer["kernels"][name]) - ours().numpy()).max())
        for name, (_, ours) in FIXED.items()
    }
    sharpened = unsharp_mask(image, UsmOptions())
    result["usm"] = float(np.abs(np.array(peer["usm"]) - sharpened.cpu().numpy()).max())
    result["usm_pixels_changed"] = float((sharpened != image).float().mean())
    d_options = UNetDiscriminatorSNOptions(num_in_ch=3, num_feat=64, skip_connection=True)
    ours = UNetDiscriminatorSN(d_options).eval()
    load_into(ours, d_options, netd, strict=True)
    with torch.no_grad():
        logits = ours(image.cpu()).numpy()
    result["netd_strict_load_logits"] = float(np.abs(np.array(peer["netd_logits"]) - logits).max())
    for quality, theirs in peer["diffjpeg"].items():
        reference = libjpeg(image, int(quality)).cpu().numpy()
        result[f"jpeg{quality}_psnr_diffjpeg_to_libjpeg"] = psnr(np.array(theirs), reference)
        result[f"jpeg{quality}_psnr_kornia_to_libjpeg"] = psnr(
            differentiable_jpeg(image, float(quality)).cpu().numpy(), reference
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-python", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    batch = photo_batch(args.batch).to(device)
    report: dict[str, object] = {"device": str(device), "batch": f"{args.batch}x3x400x400 -> 64 px LR"}
    for backend in ("libjpeg", "kornia"):
        report[f"ours_{backend}_s_per_batch"] = round(
            statistics.median(time_ours(batch, backend, args.repeats)), 3
        )
    if args.peer_python is not None:
        with tempfile.TemporaryDirectory() as folder:
            np.save(Path(folder) / "batch.npy", batch.cpu().numpy())
            image = textured_crop(batch)
            np.save(Path(folder) / "image.npy", image.cpu().numpy())
            spec = {
                "device": args.device,
                "batch": f"{folder}/batch.npy",
                "image": f"{folder}/image.npy",
                "repeats": args.repeats,
            }
            spec["fixed"] = {name: call for name, (call, _) in FIXED.items()}
            spec["netd"] = f"{folder}/netd.pth"
            done = subprocess.run(
                [str(args.peer_python), "-c", PEER, json.dumps(spec)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"the peer pipeline failed:\n{done.stderr[-3000:]}")
            peer = json.loads(done.stdout.strip().splitlines()[-1])
            parity = compare(peer, image, Path(spec["netd"]))
        report["realesrgan_s_per_batch"] = round(statistics.median(peer["seconds"]), 3)
        report["realesrgan_lq_shape"] = peer["lq_shape"]
        report.update({k: round(v, 8) if v < 1 else round(v, 2) for k, v in parity.items()})
    for key, value in report.items():
        print(f"{key}: {value}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
