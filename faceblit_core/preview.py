"""A preview before the long render: a few frames spread over a clip, stylized as the full render would, on one picture.

:func:`preview` picks ``frames`` frames spread evenly over the clip and renders each
one after a warm-up — a fresh :class:`~faceblit_core.stylizer.FrameStylizer` started
``warmup`` frames earlier (the chunks' mechanism: :func:`faceblit_core.chunks.warmup_start`
and :meth:`~faceblit_core.stylizer.FrameStylizer.start_at`), its outputs before the frame
discarded — so the frame's state (tracking, smoothing, temporal guide, kept NNF,
flow) is that of the full render. It writes ONE picture, the contact sheet: the input
frames above, the stylized frames below, each panel labelled with its frame number.

Cost: ``frames × (warmup + 1)`` stylized frames and no encoding, instead of the whole
clip (measured figures in the README).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from faceblit_core import chunks, media
from faceblit_core._runtime import start_thread
from faceblit_core.config import StylizeConfig
from faceblit_core.errors import ConfigError, InputError, UsageError
from faceblit_core.face_styles import as_style, needs_ids
from faceblit_core.setup import make_backend, progress_bar, resolve_device, set_threads
from faceblit_core.style import StyleAsset, prepare_style

if TYPE_CHECKING:
    # Imported where the stylizers are made, not here: the stylizer loads torch (~2 s of CPU), and a
    # preview refused for a bad value, input or output answers before that (as pipeline does).
    from faceblit_core.stylizer import FrameStylizer

__all__ = ["Preview", "preview", "preview_frames", "contact_sheet", "PREVIEW_WARMUP", "MAX_FRAMES"]

#: Default warm-up, frames rendered and discarded before each preview frame (see the README's measurement).
PREVIEW_WARMUP = 10
#: Most frames one preview shows (the picture grows with them).
MAX_FRAMES = 64
#: Longest side of a panel on the sheet, px: larger frames are scaled down (INTER_AREA) for it.
PANEL_MAX_SIDE = 480


@dataclass
class Preview:
    """What :func:`preview` made.

    Attributes
    ----------
    frames : list of int
        0-based indices of the frames shown, ascending.
    inputs, outputs : list of (H, W, 3) uint8 RGB
        The input frames and the stylized frames at full size (not scaled), in the
        order of ``frames``.
    sheet : (h, w, 3) uint8 RGB
        The picture: inputs above, outputs below, frame numbers on them.
    output : str or None
        Where the sheet was written (None: not written).
    seconds : float
        Wall time of the whole call (style, models, decoding, rendering, writing).
    rendered : int
        Frames stylized, warm-up included.
    """

    frames: list[int]
    inputs: list[np.ndarray] = field(repr=False)
    outputs: list[np.ndarray] = field(repr=False)
    sheet: np.ndarray = field(repr=False)
    output: str | None
    seconds: float
    rendered: int

    def describe(self) -> str:
        """One line for the CLI."""
        where = f"wrote {self.output}" if self.output else "preview"
        return (f"{where}: frames {', '.join(map(str, self.frames))} ({self.rendered} frames rendered with warm-up) "
                f"in {self.seconds:.1f} s")


def preview_frames(n_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over a clip of ``n_frames``: the middle of each of
    ``count`` equal parts.

    Returns
    -------
    list of int
        Ascending, distinct, in ``[0, n_frames)``; fewer than ``count`` when the clip is shorter.
    """
    count = min(count, n_frames)
    return sorted({(2 * k + 1) * n_frames // (2 * count) for k in range(count)})

def preview(
    input: str | os.PathLike,
    style,
    output: str | os.PathLike | None = None,
    *,
    frames: int = 6,
    warmup: int = PREVIEW_WARMUP,
    config: StylizeConfig | None = None,
    style_landmarks=None,
    fan_weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    force_style: bool = False,
    progress: bool = False,
) -> Preview:
    """Render ``frames`` frames spread over a clip as the full render would, and put them on one picture.

    Parameters
    ----------
    input : path
        Input video (a still gives one frame, without warm-up).
    style : path or StyleAsset
        The style exemplar (or an asset from :func:`faceblit_core.style.prepare_style`).
    output : path, optional
        The picture to write (any of :data:`faceblit_core.media.IMAGE_EXTENSIONS`);
        None writes nothing (the picture is in the result).
    frames : int, keyword-only
        How many frames, 1–:data:`MAX_FRAMES` (fewer when the clip is shorter), spread
        evenly (:func:`preview_frames`).
    warmup : int, keyword-only
        Frames rendered and discarded before each shown frame (0–100000), rounded as a
        chunk's warm-up is (:func:`faceblit_core.chunks.warmup_start`).
    config : StylizeConfig, keyword-only
        All tunables, as for :func:`faceblit_core.pipeline.stylize_video`.
    style_landmarks, fan_weights, cache_dir, force_style
        As for :func:`faceblit_core.pipeline.stylize_video`.
    overwrite : bool, keyword-only
        Replace an existing ``output``.
    progress : bool, keyword-only
        A progress bar (frames rendered) on stderr when it is a terminal.

    Returns
    -------
    Preview

    Raises
    ------
    ConfigError, UsageError
        ``frames`` or ``warmup`` out of range; exemplars per face id or a face selection
        (``config.faces``), which need the ids of a whole-clip tracking (exit 2).
    InputError, StyleError, OutputError, EnvironmentProblem, Interrupted
        With a one-line message; nothing is written on any error (the picture is
        written atomically at the end).
    """
    started = time.perf_counter()
    config = config or StylizeConfig()
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise ConfigError(f"--frames: expected an integer in [1, {MAX_FRAMES}], got {frames!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= 100000:
        raise ConfigError(f"--warmup: expected an integer in [0, 100000], got {warmup!r}")
    if needs_ids(as_style(style), config):
        raise UsageError("--style ID=STYLE and --faces other than all: not with preview yet (a preview starts mid-clip, as a chunk "
                         "does, and would number the faces afresh); preview with one --style and all faces")
    if str(input) == "-":
        raise UsageError("preview reads a file (it jumps to several places in the clip): save standard input to a file first")
    info = media.probe(input)
    if not info.n_frames:
        raise InputError(f"{input}: the number of frames is unknown (a stream?); a preview needs it to spread its frames")
    if output is not None:
        media.check_output(output, overwrite=overwrite, inputs=[input], image=True)
    from faceblit_core.stylizer import FrameStylizer  # lazy: see the TYPE_CHECKING import at the top

    device = resolve_device(config.device)
    asset = style if isinstance(style, StyleAsset) else prepare_style(
        style, landmarks=style_landmarks, config=config, cache_dir=cache_dir, force=force_style)
    backend = make_backend(config, fan_weights, device, video=not info.is_image)
    set_threads()
    shown = preview_frames(info.n_frames, frames)
    starts = [chunks.warmup_start(t, warmup) for t in shown]
    bar = progress_bar(sum(t + 1 - s for s, t in zip(starts, shown)), progress, Path(str(input)).name)
    inputs, outputs = [], []
    rendered = 0
    # The exemplar is prepared once (device tensors, synthesis tables: value-keyed) and
    # shared by the stylizers, with the same results as a fresh one each.
    prepared: FrameStylizer | None = None
    groups = _overlapping(starts, shown)
    # One decoder per group of overlapping warm-up windows, the next one skipping ahead meanwhile.
    decoders = _Decoders(info, [(starts[g[0]], shown[g[-1]] + 1) for g in groups])
    try:
        for group in groups:
            active: dict[int, FrameStylizer] = {}
            for index, frame in enumerate(decoders.next_span(), start=starts[group[0]]):
                for k in group:
                    if index == starts[k]:
                        # Each shown frame has its own stylizer, started at its first warm-up frame as a chunk's is.
                        active[k] = prepared = FrameStylizer(asset, config, fps=float(info.fps), backend=backend, device=device,
                                                             prepared=prepared)
                        active[k].start_at(starts[k])
                for k in sorted(active):
                    out, _ = active[k](frame)
                    rendered += 1
                    if bar is not None:
                        bar.update(1)
                    if index == shown[k]:
                        inputs.append(frame)
                        outputs.append(out)
                        del active[k]
    finally:
        decoders.close()
        if bar is not None:
            bar.close()
    if len(outputs) != len(shown):
        raise InputError(f"{input}: the video ended before frame {shown[len(outputs)]} (it says it has {info.n_frames} frames)")
    sheet = contact_sheet(inputs, outputs, shown)
    if output is not None:
        media.write_image(output, sheet, overwrite=overwrite, inputs=[input])
    return Preview(frames=shown, inputs=inputs, outputs=outputs, sheet=sheet, output=None if output is None else str(output),
                   seconds=time.perf_counter() - started, rendered=rendered)


class _Decoders:
    """The decoders of a list of frame spans, each opened one span ahead in a helper thread.

    :func:`faceblit_core.media.iter_frames` skips to a span's first frame inside ffmpeg,
    which takes a while deep into a long clip; here the next span's ffmpeg does that while
    the current span renders. One thread opens them all and lives until :meth:`close`:
    ffmpeg children die with the THREAD that started them (``PR_SET_PDEATHSIG``), so it
    must outlive their reading. At most two decoders are open at a time.
    """

    def __init__(self, info, spans: list[tuple[int, int]]) -> None:
        self._opened: queue.Queue = queue.Queue()
        self._wanted = threading.Semaphore(1)   # span 0 is opened at once, each next one on demand
        self._done = threading.Event()
        self._thread = start_thread(self._run, args=(info, spans), name="faceblit-preview-decoders")

    def _run(self, info, spans) -> None:
        for start, end in spans:
            self._wanted.acquire()
            if self._done.is_set():
                return
            reader = media.iter_frames(info, start=start, end=end)
            try:
                item = (reader, next(reader, None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by next_span()
                item = exc
            self._opened.put(item)
        self._done.wait()

    def next_span(self):
        """The next span's frames (an iterator); the span after it starts decoding meanwhile."""
        self._wanted.release()
        item = self._opened.get()
        if isinstance(item, BaseException):
            raise item
        reader, first = item
        self._current = reader
        return itertools.chain([] if first is None else [first], reader)

    def close(self) -> None:
        """Stop every decoder (their ffmpeg killed) and the helper thread."""
        self._done.set()
        self._wanted.release()
        self._thread.join()
        while not self._opened.empty():
            item = self._opened.get()
            if not isinstance(item, BaseException):
                item[0].close()
        current = getattr(self, "_current", None)
        if current is not None:
            current.close()


def _overlapping(starts: list[int], shown: list[int]) -> list[list[int]]:
    """Indices of the shown frames in groups whose warm-up windows ``[start, shown]`` overlap (one decoder each)."""
    groups: list[list[int]] = []
    for k in range(len(shown)):
        if groups and starts[k] <= shown[groups[-1][-1]]:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def contact_sheet(inputs: list[np.ndarray], outputs: list[np.ndarray], frames: list[int], *,
                  max_side: int = PANEL_MAX_SIDE) -> np.ndarray:
    """Inputs in the top row, outputs in the bottom row, each panel labelled ``in N`` / ``out N``.

    Parameters
    ----------
    inputs, outputs : list of (H, W, 3) uint8 RGB
        Same length, all of one size.
    frames : list of int
        The frame number of each column.
    max_side : int, keyword-only
        Panels whose longer side exceeds this are scaled down to it (OpenCV INTER_AREA).

    Returns
    -------
    (2·h, n·w, 3) uint8 RGB
        ``h``, ``w`` the panel size; labels drawn with OpenCV (white on a dark outline).

    Raises
    ------
    ValueError
        Lengths differ or nothing to show.
    """
    if not inputs or len(inputs) != len(outputs) or len(inputs) != len(frames):
        raise ValueError(f"contact sheet: expected as many inputs, outputs and frame numbers (at least one), got "
                         f"{len(inputs)}, {len(outputs)}, {len(frames)}")
    h, w = inputs[0].shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    font_scale = max(0.4, size[1] / 480.0 * 0.8)
    thickness = max(1, round(font_scale * 2))

    def panel(image: np.ndarray, label: str) -> np.ndarray:
        tile = image.copy() if scale == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)  # drawn on: never the caller's
        (_, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        at = (max(2, round(th * 0.4)), th + max(2, round(th * 0.4)))
        # A dark outline under the white text: readable on bright and dark frames alike.
        cv2.putText(tile, label, at, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(tile, label, at, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thickness, cv2.LINE_AA)
        return tile

    top = [panel(image, f"in {n}") for image, n in zip(inputs, frames)]
    bottom = [panel(image, f"out {n}") for image, n in zip(outputs, frames)]
    return np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
