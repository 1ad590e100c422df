"""What a media file holds: :class:`MediaInfo` and :func:`probe`; and :func:`read_image`.

Parsed from ``ffmpeg -i`` (no ffprobe needed) plus an exact frame count and frame
rate from a stream-copy ``framecrc`` pass. :func:`read_image` (stills with OpenCV:
EXIF orientation, gray, alpha, CMYK and 16-bit inputs handled) lives here too
because the two call each other: probing a still reads it so that its size
includes the EXIF orientation, and a still OpenCV cannot decode is probed to tell
the user it is a video.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from faceblit_core.errors import FaceblitError, InputError
from faceblit_core.media.formats import _IMAGE_CODECS
from faceblit_core.media.ffmpeg import _ffmpeg_reason, _ffmpeg_url, _run_capture, find_ffmpeg


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
