"""Blend two generators and score the blends; see ``esrforge.cli.interpolate``.

Run from the repository root without installing: ``python codes/scripts/interpolate.py --help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esrforge.cli.interpolate import run

if __name__ == "__main__":
    run()
