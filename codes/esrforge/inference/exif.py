"""The EXIF orientation (tag 0x0112) of JPEG, PNG, WebP and TIFF files, and applying it to an array.

``cv2.IMREAD_UNCHANGED`` (which keeps alpha and 16 bits) ignores the orientation, so it is read here
from the file's metadata: JPEG APP1 ``Exif``, PNG ``eXIf``, WebP ``EXIF`` chunks, or a TIFF's own first
IFD. Only headers are read (the file is walked with seeks). Anything malformed counts as "no rotation".
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

ORIENTATION_TAG = 0x0112
NORMAL = 1
_SHORT = 3
_EXIF_PREFIX = b"Exif\x00\x00"


def _tiff_orientation(read: Callable[[int, int], bytes]) -> int:
    """The orientation in the first IFD of TIFF data; ``read(offset, size)`` returns its bytes."""
    header = read(0, 8)
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(header[:4])
    if order is None or len(header) < 8:
        return NORMAL
    (ifd,) = struct.unpack(order + "I", header[4:8])
    (count,) = struct.unpack(order + "H", read(ifd, 2))
    entries = read(ifd + 2, 12 * count)
    for k in range(0, len(entries) - 11, 12):
        tag, kind, _ = struct.unpack(order + "HHI", entries[k : k + 8])
        if tag == ORIENTATION_TAG and kind == _SHORT:
            (value,) = struct.unpack(order + "H", entries[k + 8 : k + 10])
            return value if 1 <= value <= 8 else NORMAL
    return NORMAL


def _from_exif_block(block: bytes) -> int:
    """Orientation from an EXIF payload (with or without the ``Exif\\0\\0`` prefix)."""
    data = block.removeprefix(_EXIF_PREFIX)
    return _tiff_orientation(lambda offset, size: data[offset : offset + size])


def _jpeg(handle: BinaryIO) -> int:
    handle.seek(2)
    while True:
        marker = handle.read(4)
        if len(marker) < 4 or marker[0] != 0xFF or marker[1] in (0xD9, 0xDA):  # end of image, start of scan
            return NORMAL
        (length,) = struct.unpack(">H", marker[2:])
        if marker[1] == 0xE1:
            block = handle.read(length - 2)
            if block.startswith(_EXIF_PREFIX):
                return _from_exif_block(block)
        else:
            handle.seek(length - 2, os.SEEK_CUR)


def _png(handle: BinaryIO) -> int:
    handle.seek(8)
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return NORMAL
        (length,) = struct.unpack(">I", header[:4])
        if header[4:] == b"eXIf":
            return _from_exif_block(handle.read(length))
        if header[4:] == b"IEND":
            return NORMAL
        handle.seek(length + 4, os.SEEK_CUR)  # data and CRC


def _webp(handle: BinaryIO) -> int:
    handle.seek(12)
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return NORMAL
        (length,) = struct.unpack("<I", header[4:])
        if header[:4] == b"EXIF":
            return _from_exif_block(handle.read(length))
        handle.seek(length + (length & 1), os.SEEK_CUR)


def _tiff(handle: BinaryIO) -> int:
    def read(offset: int, size: int) -> bytes:
        handle.seek(offset)
        return handle.read(size)

    return _tiff_orientation(read)


def exif_orientation(path: str | os.PathLike[str]) -> int:
    """The EXIF orientation of an image file, 1 to 8 (1: as stored; also when absent or unreadable)."""
    try:
        with Path(path).open("rb") as handle:
            magic = handle.read(12)
            if magic.startswith(b"\xff\xd8"):
                return _jpeg(handle)
            if magic.startswith(b"\x89PNG\r\n\x1a\n"):
                return _png(handle)
            if magic.startswith(b"RIFF") and magic[8:12] == b"WEBP":
                return _webp(handle)
            if magic[:4] in (b"II*\x00", b"MM\x00*"):
                return _tiff(handle)
    except (OSError, struct.error, ValueError):
        pass
    return NORMAL


def is_tiff(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with a TIFF header (its decoder may apply the orientation itself)."""
    try:
        with Path(path).open("rb") as handle:
            return handle.read(4) in (b"II*\x00", b"MM\x00*")
    except OSError:
        return False


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an ``H x W[ x C]`` array stored with EXIF ``orientation`` upright (a view where possible)."""
    transforms: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    transform = transforms.get(orientation)
    return image if transform is None else transform(image)
