"""MATLAB-compatible bicubic imresize: hand-computed weights, shapes, dtypes, numpy/torch agreement."""

import numpy as np
import pytest
import torch

from conftest import CUDA
from esrforge.data.imageio import round_to_dtype
from esrforge.data.imresize import cubic, imresize, mod_crop, resize_weights

RNG = np.random.default_rng(0)


def test_cubic_kernel_values():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, -0.5])
    # 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1]; -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on (1, 2]; 0 beyond.
    expected = [1.0, 0.8671875, 0.5625, 0.2265625, 0.0, -0.0703125, -0.0625, -0.0234375, 0.0, 0.0, 0.5625]
    np.testing.assert_allclose(cubic(x), expected, atol=1e-15)


def test_weights_4_to_2_by_hand():
    # scale 1/2: kernel stretched to width 8; u = 1.5 and 3.5; taps at distances ±0.5, ±1.5, ±2.5, ±3.5
    # get 0.5 * cubic(0.5 * d) = (55.5, 14.5, -4.5, -1.5) / 128 after normalising (sum 2 -> 1);
    # out-of-range taps mirror symmetrically (0 -> 1, -1 -> 2, ...); all-zero tap columns are dropped.
    weights, indices = resize_weights(4, 2, 0.5)
    row = np.array([-1.5, -4.5, 14.5, 55.5, 55.5, 14.5, -4.5, -1.5]) / 128.0
    np.testing.assert_allclose(weights, [row, row], atol=1e-15)
    np.testing.assert_array_equal(indices, [[2, 1, 0, 0, 1, 2, 3, 3], [0, 0, 1, 2, 3, 3, 2, 1]])
    signal = np.array([[1.0, 2.0, 4.0, 8.0]])
    expected = [[(row * signal[0, idx]).sum() for idx in indices]]
    np.testing.assert_allclose(imresize(signal, size=(1, 2)), expected, atol=1e-12)


def test_weights_2_to_4_by_hand():
    # scale 2: u = 0.75, 1.25, 1.75, 2.25; weights cubic(u - j) over the mirrored taps.
    weights, indices = resize_weights(2, 4, 2.0)
    expected_weights = [
        [-0.0234375, 0.2265625, 0.8671875, -0.0703125],
        [-0.0703125, 0.8671875, 0.2265625, -0.0234375],
        [-0.0234375, 0.2265625, 0.8671875, -0.0703125],
        [-0.0703125, 0.8671875, 0.2265625, -0.0234375],
    ]
    np.testing.assert_allclose(weights, expected_weights, atol=1e-15)
    np.testing.assert_array_equal(indices, [[1, 0, 0, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0]])
    out = imresize(np.array([[0.0, 1.0]]), size=(1, 4))
    np.testing.assert_allclose(out, [[-0.09375, 0.203125, 0.796875, 1.09375]], atol=1e-15)


def test_weights_are_cached_and_read_only():
    first = resize_weights(10, 3, 0.3)
    assert resize_weights(10, 3, 0.3) is first
    with pytest.raises(ValueError):
        first[0][0, 0] = 1.0


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.3, 0.5, 1.0, 1.7, 2.0, 4.0])
def test_constant_image_stays_constant(scale):
    flat = np.full((13, 17, 3), 77, dtype=np.uint8)
    assert (imresize(flat, scale) == 77).all()
    np.testing.assert_allclose(imresize(flat.astype(np.float64) / 3.0, scale), 77 / 3.0, rtol=1e-13)


@pytest.mark.parametrize(
    ("shape", "scale", "size", "expected"),
    [
        ((13, 17), 0.3, None, (4, 6)),  # ceil(3.9), ceil(5.1)
        ((10, 10, 3), 1 / 3, None, (4, 4, 3)),
        ((7, 9, 1), 2.5, None, (18, 23, 1)),
        ((12, 16), 0.25, None, (3, 4)),
        ((12, 16, 4), None, (5, 7), (5, 7, 4)),
        ((12, 16), None, (12, 33), (12, 33)),
    ],
)
def test_output_shapes(shape, scale, size, expected):
    assert imresize(np.zeros(shape), scale, size=size).shape == expected


def test_identity_scale_returns_input():
    img = RNG.random((9, 11, 3))
    np.testing.assert_allclose(imresize(img, 1.0), img, atol=1e-14)


def test_dtypes_kept_and_uint8_rounded_like_matlab():
    img = np.array([[0, 255]], dtype=np.uint8)
    out = imresize(img, size=(1, 4))
    assert out.dtype == np.uint8
    # 255 * [-0.09375, 0.203125, 0.796875, 1.09375] = [-23.9, 51.8, 203.2, 278.9] -> saturated and rounded
    np.testing.assert_array_equal(out, [[0, 52, 203, 255]])
    assert imresize(img.astype(np.float32), 2.0).dtype == np.float32
    assert imresize(img.astype(np.uint16), 2.0).dtype == np.uint16


def test_round_half_away_from_zero():
    values = np.array([0.5, 1.5, 2.5, 2.4999, -0.5, -3.0, 255.5, 300.0])
    np.testing.assert_array_equal(round_to_dtype(values, np.uint8), [1, 2, 3, 2, 0, 0, 255, 255])
    np.testing.assert_array_equal(round_to_dtype(np.array([-0.5, -1.5]), np.int16), [-1, -2])


def test_uint8_equals_rounded_float_result():
    img = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    expected = round_to_dtype(imresize(img.astype(np.float64), 0.25), np.uint8)
    np.testing.assert_array_equal(imresize(img, 0.25), expected)


@pytest.mark.parametrize("scale", [0.25, 0.3, 2.0, 3.0])
def test_numpy_and_torch_agree(scale):
    img = RNG.random((2, 3, 15, 18))
    expected = np.stack([imresize(np.moveaxis(x, 0, -1), scale) for x in img]).transpose(0, 3, 1, 2)
    out64 = imresize(torch.from_numpy(img), scale)
    assert out64.dtype == torch.float64
    np.testing.assert_allclose(out64.numpy(), expected, atol=1e-12)
    out32 = imresize(torch.from_numpy(img).float()[0], scale)  # (C, H, W)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), expected[0], atol=1e-6)


def test_torch_uint8_matches_numpy_uint8():
    img = RNG.integers(0, 256, (17, 21, 3), dtype=np.uint8)
    out = imresize(torch.from_numpy(img).permute(2, 0, 1), 0.25)
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), imresize(img, 0.25))


def test_torch_half_and_gradient():
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    imresize(x, 0.5).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert imresize(x.detach().half(), 2.0).dtype == torch.float16


@CUDA
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 31, 29, dtype=torch.float64)
    out = imresize(x.cuda(), 0.25)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), imresize(x, 0.25), atol=1e-12, rtol=0)


def test_bad_arguments():
    img = np.zeros((8, 8))
    with pytest.raises(ValueError, match="exactly one"):
        imresize(img)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(img, 0.5, size=(4, 4))
    with pytest.raises(ValueError, match="scale"):
        imresize(img, -1.0)
    with pytest.raises(ValueError, match="size"):
        imresize(img, size=(0, 4))
    with pytest.raises(ValueError, match="tensor"):
        imresize(torch.zeros(8, 8), 0.5)
    with pytest.raises(TypeError):
        imresize([[1.0]], 0.5)  # type: ignore[call-overload]


def test_mod_crop():
    img = np.zeros((10, 13, 3))
    assert mod_crop(img, 4).shape == (8, 12, 3)
    assert mod_crop(img[:, :, 0], 1).shape == (10, 13)
    with pytest.raises(ValueError):
        mod_crop(img, 11)
