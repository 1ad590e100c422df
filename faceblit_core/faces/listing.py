"""Which faces a clip shows and under which ids: ``faceblit faces`` and the ids of ``--style ID=S``.

The ids are those of :class:`~faceblit_core.faces.tracking.FaceTracker`, run frame
by frame exactly as :class:`faceblit_core.stylizer.FrameStylizer` runs it: the same
tracker options (:func:`make_tracker`), the same backend rule
(:func:`~faceblit_core.faces.backends.backend_for`) and the same rule for frames that
repeat the previous one (:func:`skips_tracking`, no tracking on them). So a listing
and a render of the same frames with the same face options number the faces alike,
and both are deterministic: the same ids on every run.

The fast path is the stylizer's own landmark stage without the synthesis: decode +
tracking (the detector every ``detect_every`` frames, the shape predictor on the
others). Skipping frames would be faster still but would change the tracker's
history and so, on some clips, its ids.

References
----------
Texler et al. 2021, FaceBlit, Sec. 3 (one exemplar per face: each face has its own guides).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np

from faceblit_core.config import StylizeConfig
from faceblit_core.errors import InputError
from faceblit_core.faces import confidence
from faceblit_core.faces.backends import backend_for
from faceblit_core.faces.tracking import FaceTracker
from faceblit_core.faces.types import LandmarkBackend

__all__ = ["FaceEntry", "FaceListing", "make_tracker", "skips_tracking", "track_faces", "list_faces", "contact_sheet", "THUMB"]

#: Side of a thumbnail of the contact sheet, px.
THUMB = 160
#: A thumbnail shows the face box grown by this factor (forehead, chin and some hair).
_THUMB_ZOOM = 1.7


def make_tracker(backend: LandmarkBackend, config: StylizeConfig, *, fps: float) -> FaceTracker:
    """The face tracker of a run with ``config``: the one place its options are read (stylizer and listing)."""
    return FaceTracker(
        backend,
        detect_every=config.detect_every,
        max_faces=config.max_faces,
        min_cutoff=config.smooth_min_cutoff,
        beta=config.smooth_beta,
        scene_cut=config.scene_cut,
        fps=fps,
    )


def skips_tracking(frame: np.ndarray, previous: np.ndarray | None, *, fade_frames: int) -> bool:
    """Whether ``frame`` repeats ``previous`` (the last frame tracked), so it is not tracked again.

    The stylizer then writes the previous output again (issue 18, with ``fade_frames`` > 0);
    listing follows the same rule so the tracker sees the same frames and gives the same ids.
    """
    return previous is not None and fade_frames > 0 and confidence.repeats(frame, previous)


@dataclass
class FaceEntry:
    """One tracked face of a listing.

    Attributes
    ----------
    id : int
        The tracker's id (``Face.id``), as ``--style ID=S`` and ``--faces`` take it.
    ranges : list of (int, int)
        Runs of consecutive frames showing it, ``(first, last)`` inclusive, frame
        indices of the clip (0-based).
    count : int
        Frames showing it.
    size : (float, float)
        Median width and height of its landmark box over those frames, frame px.
    max_size : (float, float)
        Width and height of its largest landmark box, frame px.
    thumb_frame : int
        The frame its thumbnail comes from (where its box is largest).
    thumbnail : (THUMB, THUMB, 3) uint8 RGB
        The face there, box grown by 1.7 (outside the frame: black).
    """

    id: int
    ranges: list[tuple[int, int]] = field(default_factory=list)
    count: int = 0
    size: tuple[float, float] = (0.0, 0.0)
    max_size: tuple[float, float] = (0.0, 0.0)
    thumb_frame: int = -1
    thumbnail: np.ndarray | None = field(default=None, repr=False)

    @property
    def first(self) -> int:
        return self.ranges[0][0]

    @property
    def last(self) -> int:
        return self.ranges[-1][1]

    def to_dict(self) -> dict:
        return {"id": self.id, "first": self.first, "last": self.last, "count": self.count,
                "ranges": [list(r) for r in self.ranges], "size": [round(v, 1) for v in self.size],
                "max_size": [round(v, 1) for v in self.max_size], "thumb_frame": self.thumb_frame}

    def describe(self) -> str:
        spans = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in self.ranges)
        return (f"face {self.id}: frames {spans} ({self.count} frames), "
                f"size {self.size[0]:.0f}x{self.size[1]:.0f} px (median landmark box; largest {self.max_size[0]:.0f}x{self.max_size[1]:.0f})")


@dataclass
class FaceListing:
    """The faces of a clip (or of a frame range of it), in id order.

    Attributes
    ----------
    input : str
    frames : int
        Frames read.
    start : int
        Index of the first frame read (``frames=(start, end)``).
    width, height : int
        Frame size, px.
    faces : list of FaceEntry
    cuts : list of int
        The frames where the tracker saw a scene cut (``scene_cut``): each starts a shot
        (clip frame indices, ascending; the first shot starts at ``start``).
    """

    input: str
    frames: int
    start: int
    width: int
    height: int
    faces: list[FaceEntry]
    cuts: list[int] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [f.id for f in self.faces]

    @property
    def shots(self) -> list[tuple[int, int]]:
        """The shots, ``(first, last)`` frame inclusive: the frames read, split at :attr:`cuts`."""
        bounds = [self.start, *self.cuts, self.start + self.frames]
        return [(a, b - 1) for a, b in zip(bounds, bounds[1:]) if b > a]

    def largest(self) -> list[int]:
        """The ids ``--faces largest`` stylizes: in each shot, the face with the largest median
        landmark box (ties → lowest id), in shot order, each id once; [] without faces.

        Per shot, not over the clip: the tracker gives new ids after a scene cut, so the one
        largest id of the clip would leave every other shot unstylized (an interview cut
        between two people, a person filmed in several shots); per shot, the main face of
        each shot is painted. Within a shot, a face the tracker lost for longer than
        ``detect_every`` frames comes back under a new id: ids the user names
        (``--faces ID,…``) can select both.
        """
        chosen: list[int] = []
        for first, last in self.shots:
            present = [f for f in self.faces if any(a <= last and b >= first for a, b in f.ranges)]
            if present:
                fid = max(present, key=lambda f: (f.size[0] * f.size[1], -f.id)).id
                if fid not in chosen:
                    chosen.append(fid)
        return chosen

    def to_dict(self) -> dict:
        return {"input": self.input, "frames": self.frames, "start": self.start, "width": self.width, "height": self.height,
                "shots": [list(s) for s in self.shots], "largest": self.largest(), "faces": [f.to_dict() for f in self.faces]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def describe(self) -> str:
        shots = len(self.shots)
        head = (f"{self.input}: {self.frames} frames{f' in {shots} shots' if shots > 1 else ''}, "
                f"{len(self.faces)} face{'' if len(self.faces) == 1 else 's'}")
        if not self.faces:
            return head + " (no face found)"
        largest = self.largest()
        which = f"face {largest[0]}" if len(largest) == 1 else f"faces {', '.join(map(str, largest))} (one per shot)"
        return "\n".join([head + f", largest: {which}"] + ["  " + f.describe() for f in self.faces])


def _thumbnail(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The square around ``box`` (x0, y0, x1, y1; frame px) grown by :data:`_THUMB_ZOOM`, scaled to THUMB px (one affine warp)."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    side = max(1.0, float(max(box[2] - box[0], box[3] - box[1])) * _THUMB_ZOOM)
    s = THUMB / side
    m = np.array([[s, 0.0, THUMB / 2.0 - s * cx], [0.0, s, THUMB / 2.0 - s * cy]], dtype=np.float64)
    return cv2.warpAffine(frame, m, (THUMB, THUMB), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def track_faces(frames: Iterable[np.ndarray], backend: LandmarkBackend, config: StylizeConfig | None = None, *, fps: float,
                start: int = 0, input: str = "", thumbnails: bool = True) -> FaceListing:
    """Track the faces of a sequence of frames as the stylizer does and list them.

    Parameters
    ----------
    frames : iterable of (H, W, 3) uint8 RGB
        The frames, in order (frame ``start`` first).
    backend : LandmarkBackend
        As the render's (:func:`~faceblit_core.faces.backends.backend_for`).
    config : StylizeConfig, optional
        The face options read: ``detect_every``, ``max_faces``, ``scene_cut``,
        ``fade_frames`` (repeated frames), ``smooth_*``.
    fps : float
        Frame rate (> 0).
    start : int, keyword-only
        Index of the first frame in the clip (frame ranges are reported in the clip's numbers).
    input : str, keyword-only
        Name reported.
    thumbnails : bool, keyword-only
        Keep a thumbnail per face (False: the ids only, for a render's pre-pass).

    Returns
    -------
    FaceListing
    """
    config = config or StylizeConfig()
    tracker = make_tracker(backend, config, fps=fps)
    tracker.start_at(start)
    entries: dict[int, FaceEntry] = {}
    sizes: dict[int, list[tuple[float, float]]] = {}
    cuts: list[int] = []
    previous, faces = None, []
    n, width, height = 0, 0, 0
    for offset, frame in enumerate(frames):
        index = start + offset
        n += 1
        height, width = frame.shape[:2]
        if not skips_tracking(frame, previous, fade_frames=config.fade_frames):
            tracker.start_at(index)  # by the absolute index, as the stylizer does (repeats are not tracked)
            faces = tracker.update(frame)
            previous = frame
            if tracker.scene_cut_detected:
                cuts.append(index)
        # A repeated frame shows the faces of the frame it repeats (as the stylizer's output does).
        for face in faces:
            entry = entries.setdefault(face.id, FaceEntry(face.id))
            if entry.ranges and entry.ranges[-1][1] == index - 1:
                entry.ranges[-1] = (entry.ranges[-1][0], index)
            else:
                entry.ranges.append((index, index))
            entry.count += 1
            w, h = float(face.box[2] - face.box[0]), float(face.box[3] - face.box[1])
            sizes.setdefault(face.id, []).append((w, h))
            if w * h > entry.max_size[0] * entry.max_size[1]:
                entry.max_size, entry.thumb_frame = (w, h), index
                if thumbnails:
                    entry.thumbnail = _thumbnail(frame, face.box)
    for fid, entry in entries.items():
        entry.size = tuple(float(v) for v in np.median(np.array(sizes[fid]), axis=0))
    return FaceListing(input=input, frames=n, start=start, width=width, height=height, faces=[entries[k] for k in sorted(entries)],
                       cuts=cuts)


def list_faces(input: str | os.PathLike, *, config: StylizeConfig | None = None, fan_weights: str | os.PathLike | None = None,
               frames: tuple[int, int | None] | None = None, sheet: str | os.PathLike | None = None, overwrite: bool = False,
               device: str = "cpu") -> FaceListing:
    """List the tracked faces of a video or image, and optionally write their contact sheet.

    The ids are the ones ``faceblit stylize`` (:func:`faceblit_core.pipeline.stylize_video`)
    gives the same frames with the same face options (``landmarks``, ``detect_every``,
    ``max_faces``, ``scene_cut``, ``fade_frames``): give those options, and ``frames``,
    as for the render.

    Parameters
    ----------
    input : path
        Video or image (``-`` = standard input).
    config : StylizeConfig, keyword-only
        Face options (default ``StylizeConfig()``).
    fan_weights : path, keyword-only
        Weights of the ``fan`` backend.
    frames : (start, end), keyword-only
        Only frames ``start <= i < end`` (as ``stylize --frames``).
    sheet : path, keyword-only
        Write the contact sheet (:func:`contact_sheet`) here, any image format of
        :data:`faceblit_core.media.IMAGE_EXTENSIONS`; atomically, after the listing.
    overwrite : bool, keyword-only
        Replace an existing ``sheet``.
    device : str, keyword-only
        torch device of the ``fan`` backend.

    Returns
    -------
    FaceListing

    Raises
    ------
    InputError
        Unreadable input, or ``frames`` starting after its last frame (exit 3).
    OutputError
        ``sheet`` exists (without ``overwrite``), is the input, or cannot be written (exit 5).
    ConfigError, EnvironmentProblem
        Bad options, missing backend (exit 2, 6).
    """
    # media is imported here, not at the top: the faces package is imported by media's users' users
    # (style, stylizer) and stays free of ffmpeg plumbing unless a clip is listed.
    from faceblit_core import media

    config = config or StylizeConfig()
    start, end = frames if frames is not None else (0, None)
    name = str(input)
    with contextlib.ExitStack() as stack:
        if name == "-":
            input = stack.enter_context(media.spooled_stdin())
        info = media.probe(input)
        if sheet is not None:
            media.check_output(sheet, overwrite=overwrite, inputs=[input], image=True)
        if info.n_frames and start >= info.n_frames:
            raise InputError(f"{input}: --frames {start}:{'' if end is None else end} starts after the last frame (the video has {info.n_frames})")
        backend = backend_for(config, fan_weights, device, video=not info.is_image)
        reader = media.iter_frames(info, start=start, end=end)
        stack.callback(getattr(reader, "close", lambda: None))
        listing = track_faces(reader, backend, config, fps=float(info.fps) if info.fps else 25.0, start=start, input=name)
        if sheet is not None:
            media.write_image(sheet, contact_sheet(listing), overwrite=overwrite, inputs=[input])
    return listing


def contact_sheet(listing: FaceListing, *, columns: int = 4) -> np.ndarray:
    """One picture with a thumbnail per face id, the id written on it and its frames below.

    Parameters
    ----------
    listing : FaceListing
        With thumbnails (:func:`track_faces` with ``thumbnails=True``).
    columns : int, keyword-only
        Thumbnails per row (≥ 1).

    Returns
    -------
    (rows·(THUMB + 28) + 8, cols·(THUMB + 8) + 8, 3) uint8 RGB
        Grey background; without faces, one cell saying so.
    """
    pad, caption = 8, 28
    cells = listing.faces
    n = max(1, len(cells))
    cols = max(1, min(columns, n))
    rows = (n + cols - 1) // cols
    sheet = np.full((rows * (THUMB + caption) + pad, cols * (THUMB + pad) + pad, 3), 48, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if not cells:
        cv2.putText(sheet, "no face", (pad + 30, pad + THUMB // 2), font, 0.8, (230, 230, 230), 2, cv2.LINE_AA)
        return sheet
    for k, entry in enumerate(cells):
        y, x = pad + (k // cols) * (THUMB + caption), pad + (k % cols) * (THUMB + pad)
        if entry.thumbnail is not None:
            sheet[y : y + THUMB, x : x + THUMB] = entry.thumbnail
        label = str(entry.id)
        (tw, th), base = cv2.getTextSize(label, font, 1.2, 3)
        cv2.rectangle(sheet, (x, y), (x + tw + 12, y + th + base + 10), (0, 0, 0), thickness=cv2.FILLED)
        cv2.putText(sheet, label, (x + 6, y + th + 6), font, 1.2, (255, 255, 0), 3, cv2.LINE_AA)
        text = f"{entry.first}-{entry.last} ({entry.count}f)"
        cv2.putText(sheet, text, (x + 2, y + THUMB + 19), font, 0.5, (230, 230, 230), 1, cv2.LINE_AA)
    return sheet
