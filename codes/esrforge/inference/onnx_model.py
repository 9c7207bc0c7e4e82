"""Run an ONNX file exported by esrforge (``codes/scripts/export.py``) wherever a generator runs.

:class:`OnnxModule` is an ``nn.Module`` whose forward hands the batch to an onnxruntime session, so the
:class:`~esrforge.inference.tiling.Upscaler` tiles, blends and writes as with a checkpoint. Its
description comes from the file's metadata. The file's precision is fixed at export: it takes and
returns float32 (``fp16``/``bf16`` do not apply), on onnxruntime's CUDA provider when asked and
installed (``onnxruntime-gpu``), else on the CPU.

A model with a fixed input size gets tiles that fit it: :meth:`OnnxModule.fit_tiling` picks the tile
size, and smaller inputs (the tiles of a small image) are padded up to it by repeating their last rows
and columns; the padding's output is cut off. Near an image's right and bottom edges the result then
differs slightly from PyTorch's, where convolutions pad with zeros; a ``--dynamic`` export matches it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..export import require_package
from ..export.metadata import OnnxInfo, from_props
from ..networks.base import LoadedNetwork
from .engine import CPU_AUTO_TILE
from .tiling import MIN_TILE, TileOptions

log = logging.getLogger(__name__)
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxModule(nn.Module):
    """An esrforge ONNX file as a module: ``(N, C, h, w)`` float in, ``(N, C', h*s, w*s)`` float32 out (CPU)."""

    def __init__(self, path: Path, cuda: bool = False) -> None:
        super().__init__()
        ort = require_package("onnxruntime", f"{path}: running an ONNX model")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if cuda and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{path}: not a model onnxruntime runs ({str(error).strip()[:200]})") from None
        self.path = path
        self.info: OnnxInfo = from_props(self.session.get_modelmeta().custom_metadata_map, path)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in NUMPY_TYPES or len(inputs[0].shape) != 4:
            raise ValueError(f"{path}: expected one (N, C, H, W) float input, found {len(inputs)} input(s)")
        self.input_name = inputs[0].name
        self.input_type = NUMPY_TYPES[inputs[0].type]
        batch, _, height, width = inputs[0].shape
        self.fixed_batch = isinstance(batch, int)
        self.fixed_size = (height, width) if isinstance(height, int) and isinstance(width, int) else None
        log.info("%s: %s, on %s", path, self.info.line(), self.session.get_providers()[0])

    def loaded(self) -> LoadedNetwork:
        """This module as a loaded network: itself, the options it was exported from, its description."""
        return LoadedNetwork(self, self.info.options, self.info.description)

    def fit_tiling(self, tiling: TileOptions) -> TileOptions:
        """``tiling`` with a tile size whose crops (tile, overlap and pad, rounded up to the size multiple)
        fit the fixed input size; for a dynamic model, ``auto`` is :data:`CPU_AUTO_TILE` (onnxruntime's
        memory is its own: the measurement that sizes ``auto`` tiles cannot see it)."""
        if self.fixed_size is None:
            auto = tiling.tile_size == "auto"
            return dataclasses.replace(tiling, tile_size=CPU_AUTO_TILE) if auto else tiling
        multiple = self.info.description.size_multiple
        largest = min(self.fixed_size) - tiling.tile_overlap - 2 * tiling.tile_pad - multiple
        size = "{}x{}".format(*self.fixed_size)
        if largest < MIN_TILE:
            raise ValueError(
                f"{self.path}: takes fixed {size} inputs, and tile_pad {tiling.tile_pad} and tile_overlap "
                f"{tiling.tile_overlap} leave tiles under {MIN_TILE} px in them: lower them (--tile-pad, "
                "--tile-overlap), or export with a larger --size or --dynamic"
            )
        if tiling.tile_size != largest:  # smaller tiles would cost as much: every call computes the full size
            log.info("%s takes fixed %s inputs: tiles of %d px", self.path, size, largest)
        return dataclasses.replace(tiling, tile_size=largest)

    def _input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an ``height x width`` input is padded to: the fixed size, or the minimum and multiple."""
        if self.fixed_size is not None:
            if height > self.fixed_size[0] or width > self.fixed_size[1]:
                raise ValueError(
                    "{}: takes inputs of at most {}x{}, got {}x{}".format(
                        self.path, *self.fixed_size, height, width
                    )
                )
            return self.fixed_size
        d = self.info.description

        def fit(length: int) -> int:
            return d.size_multiple * math.ceil(max(length, d.min_size, 1) / d.size_multiple)

        return fit(height), fit(width)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        padded_height, padded_width = self._input_size(height, width)
        if (padded_height, padded_width) != (height, width):
            x = F.pad(x.float(), (0, padded_width - width, 0, padded_height - height))
        array = x.detach().cpu().contiguous().numpy().astype(self.input_type, copy=False)
        batches = np.split(array, len(array)) if self.fixed_batch else [array]
        outputs = [self.session.run(None, {self.input_name: batch})[0] for batch in batches]
        scale = self.info.description.scale
        result = torch.from_numpy(np.concatenate(outputs)).float()
        return result[..., : height * scale, : width * scale]


def load_onnx(path: Path, cuda: bool = False) -> LoadedNetwork:
    """An esrforge ONNX file as a loaded network: its module, the options it was exported from, its description."""
    return OnnxModule(Path(path), cuda).loaded()
