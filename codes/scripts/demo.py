"""The built-in demo: prepare photos, train a small x4 model, upscale a held-out photo (``make demo``).

Run from the repository root without installing: ``python codes/scripts/demo.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esrforge.cli.demo import run

if __name__ == "__main__":
    run()
