"""Upscale images: ``python codes/test.py -opt options/test_esrgan_x4.yml`` or ``--model M --input DIR``."""

from esrforge.cli.test import run

if __name__ == "__main__":
    run()
