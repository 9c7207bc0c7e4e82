"""PSNR/SSIM of SR images (or the bicubic baseline) against GT; see ``esrforge.metrics.evaluate``.

Run from the repository root without installing: ``python codes/scripts/evaluate.py --help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esrforge.cli.common import exit_with
from esrforge.metrics.evaluate import main

if __name__ == "__main__":
    exit_with(main)
