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

User-facing failures raise :mod:`faceblit_core.errors` classes with one-line
messages; programming errors (wrong shapes, bad arguments) raise ``ValueError``.

References
----------
FaceBlit (Texler et al. 2021), §5 implementation: frames are decoded, stylized and
re-encoded one by one; unlike FaceBlit's demo we keep every frame and the input's
frame rate.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

import numpy as np

from faceblit_core._runtime import hold_signals, release_signals, start_thread
from faceblit_core.checks import check, check_array
from faceblit_core.errors import EnvironmentProblem, FaceblitError, InputError, OutputError, ProcessingError

__all__ = [
    "MediaInfo",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "find_ffmpeg",
    "probe",
    "iter_frames",
    "VideoWriter",
    "read_image",
    "write_image",
    "atomic_output",
    "check_output",
    "spool_stdin",
    "spooled_stdin",
    "remove_stale_temporaries",
    "is_image_path",
]

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
# Pipes default to 64 KiB; a frame is megabytes, so a 1 MiB pipe (the usual
# /proc/sys/fs/pipe-max-size) cuts the context switches per frame ~16-fold.
_PIPE_SIZE = 1 << 20
# swscale's defaults (fast, 8-bit intermediate, chroma interpolated only for
# luma positions) lose ~7 dB in an rgb→yuv420p→rgb round trip: 45 dB instead of
# 52 dB on d3.mp4/target2.mp4 at lossless encoding, for a few % more time.
_SWS_FLAGS = "bicubic+accurate_rnd+full_chroma_int"
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


# --------------------------------------------------------------------------------------
# ffmpeg binary
# --------------------------------------------------------------------------------------

_NO_FFMPEG = (
    "ffmpeg not found: install it (e.g. `apt install ffmpeg` or `pip install imageio-ffmpeg`) "
    "or set FACEBLIT_FFMPEG=/path/to/ffmpeg"
)


def find_ffmpeg() -> str:
    """Path of the ffmpeg executable to use (cached per environment).

    Looks at ``$FACEBLIT_FFMPEG`` first (must be an executable file), then
    ``imageio_ffmpeg.get_ffmpeg_exe()`` (the wheel bundles a static ffmpeg with
    libx264 and aac, without ffprobe), then ``ffmpeg`` on ``PATH``. The bundled
    binary comes first because it is the same build on every machine (pinned in
    ``constraints.txt``): outputs, options and tests do not depend on whatever
    ffmpeg the machine happens to have (Debian 12's 5.1 lacks options newer ones
    have, and encodes differently). ``PATH`` is the fallback when the wheel has no
    binary for the platform. The binary is run once (``-version``) to make sure
    it works.

    Returns
    -------
    str
        Absolute path of a working ffmpeg binary.

    Raises
    ------
    EnvironmentProblem
        No usable ffmpeg; the message says how to provide one.

    References
    ----------
    DESIGN §7 (Video I/O).
    """
    return _find_ffmpeg_cached(os.environ.get("FACEBLIT_FFMPEG"), os.environ.get("PATH", ""))


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # imageio_ffmpeg raises RuntimeError when its binary is missing
        return None


@functools.lru_cache(maxsize=8)
def _find_ffmpeg_cached(env_value: str | None, path_env: str) -> str:
    if env_value:
        exe = shutil.which(env_value) if os.sep not in env_value else env_value
        if not exe or not os.path.isfile(exe) or not os.access(exe, os.X_OK):
            raise EnvironmentProblem(f"FACEBLIT_FFMPEG={env_value} is not an executable file; fix it or unset it")
    else:
        exe = _bundled_ffmpeg() or shutil.which("ffmpeg", path=path_env)
        if not exe:
            raise EnvironmentProblem(_NO_FFMPEG)
    exe = os.path.abspath(exe)
    _ffmpeg_version(exe)  # fails early with a clear message when the binary cannot run
    return exe


@functools.lru_cache(maxsize=8)
def _ffmpeg_version(exe: str) -> tuple[int, int] | None:
    """(major, minor) of the ffmpeg at ``exe``; ``None`` for git builds ("N-12345-g…")."""
    try:
        out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, errors="replace", timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise EnvironmentProblem(f"ffmpeg at {exe} cannot run ({e}); set FACEBLIT_FFMPEG to a working ffmpeg") from None
    if out.returncode != 0:
        raise EnvironmentProblem(f"ffmpeg at {exe} cannot run (exit {out.returncode}); set FACEBLIT_FFMPEG to a working ffmpeg")
    m = re.search(r"ffmpeg version n?(\d+)\.(\d+)", out.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _passthrough_option() -> dict[str, str]:
    """Output option keeping every decoded frame with its timestamp (no dup/drop).

    ``-fps_mode`` exists since ffmpeg 5.1; older builds only know ``-vsync``.
    """
    version = _ffmpeg_version(find_ffmpeg())
    if version is not None and version < (5, 1):
        return {"vsync": "passthrough"}
    return {"fps_mode": "passthrough"}


def _ffmpeg_args(stream_spec: Any, *, loglevel: str = "error") -> list[str]:
    """Command line from an ffmpeg-python graph, with global options in front.

    ffmpeg-python appends ``global_args`` after the output, where ffmpeg
    ignores trailing options, so they are inserted right after the binary.
    """
    import ffmpeg

    args = ffmpeg.compile(stream_spec, cmd=find_ffmpeg(), overwrite_output=True)
    args[1:1] = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", loglevel]
    return args


def _ffmpeg_url(path: str | os.PathLike[str]) -> str:
    # "file:" stops ffmpeg from reading "name:rest" as a protocol (e.g. "a:b.mp4").
    return "file:" + os.path.abspath(os.fspath(path))


def _set_pipe_size(fileobj: IO[bytes] | None) -> None:
    if fileobj is None:
        return
    with contextlib.suppress(OSError):  # EPERM above pipe-max-size: keep the default
        fcntl.fcntl(fileobj.fileno(), _F_SETPIPE_SZ, _PIPE_SIZE)


# ffmpeg log lines start with "[mov,mp4 @ 0x55…] " or "[vist#0:0/h264 @ 0x…] [dec:h264 @ 0x…] ".
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)+")
_BOILERPLATE = re.compile(
    r"^(Conversion failed!?|Error opening (input|output) files?.*|Error opening input file .*|"
    r"Terminating thread with return code.*|Task finished with error code.*|"
    r"Last message repeated.*|Exiting normally.*|Error while filtering.*|Nothing was written into output file.*|"
    r"At least one output file must be specified|Press \[q\].*|frame=.*|Error closing file.*)$"
)
# Causes worth naming even when other lines follow them, most specific first.
_KEY_CAUSES = (
    "No space left on device",
    "File too large",
    "Permission denied",
    "moov atom not found",
    "partial file",
    "corrupt input packet",
    "Unknown encoder",
    "Encoder not found",
    "not currently supported in container",
    "Broken pipe",
)


def _ffmpeg_reason(stderr: str) -> str:
    """The most informative line of an ffmpeg log, without the ``[ctx @ 0x…]`` prefixes."""
    lines = [_LOG_PREFIX.sub("", ln).strip() for ln in stderr.splitlines()]
    lines = [re.sub(r"^Error opening input: ", "", ln) for ln in lines]
    lines = [ln for ln in lines if ln]
    for cause in _KEY_CAUSES:
        for ln in lines:
            if cause.lower() in ln.lower():
                return ln
    meaningful = [ln for ln in lines if not _BOILERPLATE.match(ln)]
    if meaningful:
        return meaningful[-1]
    return lines[-1] if lines else "no message"


def _read_log(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    """libc's ``prctl`` (Linux), looked up once here so the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent(parent: int) -> None:
    """``preexec_fn`` of every ffmpeg child: SIGKILL it when this process dies.

    Without it a ``kill -9`` of faceblit leaves an encoder that sees its input end,
    finishes the partial file and keeps running. ``PR_SET_PDEATHSIG`` is a kernel
    setting, so it holds whatever way the parent dies. It runs between fork and exec:
    only a system call (libc and the ctypes function were loaded before the fork, so
    nothing here takes a lock another thread could have held). Caveat of the kernel
    feature: the signal follows the *thread* that started the child, so ffmpeg must be
    started by a thread that outlives it (here: the caller's, which also stops it).
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the setting took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _child_options() -> dict[str, Any]:
    """Popen options of ffmpeg children: own session (a terminal's Ctrl-C reaches only
    Python, which then stops ffmpeg deliberately and removes partial output), and death
    with this process (:func:`_die_with_parent`; Linux only)."""
    kw: dict[str, Any] = {"start_new_session": True}
    if _PRCTL is not None:
        kw["preexec_fn"] = functools.partial(_die_with_parent, os.getpid())
    return kw


def _popen(args: list[str], **kw: Any) -> subprocess.Popen:
    """Start ffmpeg with :func:`_child_options` and unbuffered pipes."""
    try:
        return subprocess.Popen(args, bufsize=0, **_child_options(), **kw)
    except OSError as e:
        raise EnvironmentProblem(f"cannot start ffmpeg at {args[0]} ({e.strerror}); set FACEBLIT_FFMPEG to a working ffmpeg") from None


def _kill(proc: subprocess.Popen | None, *, close_pipes: bool = True) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
    if close_pipes:
        _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen) -> None:
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


# --------------------------------------------------------------------------------------
# probing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found out about a video or still image.

    Attributes
    ----------
    path : Path
        The probed file.
    width, height : int
        Display size in pixels, after rotation (and, for stills, after EXIF
        orientation) — the size of the frames :func:`iter_frames` yields.
    fps : fractions.Fraction
        Average frame rate, frames/s (e.g. ``30000/1001``); ffmpeg's nominal 25
        for still images.
    n_frames : int
        Exact number of frames (video packets of the stream); 1 for stills.
    rotation : int
        0, 90, 180 or 270: counter-clockwise rotation applied to the coded
        frames for display (ffmpeg's display matrix convention), i.e.
        ``upright = np.rot90(coded, rotation // 90)``. A legacy ``rotate=R``
        tag (clockwise) gives ``(-R) % 360``. 0 for stills.
    has_audio : bool
        The file has an audio stream (the first one is copied by :class:`VideoWriter`).
    is_image : bool
        A still image (png/jpg/webp/bmp/tif…).
    video_codec : str
        ffmpeg decoder name, e.g. ``"h264"``, ``"png"``.
    duration : float or None
        Video stream duration in seconds (``n_frames / fps`` for CFR); ``None`` for stills.
    video_stream : int
        Index of the video stream in the file (attached cover pictures are skipped).
    audio_stream : int or None
        Index of the first audio stream, ``None`` without audio.
    audio_codec : str or None
        ffmpeg codec name of that audio stream, e.g. ``"aac"``.
    container : str
        ffmpeg demuxer name, e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"`` or ``"png_pipe"``.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    n_frames: int
    rotation: int
    has_audio: bool
    is_image: bool
    video_codec: str
    duration: float | None
    video_stream: int = 0
    audio_stream: int | None = None
    audio_codec: str | None = None
    container: str = ""


_STREAM_RE = re.compile(r"^\s*Stream #0:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (\w+): (.*)$")
_SIZE_RE = re.compile(r"[ ,](\d+)x(\d+)(?=[ ,]|$)")
_RATE_RE = re.compile(r"(\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_DISPLAYMATRIX_RE = re.compile(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", re.I)
_ROTATE_TAG_RE = re.compile(r"^\s*rotate\s*:\s*(-?\d+)\s*$")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _check_readable_file(p: Path, what: str = "") -> None:
    """Raise InputError for a missing, directory, unreadable or empty input."""
    name = what or str(p)
    if not p.exists():
        hint = " (broken symbolic link)" if p.is_symlink() else ""
        raise InputError(f"{name}: no such file{hint}")
    if p.is_dir():
        raise InputError(f"{name}: is a directory, not a video or image")
    try:
        with open(p, "rb") as f:
            f.read(1)
    except PermissionError:
        raise InputError(f"{name}: permission denied (cannot read the file)") from None
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror or e})") from None
    st = p.stat()
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise InputError(f"{name}: file is empty (0 bytes)")


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe a video or still image by parsing ``ffmpeg -i`` (no ffprobe needed).

    One ffmpeg run prints the stream dump (stderr) and stream-copies the video
    packets to ``framecrc`` (stdout), which gives the exact frame count and the
    timestamps the average frame rate is computed from (exact rationals such as
    30000/1001, not the 2-decimal "29.97" ffmpeg prints). Stills are decoded
    with OpenCV so their size includes EXIF orientation, like :func:`read_image`.

    Parameters
    ----------
    path : str or PathLike
        A file. ``"-"`` (stdin) must be spooled first with :func:`spooled_stdin`.

    Returns
    -------
    MediaInfo

    Raises
    ------
    InputError
        Missing file, a directory, unreadable (permissions), empty file, not a
        video or image, no video stream (e.g. audio only), truncated or corrupt.
        The message is one line and names the file and the cause.
    EnvironmentProblem
        No usable ffmpeg.
    ValueError
        ``path`` is ``"-"``.

    References
    ----------
    DESIGN §7 (Video I/O); ARCHITECTURE "media (io)".
    """
    if os.fspath(path) == "-":
        raise ValueError("probe('-'): spool stdin to a file first (faceblit_core.media.spooled_stdin)")
    p = Path(path)
    name = os.fspath(path)
    _check_readable_file(p, name)
    exe = find_ffmpeg()
    args = [exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-i", _ffmpeg_url(p)]
    stderr = _run_capture(args)[1]
    dump = _parse_dump(stderr)
    if dump is None:
        raise InputError(f"{name}: {_open_failure(stderr)}")
    fmt, streams, duration_s = dump
    video = next((s for s in streams if s["kind"] == "Video" and "(attached pic)" not in s["desc"]), None)
    audio = next((s for s in streams if s["kind"] == "Audio"), None)
    if video is None:
        what = "audio only" if audio is not None else "no streams ffmpeg can use"
        raise InputError(f"{name}: no video stream ({what}); expected a video or an image")
    if video["codec"] in ("none", "unknown"):
        raise InputError(f"{name}: unsupported video codec (ffmpeg cannot decode it)")
    size = _SIZE_RE.search(" " + video["desc"])
    if size is None:
        raise InputError(f"{name}: ffmpeg reports no frame size; not a readable video")
    coded_w, coded_h = int(size.group(1)), int(size.group(2))
    rotation = _rotation(video)

    # Exact count and timestamps: stream copy of the video packets to framecrc.
    count_args = [exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning", "-i", _ffmpeg_url(p),
                  "-map", f"0:{video['index']}", "-c", "copy", "-f", "framecrc", "-"]
    rc, count_err, crc = _run_capture(count_args, want_stdout=True)
    n_frames, tb, pts, durs = _parse_framecrc(crc)
    damaged = re.search(r"partial file|corrupt input packet|Invalid data found|truncat", count_err, re.I)
    if rc != 0 or damaged or n_frames == 0:
        reason = _ffmpeg_reason(count_err) if count_err.strip() else "no video frames"
        raise InputError(f"{name}: truncated or corrupt video (ffmpeg: {reason})")

    is_image = (fmt == "image2" or fmt.endswith("_pipe") or video["codec"] in _IMAGE_CODECS) and n_frames == 1
    if is_image:
        h, w = read_image(p).shape[:2]  # EXIF orientation is applied by OpenCV, not by ffmpeg
        return MediaInfo(path=p, width=w, height=h, fps=_printed_rate(video["desc"]) or Fraction(25),
                         n_frames=1, rotation=0, has_audio=False, is_image=True,
                         video_codec=video["codec"], duration=None, video_stream=video["index"],
                         container=fmt)

    fps, span_s = _average_rate(n_frames, tb, pts, durs)
    if fps is None:
        fps = _printed_rate(video["desc"])
        if fps is None:
            raise InputError(f"{name}: ffmpeg reports no frame rate; not a readable video")
        span_s = duration_s
    w, h = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    return MediaInfo(path=p, width=w, height=h, fps=fps, n_frames=n_frames, rotation=rotation,
                     has_audio=audio is not None, is_image=False, video_codec=video["codec"],
                     duration=span_s, video_stream=video["index"],
                     audio_stream=audio["index"] if audio else None,
                     audio_codec=audio["codec"] if audio else None, container=fmt)


def _run_capture(args: list[str], *, want_stdout: bool = False) -> tuple[int, str, str]:
    try:
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, **_child_options())
    except OSError as e:
        raise EnvironmentProblem(f"cannot start ffmpeg at {args[0]} ({e.strerror}); set FACEBLIT_FFMPEG to a working ffmpeg") from None
    out = r.stdout.decode("utf-8", "replace") if want_stdout else ""
    return r.returncode, r.stderr.decode("utf-8", "replace"), out


def _parse_dump(stderr: str) -> tuple[str, list[dict[str, Any]], float | None] | None:
    """(demuxer name, streams, container duration s) of input #0, or None if ffmpeg could not open it."""
    m = re.search(r"^Input #0, (.*), from '", stderr, re.M)
    if m is None:
        return None
    dur = _DURATION_RE.search(stderr)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    streams: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in stderr[m.start():].splitlines():
        sm = _STREAM_RE.match(line)
        if sm:
            desc = sm.group(3)
            current = {"index": int(sm.group(1)), "kind": sm.group(2), "desc": desc,
                       "codec": desc.split()[0].rstrip(",") if desc.split() else "none", "extra": []}
            streams.append(current)
        elif current is not None and line.startswith("    "):
            current["extra"].append(line)
        elif not line.startswith(" "):
            current = None
    return m.group(1), streams, duration


def _open_failure(stderr: str) -> str:
    """Cause of an input ffmpeg could not open, in user terms."""
    reason = _ffmpeg_reason(stderr)
    low = stderr.lower()
    if "permission denied" in low:
        return "permission denied (cannot read the file)"
    if "no such file" in low:
        return "no such file"
    if "moov atom not found" in low and "low score" not in low:
        return f"truncated or corrupt video (ffmpeg: {reason})"
    if "invalid data found" in low or "low score" in low or "could not find codec" in low:
        return f"not a video or image (ffmpeg: {_ffmpeg_reason(_drop_key(stderr))})"
    return f"cannot be read as a video or image (ffmpeg: {reason})"


def _drop_key(stderr: str) -> str:
    # For a file that is not media at all "moov atom not found" is a misdetection, not the cause.
    return "\n".join(ln for ln in stderr.splitlines() if "moov atom" not in ln and "low score" not in ln)


def _rotation(video: dict[str, Any]) -> int:
    for line in video["extra"]:
        m = _DISPLAYMATRIX_RE.search(line)
        if m:
            return int(round(float(m.group(1)) / 90.0)) * 90 % 360
    for line in video["extra"]:
        m = _ROTATE_TAG_RE.match(line)
        if m:  # legacy tag: clockwise degrees
            return int(round(-int(m.group(1)) / 90.0)) * 90 % 360
    return 0


def _parse_framecrc(text: str) -> tuple[int, Fraction | None, list[int], list[int]]:
    """(packets, time base, pts list, duration list) from ffmpeg's framecrc output."""
    tb: Fraction | None = None
    pts: list[int] = []
    durs: list[int] = []
    n = 0
    for line in text.splitlines():
        if line.startswith("#tb 0:"):
            num, _, den = line.split(":", 1)[1].strip().partition("/")
            with contextlib.suppress(ValueError, ZeroDivisionError):
                tb = Fraction(int(num), int(den or 1))
            continue
        if not line or line[0] == "#":
            continue
        parts = line.split(",")
        if len(parts) < 5:
            continue
        n += 1
        with contextlib.suppress(ValueError):
            p, d = int(parts[2]), int(parts[3])
            if abs(p) < 1 << 62:  # AV_NOPTS_VALUE prints as INT64_MIN
                pts.append(p)
                durs.append(d)
    return n, tb, pts, durs


def _average_rate(n: int, tb: Fraction | None, pts: list[int], durs: list[int]) -> tuple[Fraction | None, float | None]:
    """Average frame rate n / span as a small exact fraction, and the span in seconds.

    Timestamps are rounded to the time base (e.g. 1 ms in Matroska), so a
    "nice" rate (integer, NTSC N·1000/1001, or a fraction with denominator
    ≤ 1001 such as 29959/1000) is chosen when it explains the span to within
    2 ticks; otherwise the exact average is kept (VFR input).
    """
    if tb is None or tb <= 0 or n < 1 or len(pts) != n:
        return None, None
    lo, hi = min(pts), max(pts)
    last = durs[pts.index(hi)]
    if last <= 0:
        positive = sorted(d for d in durs if d > 0)
        last = positive[len(positive) // 2] if positive else 0
    span = hi + last - lo
    if span <= 0:
        return None, None
    avg = Fraction(n) / (span * tb)
    def ticks_off(rate: Fraction) -> Fraction:
        return abs(Fraction(n) / (rate * tb) - span)

    # Standard rates first, the one that best explains the span ("within 2 ticks"
    # alone would take 30 for a 1-s 30000/1001 clip with ms ticks); then any
    # small fraction; else the exact average.
    nice = [r for r in (Fraction(round(avg)), Fraction(round(avg * Fraction(1001, 1000)) * 1000, 1001)) if r > 0]
    for group in (nice, [avg.limit_denominator(1001)]):
        if group:
            best = min(group, key=ticks_off)
            if ticks_off(best) <= 2:
                return best, float(n / best)
    return avg.limit_denominator(1_000_000), float(span * tb)


def _printed_rate(desc: str) -> Fraction | None:
    """Rate from ffmpeg's rounded "29.97 fps" / "30 tbr" text (fallback without timestamps)."""
    for unit in ("fps", "tbr"):
        for m in _RATE_RE.finditer(desc):
            if m.group(3) != unit:
                continue
            v = Fraction(m.group(1)) * (1000 if m.group(2) else 1)
            if v <= 0:
                continue
            ntsc = Fraction(round(v * Fraction(1001, 1000)) * 1000, 1001)
            if v.denominator != 1 and abs(v - ntsc) < Fraction(6, 1000):
                return ntsc  # "29.97" is 30000/1001, "23.98" is 24000/1001
            return v.limit_denominator(1001)
    return None


# --------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------


def iter_frames(
    info: MediaInfo,
    *,
    start: int = 0,
    end: int | None = None,
    prefetch: int = 4,
    strict: bool = False,
) -> Iterator[np.ndarray]:
    """Decode frames ``start … end-1`` of a probed video (or the one frame of a still).

    ffmpeg decodes to raw ``rgb24`` on a pipe: upright (ffmpeg applies the
    display rotation on decode; checked against ``np.rot90`` in the tests),
    every frame kept (``-fps_mode passthrough``: no frames dropped or duplicated
    for variable-frame-rate input; :class:`VideoWriter` then uses the average
    rate of :func:`probe`). Frames before ``start`` are decoded and dropped
    inside ffmpeg. A background thread reads ahead up to ``prefetch`` frames so
    decoding overlaps the caller's work. Closing the generator (``break``,
    ``close()``, garbage collection) kills ffmpeg.

    Parameters
    ----------
    info : MediaInfo
        From :func:`probe`.
    start, end : int, keyword-only
        Half-open frame range, ``0 <= start <= end <= info.n_frames``; ``end=None``
        means ``info.n_frames``.
    prefetch : int, keyword-only
        Frames decoded ahead in a reader thread (0 = read in the caller's thread).
    strict : bool, keyword-only
        Stop at the first decoding error (``-xerror``) instead of concealing
        damaged macroblocks like ffmpeg does by default.

    Yields
    ------
    frame : ndarray, shape (H, W, 3), dtype uint8
        RGB, H = ``info.height``, W = ``info.width``; each frame is a new array
        the caller may keep or modify. Colour conversion is swscale's, using the
        stream's colour matrix (BT.601 when untagged).

    Raises
    ------
    InputError
        ffmpeg fails mid-stream or the stream ends early (truncated/corrupt);
        the message names the file and ffmpeg's reason.
    ValueError
        Bad ``start``/``end``.

    References
    ----------
    DESIGN §7 (Video I/O): keep every frame at the input rate.
    """
    end = info.n_frames if end is None else end
    check(0 <= start <= end <= info.n_frames, "frame range", f"0 <= start <= end <= {info.n_frames}", (start, end))
    check(prefetch >= 0, "prefetch", ">= 0", prefetch)
    if info.is_image:
        return _image_frames(info, start, end)
    return _video_frames(info, start, end, prefetch, strict)


def _image_frames(info: MediaInfo, start: int, end: int) -> Iterator[np.ndarray]:
    if start < end:
        yield read_image(info.path)


def _decoder_args(info: MediaInfo, start: int, count: int, strict: bool) -> list[str]:
    import ffmpeg

    stream = ffmpeg.input(_ffmpeg_url(info.path), **({"xerror": None} if strict else {}))[str(info.video_stream)]
    # A simple filtergraph (-vf), not ffmpeg-python's .filter() (-filter_complex):
    # -sws_flags applies only to simple graphs, and frames must convert alike
    # whatever ``start`` is.
    extra = {"vf": f"trim=start_frame={start}"} if start > 0 else {}
    out = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", sws_flags=_SWS_FLAGS,
                        **{"frames:v": count}, **extra, **_passthrough_option())
    args = _ffmpeg_args(out)
    if strict:  # -xerror is a global option; ffmpeg-python put it among the input options
        args.remove("-xerror")
        args.insert(1, "-xerror")
    return args


def _video_frames(info: MediaInfo, start: int, end: int, prefetch: int, strict: bool) -> Iterator[np.ndarray]:
    count = end - start
    if count == 0:
        return
    shape = (info.height, info.width, 3)
    nbytes = info.height * info.width * 3
    args = _decoder_args(info, start, count, strict)
    log = tempfile.TemporaryFile()
    proc = _popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
    _set_pipe_size(proc.stdout)
    reader = _PrefetchReader(proc.stdout, nbytes, prefetch) if prefetch > 0 else None
    produced = 0
    try:
        while produced < count:
            buf = reader.get() if reader is not None else _read_frame(proc.stdout, nbytes)
            if buf is None:
                break
            produced += 1
            yield buf.reshape(shape)
        rc = proc.wait()
        if rc != 0 or produced < count:
            reason = _ffmpeg_reason(_read_log(log))
            got = f"decoded {produced} of {count} frames" if produced < count else f"ffmpeg exit {rc}"
            raise InputError(f"{info.path}: truncated or corrupt video, {got} (ffmpeg: {reason})")
    finally:
        # Kill first (the reader thread then sees EOF), join the thread, and only
        # then close the pipe it was reading from.
        _kill(proc, close_pipes=False)
        if reader is not None:
            reader.stop()
        _close_pipes(proc)
        log.close()


def _read_frame(f: IO[bytes], nbytes: int) -> np.ndarray | None:
    """Read exactly one frame (None at a clean end of stream), straight into a new array."""
    buf = np.empty(nbytes, np.uint8)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        k = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not k:
            break
        got += k
    if got == 0:
        return None
    if got < nbytes:  # ffmpeg stopped mid-frame: treated like an early end by the caller
        return None
    return buf


class _PrefetchReader:
    """Reads frames from a pipe in a thread into a bounded queue (read-ahead).

    ``readinto`` releases the GIL, so reading overlaps the consumer's work;
    the queue bound caps memory at ``depth`` frames.
    """

    _END = object()

    def __init__(self, f: IO[bytes], nbytes: int, depth: int) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = start_thread(self._run, args=(f, nbytes), name="faceblit-decode")

    def _run(self, f: IO[bytes], nbytes: int) -> None:
        item: Any = self._END
        try:
            while not self._stopped.is_set():
                buf = _read_frame(f, nbytes)
                if buf is None:
                    break
                self._put(buf)
        except BaseException as e:  # handed to the consumer, who re-raises it
            item = e
        self._put(item)

    def _put(self, item: Any) -> None:
        while not self._stopped.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> np.ndarray | None:
        item = self._q.get()
        if item is self._END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)


# --------------------------------------------------------------------------------------
# atomic outputs, stdin
# --------------------------------------------------------------------------------------


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has a still-image extension (:data:`IMAGE_EXTENSIONS`)."""
    return Path(os.fspath(path)).suffix.lower() in IMAGE_EXTENSIONS


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _check_video_extension(name: str, ext: str) -> None:
    if ext in IMAGE_EXTENSIONS:
        raise OutputError(f"{name}: is an image file name; a video needs one of {', '.join(sorted(VIDEO_EXTENSIONS))}")
    if ext not in VIDEO_EXTENSIONS:
        raise OutputError(f"{name}: unknown video extension {ext or '(none)'!r}; use one of {', '.join(sorted(VIDEO_EXTENSIONS))}")


def _check_image_extension(name: str, ext: str) -> None:
    if ext not in IMAGE_EXTENSIONS:
        raise OutputError(f"{name}: not an image extension; use one of {', '.join(IMAGE_EXTENSIONS)}")


def check_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
    video: bool = False,
    image: bool = False,
) -> Path:
    """Check, without writing anything, that ``path`` can be written as an output.

    The checks :func:`atomic_output` and :class:`VideoWriter` make, for callers that
    want to fail before expensive work (a style build, model loading) rather than
    after it. The writer checks again when it starts (the disk may change meanwhile).

    Parameters
    ----------
    path : str or PathLike
        Output file (``"-"`` passes).
    overwrite : bool, keyword-only
        An existing ``path`` may be replaced.
    inputs : sequence of paths, keyword-only
        Files the output must not be.
    video : bool, keyword-only
        Also require a video container extension (as :class:`VideoWriter` does).
    image : bool, keyword-only
        Also require an image extension (as :func:`write_image` does).

    Returns
    -------
    Path
        The folder the output goes to.

    Raises
    ------
    OutputError
        Folder missing, not a folder or not writable, ``path`` is a directory, is
        one of ``inputs``, exists without ``overwrite``, or has no video (``video``)
        or image (``image``) extension.
    """
    name = os.fspath(path)
    p = Path(name)
    folder = p.parent if str(p.parent) else Path(".")
    if name == "-":
        return folder
    if p.is_dir():
        raise OutputError(f"{name}: is a directory; give a file name")
    if video:
        _check_video_extension(name, p.suffix.lower())
    if image:
        _check_image_extension(name, p.suffix.lower())
    if not folder.exists():
        raise OutputError(f"{name}: folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{name}: {folder} is not a folder")
    for src in inputs:
        if src is not None and os.fspath(src) != "-" and _same_file(p, Path(os.fspath(src))):
            raise OutputError(f"{name}: output is the same file as the input {os.fspath(src)}")
    if p.exists() and not overwrite:
        raise OutputError(f"{name}: exists; use --overwrite to replace it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{name}: folder {folder} is not writable")
    return folder


# Temporary files (partial outputs, spooled stdin) carry their owner's PID in the name
# and are locked (flock) by it while they live. A run killed with SIGKILL cannot remove
# its own, so the next run that writes into the folder removes those whose owner is gone:
# the PID names no live process and nobody holds the lock. Either test alone could remove
# a live run's file: the lock is taken a moment after the file is created, and PIDs are
# reused or belong to another PID namespace (a container sharing the folder).
_PARTIAL_RE = re.compile(r"^\..+\.partial-(?P<pid>\d+)-[a-z0-9_]{8}(?:\.[^.]*)?$")
_STDIN_PREFIX = "faceblit-stdin-"
_STDIN_RE = re.compile(rf"^{_STDIN_PREFIX}(?P<pid>\d+)-[a-z0-9_]{{8}}$")


def _owned_tempfile(folder: str | os.PathLike[str], prefix: str, suffix: str = "") -> tuple[int, Path]:
    """``mkstemp`` named ``PREFIX<pid>-XXXXXXXX SUFFIX``, locked: (descriptor holding the lock, path)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix, dir=folder)
    with contextlib.suppress(OSError):  # a filesystem without locks: the PID alone decides
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, Path(tmp)


def _process_gone(pid: int) -> bool:
    """No process ``pid`` runs here (a zombie has exited: its files and locks are released)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: another user's live process
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")


def remove_stale_temporaries(folder: str | os.PathLike[str], pattern: re.Pattern[str] = _PARTIAL_RE) -> list[Path]:
    """Remove the temporary files in ``folder`` left by faceblit runs that are gone.

    Files named like ``pattern`` (default: the ``.NAME.partial-PID-XXXXXXXX.EXT``
    outputs of :func:`atomic_output` and :class:`VideoWriter`) whose PID is not a
    live process and whose lock nobody holds; a live run's file is never touched.
    Called before each new temporary file; errors (no permission…) leave a file alone.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or not _process_gone(int(m.group("pid"))):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: its owner lives (a reused PID, another PID namespace)
            except OSError:
                pass  # no locks on this filesystem
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


class _AtomicOutput:
    """Temporary file ``.NAME.partial-PID-XXXXXXXX.EXT`` next to ``path``, locked while
    it lives (:func:`remove_stale_temporaries`); commit renames it."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool, inputs: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.path = Path(os.fspath(path))
        self.overwrite = overwrite
        name = os.fspath(path)
        folder = check_output(path, overwrite=overwrite, inputs=inputs)
        remove_stale_temporaries(folder)
        try:
            self._lock, self.tmp = _owned_tempfile(folder, f".{self.path.name}.partial-", self.path.suffix)
        except OSError as e:
            raise _output_oserror(name, e) from None
        self.done = False

    def commit(self) -> None:
        if self.done:
            return
        try:
            if self.path.exists() and not self.overwrite:  # appeared while we were writing
                raise OutputError(f"{self.path}: exists; use --overwrite to replace it")
            # mkstemp makes the file 0600; give the output the usual umask-based mode.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            raise _output_oserror(str(self.path), e) from None
        except BaseException:
            self.abort()
            raise
        self.done = True
        self._unlock()

    def abort(self) -> None:
        self.done = True
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock)
            self._lock = -1


def _output_oserror(name: str, e: OSError) -> OutputError:
    if e.errno == errno.ENOSPC:
        return OutputError(f"{name}: disk full (No space left on device)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{name}: cannot write here ({e.strerror})")
    return OutputError(f"{name}: cannot write ({e.strerror or e})")


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Write ``path`` all-or-nothing: yield a temporary path in the same folder.

    The temporary file ``.NAME.partial-PID-XXXXXXXX.EXT`` (created empty, same
    extension so ffmpeg/OpenCV pick the format) is renamed onto ``path`` with
    ``os.replace`` when the block succeeds, and removed when it raises anything
    (including ``KeyboardInterrupt``). Same folder ⇒ same filesystem ⇒ the
    rename is atomic. One left by a killed run (``kill -9``) is removed by the
    next one writing into the folder (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : str or PathLike
        Final output file.
    overwrite : bool, keyword-only
        Replace an existing ``path``.
    inputs : sequence of paths, keyword-only
        Files the output must not be (e.g. the input video): writing onto them
        would destroy the source while it is being read.

    Yields
    ------
    Path
        The temporary file to write.

    Raises
    ------
    OutputError
        Folder missing or not writable, ``path`` exists without ``overwrite``,
        ``path`` is one of ``inputs`` or a directory, disk full.
    """
    held = hold_signals()  # a Ctrl-C between creating the file and the try would leave it
    try:
        out = _AtomicOutput(path, overwrite=overwrite, inputs=inputs)
    except BaseException:
        release_signals(held)
        raise
    try:
        release_signals(held)
        yield out.tmp
    except BaseException:
        out.abort()
        raise
    out.commit()


def spool_stdin(tmpdir: str | os.PathLike[str] | None = None, *, stream: IO[bytes] | None = None) -> Path:
    """Copy stdin (or ``stream``) to a temporary file so it can be probed and decoded.

    ffmpeg needs a seekable file to count frames and decode it again; a pipe
    can be read only once. **The caller deletes the file**; prefer
    :func:`spooled_stdin`, which does.

    Parameters
    ----------
    tmpdir : path or None
        Folder of the temporary file (default: the system temp folder).
    stream : binary file object, keyword-only
        Source (default ``sys.stdin.buffer``).

    Returns
    -------
    Path
        ``faceblit-stdin-PID-XXXXXXXX`` (no extension: ffmpeg and OpenCV detect
        the format from the content). Copies left in that folder by killed runs
        are removed first (:func:`remove_stale_temporaries`).

    Raises
    ------
    InputError
        stdin is empty or a terminal.
    OutputError
        The temporary folder is full or not writable.
    """
    src = stream if stream is not None else sys.stdin.buffer
    with contextlib.suppress(AttributeError, ValueError, OSError):
        if os.isatty(src.fileno()):
            raise InputError("stdin is a terminal; pipe a video or image into it, e.g. `cat in.mp4 | faceblit ... -`")
    folder = tmpdir if tmpdir is not None else tempfile.gettempdir()
    remove_stale_temporaries(folder, _STDIN_RE)
    try:
        fd, tmp = _owned_tempfile(folder, _STDIN_PREFIX)
    except OSError as e:
        raise _output_oserror(os.fspath(folder), e) from None
    try:
        # The descriptor keeps the lock until the copy is complete; afterwards only the
        # caller's process keeps the file (its PID is in the name) until it deletes it.
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        if os.path.getsize(tmp) == 0:
            raise InputError("stdin is empty; pipe a video or image into it")
    except OSError as e:
        os.unlink(tmp)
        raise _output_oserror(tmp, e) from None
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


@contextlib.contextmanager
def spooled_stdin(tmpdir: str | os.PathLike[str] | None = None, *, stream: IO[bytes] | None = None) -> Iterator[Path]:
    """Context manager around :func:`spool_stdin` that deletes the file on exit.

    Yields
    ------
    Path
        The spooled copy of stdin.

    Raises
    ------
    InputError, OutputError
        As :func:`spool_stdin`.
    """
    path = spool_stdin(tmpdir, stream=stream)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------


class VideoWriter:
    """Encode RGB frames to a video file (or stdout) with ffmpeg, all-or-nothing.

    Frames are piped as raw ``rgb24`` into ffmpeg, converted to yuv420p with
    the BT.709 matrix (limited range) and tagged BT.709, encoded with ``codec``
    (libx264, CRF ``crf``, preset ``preset``) and muxed with ``-movflags
    +faststart`` (MP4/MOV). The first audio stream of ``audio_from`` is copied
    unchanged (``-c:a copy``), or re-encoded (AAC; Opus for WebM) when the
    container cannot hold its codec; the audio keeps its full duration.

    **Odd sizes**: yuv420p needs even width and height, so an odd width
    (height) is padded by one column (row) that repeats the last one (edge
    replication); the output is then ``width + width % 2`` by
    ``height + height % 2``. Nothing else is changed.

    **Atomic**: the video is written to ``.NAME.partial-PID-XXXXXXXX.EXT`` in the
    target folder and renamed onto ``path`` by :meth:`close` only when ffmpeg
    succeeded. Any exception in the ``with`` block (``KeyboardInterrupt``
    included), or :meth:`abort`, kills ffmpeg and removes the temporary file.

    **stdout**: ``path="-"`` writes a fragmented, streamable MP4 to stdout
    (``-movflags frag_keyframe+empty_moov+delay_moov``: video and audio start
    together at 0, as in a file, and hold exactly the frames written); nothing else may write to stdout
    meanwhile.

    Parameters
    ----------
    path : str or PathLike
        Output file (.mp4, .m4v, .mov, .mkv, .webm, .avi) or ``"-"``.
    width, height : int, keyword-only
        Frame size in pixels, ≥ 1.
    fps : Fraction, int, float or str, keyword-only
        Frame rate in frames/s (e.g. ``info.fps``); every written frame lasts 1/fps.
    audio_from : path or MediaInfo or None, keyword-only
        File whose first audio stream is copied into the output (no audio when
        it has none).
    codec : str, keyword-only
        ffmpeg video encoder (default ``libx264``). WebM cannot hold H.264/H.265:
        for a ``.webm`` path ``libx264``/``libx265`` become ``libvpx-vp9`` at the same
        CRF (constant quality; ``preset`` does not apply).
    crf : int, keyword-only
        Constant rate factor, 0–63 (lower = better).
    preset : str, keyword-only
        Encoder preset (libx264: ultrafast … veryslow).
    overwrite : bool, keyword-only
        Replace an existing output.
    inputs : sequence of paths, keyword-only
        Files the output must not be (the input video); ``audio_from`` is always included.
    audio_span : (start, duration) in seconds, keyword-only
        Copy only this span of the audio (``duration`` None = to the end), for
        renders of a range of frames.

    Raises
    ------
    OutputError
        Before anything is encoded: output folder missing or not writable,
        output exists without ``overwrite``, output is the same file as an
        input, an image extension (images go through :func:`write_image`),
        an unknown extension, stdout is a terminal. While writing: disk full.
    ProcessingError
        ffmpeg failed while encoding (its reason in the message).
    EnvironmentProblem
        No ffmpeg, or it lacks ``codec``.
    ValueError
        Bad size, rate or frame shape.

    References
    ----------
    DESIGN §7 (Video I/O).

    Examples
    --------
    >>> info = probe("in.mp4")                                      # doctest: +SKIP
    >>> with VideoWriter("out.mp4", width=info.width, height=info.height,
    ...                  fps=info.fps, audio_from=info) as w:        # doctest: +SKIP
    ...     for frame in iter_frames(info):
    ...         w.write(frame)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: Fraction | int | float | str,
        audio_from: str | os.PathLike[str] | MediaInfo | None = None,
        codec: str = "libx264",
        crf: int = 18,
        preset: str = "medium",
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike[str]] = (),
        audio_span: tuple[float, float | None] | None = None,
    ) -> None:
        check(isinstance(width, (int, np.integer)) and width >= 1, "width", "an integer >= 1", width)
        check(isinstance(height, (int, np.integer)) and height >= 1, "height", "an integer >= 1", height)
        try:
            rate = Fraction(fps) if not isinstance(fps, float) else Fraction(fps).limit_denominator(1001)
        except (ValueError, ZeroDivisionError, TypeError):
            rate = Fraction(0)
        check(rate > 0, "fps", "a positive frame rate", fps)
        self.width, self.height, self.fps = int(width), int(height), rate
        self.audio_span = audio_span
        self.out_width, self.out_height = self.width + self.width % 2, self.height + self.height % 2
        self.to_stdout = os.fspath(path) == "-"
        self.path = Path(os.fspath(path))
        self.frames_written = 0
        self._proc: subprocess.Popen | None = None
        self._atomic: _AtomicOutput | None = None
        self._closed = False
        name = os.fspath(path)
        ext = ".mp4" if self.to_stdout else self.path.suffix.lower()
        _check_video_extension(name, ext)

        audio_info: MediaInfo | None
        if audio_from is None:
            audio_info = None
        elif isinstance(audio_from, MediaInfo):
            audio_info = audio_from
        else:
            audio_info = probe(audio_from)
        protect = [os.fspath(p) for p in inputs]
        if audio_info is not None:
            protect.append(os.fspath(audio_info.path))

        if self.to_stdout:
            if sys.stdout is not None and sys.stdout.isatty():
                raise OutputError("-: stdout is a terminal; redirect it to a file or a pipe")
        else:
            self._atomic = _AtomicOutput(self.path, overwrite=overwrite, inputs=protect)

        try:
            args = self._command(audio_info, ext, codec, crf, preset)
            self._log = tempfile.TemporaryFile()
            if self.to_stdout:
                with contextlib.suppress(AttributeError, ValueError, OSError):
                    sys.stdout.flush()  # what Python buffered must precede the video bytes
            self._proc = _popen(args, stdin=subprocess.PIPE, stdout=None, stderr=self._log)
            _set_pipe_size(self._proc.stdin)
        except BaseException:
            # Also when a signal lands right after ffmpeg started: left alone, it would
            # finish (re)creating the temporary file once this process exits.
            _kill(self._proc)
            self._closed = True
            if self._atomic is not None:
                self._atomic.abort()
            raise

    # ---- command line
    def _command(self, audio: MediaInfo | None, ext: str, codec: str, crf: int, preset: str) -> list[str]:
        import ffmpeg

        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24",
                             s=f"{self.out_width}x{self.out_height}", framerate=str(self.fps))
        # The rgb→yuv matrix is set explicitly and tagged, so players and our own
        # decoder convert back with the same matrix (untagged HD would be guessed).
        v = video.video.filter("scale", out_color_matrix="bt709", out_range="tv", flags=_SWS_FLAGS).filter("format", "yuv420p")
        streams = [v]
        kw: dict[str, Any] = {
            "vcodec": codec, "crf": crf, "preset": preset, "pix_fmt": "yuv420p",
            "colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv",
            "max_muxing_queue_size": 4096,
        }
        if ext == ".webm" and codec in _NOT_IN_WEBM:
            # WebM holds VP8/VP9/AV1 only: the H.264/H.265 default becomes VP9 at the same CRF
            # (b:v 0 = constant quality; cpu-used 4 trades a little size for speed).
            kw.update(vcodec="libvpx-vp9", **{"b:v": 0, "row-mt": 1, "cpu-used": 4})
            del kw["preset"]
        if audio is not None and audio.has_audio and audio.audio_stream is not None:
            span = {}
            if self.audio_span is not None:
                # Only a range of frames is written (--frames): cut the audio to match.
                start, duration = self.audio_span
                span = {"ss": f"{start:.6f}"} | ({"t": f"{duration:.6f}"} if duration is not None else {})
            streams.append(ffmpeg.input(_ffmpeg_url(audio.path), **span)[str(audio.audio_stream)])
            allowed = _AUDIO_COPY_OK.get(ext)
            if allowed is None or (audio.audio_codec or "") in allowed:
                kw["acodec"] = "copy"
            else:
                kw["acodec"] = "libopus" if ext == ".webm" else "aac"
                kw["b:a"] = "192k"
        if self.to_stdout:
            kw["format"] = "mp4"
            # A pipe cannot be rewound to put an index in front, hence fragments. B-frames
            # make x264's first timestamps negative; fragmented output without an edit list
            # shifts the video alone (it started 2 frames after the audio, and readers
            # made up the gap with duplicated frames). delay_moov holds the header until
            # the first fragment is known, so it carries edit lists: video and audio both
            # start at 0 (AAC priming skipped), exactly the frames written, as in a file.
            kw["movflags"] = "frag_keyframe+empty_moov+delay_moov+default_base_moof"
            url = "pipe:1"
        else:
            assert self._atomic is not None
            if ext in (".mp4", ".m4v", ".mov"):
                kw["movflags"] = "+faststart"
            url = _ffmpeg_url(self._atomic.tmp)
        return _ffmpeg_args(ffmpeg.output(*streams, url, **kw))

    # ---- context manager
    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.abort()

    # ---- writing
    def write(self, frame: np.ndarray) -> None:
        """Append one frame.

        Parameters
        ----------
        frame : ndarray, shape (height, width, 3), dtype uint8
            RGB. It is written before ``write`` returns, so the caller may reuse it.

        Raises
        ------
        OutputError
            Disk full (or the reader of stdout went away).
        ProcessingError
            ffmpeg stopped.
        ValueError
            Wrong shape/dtype, or the writer is closed.
        """
        check(not self._closed, "VideoWriter", "open", "closed")
        check_array(frame, "frame", shape=(self.height, self.width, 3), dtype=np.uint8)
        if self.out_width != self.width or self.out_height != self.height:
            frame = np.pad(frame, ((0, self.out_height - self.height), (0, self.out_width - self.width), (0, 0)), mode="edge")
        data = memoryview(np.ascontiguousarray(frame)).cast("B")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            written = 0
            while written < len(data):  # raw pipe: a write may be partial
                written += self._proc.stdin.write(data[written:])
        except (BrokenPipeError, OSError) as e:
            err = self._failure(e)
            self.abort()
            raise err from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding and rename the temporary file onto the output.

        Raises
        ------
        OutputError, ProcessingError
            ffmpeg failed (the temporary file is removed), or no frame was written.
        """
        if self._closed:
            return
        assert self._proc is not None and self._proc.stdin is not None
        try:
            try:
                self._proc.stdin.close()
            except OSError as e:
                raise self._failure(e) from None
            rc = self._proc.wait()
            if rc != 0:
                raise self._failure(None)
            if self.frames_written == 0:
                raise ProcessingError(f"{self.path}: no frames were written")
            if self._atomic is not None:
                self._atomic.commit()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._log.close()

    def abort(self) -> None:
        """Stop ffmpeg and remove the temporary file (nothing is left at ``path``)."""
        self._closed = True
        _kill(self._proc)
        if self._atomic is not None:
            self._atomic.abort()
        with contextlib.suppress(Exception):
            self._log.close()

    def _failure(self, exc: BaseException | None) -> Exception:
        """The user-facing error for an ffmpeg that stopped (ENOSPC → OutputError)."""
        assert self._proc is not None
        with contextlib.suppress(Exception):
            self._proc.wait(timeout=10)
        log = _read_log(self._log)
        reason = _ffmpeg_reason(log) if log.strip() else (f"exit code {self._proc.returncode}" if self._proc.returncode is not None else str(exc))
        name = "-" if self.to_stdout else os.fspath(self.path)
        low = log.lower()
        if "no space left on device" in low or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
            return OutputError(f"{name}: disk full (No space left on device)")
        if "file too large" in low:
            return OutputError(f"{name}: file size limit reached (File too large)")
        if "unknown encoder" in low or "encoder not found" in low:
            return EnvironmentProblem(f"the ffmpeg at {find_ffmpeg()} cannot encode this ({reason}); install an ffmpeg with it or set FACEBLIT_FFMPEG")
        if self.to_stdout and "broken pipe" in low:
            return OutputError("-: the program reading stdout closed the pipe")
        if not self.to_stdout and isinstance(exc, BrokenPipeError) and not log.strip():
            # ffmpeg died without a word; a full disk is the usual silent cause.
            with contextlib.suppress(OSError):
                if shutil.disk_usage(self.path.parent or ".").free < (1 << 20):
                    return OutputError(f"{name}: disk full (No space left on device)")
        return ProcessingError(f"{name}: ffmpeg failed while encoding ({_one_line(reason)})")


# --------------------------------------------------------------------------------------
# still images
# --------------------------------------------------------------------------------------


def _is_video(p: Path) -> bool:
    """Whether ffmpeg reads ``p`` as a video (not a still): tells a user who gave a clip
    where an image is expected what happened. Only called once OpenCV failed to decode it."""
    try:
        return not probe(p).is_image
    except FaceblitError:
        return False


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a still image as upright RGB uint8 with OpenCV.

    Conversions: EXIF orientation applied; gray → RGB (replicated); alpha
    **dropped** (the colour channels are kept as stored, not composited over
    any background); CMYK JPEG → RGB (OpenCV's libjpeg converts); 16-bit →
    8-bit by ``>> 8``; float images clipped to [0, 1] and scaled to 255.

    Parameters
    ----------
    path : str or PathLike
        png, jpg/jpeg, webp, bmp, tif/tiff (anything OpenCV decodes; the format
        is detected from the content).

    Returns
    -------
    ndarray, shape (H, W, 3), dtype uint8
        RGB, H × W after EXIF orientation.

    Raises
    ------
    InputError
        Missing, a directory, unreadable, empty, or not an image OpenCV can decode
        (a video says so: ``"NAME: is a video; give an image"``).

    References
    ----------
    DESIGN §7 (still images in and out).
    """
    import cv2

    p = Path(os.fspath(path))
    name = os.fspath(path)
    _check_readable_file(p, name)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror or e})") from None
    # IMREAD_COLOR (unlike IMREAD_UNCHANGED) applies the EXIF orientation, drops
    # alpha and converts gray and CMYK; ANYDEPTH keeps 16-bit so we can scale it.
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)
    flags = (rgb_flag if rgb_flag is not None else cv2.IMREAD_COLOR) | cv2.IMREAD_ANYDEPTH
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        if _is_video(p):
            raise InputError(f"{name}: is a video; give an image")
        raise InputError(f"{name}: not an image OpenCV can decode (corrupt, truncated or unsupported format)")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if rgb_flag is None:
        img = img[:, :, ::-1]
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(np.nan_to_num(img.astype(np.float64)), 0.0, 1.0) * 255.0
        img = np.rint(img).astype(np.uint8)
    return np.ascontiguousarray(img)


def write_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    *,
    overwrite: bool = False,
    quality: int = 95,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Write an RGB image atomically, in the format of its extension (:data:`IMAGE_EXTENSIONS`).

    Encoded in memory with OpenCV, written to a temporary file in the target
    folder and renamed (:func:`atomic_output`). ``path="-"`` writes a PNG to stdout.

    Parameters
    ----------
    path : str or PathLike
        Output file or ``"-"``.
    rgb : ndarray, shape (H, W, 3), dtype uint8
        RGB image.
    overwrite : bool, keyword-only
        Replace an existing file.
    quality : int, keyword-only
        JPEG/WebP quality 1–100 (PNG is lossless).
    inputs : sequence of paths, keyword-only
        Files the output must not be.

    Raises
    ------
    OutputError
        Not an image extension, folder missing/unwritable, file exists without
        ``overwrite``, same file as an input, disk full.
    ValueError
        Wrong shape/dtype or quality.
    """
    import cv2

    check_array(rgb, "image", shape=(None, None, 3), dtype=np.uint8)
    check(1 <= quality <= 100, "quality", "1..100", quality)
    to_stdout = os.fspath(path) == "-"
    ext = ".png" if to_stdout else Path(os.fspath(path)).suffix.lower()
    _check_image_extension(os.fspath(path), ext)
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ProcessingError(f"{os.fspath(path)}: OpenCV could not encode the image as {ext}")
    if to_stdout:
        if sys.stdout.isatty():
            raise OutputError("-: stdout is a terminal; redirect it to a file or a pipe")
        try:
            sys.stdout.flush()
            sys.stdout.buffer.write(buf.tobytes())
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise OutputError("-: the program reading stdout closed the pipe") from None
        return
    with atomic_output(path, overwrite=overwrite, inputs=inputs) as tmp:
        try:
            with open(tmp, "wb") as f:
                f.write(buf.tobytes())
        except OSError as e:
            raise _output_oserror(os.fspath(path), e) from None
