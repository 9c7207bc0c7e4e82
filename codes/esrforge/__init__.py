"""esrforge: config-driven training and inference for ESRGAN super-resolution networks."""

__version__ = "0.1.0"
