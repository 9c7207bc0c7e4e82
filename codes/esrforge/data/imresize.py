"""MATLAB-compatible bicubic ``imresize`` for numpy arrays and torch tensors.

This follows MATLAB's ``imresize(img, scale_or_size, 'bicubic')`` with its default antialiasing:

* cubic convolution kernel with a = -0.5, support 4;
* when downscaling, the kernel is stretched by ``1 / scale`` (antialiasing);
* output pixel ``x`` (1-based) maps to input position ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* taps outside the image are mirrored symmetrically (``1..n, n..1`` repeated), weights are normalised
  per output pixel, and taps whose weight is zero for every output pixel are dropped;
* the two axes are resized one after the other, the axis with the smaller scale first (height on ties);
* given a scale, the output size is ``ceil(scale * size)``; given a size, each axis' scale is
  ``out / in``.

numpy computes in float64; integer inputs come back in their dtype, rounded half away from zero and
saturated (as MATLAB does), float inputs come back in their dtype. torch takes ``(C, H, W)`` or
``(B, C, H, W)`` tensors on any device; floating tensors are computed in their own precision (half
precision in float32), integer tensors in float64 and rounded like numpy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, overload

import numpy as np
import torch

from .imageio import round_to_dtype

CUBIC_A = -0.5
"""The cubic kernel's parameter (MATLAB, Keys 1981)."""
CUBIC_SUPPORT = 4.0
"""Width of the cubic kernel at scale 1."""

_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def cubic(x: np.ndarray) -> np.ndarray:
    """The cubic convolution kernel with a = -0.5, evaluated element-wise."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = ((CUBIC_A + 2.0) * ax3 - (CUBIC_A + 3.0) * ax2 + 1.0) * (ax <= 1.0)
    far = CUBIC_A * (ax3 - 5.0 * ax2 + 8.0 * ax - 4.0) * ((ax > 1.0) & (ax <= 2.0))
    return near + far


@functools.lru_cache(maxsize=256)
def resize_weights(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(out_len, taps)`` float64 and 0-based input indices ``(out_len, taps)`` int64 for one axis.

    Output pixel ``i`` is ``sum_t weights[i, t] * input[indices[i, t]]``. Results are cached and read-only.
    """
    if min(in_len, out_len) < 1 or not scale > 0:
        raise ValueError(f"resize_weights: need positive lengths and scale, got {in_len}, {out_len}, {scale}")
    antialias = scale < 1.0
    width = CUBIC_SUPPORT / scale if antialias else CUBIC_SUPPORT
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if antialias else cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    zero_based = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0.0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    zero_based = np.ascontiguousarray(zero_based[:, keep])
    weights.flags.writeable = False
    zero_based.flags.writeable = False
    return weights, zero_based


def _plan(
    in_hw: tuple[int, int], scale: float | None, size: tuple[int, int] | None
) -> list[tuple[int, int, int, float]]:
    """``(axis, in_len, out_len, scale)`` for H (0) and W (1), in MATLAB's order (smaller scale first)."""
    if size is not None and scale is None:
        if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
            raise ValueError(f"imresize: size must be two positive integers (height, width), got {size!r}")
        outs = (int(size[0]), int(size[1]))
        scales = (outs[0] / in_hw[0], outs[1] / in_hw[1])
    elif scale is not None and size is None:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"imresize: scale must be a positive number, got {scale!r}")
        outs = (math.ceil(scale * in_hw[0]), math.ceil(scale * in_hw[1]))
        scales = (scale, scale)
    else:
        raise ValueError("imresize: give exactly one of scale and size")
    order = sorted((0, 1), key=lambda axis: scales[axis])
    return [(axis, in_hw[axis], outs[axis], scales[axis]) for axis in order]


def _resize_axis(
    x: _Array, weights: _Array, indices: _Array, axis: int, take: Callable[[_Array, _Array, int], _Array]
) -> _Array:
    """Weighted sum over the taps along ``axis`` (one vectorised gather per tap)."""
    shape = [1] * x.ndim
    shape[axis] = -1
    out = weights[:, 0].reshape(shape) * take(x, indices[:, 0], axis)
    for t in range(1, weights.shape[1]):
        out = out + weights[:, t].reshape(shape) * take(x, indices[:, t], axis)
    return out


def _take_numpy(x: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    return np.take(x, index, axis=axis)


def _take_torch(x: torch.Tensor, index: torch.Tensor, axis: int) -> torch.Tensor:
    return x.index_select(axis, index)


@functools.lru_cache(maxsize=256)
def _torch_tables(
    in_len: int, out_len: int, scale: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    weights, indices = resize_weights(in_len, out_len, scale)
    return (
        torch.tensor(weights, dtype=dtype, device=device),
        torch.tensor(indices, dtype=torch.long, device=device),
    )


def _imresize_numpy(img: np.ndarray, scale: float | None, size: tuple[int, int] | None) -> np.ndarray:
    if img.ndim < 2 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"imresize: expected an HxW or HxWxC array, got shape {img.shape}")
    is_int = np.issubdtype(img.dtype, np.integer)
    if not (is_int or np.issubdtype(img.dtype, np.floating)):
        raise ValueError(f"imresize: expected an integer or float array, got dtype {img.dtype}")
    out = img.astype(np.float64)
    for axis, in_len, out_len, axis_scale in _plan((img.shape[0], img.shape[1]), scale, size):
        weights, indices = resize_weights(in_len, out_len, axis_scale)
        out = _resize_axis(out, weights, indices, axis, _take_numpy)
    return round_to_dtype(out, img.dtype) if is_int else out.astype(img.dtype, copy=False)


def _imresize_torch(x: torch.Tensor, scale: float | None, size: tuple[int, int] | None) -> torch.Tensor:
    if x.ndim not in (3, 4) or x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"imresize: expected a (C, H, W) or (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"imresize: expected an integer or float tensor, got dtype {x.dtype}")
    is_int = not x.is_floating_point()
    compute = torch.float64 if is_int else torch.promote_types(x.dtype, torch.float32)
    out = x.to(compute)
    for axis, in_len, out_len, axis_scale in _plan((x.shape[-2], x.shape[-1]), scale, size):
        weights, indices = _torch_tables(in_len, out_len, axis_scale, x.device, compute)
        out = _resize_axis(out, weights, indices, x.ndim - 2 + axis, _take_torch)
    if is_int:
        info = torch.iinfo(x.dtype)
        rounded = torch.where(out >= 0, torch.floor(out + 0.5), torch.ceil(out - 0.5))
        return rounded.clamp(info.min, info.max).to(x.dtype)
    return out.to(x.dtype)


@overload
def imresize(
    img: np.ndarray, scale: float | None = None, *, size: tuple[int, int] | None = None
) -> np.ndarray: ...
@overload
def imresize(
    img: torch.Tensor, scale: float | None = None, *, size: tuple[int, int] | None = None
) -> torch.Tensor: ...
def imresize(img: Any, scale: float | None = None, *, size: tuple[int, int] | None = None) -> Any:
    """MATLAB ``imresize(img, scale)`` or ``imresize(img, [h w])`` (bicubic, antialiased) for numpy or torch.

    numpy: ``H x W`` or ``H x W x C`` (float64 math, dtype kept, integers rounded and saturated).
    torch: ``(C, H, W)`` or ``(B, C, H, W)`` on any device. Give exactly one of ``scale`` and ``size``.
    """
    if isinstance(img, torch.Tensor):
        return _imresize_torch(img, scale, size)
    if isinstance(img, np.ndarray):
        return _imresize_numpy(img, scale, size)
    raise TypeError(f"imresize: expected a numpy array or torch tensor, got {type(img).__name__}")


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop an ``H x W[ x C]`` image top-left to ``H - H % scale`` by ``W - W % scale``."""
    height, width = img.shape[0], img.shape[1]
    if scale < 1 or height < scale or width < scale:
        raise ValueError(f"mod_crop: cannot crop an image of shape {img.shape} to a multiple of {scale}")
    return img[: height - height % scale, : width - width % scale]
