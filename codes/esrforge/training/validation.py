"""Validation during training: upscale the validation images, score PSNR/SSIM on Y, keep the best model."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.base import build_dataset
from ..data.imageio import to_uint8, write_image
from ..data.imresize import imresize
from ..data.loader import make_val_loader
from ..inference.tiling import upscale
from ..metrics import calculate_psnr_torch, calculate_ssim_torch
from ..options.schema import Config
from .degraded_validation import degraded_validation
from .distributed import DistributedContext
from .experiment import ExperimentDirs
from .reporting import Reporter
from .state import save_weights

log = logging.getLogger("esrforge")

SIDE_BY_SIDE = 4
"""How many validation images get a bicubic | output | ground-truth picture each time."""


def side_by_side(lq: Tensor, sr: Tensor, hq: Tensor, scale: int) -> Tensor:
    """``bicubic | sr | hq`` as one ``C x H x 3W`` image in [0, 1]."""
    bicubic = imresize(lq.float().cpu(), scale).clamp(0, 1)
    return torch.cat([bicubic[0], sr[0].float().cpu(), hq[0].float().cpu()], dim=-1)


class Validator:
    """Scores a generator on the validation images; ``best`` is ``{"psnr_y", "step"}`` of the best run.

    Under torch.distributed every process scores its share of the images (``loader`` holds that share,
    see :func:`~esrforge.data.loader.make_val_loader`) and the means are reduced over all of them, so no
    process waits idle while another validates; the main process logs them and keeps the best model.
    """

    def __init__(
        self, loader: DataLoader[Any], config: Config, dirs: ExperimentDirs, dist: DistributedContext
    ) -> None:
        assert config.datasets.val is not None
        self.loader = loader
        self.scale = config.scale
        self.tile = config.datasets.val.tile_size
        self.description = config.networks.generator.describe()
        self.dirs = dirs
        self.dist = dist
        self.best: dict[str, float] | None = None

    @torch.no_grad()
    def run(self, model: nn.Module, step: int, reporter: Reporter) -> dict[str, float]:
        """Validate ``model`` at ``step``; log and return the mean PSNR-Y and SSIM-Y."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # PSNR, SSIM, images
        bar = tqdm(
            self.loader,
            desc="validation",
            leave=False,
            unit="img",
            disable=None if self.dist.is_main else True,
        )
        for i, sample in enumerate(bar):
            lq, hq = sample["lq"].to(device), sample["hq"].to(device)
            sr = upscale(model, lq, tile=self.tile, description=self.description).clamp(0, 1)
            psnr = calculate_psnr_torch(sr, hq, crop_border=self.scale, y_channel=True)
            ssim = calculate_ssim_torch(sr, hq, crop_border=self.scale, y_channel=True)
            sums += torch.stack([psnr.sum(), ssim.sum(), torch.tensor(float(len(psnr)), device=device)])
            if self.dist.rank + i * self.dist.world_size < SIDE_BY_SIDE:  # the first images of the set
                picture = side_by_side(lq, sr, hq, self.scale)
                name = sample["name"][0]
                write_image(
                    self.dirs.val_images / str(step) / f"{name}.png",
                    to_uint8(picture.permute(1, 2, 0).numpy()),
                )
                reporter.image(step, f"val/{name}", picture)
        model.train(was_training)
        sums = self.dist.all_reduce_sum(sums)
        count = max(float(sums[2]), 1.0)
        scores = {"psnr_y": float(sums[0]) / count, "ssim_y": float(sums[1]) / count}
        if not self.dist.is_main:
            return scores
        log.info(
            "validation at step %d: PSNR-Y %.3f dB, SSIM-Y %.4f", step, scores["psnr_y"], scores["ssim_y"]
        )
        reporter.scalars(step, {f"val/{k}": v for k, v in scores.items()})
        if self.best is None or scores["psnr_y"] > self.best["psnr_y"]:
            self.best = {"psnr_y": scores["psnr_y"], "step": float(step)}
            save_weights(self.dirs.models / "best_G.pth", model.state_dict())
            log.info("new best PSNR-Y: saved models/best_G.pth (step %d)", step)
        return scores


def make_validator(config: Config, dirs: ExperimentDirs, dist: DistributedContext) -> Validator | None:
    """The validator of ``datasets.val`` (None without one); with ``degrade``, its LR is made first."""
    val, data = config.datasets.val, config.datasets.train
    if val is None:
        return None
    if val.degrade:
        assert data is not None and config.train is not None, "checked when the config loads"
        seed = config.train.manual_seed
        val = degraded_validation(val, data, config.scale, seed, dirs.val_lq, dist.device, dist.is_main)
        dist.barrier()  # the main process has written the LR the others read
    loader = make_val_loader(build_dataset(val, config.scale), dist.rank, dist.world_size)
    return Validator(loader, config, dirs, dist)
