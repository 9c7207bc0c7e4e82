"""Upscale video frames: several whole frames per forward pass when a frame fits one tile, else tile by tile."""

from __future__ import annotations

import numpy as np
import torch

from ..inference.engine import TileTooLarge
from ..inference.images import DTYPES, to_tensor
from ..inference.tiling import Upscaler, pad_to_multiple, to_host


class FrameUpscaler:
    """Turns batches of ``H x W x 3`` uint8/uint16 RGB frames into their upscaled arrays (same dtype).

    A frame gets exactly what :class:`Upscaler` gives for it alone (test.py's result): frames that fit
    one tile are stacked ``batch_size`` at a time into one forward pass (a whole-image tile is the
    plain network output), larger frames go through the Upscaler's tiling one by one.
    """

    def __init__(self, upscaler: Upscaler, batch_size: int = 1) -> None:
        self.upscaler = upscaler
        self.batch_size = batch_size

    def _whole(self, height: int, width: int) -> bool:
        multiple = self.upscaler.multiple
        padded = (-height % multiple + height, -width % multiple + width)
        return len(self.upscaler.plan(*padded)) == 1

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """The upscaled frames, in order."""
        if not frames:
            return []
        dtype = DTYPES[frames[0].dtype]
        if len(frames) > 1 and self._whole(*frames[0].shape[:2]):
            try:
                return self._batched(frames, dtype)
            except TileTooLarge:
                pass  # one frame does not fit: the Upscaler shrinks its tiles below
        return [self.upscaler(to_tensor(f), dtype).permute(1, 2, 0).numpy() for f in frames]

    def _batched(self, frames: list[np.ndarray], dtype: torch.dtype) -> list[np.ndarray]:
        height, width = frames[0].shape[:2]
        multiple = self.upscaler.multiple
        outputs: list[np.ndarray] = []
        for first in range(0, len(frames), self.batch_size):
            chunk = frames[first : first + self.batch_size]
            batch = torch.stack([pad_to_multiple(to_tensor(f), multiple) for f in chunk])
            result = self.upscaler.engine(batch)
            scale = result.shape[-2] // batch.shape[-2]
            result = to_host(result[:, :, : height * scale, : width * scale], dtype)
            outputs.extend(image.permute(1, 2, 0).contiguous().numpy() for image in result)
        return outputs
