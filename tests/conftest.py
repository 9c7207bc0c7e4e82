"""Helpers shared by the tests: a tiny training config with every recipe loss, exact state comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from esrforge.data.imageio import write_image

REPO = Path(__file__).resolve().parents[1]


def tiny_gan_config(root: Path, niter: int = 6) -> Path:
    """Every loss of the recipe, EMA and validation, on 96 px tiles and a 1-block RRDB."""
    rng = np.random.default_rng(1)
    for i in range(3):
        base = rng.integers(0, 256, (13, 13, 3)).astype(np.float32)
        image = np.kron(base, np.ones((8, 8, 1)))[:100, :100] + rng.normal(0, 8, (100, 100, 3))
        write_image(root / "data" / f"img{i}.png", np.clip(image, 0, 255).astype(np.uint8))
    raw = {
        "name": "run",
        "gpu_ids": [],
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


def tensors_equal(a: object, b: object) -> bool:
    """Deep equality of nested state with tensors compared exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b
