"""The one list of media formats and the output rules that follow from it.

Extensions of stills and videos, the ffmpeg codecs that are stills, which video
encoders and audio codecs each container takes, and the checks of an output name's
extension. Every other module (pipeline, CLI, the writers) asks here.
"""

from __future__ import annotations

import os
from pathlib import Path


from faceblit_core.errors import OutputError



#: The still-image extensions, the one list of them: :func:`write_image` writes each
#: (OpenCV picks the format from it), :class:`VideoWriter` refuses them, the pipeline
#: names default outputs and its messages with it. Reading detects the format from the
#: content, whatever the name.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Containers :class:`VideoWriter` writes (format guessed by ffmpeg from the extension).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
#: ffmpeg codec names of still-image decoders: a single frame of one of them is an image.
_IMAGE_CODECS = frozenset({"png", "mjpeg", "webp", "bmp", "tiff", "jpeg2000", "jpegls", "pam", "ppm", "pgm", "qoi", "jpegxl"})
#: Video encoders a WebM file cannot hold; :class:`VideoWriter` uses VP9 there instead.
_NOT_IN_WEBM = frozenset({"libx264", "libx265"})
#: Audio codecs each container takes as a stream copy; others are re-encoded (``None`` = any).
_AUDIO_COPY_OK: dict[str, frozenset[str] | None] = {
    ".mp4": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}),
    ".m4v": frozenset({"aac", "ac3"}),
    ".mov": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"}),
    ".mkv": None,
    ".webm": frozenset({"opus", "vorbis"}),
    ".avi": frozenset({"mp3", "ac3", "pcm_s16le", "pcm_u8"}),
}


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has a still-image extension (:data:`IMAGE_EXTENSIONS`)."""
    return Path(os.fspath(path)).suffix.lower() in IMAGE_EXTENSIONS


def _check_video_extension(name: str, ext: str) -> None:
    if ext in IMAGE_EXTENSIONS:
        raise OutputError(f"{name}: is an image file name; a video needs one of {', '.join(sorted(VIDEO_EXTENSIONS))}")
    if ext not in VIDEO_EXTENSIONS:
        raise OutputError(f"{name}: unknown video extension {ext or '(none)'!r}; use one of {', '.join(sorted(VIDEO_EXTENSIONS))}")


def _check_image_extension(name: str, ext: str) -> None:
    if ext not in IMAGE_EXTENSIONS:
        raise OutputError(f"{name}: not an image extension; use one of {', '.join(IMAGE_EXTENSIONS)}")
