"""Preview a training config's degradations; see ``esrforge.cli.preview_degradations``.

Run from the repository root without installing: ``python codes/scripts/preview_degradations.py --help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esrforge.cli.preview_degradations import run

if __name__ == "__main__":
    run()
