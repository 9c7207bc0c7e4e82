"""Image reading/writing helpers: RGB order, bit depth, grey/alpha, unicode paths, errors, atomicity."""

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from esrforge.data.imageio import list_images, read_image, to_float, to_uint8, write_image

RNG = np.random.default_rng(3)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((5, 7, 3), np.uint8),
        ((5, 7, 3), np.uint16),
        ((5, 7), np.uint8),
        ((5, 7, 4), np.uint8),
        ((6, 4), np.uint16),
    ],
)
def test_png_round_trip_keeps_dtype_and_channels(tmp_path, shape, dtype):
    image = RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    path = tmp_path / "образ 画像.png"  # unicode path
    write_image(path, image)
    back = read_image(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, image)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_channels_are_rgb_on_disk_as_bgr(tmp_path):
    red = np.zeros((2, 2, 3), dtype=np.uint8)
    red[..., 0] = 255
    write_image(tmp_path / "red.png", red)
    on_disk = cv2.imread(str(tmp_path / "red.png"))
    assert on_disk is not None and (on_disk[..., 2] == 255).all()  # cv2 sees BGR
    np.testing.assert_array_equal(read_image(tmp_path / "red.png"), red)


def test_grey_hxwx1_written_and_read_as_hxw(tmp_path):
    grey = RNG.integers(0, 256, (4, 5, 1), dtype=np.uint8)
    write_image(tmp_path / "g.png", grey)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), grey[:, :, 0])


def test_format_follows_extension(tmp_path):
    image = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    write_image(tmp_path / "a.jpg", image)
    assert (tmp_path / "a.jpg").read_bytes()[:2] == b"\xff\xd8"
    write_image(tmp_path / "sub" / "b", image)  # no extension: PNG; parent folder created
    assert (tmp_path / "sub" / "b").read_bytes()[:4] == b"\x89PNG"


def test_unreadable_files_raise_one_line_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"bad\.png") as raised:
        read_image(bad)
    assert "\n" not in str(raised.value)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        read_image(tmp_path / "missing.png")


def test_write_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="encode"):
        write_image(tmp_path / "f.unknown", np.zeros((4, 4, 3), dtype=np.uint8))


def test_float_and_uint8_conversions():
    assert to_float(np.array([0, 255], dtype=np.uint8)).tolist() == [0.0, 1.0]
    assert to_float(np.array([65535], dtype=np.uint16)).dtype == np.float32
    np.testing.assert_array_equal(to_uint8(np.array([-0.1, 0.5, 1.2])), [0, 128, 255])  # 127.5 rounds up
    np.testing.assert_array_equal(to_uint8(np.array([0, 257, 65535], dtype=np.uint16)), [0, 1, 255])
    with pytest.raises(ValueError):
        to_float(np.array([1], dtype=np.int8))


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "e.png").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.jpg", "b.PNG", "e.png"]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "none")


def test_an_image_claiming_more_pixels_than_opencv_decodes_is_one_line(tmp_path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    path = tmp_path / "huge.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ValueError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and "40000x40000 (1,600,000,000 pixels)" in message
    assert "limit of 1,073,741,824" in message and "OPENCV_IO_MAX_IMAGE_PIXELS=1600000000" in message
    assert "\n" not in message
