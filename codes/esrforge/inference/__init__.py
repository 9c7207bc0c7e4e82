"""Image inference: tiled upscaling with feathered blending, image files (alpha, grey, 16-bit, EXIF), test.py.

The reusable pieces: :class:`~esrforge.inference.tiling.Upscaler` and :func:`~esrforge.inference.tiling.upscale`
(whole images in CPU memory, tiles on the device), :mod:`~esrforge.inference.images` (files in and out).
"""

from .grid import Band, Span, TileGrid, blend_tiles, plan_axis
from .images import InputImage, compose, read_input, read_upright, split_image, write_output
from .tiling import DEFAULT_OVERLAP, DEFAULT_PAD, TileOptions, Upscaler, upscale

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_PAD",
    "Band",
    "InputImage",
    "Span",
    "TileGrid",
    "TileOptions",
    "Upscaler",
    "blend_tiles",
    "compose",
    "plan_axis",
    "read_input",
    "read_upright",
    "split_image",
    "upscale",
    "write_output",
]
