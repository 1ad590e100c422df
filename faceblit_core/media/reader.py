"""Decoding: :func:`iter_frames`, videos and stills through ffmpeg, prefetched on a
thread; frames come out as upright ``(H, W, 3) uint8`` RGB. (Stills read with
OpenCV: :func:`faceblit_core.media.probing.read_image`.)
"""

from __future__ import annotations

import queue
import subprocess
import tempfile
import threading
from typing import IO, Any, Iterator

import numpy as np

from faceblit_core._runtime import start_thread
from faceblit_core.checks import check
from faceblit_core.errors import InputError
from faceblit_core.media.ffmpeg import _SWS_FLAGS, _close_pipes, _ffmpeg_args, _ffmpeg_reason, _ffmpeg_url, _kill, _passthrough_option, _popen, _read_log, _set_pipe_size
from faceblit_core.media.probing import MediaInfo, read_image


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
