"""Video upscaling: stream decode -> upscale -> encode in resumable segments, audio and subtitles copied.

:func:`~esrforge.video.pipeline.run_video` runs a :class:`~esrforge.video.options.VideoConfig`;
``codes/process_video.py`` is its command line.
"""

from .options import EncodeOptions, VideoConfig, load_video_config, video_config_from_data
from .pipeline import run_video

__all__ = ["EncodeOptions", "VideoConfig", "load_video_config", "run_video", "video_config_from_data"]
