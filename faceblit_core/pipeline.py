"""The whole job: decode → :class:`~faceblit_core.stylizer.FrameStylizer` → encode, for a clip, a still or a batch.

:func:`stylize_video` and :func:`stylize_image` are what the CLI's ``stylize``
calls; :func:`stylize_batch` adds the several-inputs behaviour (continue past a
bad file, report it, fail at the end). Frames stream through: memory does not
grow with the clip's length. Decoding and encoding run in their own threads (and
ffmpeg processes), so they overlap the synthesis of the current frame. The
per-frame algorithm is :mod:`faceblit_core.stylizer`; signals and threads are
:mod:`faceblit_core._runtime`.

References
----------
Texler et al. 2021, "FaceBlit: Instant Real-time Example-based Style Transfer to Facial Videos".
Sýkora et al. 2019, "StyleBlit: Fast Example-Based Stylization with Local Guidance".
Fišer et al. 2017, "Example-Based Synthesis of Stylized Facial Animations" (temporal guide).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from faceblit_core import chunks, media
from faceblit_core._runtime import Sink, signals_as_exceptions
from faceblit_core.config import StylizeConfig
from faceblit_core.errors import ConfigError, FaceblitError, InputError, OutputError, UsageError
from faceblit_core.face_styles import FaceStyles, as_style, needs_ids
from faceblit_core.faces.listing import track_faces
from faceblit_core.style import StyleAsset, prepare_style
from faceblit_core.media import IMAGE_EXTENSIONS
from faceblit_core.setup import FrameProgress, make_backend, resolve_device, set_threads
from faceblit_core.summary import RunSummary, add_frame_counts

if TYPE_CHECKING:
    # Imported where a stylizer is made, not here: the stylizer loads torch (~2 s of CPU), and a run
    # refused for a bad option, input or output answers before that (the CLI's start-up).
    from faceblit_core.stylizer import FrameStylizer


def parse_frame_range(text: str) -> tuple[int, int | None]:
    """Parse ``START:END`` (0-based, END exclusive, either may be empty) into ``(start, end)``.

    Raises
    ------
    ConfigError
        When the text is not two non-negative integers with START < END.
    """
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        end = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise ConfigError(f"frames: expected START:END with integers (e.g. 0:50), got {text!r}") from None
    if start < 0 or (end is not None and end <= start):
        raise ConfigError(f"frames: expected 0 <= START < END, got {text!r}")
    return start, end


def default_output_path(input_path: str | os.PathLike, style_path: str | os.PathLike, *, out_dir: str | os.PathLike | None = None) -> Path:
    """``NAME-STYLE.EXT`` next to the input (or in ``out_dir``); an image keeps its
    extension (every one of :data:`faceblit_core.media.IMAGE_EXTENSIONS` is written), videos become ``.mp4``."""
    src = Path(input_path)
    ext = src.suffix.lower() if src.suffix.lower() in IMAGE_EXTENSIONS else ".mp4"
    name = f"{src.stem}-{Path(style_path).stem}{ext}"
    return (Path(out_dir) if out_dir is not None else src.parent) / name


# ------------------------------------------------------------------------------ set-up
def load_style(style, *, config, style_landmarks, cache_dir, force_style=False) -> StyleAsset | FaceStyles:
    """``style`` itself when it is a prepared :class:`StyleAsset`, else :func:`prepare_style` of the path (cached);
    a :class:`FaceStyles` (one exemplar per face) with each distinct exemplar prepared once."""
    if isinstance(style, StyleAsset):
        return style
    if isinstance(style, FaceStyles):
        if style_landmarks is not None:
            raise UsageError("--style-landmarks: it names the points of one exemplar; with several, put NAME.lm.txt beside each")
        return style.prepared(lambda path: prepare_style(path, config=config, cache_dir=cache_dir, force=force_style))
    return prepare_style(style, landmarks=style_landmarks, config=config, cache_dir=cache_dir, force=force_style)


def probe(path):
    """:func:`media.probe`, once per file version: the batch's early check and the run then share
    one probe (two ffmpeg runs and a decode of a still: ~0.3 s of a one-still run's start-up)."""
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return media.probe(path)  # probe gives the one-line reason
    return _probe_version(os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1)  # one entry: a batch probes each input right before using it
def _probe_version(path: str, inode: int, size: int, mtime_ns: int) -> media.MediaInfo:
    """:func:`media.probe` of ``path``; the other arguments are the cache key (a changed file is probed again)."""
    return media.probe(path)


def style_path(style) -> str:
    """The exemplar's file name (for default output names), from a path or a StyleAsset (several: ``A+B``)."""
    if isinstance(style, FaceStyles):
        return style.name
    return str(getattr(style, "path", None) or "style") if not isinstance(style, (str, os.PathLike)) else str(style)


def _make_stylizer(style, config: StylizeConfig, *, device: str, fps: float, video: bool, style_landmarks, fan_weights, cache_dir, save_guides,
                   force_style: bool = False, frames_for_ids: Callable[[], Iterable[np.ndarray]] | None = None, start: int = 0,
                   input: str = "") -> FrameStylizer:
    """Style asset(s) + landmark backend + torch threads → a :class:`FrameStylizer` for one clip or still.

    With exemplars per face id or a face selection (:func:`~faceblit_core.face_styles.needs_ids`),
    the faces of ``frames_for_ids()`` (the frames to render, frame ``start`` first) are
    tracked first, exactly as the render will track them, so the ids are the render's;
    an id that never appears fails here, before anything is written.
    """
    from faceblit_core.stylizer import FrameStylizer  # lazy: see the TYPE_CHECKING import at the top

    asset = load_style(style, config=config, style_landmarks=style_landmarks, cache_dir=cache_dir, force_style=force_style)
    backend = make_backend(config, fan_weights, device, video=video)
    set_threads()
    guides = Path(save_guides) if save_guides else None
    if not needs_ids(asset, config):
        return FrameStylizer(asset, config, fps=fps, backend=backend, device=device, save_guides=guides)
    frames = frames_for_ids()
    try:
        listing = track_faces(frames, backend, config, fps=fps, start=start, input=str(input), thumbnails=False)
    finally:
        getattr(frames, "close", lambda: None)()
    plan = FaceStyles.of(asset).resolve(config, listing)
    return FrameStylizer(plan.default, config, fps=fps, backend=backend, device=device, save_guides=guides,
                         face_styles=plan.by_id, only=plan.only)


# ------------------------------------------------------------------------------ the job
def stylize_video(
    input: str | os.PathLike,
    style,
    output: str | os.PathLike | None = None,
    *,
    config: StylizeConfig | None = None,
    style_landmarks=None,
    fan_weights: str | os.PathLike | None = None,
    frames: tuple[int, int | None] | None = None,
    side_by_side: bool = False,
    save_guides: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_seconds: float | None = None,
    chunk_warmup: int | None = None,
    resume: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
    force_style: bool = False,
) -> RunSummary:
    """Stylize every face of a video with one style exemplar; keep every frame, the rate and the audio.

    Parameters
    ----------
    input : path
        Input video (anything ffmpeg reads; ``-`` = standard input).
    style : path, StyleAsset, mapping or FaceStyles
        The style exemplar of every face (or an asset from :func:`faceblit_core.style.prepare_style`);
        or one per face id: ``{0: "a.png", 1: "b.png"}`` (key None: every other face), the
        CLI's strings ``["0=a.png", "1=b.png"]`` or a :class:`~faceblit_core.face_styles.FaceStyles`.
        Ids are those of :func:`faceblit_core.faces.listing.list_faces` with the same face
        options and ``frames``; ``config.faces`` selects the faces stylized. Faces without
        an exemplar are written unchanged. Not with chunks or Ray (each chunk would
        number the faces afresh).
    output : path, optional
        Output video; ``-`` = standard output (fragmented MP4); default
        ``NAME-STYLE.mp4`` next to the input.
    config : StylizeConfig, keyword-only
        All tunables (default: ``StylizeConfig()``).
    style_landmarks : path or (68, 2) float32, keyword-only
        Landmarks of the exemplar; default ``NAME.lm.txt`` beside it, else detected.
    fan_weights : path, keyword-only
        Weights of the ``fan`` landmark backend.
    frames : (start, end), keyword-only
        Only frames ``start <= i < end`` (0-based; ``end`` None = to the end); the
        audio is cut to match.
    side_by_side : bool, keyword-only
        Write ``input | output`` in one frame (twice the width).
    save_guides : path, keyword-only
        Folder for each frame's guide PNGs.
    cache_dir : path, keyword-only
        Style cache folder.
    overwrite : bool, keyword-only
        Replace an existing output.
    progress : bool or FrameProgress, keyword-only
        Show a progress bar (tqdm, on stderr; only when stderr is a terminal); or count
        the frames on a bar shared with other renders (:class:`faceblit_core.setup.FrameProgress`:
        a batch on Ray shows one bar over all its inputs).
    chunk_seconds : float or None, keyword-only
        A clip longer than this (seconds) is rendered as chunks of about this length
        in a work folder beside the output, resumable, and joined at the end
        (:mod:`faceblit_core.chunks`); 0 = always one piece. Default None:
        ``chunks.DEFAULT_CHUNK_SECONDS`` (10 s; a clip of up to 1.5 chunks stays one
        piece), or one piece when face ids are needed (``ID=STYLE``, ``faces``). Chunks meet without seams: each frame equals the one-piece render's
        (d6, losslessly encoded: ≥ 46.8 dB, 47.5 dB at the boundaries). Not with
        ``output="-"`` or ``save_guides``. Every video render, chunked or not, puts a
        key frame on each multiple of this length in frames (the clip's frame index;
        10 s for 0), and chunks are cut only there (:func:`faceblit_core.chunks.key_interval`).
    chunk_warmup : int or None, keyword-only
        Frames each chunk renders (and discards) before its first one, so its state
        matches a one-piece render's; None = ``chunks.DEFAULT_WARMUP`` (every carried
        state forgets within ``temporal_state.MEMORY_FRAMES`` frames, plus the landmark
        smoothing's settling).
    resume : bool, keyword-only
        Reuse the finished chunks of a work folder left by an interrupted run of the
        same input, style and options (default); False starts afresh.
    engine : ``"local"`` or ``"ray"``, keyword-only
        Where chunks render: this process, or Ray tasks (:mod:`faceblit_core.ray_engine`;
        then even a one-chunk clip goes through the work folder).
    ray_address : str, keyword-only
        Ray cluster to join (``auto``, ``ray://host:10001``); default: a local instance.
    force_style : bool, keyword-only
        Use an exemplar the exemplar check finds hopeless (``prepare_style(force=True)``;
        :mod:`faceblit_core.exemplar_check`). A poor one is used with an
        :class:`~faceblit_core.exemplar_check.ExemplarWarning` either way.

    Returns
    -------
    RunSummary
        Frames written, frames with/without a face, timings per stage (ms, summed).

    Raises
    ------
    InputError, StyleError, OutputError, EnvironmentProblem, ProcessingError, Interrupted
        With a one-line message; no output file is left behind on any error. InputError
        also for a face id that never appears in the frames rendered.
    UsageError, ConfigError
        Bad ``style`` ids, ``config.faces``, or contradictions between them (exit 2).
    """
    config = config or StylizeConfig()
    style = as_style(style)
    FaceStyles.of(style).check(config)
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine: expected local or ray, got {engine!r}")
    if chunk_seconds is None:
        # Chunks by default, but a run that must know the clip's face ids (an exemplar per
        # id, --faces) renders in one piece: each chunk would number the faces afresh.
        chunk_seconds = 0.0 if needs_ids(style, config) else chunks.DEFAULT_CHUNK_SECONDS
    if not 0 <= chunk_seconds <= 86400:
        raise ConfigError(f"--chunk-seconds: expected a value in [0, 86400], got {chunk_seconds}")
    if chunk_warmup is None:
        chunk_warmup = chunks.DEFAULT_WARMUP
    if not 0 <= chunk_warmup <= 100000:
        raise ConfigError(f"--chunk-warmup: expected a value in [0, 100000], got {chunk_warmup}")
    if engine == "ray":
        from faceblit_core import ray_engine  # lazy: Ray is an optional extra, imported only for engine="ray"

        ray_engine.check_installed()  # before anything is read or written
    given = str(input)  # what the summary names: "-" for standard input, not its spooled copy
    with contextlib.ExitStack() as stack:
        if str(input) == "-":
            # Standard input is spooled to a temporary file (probed, then decoded);
            # without a name to derive one from, its output goes to standard output.
            input = stack.enter_context(media.spooled_stdin())
            output = output if output is not None else "-"
        started = time.perf_counter()
        info = probe(input)
        out_path = str(output) if output is not None else str(default_output_path(input, style_path(style)))
        # The content decides what the input is, the output's extension what is written:
        # a still (even one named .mp4) becomes an image, or a one-frame video for a video name.
        if info.is_image and (out_path == "-" or Path(out_path).suffix.lower() not in media.VIDEO_EXTENSIONS):
            return _named(given, stylize_image(
                input, style, output, config=config, style_landmarks=style_landmarks, fan_weights=fan_weights,
                side_by_side=side_by_side, save_guides=save_guides, cache_dir=cache_dir, overwrite=overwrite, force_style=force_style,
            ))
        # A bad output path fails now, not after the style, the models and the first frames.
        media.check_output(out_path, overwrite=overwrite, inputs=[input], video=True)
        span = _frame_span(info, frames, input)  # a --frames past the end is refused before torch is loaded
        # With Ray the chunks run on the cluster's machines: a GPU is looked for there (ray_engine.connect).
        device = resolve_device(config.device) if engine == "local" else config.device
        last = span.end if span.end is not None else (info.n_frames or None)
        # One key-frame grid for a chunked and a one-piece render of the same options.
        key_interval = chunks.key_interval(float(info.fps), chunk_seconds)
        if out_path != "-" and save_guides is None and last is not None and last > span.start:
            plan = chunks.plan_chunks(span.start, last, fps=float(info.fps), chunk_seconds=chunk_seconds)
            if len(plan) > 1 or engine == "ray":
                if needs_ids(style, config):
                    raise UsageError("--style ID=STYLE and --faces other than all: not with chunks or --engine ray (each chunk would number the faces afresh); render in one piece")
                return _named(given, _stylize_chunked(
                    input, style, out_path, info, plan=plan, key_interval=key_interval,
                    config=config, device=device, warmup=chunk_warmup, resume=resume,
                    side_by_side=side_by_side, overwrite=overwrite, audio_span=span.audio, progress=progress, engine=engine,
                    ray_address=ray_address, style_landmarks=style_landmarks, fan_weights=fan_weights, cache_dir=cache_dir,
                    started=started, force_style=force_style))
        stylizer = _make_stylizer(style, config, device=device, fps=float(info.fps), video=True, style_landmarks=style_landmarks,
                                  fan_weights=fan_weights, cache_dir=cache_dir, save_guides=save_guides, force_style=force_style,
                                  frames_for_ids=lambda: media.iter_frames(info, start=span.start, end=span.end), start=span.start,
                                  input=given)
        # --frames A:B: schedules (re-detection, carried-state restarts, boil) and per-frame
        # landmark files count frames of the clip, so frame A shows as in a whole render.
        stylizer.start_at(span.start)
        summary = RunSummary(input=given, output=out_path, fps_in=float(info.fps), device=device)
        with signals_as_exceptions(to_stdout=out_path == "-"):
            _write_video(stylizer, info, input, summary, span=span, config=config, side_by_side=side_by_side, overwrite=overwrite, progress=progress,
                         key_interval=key_interval)
        if out_path != "-":
            chunks.discard_work_folder(out_path)
        summary.seconds = time.perf_counter() - started
        summary.scene_cuts = stylizer.scene_cuts
        add_frame_counts(summary, stylizer)
        summary.stage_ms = {k: v / max(1, summary.frames) for k, v in stylizer.stage_ms.items()}
        return summary


def _named(given: str, summary: RunSummary) -> RunSummary:
    """``summary`` naming the input as the caller gave it (``-``, not standard input's spooled copy)."""
    summary.input = given
    return summary


@dataclass(frozen=True)
class _FrameSpan:
    """The frames of a clip a run covers.

    Attributes
    ----------
    start, end : int, int or None
        Frames ``start <= i < end`` (0-based; ``end`` None = to the end).
    count : int or None
        Frames to expect (for the progress bar); None when unknown.
    audio : (float, float or None) or None
        Start and duration (s; None = to the end) of the audio kept; None = all of it.
    """

    start: int
    end: int | None
    count: int | None
    audio: tuple[float, float | None] | None


def _frame_span(info, frames: tuple[int, int | None] | None, input) -> _FrameSpan:
    """``--frames`` checked against the clip.

    Raises
    ------
    InputError
        The range starts after the clip's last frame.
    """
    start, end = frames if frames is not None else (0, None)
    if info.n_frames and start >= info.n_frames:
        raise InputError(f"{input}: --frames {start}:{'' if end is None else end} starts after the last frame (the video has {info.n_frames})")
    if end is not None and info.n_frames:
        end = min(end, info.n_frames)  # "0:50" on a shorter clip means "to its end"
    last = end if end is not None else (info.n_frames or None)
    count = max(0, last - start) if last is not None else None
    audio = (start / float(info.fps), (end - start) / float(info.fps) if end is not None else None) if frames else None
    return _FrameSpan(start, end, count, audio)


def _write_video(stylizer: FrameStylizer, info, input, summary: RunSummary, *, span: _FrameSpan, config: StylizeConfig,
                 side_by_side: bool, overwrite: bool, progress: bool | FrameProgress, key_interval: int) -> None:
    """Decode → stylize → encode the frames of ``span`` into ``summary.output``; counts into ``summary``.

    ``progress``: a bar of its own (True), or frames counted on a shared one (:class:`FrameProgress`).

    Key frames on the grid of ``key_interval`` frames (absolute frame indices,
    :func:`faceblit_core.chunks.key_interval`), as a chunked render of the same options has them.

    Raises
    ------
    FaceblitError
        No frame in the span; then, as on any exception, the writer removes its
        temporary file and stops its ffmpeg.
    """
    audio_from = input if info.has_audio else None
    with contextlib.ExitStack() as cleanup:
        with media.open_video_writer(
            summary.output, width=info.width * (2 if side_by_side else 1), height=info.height, fps=info.fps, audio_from=audio_from,
            audio_span=span.audio, codec=config.codec, crf=config.crf, preset=config.preset, overwrite=overwrite, inputs=[input],
            key_frames=(key_interval, span.start),
        ) as writer:
            render_started = time.perf_counter()
            # Made inside the writer's block: a signal arriving while they start
            # must still abort the writer (its temporary file and its ffmpeg).
            # iter_frames decodes ahead in its own thread (bounded), overlapping the synthesis.
            reader = media.iter_frames(info, start=span.start, end=span.end)
            cleanup.callback(reader.close)
            if isinstance(progress, FrameProgress):
                bar = progress
            else:
                bar = FrameProgress(Path(str(input)).name, enabled=progress)
                cleanup.callback(bar.close)
            bar.add(span.count)
            _stylize_frames(stylizer, reader, writer.write, summary, side_by_side=side_by_side, bar=bar)
            if summary.frames == 0:
                raise FaceblitError(f"{input}: no frame in the range {span.start}:{'' if span.end is None else span.end}")
    summary.render_seconds = time.perf_counter() - render_started


def _stylize_frames(stylizer: FrameStylizer, frames: Iterable[np.ndarray], write: Callable[[np.ndarray], None],
                    summary: RunSummary, *, side_by_side: bool, bar) -> None:
    """Each frame through ``stylizer`` into ``write``, which runs in a thread (the encoder overlaps the synthesis)."""
    sink = Sink(write)
    try:
        for frame in frames:
            out, faces = stylizer(frame)
            summary.frames += 1
            if faces:
                summary.frames_with_face += 1
                summary.max_faces = max(summary.max_faces, len(faces))
            else:
                summary.frames_without_face += 1
            sink.put(np.concatenate([frame, out], axis=1) if side_by_side else out)
            bar.update(1)
    finally:
        sink.finish()


def _stylize_chunked(input, style, out_path, info, *, plan, key_interval, config, device, warmup, resume, side_by_side, overwrite, audio_span,
                     progress, engine, ray_address, style_landmarks, fan_weights, cache_dir, started, force_style=False) -> RunSummary:
    """The chunked, resumable render of :func:`stylize_video` (:func:`faceblit_core.chunks.render_chunked`)."""
    if engine == "ray":
        from faceblit_core import ray_engine  # lazy: Ray is an optional extra

        ray_engine.connect(ray_address, device)  # an unreachable cluster fails before anything is written
    asset = load_style(style, config=config, style_landmarks=style_landmarks, cache_dir=cache_dir, force_style=force_style)
    summary = RunSummary(input=str(input), output=out_path, fps_in=float(info.fps), device=device)
    backend = None
    from faceblit_core.stylizer import FrameStylizer  # lazy: see the TYPE_CHECKING import at the top

    def make_stylizer() -> FrameStylizer:
        nonlocal backend
        if backend is None:  # loaded once, shared by the chunks (the backends keep no per-clip state)
            backend = make_backend(config, fan_weights, device, video=True)
            set_threads()
        return FrameStylizer(asset, config, fps=float(info.fps), backend=backend, device=device)

    with signals_as_exceptions():
        render_started = time.perf_counter()
        chunks.render_chunked(input, asset, out_path, info, plan=plan, key_interval=key_interval, config=config, device=device, warmup=warmup, resume=resume,
                              side_by_side=side_by_side, overwrite=overwrite, audio_span=audio_span, progress=progress,
                              make_stylizer=make_stylizer, engine=engine, ray_address=ray_address, summary=summary)
    summary.render_seconds = time.perf_counter() - render_started
    summary.seconds = time.perf_counter() - started
    return summary


def stylize_image(
    input: str | os.PathLike,
    style,
    output: str | os.PathLike | None = None,
    *,
    config: StylizeConfig | None = None,
    style_landmarks=None,
    fan_weights: str | os.PathLike | None = None,
    side_by_side: bool = False,
    save_guides: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    force_style: bool = False,
) -> RunSummary:
    """Stylize every face of one still image; same parameters as :func:`stylize_video`.

    Returns
    -------
    RunSummary
        With ``frames == 1``.

    Raises
    ------
    InputError, StyleError, OutputError, EnvironmentProblem
        With a one-line message; nothing is written on error.
    """
    config = config or StylizeConfig()
    style = as_style(style)
    FaceStyles.of(style).check(config)
    started = time.perf_counter()
    frame = media.read_image(input)
    out_path = Path(output) if output is not None else default_output_path(input, style_path(style))
    if str(out_path) != "-" and out_path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise OutputError(f"{out_path}: an image input needs an image output ({', '.join(IMAGE_EXTENSIONS)})")
    # A bad output path fails now, before any expensive work (write_image checks again).
    media.check_output(out_path, overwrite=overwrite, inputs=[input], image=True)
    stylizer = _make_stylizer(style, config, device=resolve_device(config.device), fps=25.0, video=False,
                              style_landmarks=style_landmarks, fan_weights=fan_weights, cache_dir=cache_dir, save_guides=save_guides,
                              force_style=force_style, frames_for_ids=lambda: [frame], input=str(input))
    render_started = time.perf_counter()
    out, faces = stylizer(frame)
    if side_by_side:
        out = np.concatenate([frame, out], axis=1)
    media.write_image(out_path, out, overwrite=overwrite, inputs=[input])
    done = time.perf_counter()
    summary = RunSummary(
        input=str(input), output=str(out_path), frames=1, frames_with_face=int(bool(faces)), frames_without_face=int(not faces),
        max_faces=len(faces), seconds=done - started, render_seconds=done - render_started, device=stylizer.device,
        stage_ms=dict(stylizer.stage_ms),
    )
    add_frame_counts(summary, stylizer)
    return summary
