"""Video and image I/O through ffmpeg (decode/encode pipes) and OpenCV (stills).

Everything that touches media files lives here, so the rest of the pipeline only
sees ``(H, W, 3) uint8 RGB`` frames (DESIGN §7, ARCHITECTURE "media (io)"):

* :func:`find_ffmpeg` — the ffmpeg binary: ``$FACEBLIT_FFMPEG``, else the one
  bundled in the ``imageio-ffmpeg`` wheel, else ``ffmpeg`` on ``PATH``.
* :func:`probe` — :class:`MediaInfo` parsed from ``ffmpeg -i`` (no ffprobe needed)
  plus an exact frame count from a stream-copy pass.
* :func:`iter_frames` — upright RGB frames, every frame of the input.
* :class:`VideoWriter` — H.264/yuv420p MP4 (or another container) from RGB frames,
  audio copied from the input, written to a temporary file and renamed on success.
* :func:`read_image` / :func:`write_image` — stills with OpenCV (EXIF orientation,
  gray, alpha, CMYK and 16-bit inputs handled).
* :func:`atomic_output`, :func:`check_output`, :func:`spool_stdin` /
  :func:`spooled_stdin` — ``-`` paths and all-or-nothing outputs.

Ctrl-C and SIGTERM are kept out of the few statements where their exception would
leave a temporary file, an ffmpeg process or a broken thread behind with the
helpers of :mod:`faceblit_core._runtime`.

The package's modules, one way (each imports only those above it):

* :mod:`~faceblit_core.media.formats` — the one list of image/video extensions, the
  codecs each container takes, the output-name checks.
* :mod:`~faceblit_core.media.ffmpeg` — finding and starting ffmpeg (children die with
  their parent: ``PR_SET_PDEATHSIG``), its command lines and log messages.
* :mod:`~faceblit_core.media.probing` — :class:`MediaInfo`, :func:`probe`, :func:`read_image`
  (the two call each other). Not named ``probe``: the function of that name is
  re-exported here and would shadow the module.
* :mod:`~faceblit_core.media.reader` — :func:`iter_frames`.
* :mod:`~faceblit_core.media.outputs` — :func:`check_output`, :func:`atomic_output`,
  partial files and their clean-up, :func:`spool_stdin` / :func:`spooled_stdin`.
* :mod:`~faceblit_core.media.writer` — :class:`VideoWriter`, :func:`open_video_writer`, :func:`write_image`.

User-facing failures raise :mod:`faceblit_core.errors` classes with one-line
messages; programming errors (wrong shapes, bad arguments) raise ``ValueError``.

References
----------
FaceBlit (Texler et al. 2021), §5 implementation: frames are decoded, stylized and
re-encoded one by one; unlike FaceBlit's demo we keep every frame and the input's
frame rate.
"""

from faceblit_core.media.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_image_path
from faceblit_core.media.ffmpeg import find_ffmpeg
from faceblit_core.media.probing import MediaInfo, probe, read_image
from faceblit_core.media.reader import iter_frames
from faceblit_core.media.outputs import atomic_output, check_output, remove_stale_temporaries, spool_stdin, spooled_stdin
from faceblit_core.media.writer import VideoWriter, open_video_writer, write_image

__all__ = [
    "MediaInfo",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "find_ffmpeg",
    "probe",
    "iter_frames",
    "VideoWriter",
    "open_video_writer",
    "read_image",
    "write_image",
    "atomic_output",
    "check_output",
    "spool_stdin",
    "spooled_stdin",
    "remove_stale_temporaries",
    "is_image_path",
]
