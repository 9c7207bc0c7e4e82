"""Ship a generator outside PyTorch: ONNX export (:mod:`esrforge.export.onnx`) with the metadata that
test.py and process_video.py read back (:mod:`esrforge.export.metadata`).

onnx and onnxruntime are optional (the ``export`` extra); :func:`require_package` imports one or says
in one line how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = 'pip install -e ".[export]"'


def require_package(name: str, purpose: str) -> ModuleType:
    """``import name``, or a one-line ValueError: ``{purpose} needs the {name} package: pip install ...``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ValueError(f"{purpose} needs the {name} package: {INSTALL_HINT}") from None
