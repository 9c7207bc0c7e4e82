"""Export a checkpoint to ONNX; see ``esrforge.cli.export``.

Run from the repository root without installing: ``python codes/scripts/export.py --help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esrforge.cli.export import run

if __name__ == "__main__":
    run()
