"""Upscale a video: ``python codes/process_video.py -opt options/rrdb_process_video.yml`` or ``--model M --input V``."""

from esrforge.cli.process_video import run

if __name__ == "__main__":
    run()
