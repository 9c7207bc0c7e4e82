"""Score every saved checkpoint of a run; see ``esrforge.cli.sweep_checkpoints``.

Run from the repository root without installing: ``python codes/scripts/sweep_checkpoints.py --help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esrforge.cli.sweep_checkpoints import run

if __name__ == "__main__":
    run()
