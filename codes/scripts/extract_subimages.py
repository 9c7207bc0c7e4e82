"""Cut HR images into sub-images with a manifest: ``python codes/scripts/extract_subimages.py --help``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from esrforge.cli.common import exit_with
from esrforge.data.chunks import main

if __name__ == "__main__":
    exit_with(main)
