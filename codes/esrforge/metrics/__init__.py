"""Image quality metrics: PSNR and SSIM on RGB and on BT.601 Y, numpy and batched torch."""

from .psnr_ssim import calculate_psnr, calculate_ssim, rgb_to_y
from .psnr_ssim_torch import calculate_psnr_torch, calculate_ssim_torch

__all__ = ["calculate_psnr", "calculate_psnr_torch", "calculate_ssim", "calculate_ssim_torch", "rgb_to_y"]
