"""A test run: load the network, upscale every image of the config, write the outputs, score them.

An image that cannot be read, upscaled or written is reported and skipped; the others still run, and
the run's exit code is 1 when any failed.
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.imageio import to_uint8
from ..devices import select_device
from ..metrics.evaluate import ImageScore, align_to_gt, format_table, score_pair, write_csv
from ..networks import Description, LoadedNetwork, load_generator
from ..options.model import ModelConfig
from .images import (
    InputImage,
    compose,
    downscale_input,
    read_input,
    resize_alpha,
    to_grey,
    write_output,
)
from .jobs import Job, plan_jobs
from .onnx_model import OnnxModule
from .options import TestConfig
from .precision import choose_precision
from .tiling import TileOptions, Upscaler

log = logging.getLogger(__name__)
IMAGE_ERRORS = (ValueError, OSError, RuntimeError, cv2.error)
"""What fails one image without stopping the run (unreadable file, too large, unwritable, ...)."""


@dataclass(frozen=True)
class Placed:
    """A loaded model where the config runs it."""

    model: nn.Module
    tiling: TileOptions
    compiled: bool = False
    dtype: torch.dtype | None = None
    """The compute dtype where it differs from the weights' (autocast); None: the weights'."""
    precise: bool = False
    """Beside an automatic bf16 model, whether ``model`` also serves outputs of more than 8 bits in float32."""


Placement = Callable[[ModelConfig, TileOptions, int | None], Placed]
"""Puts a loaded model where the config runs it, for images of the given bits per channel (None: any)."""


def load_model(config: ModelConfig) -> tuple[LoadedNetwork, Placement]:
    """The generator with the config's weights (without ``networks.generator``, the one the tensors hold),
    and how to place it.

    A ``.onnx`` file runs in onnxruntime (:mod:`.onnx_model`); it holds its network, so ``networks.generator``,
    ``param_key`` and ``strict_load`` do not apply to it.
    """
    path = config.path
    assert path.pretrain_model_generator is not None, "checked when the config loads"
    place: Placement
    if path.pretrain_model_generator.suffix.lower() == ".onnx":
        onnx = OnnxModule(path.pretrain_model_generator, cuda=bool(config.gpu_ids))
        loaded = onnx.loaded()
        place = partial(place_onnx, onnx)
    else:
        options = config.networks.generator
        loaded = load_generator(path.pretrain_model_generator, options, path.strict_load, path.param_key)
        place = partial(place_torch, loaded)
    described = loaded.description
    if (described.in_channels, described.out_channels) != (3, 3):
        raise ValueError(
            f"{path.pretrain_model_generator}: a {described.in_channels} -> {described.out_channels} channel "
            f"{described.architecture}; test.py and process_video.py run RGB models (3 -> 3 channels)"
        )
    if config.scale is not None and described.scale != config.scale:
        raise ValueError(
            f"scale: the config says {config.scale}, the checkpoint is a x{described.scale} model"
        )
    loaded.module.eval()
    return loaded, place


def place_onnx(model: OnnxModule, config: ModelConfig, tiling: TileOptions, bits: int | None) -> Placed:
    """An ONNX model's session fixes its device and its export its precision: only its tiles can change."""
    if config.fp16 or config.bf16:
        log.warning("%s: runs in the precision it was exported in (%s)", model.path, model.info.precision)
    if config.compile:
        log.warning("%s: an ONNX model runs in onnxruntime; compile does not apply", model.path)
    return Placed(model, model.fit_tiling(tiling))


def place_torch(loaded: LoadedNetwork, config: ModelConfig, tiling: TileOptions, bits: int | None) -> Placed:
    """A PyTorch network on the config's device, in its memory format and compute precision; beside an
    automatic bf16 copy, the float32 model stays for images of more than 8 bits when ``bits`` is None."""
    model, description = loaded.module, loaded.description
    device = select_device(config.gpu_ids)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    model.to(device=device)
    precision = choose_precision(config, model, description, device, deep=bits is not None and bits > 8)
    precise = precision.automatic and bits is None
    if config.compile:
        log.info("torch.compile: the first tile compiles the network")
    if precision.autocast:
        return Placed(model, tiling, config.compile, precision.dtype, precise=precise)
    if precise:  # the float32 model stays for outputs of more than 8 bits
        return Placed(copy.deepcopy(model).to(dtype=precision.dtype), tiling, config.compile, precise=True)
    return Placed(model.to(dtype=precision.dtype), tiling, config.compile)


@dataclass(frozen=True)
class Upscalers:
    """A loaded model's :class:`Upscaler` and description; beside an automatic bf16 upscaler, a float32 one
    for images and frames of more than 8 bits per channel (bf16 keeps 8 bits of precision)."""

    main: Upscaler
    description: Description
    precise: Upscaler | None = None

    def for_bits(self, bits: int) -> Upscaler:
        """The upscaler for images of ``bits`` per channel."""
        return self.precise if bits > 8 and self.precise is not None else self.main


def build_upscaler(
    config: ModelConfig, tiling: TileOptions, progress: bool = False, bits: int | None = None
) -> Upscalers:
    """The :class:`Upscalers` of the config's model (on the device, in the compute precision) for images of
    ``bits`` per channel (None: any, such as a folder's)."""
    loaded, place = load_model(config)
    description = loaded.description
    placed = place(config, tiling, bits)
    if description.tiling == "discouraged" and placed.tiling.tile_size is not None:
        log.info(
            "%s uses global context: seams may show at tile borders; tile_size: null (--tile 0) "
            "runs whole images",
            description.architecture,
        )
    make = partial(
        Upscaler,
        options=placed.tiling,
        description=description,
        channels_last=config.channels_last,
        progress=progress,
        compiled=placed.compiled,
    )
    main = make(placed.model, dtype=placed.dtype)
    if not placed.precise:
        return Upscalers(main, description)
    return Upscalers(main, description, make(loaded.module, dtype=torch.float32))


@dataclass(frozen=True)
class ImageProcessor:
    """Upscales one image file (RGB, grey or with alpha) and scores it against its ground truth."""

    upscalers: Upscalers
    scale: int
    alpha_upsampler: str = "bicubic"
    downscale_gt: bool = False
    crop_border: int | None = None

    def upscale_image(self, image: InputImage) -> np.ndarray:
        """The output array to write for ``image`` (same kind: grey/RGB, alpha, bit depth)."""
        upscaler = self.upscalers.for_bits(8 * image.rgb.itemsize)
        rgb = upscaler.upscale_array(image.rgb)
        alpha = image.alpha
        if alpha is not None:
            if self.alpha_upsampler == "model":
                alpha = to_grey(upscaler.upscale_array(np.repeat(alpha[:, :, None], 3, axis=2)))
            else:
                alpha = resize_alpha(alpha, self.scale)
        return compose(rgb, alpha, image.grey)

    def process(self, job: Job) -> tuple[np.ndarray, ImageScore | None]:
        """The output array for ``job`` (not written yet), and its scores when there is a ground truth."""
        image = read_input(job.source)
        gt: InputImage | None = None
        if self.downscale_gt:
            image, gt = downscale_input(image, self.scale)
        output = self.upscale_image(image)
        if gt is None and job.gt is None:
            return output, None
        try:  # an image that cannot be scored is still written
            if gt is None:
                assert job.gt is not None
                gt = read_input(job.gt)
            sr = to_uint8(compose(output[:, :, :3], None, image.grey) if output.ndim == 3 else output)
            reference = to_uint8(compose(gt.rgb, None, gt.grey))
            sr, reference = align_to_gt(sr, reference, job.output, job.gt or job.source, self.scale)
            crop = self.scale if self.crop_border is None else self.crop_border
            return output, score_pair(job.name, sr, reference, crop)
        except IMAGE_ERRORS as err:
            log.warning("%s: upscaled but not scored: %s", job.source, " ".join(str(err).split()))
            return output, None


class BackgroundWriter:
    """Encodes and writes outputs on worker threads while the next image is upscaled.

    A PNG of a x4 720p frame takes about as long to encode as a GPU takes to make it; OpenCV releases
    the GIL while it encodes. At most ``pending`` outputs wait in memory; a failed write is passed to
    ``on_error`` with its job, in the calling thread.
    """

    def __init__(
        self, on_error: Callable[[Job, BaseException], None], threads: int = 2, pending: int = 2
    ) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="esrforge-write")
        self.pending: deque[tuple[Job, Future[None]]] = deque()
        self.on_error = on_error
        self.limit = pending

    def submit(self, job: Job, image: np.ndarray) -> None:
        """Queue ``image`` for ``job.output``; waits while ``pending`` writes are in flight."""
        self.pending.append((job, self.pool.submit(write_output, job.output, image)))
        self._collect(self.limit)

    def finish(self) -> None:
        """Wait for every queued write and stop the threads."""
        self._collect(0)
        self.pool.shutdown()

    def _collect(self, keep: int) -> None:
        while len(self.pending) > keep or (self.pending and self.pending[0][1].done()):
            job, future = self.pending.popleft()
            error = future.exception()
            if error is not None:
                self.on_error(job, error)


def _report_scores(scores: list[ImageScore], out_dir: Path) -> None:
    for line in format_table(scores).splitlines():
        log.info("%s", line)
    write_csv(out_dir / "metrics.csv", scores)
    log.info("scores written to %s", out_dir / "metrics.csv")


def run_test(config: TestConfig, progress: bool = True) -> int:
    """Run a whole test config; returns the exit code (0, or 1 when some images failed)."""
    dataset, options = config.datasets.test, config.inference
    upscalers = build_upscaler(config, config.inference, progress)
    scale = upscalers.description.scale
    suffix = f"x{scale}" if options.suffix is None else options.suffix
    jobs = plan_jobs(
        dataset.dataroot, config.output_dir, suffix, options.ext, dataset.recursive, dataset.dataroot_GT
    )
    process = ImageProcessor(
        upscalers, scale, options.alpha_upsampler, dataset.downscale_gt, options.crop_border
    )
    log.info("%s: %d image(s) from %s -> %s", config.name, len(jobs), dataset.dataroot, config.output_dir)
    scores: dict[str, ImageScore] = {}
    failures: list[str] = []

    def failed(job: Job, err: BaseException, what: str = "skipped") -> None:
        log.error("%s: %s: %s", job.source, what, " ".join(str(err).split()) or type(err).__name__)
        failures.append(job.name)
        scores.pop(job.name, None)

    writer = BackgroundWriter(lambda job, err: failed(job, err, f"not written to {job.output}"))
    try:
        for job in tqdm(jobs, unit="image", disable=not progress or None):
            try:
                output, score = process.process(job)
            except IMAGE_ERRORS as err:
                failed(job, err)
                continue
            if score is not None:
                log.info("%s: PSNR_Y %.4f dB, SSIM_Y %.4f", job.name, score.psnr_y, score.ssim_y)
                scores[job.name] = score
            writer.submit(job, output)
    finally:
        writer.finish()
    if scores:
        _report_scores(list(scores.values()), config.output_dir)
    done = len(jobs) - len(failures)
    renamed = sum(job.keeps_extension for job in jobs)
    naming = f"; {renamed} named <name>.<source ext>_<suffix> as their names collide" if renamed else ""
    log.info("upscaled %d of %d image(s) into %s%s", done, len(jobs), config.output_dir, naming)
    if failures:
        log.error("%d image(s) failed: %s", len(failures), ", ".join(failures))
        return 1
    return 0
