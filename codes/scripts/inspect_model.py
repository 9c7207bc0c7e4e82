"""Say what a model checkpoint is; see ``esrforge.cli.inspect_model``.

Run from the repository root without installing: ``python codes/scripts/inspect_model.py --help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esrforge.cli.inspect_model import run

if __name__ == "__main__":
    run()
