"""Media I/O: audio and image loading, MP4 writing and probing. All bad-input errors are MediaError."""

from emo_lightning.media.audio import audio_duration, load_audio
from emo_lightning.media.errors import MediaError
from emo_lightning.media.image import MAX_IMAGE_PIXELS, fit_into_frame, load_image
from emo_lightning.media.video import Mp4Writer, probe_video, read_video

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MediaError",
    "Mp4Writer",
    "audio_duration",
    "fit_into_frame",
    "load_audio",
    "load_image",
    "probe_video",
    "read_video",
]
