"""Image files through inference: EXIF orientation, grey, alpha and 16-bit in and the same kind out."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from esrforge.data.imageio import read_image, write_image
from esrforge.inference import TileOptions, Upscaler, read_upright
from esrforge.inference.exif import exif_orientation
from esrforge.inference.images import write_output
from esrforge.inference.jobs import Job
from esrforge.inference.runner import ImageProcessor, Upscalers
from esrforge.networks import Description


def tiff_orientation_entry(orientation: int) -> bytes:
    """A little-endian TIFF block with one IFD holding only the Orientation tag."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)


def jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG of an RGB array with an APP1 Exif segment right after SOI (as cameras write them)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    payload = b"Exif\x00\x00" + tiff_orientation_entry(orientation)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = encoded.tobytes()
    return data[:2] + app1 + data[2:]


def png_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A PNG with an eXIf chunk before its image data."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    data = encoded.tobytes()
    body = tiff_orientation_entry(orientation)
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    idat = data.index(b"IDAT") - 4
    return data[:idat] + chunk + data[idat:]


def marked_image() -> np.ndarray:
    """20 x 36 RGB, grey with a white block in the top-left corner."""
    image = np.full((20, 36, 3), 60, np.uint8)
    image[:6, :8] = 255
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied_as_cv2_imread_color_does(tmp_path, orientation):
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_with_orientation(marked_image(), orientation))
    assert exif_orientation(path) == orientation
    upright = read_upright(path)
    reference = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # applies EXIF
    np.testing.assert_array_equal(upright, reference)
    assert read_image(path).shape == (20, 36, 3)  # IMREAD_UNCHANGED alone ignores the tag


def test_orientation_6_turns_the_image_clockwise(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_with_orientation(marked_image(), 6))
    upright = read_upright(path)
    assert upright.shape == (36, 20, 3)
    assert upright[:8, -6:].mean() > 240 and upright[-8:, :6].mean() < 100  # top-left went to the top right


def test_png_exif_orientation_and_files_without_one(tmp_path):
    path = tmp_path / "turned.png"
    path.write_bytes(png_with_orientation(marked_image(), 3))
    np.testing.assert_array_equal(read_upright(path), marked_image()[::-1, ::-1])
    plain = tmp_path / "plain.png"
    write_image(plain, marked_image())
    assert exif_orientation(plain) == 1
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00")
    assert exif_orientation(tmp_path / "junk.jpg") == 1


def test_tiff_orientation_is_not_applied_twice(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    path = tmp_path / "scan.tif"
    image_module.fromarray(marked_image()).save(path, tiffinfo={274: 6})
    assert exif_orientation(path) == 6
    np.testing.assert_array_equal(read_upright(path), np.rot90(marked_image(), -1))


class Nearest(nn.Module):
    """x2 nearest-neighbour 'network': outputs are predictable."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") * self.weight


def process(tmp_path: Path, image: np.ndarray, alpha_upsampler: str = "bicubic") -> np.ndarray:
    source, output = tmp_path / "in.png", tmp_path / "out" / "in_x2.png"
    write_image(source, image)
    upscalers = Upscalers(Upscaler(Nearest(), TileOptions(tile_size=16)), Description("Nearest", 2, 3, 3))
    processor = ImageProcessor(upscalers, 2, alpha_upsampler)
    upscaled, score = processor.process(Job("in.png", source, output, None))
    assert score is None
    write_output(output, upscaled)
    return read_image(output)


def test_grey_in_grey_out(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (10, 14), dtype=np.uint8)
    out = process(tmp_path, grey)
    assert out.shape == (20, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, grey.repeat(2, 0).repeat(2, 1))


@pytest.mark.parametrize("upsampler", ["bicubic", "model"])
def test_rgba_keeps_its_alpha_upscaled(tmp_path, upsampler):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (10, 14, 4), dtype=np.uint8)
    out = process(tmp_path, rgba, upsampler)
    assert out.shape == (20, 28, 4)
    np.testing.assert_array_equal(out[:, :, :3], rgba[:, :, :3].repeat(2, 0).repeat(2, 1))
    if upsampler == "bicubic":
        expected = cv2.resize(rgba[:, :, 3], (28, 20), interpolation=cv2.INTER_CUBIC)
    else:
        expected = rgba[:, :, 3].repeat(2, 0).repeat(2, 1)
    np.testing.assert_array_equal(out[:, :, 3], expected)


def test_16_bit_in_16_bit_out(tmp_path):
    deep = np.random.default_rng(2).integers(0, 65536, (10, 14, 3), dtype=np.uint16)
    out = process(tmp_path, deep)
    assert out.dtype == np.uint16 and out.shape == (20, 28, 3)
    np.testing.assert_array_equal(out, deep.repeat(2, 0).repeat(2, 1))  # all 65536 levels survive
