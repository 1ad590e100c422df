"""Landmark files: FaceBlit's 68-line text format, JSON, and per-frame JSON for videos.

Formats
-------
Point files (one face, 68 iBUG/dlib points, frame px, see ``docs/ARCHITECTURE.md``):

* text (any extension but ``.json``), FaceBlit's format: 68 lines ``x y``
  (whitespace- or comma-separated numbers), optionally preceded by a line ``68``;
  blank lines and trailing whitespace are ignored;
* JSON: ``[[x, y], ...]`` or ``{"landmarks": [[x, y], ...]}``.

Per-frame files (every face of every video frame, for reproducible renders)::

    {"frames": [[{"points": [[x, y] * 68], "box": [x0, y0, x1, y1],
                  "score": s, "id": n}, ...],   # frame 0
                ...]}                           # frame 1, ...

``box``, ``score`` and ``id`` are optional on reading (box defaults to the box
of the points, score to 1.0, id to -1).

Every problem with a file a user gave raises :class:`~faceblit_core.errors.StyleError`
(exit code 4, "bad landmark file") with a one-line message naming the file and,
where it applies, the line, frame or face.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from faceblit_core.errors import InputError, OutputError, StyleError
from faceblit_core.faces.types import N_POINTS, Face, box_from_points

__all__ = [
    "load_landmarks",
    "save_landmarks",
    "load_frame_landmarks",
    "save_frame_landmarks",
    "parse_landmarks_text",
    "check_points_inside",
]


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def parse_landmarks_text(text: str, *, source: str = "<text>") -> np.ndarray:
    """Parse FaceBlit's landmark text format.

    Parameters
    ----------
    text : str
        68 lines ``x y`` (numbers separated by whitespace or one comma), optionally
        preceded by a line holding the count ``68``. Blank lines and trailing
        whitespace are ignored.
    source : str, keyword-only
        Name used in error messages (usually the file path).

    Returns
    -------
    points : ndarray, shape (68, 2), float32
        ``(x, y)`` in px of the image the landmarks belong to.

    Raises
    ------
    StyleError
        A line that is not two numbers (message gives the 1-based line number),
        a non-finite value, or a count other than 68.

    References
    ----------
    Texler et al. 2021, "FaceBlit: Instant Real-time Example-based Style Transfer to
    Facial Videos", Sec. 4 (the exemplars' landmark files).
    """
    rows: list[tuple[float, float]] = []
    header_seen = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        tokens = line.replace(",", " ").split()
        if not rows and not header_seen and len(tokens) == 1:
            # FaceBlit files may start with the point count.
            header_seen = True
            try:
                count = int(tokens[0])
            except ValueError:
                raise StyleError(f"{source}:{lineno}: expected the point count 68 or 'x y', got {line[:40]!r}") from None
            if count != N_POINTS:
                raise StyleError(f"{source}:{lineno}: expected {N_POINTS} landmarks, the header says {count}")
            continue
        if len(tokens) != 2:
            raise StyleError(f"{source}:{lineno}: expected two numbers 'x y', got {line[:40]!r}")
        try:
            x, y = float(tokens[0]), float(tokens[1])
        except ValueError:
            raise StyleError(f"{source}:{lineno}: expected two numbers 'x y', got {line[:40]!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise StyleError(f"{source}:{lineno}: landmark is not a finite number ({line[:40]!r})")
        rows.append((x, y))
    if len(rows) != N_POINTS:
        raise StyleError(f"{source}: expected {N_POINTS} landmarks, got {len(rows)}")
    return np.asarray(rows, dtype=np.float32)


def _points_from_json(obj: Any, *, source: str) -> np.ndarray:
    if isinstance(obj, dict):
        if "landmarks" not in obj:
            raise StyleError(f"{source}: expected a list of [x, y] or an object with key 'landmarks'")
        obj = obj["landmarks"]
    return _point_list(obj, source=source)


def _point_list(obj: Any, *, source: str) -> np.ndarray:
    if not isinstance(obj, list):
        raise StyleError(f"{source}: expected a list of {N_POINTS} [x, y] pairs, got {type(obj).__name__}")
    if len(obj) != N_POINTS:
        raise StyleError(f"{source}: expected {N_POINTS} landmarks, got {len(obj)}")
    out = np.empty((N_POINTS, 2), dtype=np.float64)
    for i, pt in enumerate(obj):
        if (
            not isinstance(pt, (list, tuple))
            or len(pt) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pt)
        ):
            raise StyleError(f"{source}: landmark {i}: expected [x, y] numbers, got {json.dumps(pt)[:40]}")
        if not all(math.isfinite(v) for v in pt):
            raise StyleError(f"{source}: landmark {i}: not a finite number")
        out[i] = pt
    return out.astype(np.float32)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"landmark file not found: {path}") from None
    except UnicodeDecodeError:
        raise StyleError(f"{path}: not a text file (expected 68 lines 'x y' or JSON)") from None
    except OSError as exc:
        raise InputError(f"cannot read landmark file {path}: {exc.strerror or exc}") from None


def _load_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        # parse_constant turns NaN/Infinity (which Python's json accepts) into errors
        return json.loads(text, parse_constant=lambda c: float("nan"))
    except json.JSONDecodeError as exc:
        raise StyleError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def load_landmarks(path: str | os.PathLike, *, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read the 68 landmarks of one face from a text or JSON file.

    Parameters
    ----------
    path : str or path-like
        ``*.json`` → JSON (``[[x, y], ...]`` or ``{"landmarks": [...]}``); anything else →
        FaceBlit's text format (see :func:`parse_landmarks_text`).
    image_size : (width, height) of int, optional, keyword-only
        When given, every point must lie in the image: ``-0.5 <= x <= width - 0.5``
        and likewise for y (pixel (x, y) covers [x − 0.5, x + 0.5)).

    Returns
    -------
    points : ndarray, shape (68, 2), float32
        ``(x, y)`` in px of the image, iBUG/dlib order.

    Raises
    ------
    InputError
        The file is missing or unreadable.
    StyleError
        Wrong number of points (message gives 68 and the count), a non-number
        (message gives the line), NaN/inf, or a point outside the image.

    References
    ----------
    Texler et al. 2021, FaceBlit, Sec. 4 (68-point landmarks of the exemplar).
    """
    p = Path(path)
    if _is_json(p):
        points = _points_from_json(_load_json(p), source=str(p))
    else:
        points = parse_landmarks_text(_read_text(p), source=str(p))
    if image_size is not None:
        check_points_inside(points, image_size, source=str(p))
    return points


def check_points_inside(points: np.ndarray, image_size: tuple[int, int], *, source: str) -> None:
    """Raise :class:`StyleError` naming the first landmark outside a ``(width, height)`` image.

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        ``(x, y)`` px.
    image_size : (int, int)
        ``(width, height)`` px; the valid range is ``[-0.5, size - 0.5]`` on each axis.
    source : str, keyword-only
        Name used in the message.

    Raises
    ------
    StyleError
        When a point lies outside.
    """
    w, h = int(image_size[0]), int(image_size[1])
    bad = (points[:, 0] < -0.5) | (points[:, 0] > w - 0.5) | (points[:, 1] < -0.5) | (points[:, 1] > h - 0.5)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        x, y = points[i]
        raise StyleError(
            f"{source}: landmark {i} ({x:g}, {y:g}) lies outside the {w}x{h} image "
            f"({int(bad.sum())} of {len(points)} points outside)"
        )


def _fmt(v: float) -> str:
    # Integral values print without decimals so files stay byte-compatible with FaceBlit's.
    s = f"{float(v):.3f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_points(points: Any) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.shape != (N_POINTS, 2):
        raise ValueError(f"landmarks shape: expected (68, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("landmarks: expected finite values, got NaN or inf")
    return arr


def save_landmarks(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write 68 landmarks: ``*.json`` as ``{"landmarks": [[x, y], ...]}``, else FaceBlit text.

    The text form is 68 lines ``x y`` without a header, numbers with at most three
    decimals (integral values without a decimal point, as in FaceBlit's own files).
    The file is written to a temporary name and renamed, so it is never half-written.

    Parameters
    ----------
    path : str or path-like
        Destination.
    points : array_like, shape (68, 2), float
        ``(x, y)`` px.

    Raises
    ------
    ValueError
        Wrong shape or non-finite values (a programming error).
    OutputError
        The file cannot be written.

    References
    ----------
    Texler et al. 2021, FaceBlit, Sec. 4.
    """
    arr = _check_points(points)
    p = Path(path)
    if _is_json(p):
        text = json.dumps({"landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in arr]}) + "\n"
    else:
        text = "".join(f"{_fmt(x)} {_fmt(y)}\n" for x, y in arr)
    _atomic_write(p, text)


def _face_from_json(obj: Any, *, source: str) -> Face:
    if not isinstance(obj, dict) or "points" not in obj:
        raise StyleError(f"{source}: expected an object with 'points' (and optional 'box', 'score', 'id')")
    points = _point_list(obj["points"], source=source)
    box_obj = obj.get("box")
    if box_obj is None:
        box = box_from_points(points)
    else:
        if (
            not isinstance(box_obj, list)
            or len(box_obj) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box_obj)
        ):
            raise StyleError(f"{source}: 'box' must be 4 finite numbers [x0, y0, x1, y1]")
        box = np.asarray(box_obj, dtype=np.float32)
    score = obj.get("score", 1.0)
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        raise StyleError(f"{source}: 'score' must be a finite number")
    fid = obj.get("id", -1)
    if not isinstance(fid, int) or isinstance(fid, bool):
        raise StyleError(f"{source}: 'id' must be an integer")
    return Face(points=points, box=box, score=float(score), id=fid)


def load_frame_landmarks(path: str | os.PathLike) -> list[list[Face]]:
    """Read a per-frame landmark file (all faces of every frame of a video).

    Parameters
    ----------
    path : str or path-like
        JSON ``{"frames": [[{"points", "box", "score", "id"}, ...], ...]}``; see the
        module docstring.

    Returns
    -------
    frames : list of list of Face
        ``frames[t]`` holds the faces of frame ``t`` (possibly empty).

    Raises
    ------
    InputError
        Missing or unreadable file.
    StyleError
        Not valid JSON or not this structure; the message names frame and face.
    """
    p = Path(path)
    data = _load_json(p)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise StyleError(f"{p}: expected a per-frame landmark file {{\"frames\": [[face, ...], ...]}}")
    frames: list[list[Face]] = []
    for t, faces in enumerate(data["frames"]):
        if not isinstance(faces, list):
            raise StyleError(f"{p}: frame {t}: expected a list of faces")
        frames.append([_face_from_json(f, source=f"{p}: frame {t} face {k}") for k, f in enumerate(faces)])
    return frames


def save_frame_landmarks(
    path: str | os.PathLike,
    frames: Iterable[Sequence[Face]],
    *,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
) -> None:
    """Write the faces of every frame as a per-frame landmark file.

    Parameters
    ----------
    path : str or path-like
        Destination (JSON, whatever the extension).
    frames : iterable of sequence of Face
        ``frames[t]`` = faces of frame ``t`` as returned by
        :meth:`faceblit_core.faces.tracking.FaceTracker.update`.
    fps : float, optional, keyword-only
        Frame rate of the video, stored as ``"fps"`` (informative; readers ignore it).
    size : (width, height), optional, keyword-only
        Frame size in px, stored as ``"width"``, ``"height"`` (informative).

    Raises
    ------
    ValueError
        A face with non-finite points (a programming error).
    OutputError
        The file cannot be written.
    """
    out = []
    for faces in frames:
        row = []
        for f in faces:
            pts = _check_points(f.points)
            row.append(
                {
                    "points": [[round(float(x), 3), round(float(y), 3)] for x, y in pts],
                    "box": [round(float(v), 3) for v in np.asarray(f.box, dtype=np.float64)],
                    "score": round(float(f.score), 4),
                    "id": int(f.id),
                }
            )
        out.append(row)
    doc: dict[str, Any] = {}
    if fps is not None:
        doc["fps"] = float(fps)
    if size is not None:
        doc["width"], doc["height"] = int(size[0]), int(size[1])
    doc["frames"] = out
    _atomic_write(Path(path), json.dumps(doc, separators=(",", ":")) + "\n")
