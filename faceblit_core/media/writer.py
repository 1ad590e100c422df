"""Encoding: :class:`VideoWriter` (RGB frames piped into ffmpeg, audio copied from
the input, written to a temporary file and renamed on success; a context manager
that removes its temporary file and stops its ffmpeg on any exception),
:func:`open_video_writer` (the way to open one: no Ctrl-C/SIGTERM between making
the writer and entering its block, so an interruption never leaves its temporary
file or its ffmpeg behind) and :func:`write_image` (stills with OpenCV, through
:func:`atomic_output`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from faceblit_core._runtime import entered_with_signals_held
from faceblit_core.checks import check, check_array
from faceblit_core.errors import EnvironmentProblem, OutputError, ProcessingError
from faceblit_core.media.formats import _AUDIO_COPY_OK, _NOT_IN_WEBM, _check_image_extension, _check_video_extension
from faceblit_core.media.ffmpeg import _SWS_FLAGS, _ffmpeg_args, _ffmpeg_reason, _ffmpeg_url, _kill, _popen, _read_log, _set_pipe_size, find_ffmpeg
from faceblit_core.media.probing import MediaInfo, _one_line, probe
from faceblit_core.media.outputs import _AtomicOutput, _output_oserror, atomic_output, check_stdout


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
    key_frames : (interval, first) in frames, keyword-only
        The key-frame grid: a key frame (an IDR frame, closing the group of pictures)
        at every frame whose *absolute* index ``first + n`` (``n`` = frames written
        before it) is a multiple of ``interval``, and at most ``interval`` frames
        between key frames (``-force_key_frames expr:…``, ``-g``). A render cut into
        chunks on this grid (:func:`faceblit_core.chunks.plan_chunks`) has the same
        groups of pictures as one encode of the whole clip. None: the encoder's own
        placement (x264: at most 250 frames apart, and at scene cuts).

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
        key_frames: tuple[int, int] | None = None,
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
        if key_frames is not None:
            check(len(key_frames) == 2 and key_frames[0] >= 1 and key_frames[1] >= 0, "key_frames", "(interval >= 1, first >= 0)", key_frames)
        self.key_frames = key_frames
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
            check_stdout()
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
        if self.key_frames is not None:
            interval, first = (int(k) for k in self.key_frames)
            # n counts the frames given to the encoder; first + n is the clip's frame index.
            kw["force_key_frames"] = f"expr:eq(mod(n+{first},{interval}),0)"
            kw["g"] = interval
            if kw["vcodec"] in _NOT_IN_WEBM:
                # A forced key frame is an IDR frame (x265 would make it an open-GOP CRA):
                # no picture on either side refers across it, so chunks cut there decode alone.
                kw["forced-idr"] = 1
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


@contextlib.contextmanager
def open_video_writer(path: str | os.PathLike, **options: Any) -> Iterator[VideoWriter]:
    """``with open_video_writer(path, width=..., ...) as writer``: a :class:`VideoWriter` that
    holds Ctrl-C/SIGTERM from its making until its block is entered.

    A writer owns a temporary file and an ffmpeg from its creation on and removes
    them only on leaving its block; a signal handled in between (as an exception)
    would leave both behind. Signals that arrive meanwhile are handled at the start
    of the block, which then removes them. ``options`` are :class:`VideoWriter`'s.

    Raises
    ------
    As :class:`VideoWriter`.
    """
    with entered_with_signals_held(lambda: VideoWriter(path, **options)) as writer:
        yield writer


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
        check_stdout()
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
