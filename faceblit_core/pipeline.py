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
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from faceblit_core import media
from faceblit_core._runtime import Sink, entered_with_signals_held, signals_as_exceptions
from faceblit_core.config import StylizeConfig
from faceblit_core.errors import ConfigError, EnvironmentProblem, FaceblitError, InputError, Interrupted, OutputError, UsageError
from faceblit_core.faces import confidence
from faceblit_core.style import StyleAsset, prepare_style
from faceblit_core.media import IMAGE_EXTENSIONS
from faceblit_core.setup import make_backend, progress_bar, resolve_device
from faceblit_core.stylizer import FrameStylizer



@dataclass
class RunSummary:
    """What one ``stylize`` run did (printed by the CLI, ``--json`` gives :meth:`to_dict`).

    Two clocks: ``seconds`` is the whole run of this input, start-up included
    (probing, landmark models, the writer's ffmpeg; for the first input of a batch
    also the style preparation and whatever the caller counted before, see
    :func:`stylize_batch`), ``render_seconds`` only the frames (decode → stylize →
    encode, until the output is complete). :attr:`fps` uses the latter.

    How each frame was written (:func:`faceblit_core.faces.confidence.frame_state`):
    ``frames_stylized`` (every face at full strength), ``frames_faded`` (some face
    faded toward the original because its evidence was poor), ``frames_unchanged``
    (no face stylized: none found, or all faded out); ``fade_reasons`` counts the
    faded and unchanged frames by the reason of their weakest face
    (:data:`faceblit_core.faces.confidence.REASONS`). ``carry_resets``: times a face's
    guide carried along the optical flow was dropped because it had left the face.
    """

    input: str
    output: str
    frames: int = 0
    frames_with_face: int = 0
    frames_without_face: int = 0
    max_faces: int = 0
    scene_cuts: int = 0
    fps_in: float = 0.0
    seconds: float = 0.0
    render_seconds: float = 0.0
    device: str = "cpu"
    stage_ms: dict = field(default_factory=dict)
    frames_stylized: int = 0
    frames_faded: int = 0
    frames_unchanged: int = 0
    fade_reasons: dict = field(default_factory=dict)
    carry_resets: int = 0
    chunks: int = 1
    resumed_chunks: int = 0

    @property
    def fps(self) -> float:
        """Frames per second of the rendering alone (start-up not included)."""
        return self.frames / self.render_seconds if self.render_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fps"] = round(self.fps, 3)
        d["seconds"] = round(self.seconds, 3)
        d["render_seconds"] = round(self.render_seconds, 3)
        d["stage_ms"] = {k: round(v, 3) for k, v in self.stage_ms.items()}
        return d

    def describe(self) -> str:
        why = ", ".join(f"{reason} {n}" for reason, n in self.fade_reasons.items())
        return (
            f"{self.output}: {self.frames} frame(s), face on {self.frames_with_face}, "
            f"no face on {self.frames_without_face}; stylized fully {self.frames_stylized}, faded {self.frames_faded}, "
            f"unchanged {self.frames_unchanged}{f' ({why})' if why else ''}; {self.fps:.1f} fps on {self.device} "
            f"(rendering only; {self.seconds:.1f} s in all with start-up)"
        )


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
def _load_style(style, *, config, style_landmarks, cache_dir, force_style=False):
    if isinstance(style, StyleAsset):
        return style
    return prepare_style(style, landmarks=style_landmarks, config=config, cache_dir=cache_dir, force=force_style)


_probed: dict = {}


def _probe(path):
    """:func:`media.probe`, once per file version: the batch's early check and the run then share
    one probe (two ffmpeg runs and a decode of a still: ~0.3 s of a one-still run's start-up)."""
    from faceblit_core import media

    try:
        st = os.stat(path)
        key = (os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    except (OSError, TypeError, ValueError):
        return media.probe(path)  # probe gives the one-line reason
    info = _probed.get(key)
    if info is None:
        info = media.probe(path)
        _probed.clear()  # one entry: a batch probes each input right before using it
        _probed[key] = info
    return info


def _style_path(style) -> str:
    """The exemplar's file name (for default output names), from a path or a StyleAsset."""
    return str(getattr(style, "path", None) or "style") if not isinstance(style, (str, os.PathLike)) else str(style)


def _make_stylizer(style, config: StylizeConfig, *, device: str, fps: float, video: bool, style_landmarks, fan_weights, cache_dir, save_guides,
                   force_style: bool = False) -> FrameStylizer:
    """Style asset + landmark backend + torch threads → a :class:`FrameStylizer` for one clip or still."""
    asset = _load_style(style, config=config, style_landmarks=style_landmarks, cache_dir=cache_dir, force_style=force_style)
    backend = make_backend(config, fan_weights, device, video=video)
    _set_threads()
    return FrameStylizer(asset, config, fps=fps, backend=backend, device=device, save_guides=Path(save_guides) if save_guides else None)


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
    chunk_warmup: int = 90,
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
    style : path or StyleAsset
        The style exemplar (or an asset from :func:`faceblit_core.style.prepare_style`).
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
    progress : bool, keyword-only
        Show a progress bar (tqdm, on stderr; only when stderr is a terminal).
    chunk_seconds : float or None, keyword-only
        A clip longer than this (seconds) is rendered as chunks of about this length
        in a work folder beside the output and joined at the end
        (:mod:`faceblit_core.chunks`); 0 = always one piece. Default None: one piece
        with the local engine (chunks do not yet meet without seams: ~27 dB to the
        one-piece render at a boundary on d6), 10 s with Ray. Not with ``output="-"``
        or ``save_guides``.
    chunk_warmup : int, keyword-only
        Frames each chunk renders (and discards) before its first one, so its state
        matches a one-piece render's.
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
        With a one-line message; no output file is left behind on any error.
    """
    config = config or StylizeConfig()
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine: expected local or ray, got {engine!r}")
    if chunk_seconds is None:
        chunk_seconds = 10.0 if engine == "ray" else 0.0
    if not 0 <= chunk_seconds <= 86400:
        raise ConfigError(f"--chunk-seconds: expected a value in [0, 86400], got {chunk_seconds}")
    if not 0 <= chunk_warmup <= 100000:
        raise ConfigError(f"--chunk-warmup: expected a value in [0, 100000], got {chunk_warmup}")
    if engine == "ray":
        from faceblit_core import ray_engine

        ray_engine.check_installed()  # before anything is read or written
    with contextlib.ExitStack() as stack:
        if str(input) == "-":
            # Standard input is spooled to a temporary file (probed, then decoded);
            # without a name to derive one from, its output goes to standard output.
            input = stack.enter_context(media.spooled_stdin())
            output = output if output is not None else "-"
        started = time.perf_counter()
        info = _probe(input)
        out_path = str(output) if output is not None else str(default_output_path(input, _style_path(style)))
        # The content decides what the input is, the output's extension what is written:
        # a still (even one named .mp4) becomes an image, or a one-frame video for a video name.
        if info.is_image and (out_path == "-" or Path(out_path).suffix.lower() not in media.VIDEO_EXTENSIONS):
            return stylize_image(
                input, style, output, config=config, style_landmarks=style_landmarks, fan_weights=fan_weights,
                side_by_side=side_by_side, save_guides=save_guides, cache_dir=cache_dir, overwrite=overwrite, force_style=force_style,
            )
        # A bad output path fails now, not after the style, the models and the first frames.
        media.check_output(out_path, overwrite=overwrite, inputs=[input], video=True)
        # With Ray the chunks run on the cluster's machines: a GPU is looked for there (ray_engine.connect).
        device = resolve_device(config.device) if engine == "local" else config.device
        span = _frame_span(info, frames, input)
        last = span.end if span.end is not None else (info.n_frames or None)
        if out_path != "-" and save_guides is None and last is not None and last > span.start:
            from faceblit_core import chunks

            plan = chunks.plan_chunks(span.start, last, fps=float(info.fps), chunk_seconds=chunk_seconds)
            if len(plan) > 1 or engine == "ray":
                return _stylize_chunked(input, style, out_path, info, plan=plan, config=config, device=device, warmup=chunk_warmup,
                                        resume=resume, side_by_side=side_by_side, overwrite=overwrite, audio_span=span.audio,
                                        progress=progress, engine=engine, ray_address=ray_address, style_landmarks=style_landmarks,
                                        fan_weights=fan_weights, cache_dir=cache_dir, started=started, force_style=force_style)
        stylizer = _make_stylizer(style, config, device=device, fps=float(info.fps), video=True, style_landmarks=style_landmarks,
                                  fan_weights=fan_weights, cache_dir=cache_dir, save_guides=save_guides, force_style=force_style)
        summary = RunSummary(input=str(input), output=out_path, fps_in=float(info.fps), device=device)
        with signals_as_exceptions(to_stdout=out_path == "-"):
            _write_video(stylizer, info, input, summary, span=span, config=config, side_by_side=side_by_side, overwrite=overwrite, progress=progress)
        summary.seconds = time.perf_counter() - started
        summary.scene_cuts = stylizer.scene_cuts
        _add_fade_counts(summary, stylizer)
        summary.stage_ms = {k: v / max(1, summary.frames) for k, v in stylizer.stage_ms.items()}
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
                 side_by_side: bool, overwrite: bool, progress: bool) -> None:
    """Decode → stylize → encode the frames of ``span`` into ``summary.output``; counts into ``summary``.

    Raises
    ------
    FaceblitError
        No frame in the span; then, as on any exception, the writer removes its
        temporary file and stops its ffmpeg.
    """
    audio_from = input if info.has_audio else None

    def open_writer() -> media.VideoWriter:
        return media.VideoWriter(
            summary.output, width=info.width * (2 if side_by_side else 1), height=info.height, fps=info.fps, audio_from=audio_from,
            audio_span=span.audio, codec=config.codec, crf=config.crf, preset=config.preset, overwrite=overwrite, inputs=[input],
        )

    with contextlib.ExitStack() as cleanup:
        # Ctrl-C/SIGTERM are held from the writer's first temporary file until its
        # block is entered (which removes it on any exception), then handled.
        with entered_with_signals_held(open_writer) as writer:
            render_started = time.perf_counter()
            # Made inside the writer's block: a signal arriving while they start
            # must still abort the writer (its temporary file and its ffmpeg).
            # iter_frames decodes ahead in its own thread (bounded), overlapping the synthesis.
            reader = media.iter_frames(info, start=span.start, end=span.end)
            cleanup.callback(reader.close)
            bar = progress_bar(span.count, progress, Path(str(input)).name)
            if bar is not None:
                cleanup.callback(bar.close)
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
            if bar is not None:
                bar.update(1)
    finally:
        sink.finish()


def _stylize_chunked(input, style, out_path, info, *, plan, config, device, warmup, resume, side_by_side, overwrite, audio_span,
                     progress, engine, ray_address, style_landmarks, fan_weights, cache_dir, started, force_style=False) -> RunSummary:
    """The chunked, resumable render of :func:`stylize_video` (:func:`faceblit_core.chunks.render_chunked`)."""
    from faceblit_core import chunks

    if engine == "ray":
        from faceblit_core import ray_engine

        ray_engine.connect(ray_address, device)  # an unreachable cluster fails before anything is written
    asset = _load_style(style, config=config, style_landmarks=style_landmarks, cache_dir=cache_dir, force_style=force_style)
    summary = RunSummary(input=str(input), output=out_path, fps_in=float(info.fps), device=device)
    backend = None

    def make_stylizer() -> FrameStylizer:
        nonlocal backend
        if backend is None:  # loaded once, shared by the chunks (the backends keep no per-clip state)
            backend = make_backend(config, fan_weights, device, video=True)
            _set_threads()
        return FrameStylizer(asset, config, fps=float(info.fps), backend=backend, device=device)

    with signals_as_exceptions():
        render_started = time.perf_counter()
        chunks.render_chunked(input, asset, out_path, info, plan=plan, config=config, device=device, warmup=warmup, resume=resume,
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
    started = time.perf_counter()
    frame = media.read_image(input)
    out_path = Path(output) if output is not None else default_output_path(input, _style_path(style))
    if str(out_path) != "-" and out_path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise OutputError(f"{out_path}: an image input needs an image output ({', '.join(IMAGE_EXTENSIONS)})")
    # A bad output path fails now, before any expensive work (write_image checks again).
    media.check_output(out_path, overwrite=overwrite, inputs=[input], image=True)
    stylizer = _make_stylizer(style, config, device=resolve_device(config.device), fps=25.0, video=False,
                              style_landmarks=style_landmarks, fan_weights=fan_weights, cache_dir=cache_dir, save_guides=save_guides,
                              force_style=force_style)
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
    _add_fade_counts(summary, stylizer)
    return summary


def _add_fade_counts(summary: RunSummary, stylizer) -> None:
    """Copy how the frames were written (stylized / faded / unchanged, reasons) into the summary."""
    summary.frames_stylized = stylizer.frame_states.get("stylized", 0)
    summary.frames_faded = stylizer.frame_states.get("faded", 0)
    summary.frames_unchanged = stylizer.frame_states.get("unchanged", 0)
    summary.fade_reasons = {r: stylizer.fade_reasons[r] for r in confidence.REASONS if r in stylizer.fade_reasons}
    summary.carry_resets = stylizer.carry_resets


def stylize_batch(
    inputs: Sequence[str],
    style,
    *,
    output: str | None = None,
    out_dir: str | os.PathLike | None = None,
    config: StylizeConfig | None = None,
    on_error: Callable[[str, FaceblitError], None] | None = None,
    on_done: Callable[[RunSummary], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    started: float | None = None,
    **options,
) -> tuple[list[RunSummary], list[FaceblitError]]:
    """Stylize several inputs with one style; continue past a failing input.

    The style is prepared once. ``output`` is allowed with a single input only;
    otherwise outputs go to ``out_dir`` (or next to each input) as ``NAME-STYLE.EXT``.
    Standard input (``-``) writes to ``output`` when given, else to standard output;
    it has no name to put into ``out_dir``.

    Before anything is read or written, the run is refused when two inputs are the
    same file (also through a link), when two inputs would write the same output
    (e.g. ``a/clip.mp4`` and ``b/clip.mp4`` with one ``out_dir``; paths compared
    resolved, and without case on a case-insensitive file system), or when an
    output would be another input of the run.

    Parameters
    ----------
    on_error : callable(path, error), keyword-only
        Called for each failed input (the batch goes on).
    on_done : callable(RunSummary), keyword-only
        Called for each written output, as soon as it is complete.
    on_status : callable(str), keyword-only
        Told what the batch is doing before the frames start (``"preparing style S"``),
        for a status line during the first seconds.
    started : float, keyword-only
        ``time.perf_counter()`` when the caller started (e.g. before its imports); the
        first input's ``seconds`` count from there. Default: now.

    Returns
    -------
    (summaries, failures)
        A summary per written output and the error of each failed input (after
        ``on_error(path, error)`` was called for it). Interruption and problems of
        the style or the machine stop the whole batch (they would fail every input).

    Raises
    ------
    UsageError
        ``output`` with several inputs or with ``out_dir``, standard input with
        ``out_dir``, an input given twice, two outputs that collide (exit 2).
    OutputError
        ``out_dir`` is not a folder.
    StyleError, EnvironmentProblem, ConfigError
        Stop the batch.
    Interrupted
        Stops the batch; with several inputs its message names the outputs written.
    """
    from faceblit_core.errors import StyleError

    started = time.perf_counter() if started is None else started
    config = config or StylizeConfig()
    status = on_status or (lambda text: None)
    if output is not None and out_dir is not None:
        raise UsageError("-o/--output and --out-dir exclude each other: -o names the one output, --out-dir the folder of several")
    if output is not None and len(inputs) > 1:
        raise UsageError("-o/--output takes one input; use --out-dir for several")
    if out_dir is not None and "-" in inputs:
        raise UsageError("standard input ('-') has no name to write into --out-dir; give it -o FILE (without -o it goes to standard output)")
    # Standard input has no name to derive one from: its output goes to standard output.
    targets = [output if output is not None else ("-" if path == "-" else str(default_output_path(path, style, out_dir=out_dir))) for path in inputs]
    _check_distinct(inputs, targets)
    if out_dir is not None and not Path(out_dir).is_dir():
        raise OutputError(f"{out_dir}: --out-dir is not an existing folder")
    if len(inputs) == 1 and inputs[0] != "-":
        try:
            _probe(inputs[0])  # a bad input is reported as such before the style is prepared
        except FaceblitError as exc:
            if isinstance(exc, (EnvironmentProblem, Interrupted)):
                raise
            if on_error is not None:
                on_error(inputs[0], exc)
            return [], [exc]
    status(f"preparing style {_style_path(style)}")
    asset = _load_style(style, config=config, style_landmarks=options.pop("style_landmarks", None), cache_dir=options.get("cache_dir"),
                        force_style=options.pop("force_style", False))
    summaries, failures = [], []
    # An output that exists (without overwrite) fails its input now, not after the inputs
    # before it have been rendered; the others are still written.
    # (With one input it fails at once anyway; an output that is an input is refused as such by media.)
    input_ids = {_file_id(p) for p in inputs if p != "-"}
    taken = [i for i, target in enumerate(targets)
             if len(inputs) > 1 and target != "-" and not options.get("overwrite") and os.path.lexists(target)
             and _file_id(target) not in input_ids]
    for index in taken:
        failures.append(OutputError(f"{targets[index]}: exists; use --overwrite to replace it"))
        if on_error is not None:
            on_error(inputs[index], failures[-1])
    if options.get("engine") == "ray" and len(inputs) - len(taken) > 1:
        rest = [i for i in range(len(inputs)) if i not in taken]
        summaries, failed = _batch_on_ray([inputs[i] for i in rest], [targets[i] for i in rest], asset, config, on_error, on_done, options)
        return summaries, failures + failed
    for index, (path, target) in enumerate(zip(inputs, targets)):
        if index in taken:
            continue
        status(f"starting {path}")
        input_started = time.perf_counter()
        try:
            summary = stylize_video(path, asset, target, config=config, **options)
        except (StyleError, EnvironmentProblem, ConfigError):
            raise
        except (Interrupted, KeyboardInterrupt) as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            raise Interrupted(signum, to_stdout=getattr(exc, "to_stdout", target == "-"), written=[s.output for s in summaries],
                              total=len(inputs)) from None
        except FaceblitError as exc:
            failures.append(exc)
            if on_error is not None:
                on_error(path, exc)
            continue
        if not summaries:  # the first input written carries the start-up: style preparation, and the caller's before it
            summary.seconds += input_started - started
        summaries.append(summary)
        if on_done is not None:
            on_done(summary)
    return summaries, failures


def _batch_on_ray(inputs, targets, asset, config, on_error, on_done, options) -> tuple[list[RunSummary], list[FaceblitError]]:
    """A batch on Ray: every input's chunks are submitted at once (one driver thread per input, each
    keeping its own work folder), so the cluster's workers share the files; results as they finish."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from faceblit_core import ray_engine
    from faceblit_core.errors import StyleError

    ray_engine.connect(options.get("ray_address"), config.device)  # an unreachable cluster fails before any output
    options = {**options, "progress": False}  # several files at once: the summaries report each
    summaries, failures = [], []
    pool = ThreadPoolExecutor(max_workers=min(16, len(inputs)), thread_name_prefix="faceblit-ray")
    futures = {pool.submit(stylize_video, path, asset, target, config=config, **options): path for path, target in zip(inputs, targets)}
    try:
        for future in as_completed(futures):
            path = futures[future]
            try:
                summary = future.result()
            except FaceblitError as exc:
                if isinstance(exc, (StyleError, EnvironmentProblem, ConfigError)):
                    raise
                failures.append(exc)
                if on_error is not None:
                    on_error(path, exc)
                continue
            summaries.append(summary)
            if on_done is not None:
                on_done(summary)
    except BaseException as exc:
        # Stop the other inputs: their tasks die with Ray (their work folders stay, for a rerun).
        pool.shutdown(wait=False, cancel_futures=True)
        ray_engine.shutdown()
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(getattr(exc, "signum", signal.SIGINT), to_stdout=False, written=[s.output for s in summaries],
                              total=len(inputs)) from None
        raise
    pool.shutdown(wait=True)
    return summaries, failures


def _check_distinct(inputs: Sequence[str], targets: Sequence[str]) -> None:
    """Refuse a batch whose inputs repeat or whose outputs collide, before anything is written.

    Inputs are compared by file identity (``st_dev``, ``st_ino``: symbolic and hard
    links, ``./a`` and ``a``); outputs by their resolved path (symbolic links of the
    folders), without case where the folder is on a case-insensitive file system.
    Missing inputs are left to fail on their own (exit 3).

    Raises
    ------
    UsageError
        Naming both inputs and the output they share.
    """
    seen_in: dict = {}
    for path in inputs:
        key = "-" if path == "-" else _file_id(path)
        if key is None:
            continue
        if key in seen_in:
            raise UsageError(f"{seen_in[key]} and {path} are the same input; give each input once")
        seen_in[key] = path
    seen_out: dict = {}
    folded: dict = {}
    for path, target in zip(inputs, targets):
        if target == "-":
            continue  # stdout: only standard input writes there, and it is given at most once
        resolved = os.path.realpath(target)
        other = seen_out.get(resolved)
        if other is None:
            fold = (os.path.dirname(resolved), os.path.basename(resolved).casefold())
            other = folded.get(fold)
            if other is not None and not _case_insensitive(os.path.dirname(resolved)):
                other = None
            folded.setdefault(fold, path)
        if other is not None:
            raise UsageError(f"{other} and {path} would both be written to {target}; rename one, or run them separately")
        seen_out[resolved] = path
        out_id = _file_id(target)
        if out_id is not None and out_id in seen_in and seen_in[out_id] != path:
            elsewhere = "choose another --out-dir" if os.path.dirname(target) != os.path.dirname(path) else "give it -o FILE, or write into --out-dir"
            raise UsageError(f"the output of {path}, {target}, is another input of this run ({seen_in[out_id]}); {elsewhere}")


def _file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of an existing file (links followed), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _case_insensitive(folder: str) -> bool:
    """Whether names in ``folder`` ignore case (macOS, Windows, some mounts): a hidden probe file
    is made and looked up in upper case. True when that cannot be tried (the safe answer)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(prefix=".faceblit-case-", dir=folder or ".") as probe_file:
            name = os.path.basename(probe_file.name)
            return os.path.exists(os.path.join(folder or ".", name.upper()))
    except OSError:
        return True


def _set_threads() -> None:
    """torch threads for the CPU synthesis: all cores but one, which ffmpeg's decoder and encoder use.

    ``FACEBLIT_THREADS`` overrides. Oversubscribed torch threads stall badly on
    small machines (measured on 2 cores: ms-long waits per op), so the default
    leaves the encoder its core.
    """
    wanted = int(os.environ.get("FACEBLIT_THREADS", "0") or 0)
    torch.set_num_threads(wanted if wanted > 0 else max(1, (os.cpu_count() or 2) - 1))
