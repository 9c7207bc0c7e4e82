"""Tiled against untiled inference on a "real-ish" RRDB: at the default pad/overlap, >= 50 dB and no seam.

The model. A freshly built RRDBNet (Kaiming x 0.1) barely looks past its neighbours, and one trained for
150 steps on smooth images with L1 against bicubic targets does not either (measured: its tiling error
vanishes 8 LR pixels from a crop edge), so neither would test the overlap. Instead every convolution of
an nf 32, nb 23, gc 32, x4 RRDBNet gets Kaiming-normal weights (leaky slope 0.2, fan-in) scaled by 2, and
the last convolution is rescaled so that the output has the spread of an image (mean 0.5, std 0.2).
That puts the network where perturbations travel far through its 23 blocks, and it reproduces the
figures measured on a real x4 RRDB (6 blocks): Real-ESRGAN's crop-and-paste with tile_pad 10 leaves
30% of the pixels here more than 1/255 off (max 53/255; real model: 8%, 69/255), and 32 LR pixels of
context still leave 55-58 dB (real model: 51-58 dB). A 6-block version of this model forgets within
about 30 pixels; at the default settings its tiling error is float32 noise, so it would test nothing.
Here the defaults (pad 16, overlap 64) give about 67 dB, max 1.5/255.

The seam statistic. Tiles meet at the cuts between their cores; there a crop-and-paste tiler switches
from one tile to the next and its error peaks. With the feathered blending the error must not peak
there: the mean absolute difference to the untiled output on the border (HR pixels within one LR pixel
of a cut) must be no larger than inside the tiles next to it (the rest of the band of tile_overlap
pixels that two tiles share, where tiling has any effect). The crop-and-paste tiler fails it.

The image is a strip (32 x 320 LR pixels) so that the 23-block network runs in a few seconds; rows use
the same code as columns (see test_inference_tiling for 2-D exactness).
"""

from __future__ import annotations

import pytest

from esrforge.inference import DEFAULT_OVERLAP, DEFAULT_PAD, TileGrid, upscale
from esrforge.inference.seams import grid_cuts, realish_rrdb, seam_errors
from esrforge.probes import psnr, smooth_image

SCALE = 4
TILE = 96


@pytest.mark.slow
def test_default_overlap_is_above_50_db_and_seamless_where_crop_and_paste_is_not():
    model = realish_rrdb(nf=32, nb=23, gc=32, scale=SCALE)
    image = smooth_image(32, 320, seed=1)
    whole = upscale(model, image)

    tiled = upscale(model, image, tile=TILE)  # default pad and overlap
    grid = TileGrid.plan(32, 320, TILE, DEFAULT_OVERLAP, DEFAULT_PAD)
    assert len(grid.cols) >= 4 and grid.crop_shape()[1] < 320
    assert psnr(tiled, whole) >= 50.0
    border, inside = seam_errors(tiled - whole, grid_cuts(grid, SCALE), SCALE, DEFAULT_OVERLAP)
    assert 0 < border <= inside, (
        f"error on tile borders {border * 255:.4f}/255, inside {inside * 255:.4f}/255"
    )

    pasted = upscale(model, image, tile=TILE, pad=10, overlap=0)  # Real-ESRGAN: hard crops, tile_pad 10
    paste_grid = TileGrid.plan(32, 320, TILE, 0, 10)
    assert psnr(pasted, whole) < 40.0
    paste_border, paste_inside = seam_errors(
        pasted - whole, grid_cuts(paste_grid, SCALE), SCALE, DEFAULT_OVERLAP
    )
    assert paste_border > 1.5 * paste_inside
