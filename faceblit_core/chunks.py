"""Chunked, resumable rendering of one video: plan, work folder + manifest, concatenation.

A video longer than one chunk (``--chunk-seconds``, 10 s by default) is rendered as
segments ``[start, end)`` of about that length, each encoded to its own file in a
work folder next to the output, ``.NAME.faceblit-work/``. Chunks are cut only on the
key-frame grid (:func:`key_interval`: every ``chunk_seconds`` of the clip, counted from
its frame 0) on which every render of the same options, one-piece ones included, has a
forced, closed-GOP key frame; so a chunk is whole groups of pictures of the one-piece
encode, and its encoder starts where the one-piece encoder also starts afresh.

* ``manifest.json`` — what the chunks belong to (the *key*: input fingerprint,
  style key, every option that changes the output's pixels, the chunk plan) and
  which chunks are finished (frames, size, SHA-256 of the file);
* ``chunk-NNNN.EXT`` — one encode per chunk (starting with a key frame);
* ``lock`` — ``fcntl.flock``-ed for the whole run: a second run on the same output
  fails at once (exit 5) instead of writing into the same folder.

When every chunk is there, they are joined without re-encoding (ffmpeg's concat
demuxer, ``-c:v copy``) and the input's audio is muxed once, into a temporary file
renamed onto the output (:func:`faceblit_core.media.atomic_output`); then the work
folder is removed.

Resume is the default: a rerun of the same command after a crash, SIGKILL or
reboot finds the work folder, checks that its key equals the run's own (any other
input content, style, option or plan: the folder is wiped and the render starts
afresh) and re-renders only the chunks that are not recorded as finished or whose
file no longer has the recorded size and hash (truncated, corrupt or missing).

Seams: each chunk starts its state (landmark tracking and smoothing, temporal
guide, kept NNF, flow) ``warmup`` frames before its first frame, rendering those
frames and discarding them (:func:`render_segment`). Every carried state forgets
within :data:`faceblit_core.temporal_state.MEMORY_FRAMES` frames and every schedule
counts absolute frame indices, so frame t of a chunked render equals frame t of a
one-piece render (d6, 1008 frames, losslessly encoded: ≥ 46.8 dB per frame).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import ffmpeg
import numpy as np

from faceblit_core import media
from faceblit_core._version import __version__
from faceblit_core.errors import OutputError, ProcessingError
# The media package's own ffmpeg plumbing (URLs, children that die with us, the audio
# codecs each container may copy): the concatenation is one more ffmpeg job.
from faceblit_core.media import ffmpeg as media_ffmpeg
from faceblit_core.media import formats as media_formats
from faceblit_core.setup import FrameProgress
from faceblit_core.summary import set_frame_counts

MANIFEST_VERSION = 1
WORK_SUFFIX = ".faceblit-work"
#: Default chunk length, seconds (``--chunk-seconds``): resumable renders of long clips.
DEFAULT_CHUNK_SECONDS = 10.0
#: Frames a chunk renders and discards before its first frame (``--chunk-warmup``):
#: the carried state's memory (:data:`faceblit_core.temporal_state.MEMORY_FRAMES`, 60)
#: plus the landmark smoothing's settling (measured when it was One Euro at 0.2 Hz: ~0.05 px
#: left after 90 frames; at today's 1 Hz it settles ~5x sooner) and the tracker's fits (each started from the box of
#: the last one: on d6, started at frame 540, they meet the one-piece render's at frame 594). Measured on d6 against the
#: one-piece render, in memory, at the boundaries 336 and 672: 36.8/37.0 dB with 60, 41.0/44.2 dB with 90, 47.4/47.6 dB
#: with 120; at the default plan's boundary 600: 35.0 dB with 60, 39.4 dB with 90 (``scripts/memory_curve.py``).
DEFAULT_WARMUP = 120
#: Head and tail bytes hashed for the input's fingerprint (with size and mtime).
FINGERPRINT_BYTES = 1 << 20
#: ``StylizeConfig`` fields that do not change the output's pixels (kept out of the key):
#: CUDA and CPU give the same results bit for bit (docs/ARCHITECTURE.md, synthesis).
_NOT_IN_KEY = ("device",)


def work_dir_for(output: str | os.PathLike) -> Path:
    """The work folder of an output file: ``.NAME.faceblit-work`` in the output's folder."""
    out = Path(output)
    return out.parent / f".{out.name}{WORK_SUFFIX}"


def discard_work_folder(output: str | os.PathLike) -> bool:
    """Remove the work folder an earlier chunked run left for ``output`` (killed, or since
    rendered in one piece), unless a run holds its lock.

    Called once a one-piece render has written ``output``: the chunks of an earlier
    run with other options can never be resumed into it, and left behind they are a
    hidden folder of stale video next to the user's file.

    Returns
    -------
    bool
        True when a folder was removed; False when there was none or a run holds it.
    """
    path = work_dir_for(output)
    if not path.is_dir():
        return False
    try:
        fd = os.open(path / "lock", os.O_RDWR)
    except FileNotFoundError:
        fd = None  # a folder without its lock file: no run can be holding it
    except OSError:
        return False
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(path, ignore_errors=True)
        return True
    except BlockingIOError:
        return False  # another run is rendering this output in chunks: its folder stays
    finally:
        if fd is not None:
            os.close(fd)


def key_interval(fps: float, chunk_seconds: float) -> int:
    """Frames between the forced key frames of every render with these options (the key-frame grid).

    Key frames sit on the absolute frame indices ``0, G, 2G, …`` with
    ``G = round(S · fps)``, ``S = chunk_seconds`` (or :data:`DEFAULT_CHUNK_SECONDS`
    when it is 0: a one-piece render has the default chunks' grid), so a chunk's first
    frame is a key frame in a one-piece render of the same clip too and both encoders
    see the same groups of pictures (:func:`plan_chunks` cuts only on this grid).

    Returns
    -------
    int
        ``G`` ≥ 1, in frames.
    """
    seconds = chunk_seconds if chunk_seconds > 0 else DEFAULT_CHUNK_SECONDS
    return max(1, round(seconds * fps))


def plan_chunks(start: int, end: int, *, fps: float, chunk_seconds: float) -> list[tuple[int, int]]:
    """Split frames ``[start, end)`` into chunks of about ``chunk_seconds``, cut on the key-frame grid.

    Every cut is a multiple of :func:`key_interval` ``G`` (absolute frame index, also
    for a ``--frames`` range), where every render with these options has a forced key
    frame, so each chunk is a whole number of the one-piece encode's groups of
    pictures. A first or last piece shorter than ``G / 2`` joins its neighbour, so
    chunks are ``G / 2`` to ``1.5 G`` frames long (a range that holds one whole grid
    interval and two short pieces is one chunk of up to ``2 G``), and a range from a
    grid frame of fewer than ``1.5 G`` frames is one chunk.

    Returns
    -------
    list of (start, end)
        Half-open frame ranges, contiguous, covering ``[start, end)``; one chunk when
        ``chunk_seconds <= 0`` or the range is no longer than about one chunk.
    """
    if end <= start:
        return []
    if chunk_seconds <= 0:
        return [(start, end)]
    grid = key_interval(fps, chunk_seconds)
    cuts = list(range((start // grid + 1) * grid, end, grid))
    if cuts and cuts[0] - start < grid / 2:
        cuts.pop(0)
    if cuts and end - cuts[-1] < grid / 2:
        cuts.pop()
    bounds = [start, *cuts, end]
    return list(zip(bounds[:-1], bounds[1:]))


def warmup_start(start: int, warmup: int) -> int:
    """First frame a chunk starting at ``start`` renders (outputs before ``start`` discarded): ``warmup`` earlier.

    Every schedule of the stylizer counts absolute frame indices (re-detection, the
    restarts of carried state, ``boil``), and every carried state forgets within
    :data:`faceblit_core.temporal_state.MEMORY_FRAMES` frames, so a warm-up that long
    (plus the landmark smoothing's settling) gives frame ``start`` as a one-piece render
    has it.
    """
    if start <= 0 or warmup <= 0:
        return start
    return max(0, start - warmup)


def input_fingerprint(path: str | os.PathLike) -> dict:
    """A fast identity of the input's content: size, mtime (ns) and SHA-256 of its first and last MiB.

    Not a full hash (a 4 GB input would take seconds to hash at each start): an edit
    in the middle that keeps size and mtime is not seen. Editors and copies change the
    mtime; ``touch`` on an unchanged file also changes it (then the render starts afresh).
    """
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_BYTES))
        if st.st_size > FINGERPRINT_BYTES:
            f.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
            h.update(f.read(FINGERPRINT_BYTES))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail_sha256": h.hexdigest()}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a whole file (chunks are a few MB: milliseconds)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_key(config) -> dict:
    """The ``StylizeConfig`` fields that change the output (everything but ``device``)."""
    return {k: v for k, v in asdict(config).items() if k not in _NOT_IN_KEY}


@dataclass
class ChunkRecord:
    """A finished chunk as the manifest records it."""

    start: int
    end: int
    frames: int
    bytes: int
    sha256: str
    frames_with_face: int = 0
    max_faces: int = 0
    scene_cuts: int = 0
    # How the chunk's frames were written (RunSummary's frames_stylized/faded/unchanged,
    # fade_reasons, frames_with_unselected, carry_resets), so a resumed render still reports them.
    frame_states: dict = field(default_factory=dict)
    fade_reasons: dict = field(default_factory=dict)
    frames_with_unselected: int = 0
    carry_resets: int = 0


@dataclass
class WorkFolder:
    """The locked work folder of one output (see the module docstring).

    Use :meth:`open` (a context manager): it takes the lock, reads or resets the
    manifest, and releases the lock at the end (removing nothing: :meth:`remove`
    is called by the caller once the output is complete).
    """

    path: Path
    key: dict
    ext: str
    chunks: dict[int, ChunkRecord] = field(default_factory=dict)
    resumed: bool = False
    _lock_fd: int | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, output: str | os.PathLike, key: dict, *, resume: bool = True):
        """Lock (creating it if needed) and load the work folder of ``output``.

        Parameters
        ----------
        key : dict
            JSON-able identity of the render (input, style, options, plan). A manifest
            with another key (or ``resume=False``) is not reused: the folder is emptied.

        Raises
        ------
        OutputError
            Another run holds the lock (exit 5), or the folder cannot be created.
        """
        output = Path(output)
        wf = cls(path=work_dir_for(output), key=key, ext=output.suffix.lower())
        wf._lock()
        try:
            wf._load(resume)
            yield wf
        finally:
            wf._unlock()

    # ---- locking
    def _lock(self) -> None:
        while True:
            try:
                self.path.mkdir(exist_ok=True)
                fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"{self.path}: cannot create the work folder ({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(
                    f"{self.path.parent / self.path.name[1:-len(WORK_SUFFIX)]}: another faceblit run is rendering this output "
                    f"(its work folder {self.path} is locked); wait for it to finish or choose another output"
                ) from None
            # The run before may have removed the folder between our open and our lock:
            # then this lock is on a deleted file; start again on a fresh folder.
            try:
                same = os.stat(self.path / "lock").st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # ---- manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def chunk_path(self, index: int) -> Path:
        return self.path / f"chunk-{index:04d}{self.ext}"

    def _load(self, resume: bool) -> None:
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            data = None
        if resume and isinstance(data, dict) and data.get("version") == MANIFEST_VERSION and data.get("key") == self.key:
            try:
                self.chunks = {int(i): ChunkRecord(**rec) for i, rec in data.get("chunks", {}).items()}
                self.resumed = True
                return
            except (TypeError, ValueError):
                pass
        # Another input, style, option or plan (or no manifest): nothing here may be reused.
        for entry in self.path.iterdir():
            if entry.name != "lock":
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.chunks = {}
        self._save()

    def _save(self) -> None:
        data = {"version": MANIFEST_VERSION, "key": self.key,
                "chunks": {str(i): vars(rec) for i, rec in sorted(self.chunks.items())}}
        tmp = self.manifest_path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.manifest_path)

    def is_done(self, index: int, start: int, end: int) -> bool:
        """Whether chunk ``index`` is recorded for ``[start, end)`` and its file still has the recorded size and hash."""
        rec = self.chunks.get(index)
        path = self.chunk_path(index)
        if rec is None or (rec.start, rec.end) != (start, end):
            return False
        try:
            if path.stat().st_size != rec.bytes:
                return False
        except OSError:
            return False
        return file_sha256(path) == rec.sha256

    def record(self, index: int, rec: ChunkRecord) -> None:
        """Record chunk ``index`` as finished (after its file was completely written)."""
        with open(self.chunk_path(index), "rb") as f:
            os.fsync(f.fileno())  # the manifest must never name data that a reboot loses
        self.chunks[index] = rec
        self._save()

    def remove(self) -> None:
        """Delete the whole folder (while still holding the lock)."""
        shutil.rmtree(self.path, ignore_errors=True)


def finished_record(path: Path, start: int, end: int, stats: dict) -> ChunkRecord:
    """The :class:`ChunkRecord` of a chunk file just written."""
    return ChunkRecord(start=start, end=end, frames=int(stats["frames"]), bytes=path.stat().st_size, sha256=file_sha256(path),
                       frames_with_face=int(stats.get("frames_with_face", 0)), max_faces=int(stats.get("max_faces", 0)),
                       scene_cuts=int(stats.get("scene_cuts", 0)), frame_states=dict(stats.get("frame_states", {})),
                       fade_reasons=dict(stats.get("fade_reasons", {})), frames_with_unselected=int(stats.get("frames_with_unselected", 0)),
                       carry_resets=int(stats.get("carry_resets", 0)))


# ---------------------------------------------------------------------------- the hook
def render_segment(
    info,
    stylizer,
    path: str | os.PathLike,
    *,
    start: int,
    end: int,
    warmup: int,
    key_interval: int,
    config,
    side_by_side: bool = False,
    on_frame: Callable[[], None] | None = None,
) -> dict:
    """Render frames ``[start, end)`` of a video into ``path`` (video only, no audio).

    The pipeline's hook for chunked rendering: ``stylizer`` (a fresh
    :class:`faceblit_core.stylizer.FrameStylizer` of this clip) first renders the
    frames from :func:`warmup_start` up to ``start`` and discards them, so its
    state (tracking, smoothing, temporal guide, kept NNF, flow) is that of a render
    that began earlier; it is told the absolute index of its first frame
    (:meth:`~faceblit_core.stylizer.FrameStylizer.start_at`), on which all its
    schedules are keyed.

    Parameters
    ----------
    info : MediaInfo
        The probed input.
    path : path
        The chunk file (written atomically by :class:`faceblit_core.media.VideoWriter`).
    key_interval : int
        The key-frame grid (:func:`key_interval`): key frames on the absolute frame
        indices that a one-piece render of the same options has them on.
    on_frame : callable, optional
        Called after each written frame (progress).

    Returns
    -------
    dict
        ``frames``, ``frames_with_face``, ``max_faces``, ``scene_cuts``, ``stage_ms`` (summed);
        ``frame_states``, ``fade_reasons``, ``frames_with_unselected``, ``carry_resets`` of the chunk's own
        frames (not the warm-up's).

    Raises
    ------
    InputError, OutputError, ProcessingError
        As :func:`faceblit_core.pipeline.stylize_video`; nothing is left at ``path``.
    """
    first = warmup_start(start, warmup)
    stylizer.start_at(first)
    stats = {"frames": 0, "frames_with_face": 0, "max_faces": 0}
    width = info.width * (2 if side_by_side else 1)
    with media.open_video_writer(path, width=width, height=info.height, fps=info.fps, codec=config.codec, crf=config.crf,
                           preset=config.preset, overwrite=True, key_frames=(key_interval, start)) as writer:
        reader = media.iter_frames(info, start=first, end=end)
        try:
            for index, frame in enumerate(reader, start=first):
                if index == start:
                    before = _frame_counts(stylizer)  # what the warm-up frames added is taken off again
                out, faces = stylizer(frame)
                if index < start:
                    continue  # warm-up: only the state is kept
                stats["frames"] += 1
                if faces:
                    stats["frames_with_face"] += 1
                    stats["max_faces"] = max(stats["max_faces"], len(faces))
                writer.write(np.concatenate([frame, out], axis=1) if side_by_side else out)
                if on_frame is not None:
                    on_frame()
        finally:
            reader.close()
        if stats["frames"] != end - start:
            raise ProcessingError(f"{info.path}: decoded {stats['frames']} of the {end - start} frames of chunk {start}:{end}")
    stats["scene_cuts"] = stylizer.scene_cuts
    stats["stage_ms"] = dict(stylizer.stage_ms)
    after = _frame_counts(stylizer)
    stats["frame_states"] = _minus(after["frame_states"], before["frame_states"])
    stats["fade_reasons"] = _minus(after["fade_reasons"], before["fade_reasons"])
    for key in ("carry_resets", "frames_with_unselected"):
        stats[key] = after[key] - before[key]
    return stats


def _frame_counts(stylizer) -> dict:
    """A copy of the stylizer's counts of how frames were written."""
    return {"frame_states": dict(stylizer.frame_states), "fade_reasons": dict(stylizer.fade_reasons), "carry_resets": stylizer.carry_resets,
            "frames_with_unselected": stylizer.frames_with_unselected}


def _minus(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# ------------------------------------------------------------------------ concatenation
def concat_chunks(chunk_files: list[Path], output: str | os.PathLike, *, list_file: Path, audio_from=None,
                  audio_span: tuple[float, float | None] | None = None, overwrite: bool = False, inputs=()) -> None:
    """Join chunk files without re-encoding and mux the audio of ``audio_from`` once.

    ffmpeg's concat demuxer (``-c:v copy``: every chunk starts with a key frame, all
    share codec and parameters); the first audio stream of ``audio_from`` is copied
    (or re-encoded where the container cannot hold it, as
    :class:`faceblit_core.media.VideoWriter` does), cut to ``audio_span``. Written to a
    temporary file renamed onto ``output``.

    Raises
    ------
    OutputError, ProcessingError
        ffmpeg failed; nothing is left at ``output``.
    """
    ext = Path(output).suffix.lower()
    list_file.write_text("".join(f"file '{os.fspath(p.resolve())}'\n" for p in chunk_files))
    video = ffmpeg.input(media_ffmpeg._ffmpeg_url(list_file), format="concat", safe=0)
    streams = [video["v:0"]]
    kw: dict = {"vcodec": "copy", "max_muxing_queue_size": 4096}
    if audio_from is not None and audio_from.has_audio and audio_from.audio_stream is not None:
        span = {}
        if audio_span is not None:
            a0, duration = audio_span
            span = {"ss": f"{a0:.6f}"} | ({"t": f"{duration:.6f}"} if duration is not None else {})
        streams.append(ffmpeg.input(media_ffmpeg._ffmpeg_url(audio_from.path), **span)[str(audio_from.audio_stream)])
        allowed = media_formats._AUDIO_COPY_OK.get(ext)
        if allowed is None or (audio_from.audio_codec or "") in allowed:
            kw["acodec"] = "copy"
        else:
            kw["acodec"] = "libopus" if ext == ".webm" else "aac"
            kw["b:a"] = "192k"
    if ext in (".mp4", ".m4v", ".mov"):
        kw["movflags"] = "+faststart"
    with media.atomic_output(output, overwrite=overwrite, inputs=inputs) as tmp:
        args = media_ffmpeg._ffmpeg_args(ffmpeg.output(*streams, media_ffmpeg._ffmpeg_url(tmp), **kw).overwrite_output())
        with tempfile.TemporaryFile() as log:
            proc = media_ffmpeg._popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
            try:
                rc = proc.wait()
            finally:
                media_ffmpeg._kill(proc)
            if rc != 0:
                log.seek(0)
                tail = log.read().decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
                raise ProcessingError(f"{output}: ffmpeg failed while joining the chunks ({tail[0]})")


# ------------------------------------------------------------------------- the job
def render_key(input, info, asset, config, *, plan, key_interval: int, warmup: int, side_by_side: bool, ext: str) -> dict:
    """JSON-able identity of a chunked render: a work folder with another key is never reused."""
    return {
        "faceblit": __version__,
        "input": input_fingerprint(input),
        "style": asset.key,
        "config": config_key(config),
        "fps": str(info.fps),
        "size": [info.width, info.height],
        "plan": [list(c) for c in plan],
        "key_interval": int(key_interval),
        "warmup": int(warmup),
        "side_by_side": bool(side_by_side),
        "ext": ext,
    }


def render_chunked(
    input,
    asset,
    output: str,
    info,
    *,
    plan: list[tuple[int, int]],
    key_interval: int,
    config,
    device: str,
    warmup: int,
    resume: bool,
    side_by_side: bool,
    overwrite: bool,
    audio_span,
    progress: bool | FrameProgress,
    make_stylizer: Callable[[], object],
    engine: str = "local",
    ray_address: str | None = None,
    summary=None,
):
    """Render ``plan``'s chunks of ``input`` (those not finished before) and join them into ``output``.

    ``make_stylizer()`` returns a fresh :class:`~faceblit_core.stylizer.FrameStylizer`
    for this clip (one per chunk: chunks share no state, the warm-up rebuilds it).
    With ``engine="ray"`` the chunks run as Ray tasks (:mod:`faceblit_core.ray_engine`).

    ``progress``: show a bar over the frames of all chunks (True), or count them on a
    bar shared with other renders (a :class:`~faceblit_core.setup.FrameProgress`, the
    batch on Ray's). Locally it moves with each frame; on Ray with the frames the tasks
    report while they render (:func:`faceblit_core.ray_engine.render_chunks`).

    Returns
    -------
    RunSummary
        ``summary`` filled in (frames of all chunks, also those of an earlier run);
        ``resumed_chunks`` = chunks reused from the work folder.

    Raises
    ------
    OutputError
        Another run holds the work folder (exit 5), the output cannot be written.
    InputError, ProcessingError, EnvironmentProblem, Interrupted
        As a one-piece render; the work folder with its finished chunks stays for a rerun.
    """
    key = render_key(input, info, asset, config, plan=plan, key_interval=key_interval, warmup=warmup, side_by_side=side_by_side, ext=Path(output).suffix.lower())
    with WorkFolder.open(output, key, resume=resume) as wf:
        todo = [i for i, (s, e) in enumerate(plan) if not wf.is_done(i, s, e)]
        summary.resumed_chunks = len(plan) - len(todo)
        summary.chunks = len(plan)
        total = plan[-1][1] - plan[0][0]
        own = not isinstance(progress, FrameProgress)
        bar = FrameProgress(Path(str(input)).name, enabled=bool(progress)) if own else progress
        bar.add(total, done=total - sum(plan[i][1] - plan[i][0] for i in todo))
        stage_ms: dict[str, float] = {}
        try:
            if engine == "ray":
                from faceblit_core import ray_engine  # lazy: Ray is an optional extra

                results = ray_engine.render_chunks(input, info, asset, config, device=device, plan=plan, todo=todo, warmup=warmup,
                                                   key_interval=key_interval, side_by_side=side_by_side, ext=wf.ext, render=render_segment, address=ray_address,
                                                   progress=bar)
                for i, data, stats in results:
                    tmp = wf.chunk_path(i).with_suffix(".part")
                    tmp.write_bytes(data)
                    os.replace(tmp, wf.chunk_path(i))
                    wf.record(i, finished_record(wf.chunk_path(i), *plan[i], stats))
                    _add(stage_ms, stats["stage_ms"])
                    summary.device = stats.get("device", summary.device)  # what the workers resolved "auto" to
            else:
                for i in todo:
                    s, e = plan[i]
                    stats = render_segment(info, make_stylizer(), wf.chunk_path(i), start=s, end=e, warmup=warmup, key_interval=key_interval, config=config,
                                           side_by_side=side_by_side, on_frame=bar.update if bar.shown else None)
                    wf.record(i, finished_record(wf.chunk_path(i), s, e, stats))
                    _add(stage_ms, stats["stage_ms"])
        finally:
            if own:
                bar.close()
        concat_chunks([wf.chunk_path(i) for i in range(len(plan))], output, list_file=wf.path / "concat.txt",
                      audio_from=info if info.has_audio else None, audio_span=audio_span, overwrite=overwrite, inputs=[input])
        recs = [wf.chunks[i] for i in range(len(plan))]
        wf.remove()
    summary.frames = sum(r.frames for r in recs)
    summary.frames_with_face = sum(r.frames_with_face for r in recs)
    summary.frames_without_face = summary.frames - summary.frames_with_face
    summary.max_faces = max(r.max_faces for r in recs)
    summary.scene_cuts = sum(r.scene_cuts for r in recs)
    states, reasons = {}, {}
    for r in recs:
        _add(states, r.frame_states)
        _add(reasons, r.fade_reasons)
    set_frame_counts(summary, states, reasons, sum(r.carry_resets for r in recs), sum(r.frames_with_unselected for r in recs))
    rendered = sum(plan[i][1] - plan[i][0] for i in todo)
    summary.stage_ms = {k: v / max(1, rendered) for k, v in stage_ms.items()}
    return summary


def _add(total: dict, part: dict) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


def chunk_count(n_frames: int | None, fps: float, chunk_seconds: float) -> int:
    """How many chunks a clip of ``n_frames`` gets (1 when unknown)."""
    if not n_frames or chunk_seconds <= 0 or fps <= 0:
        return 1
    return len(plan_chunks(0, n_frames, fps=fps, chunk_seconds=chunk_seconds))


__all__ = [
    "ChunkRecord", "WorkFolder", "chunk_count", "concat_chunks", "file_sha256", "finished_record", "input_fingerprint",
    "plan_chunks", "render_chunked", "render_key", "render_segment", "warmup_start", "work_dir_for", "config_key",
]
