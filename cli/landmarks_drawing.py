"""What ``faceblit landmarks IMAGE`` does besides detecting: draw the points and save them.

Lets a user check (``--draw``) and correct (``--save``, then edit) the landmarks of
a style exemplar. Detection and the file formats are the library's
(:mod:`faceblit_core.faces`); only the command's drawing, file writing and summary
live here, beside the CLI that is their one user.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceblit_core.checks import check_array
from faceblit_core.errors import OutputError, StyleError
from faceblit_core.faces import (
    N_POINTS,
    Face,
    box_from_points,
    detect_style_landmarks,
    get_backend,
    inter_ocular,
    save_frame_landmarks,
    save_landmarks,
)
from faceblit_core.media import atomic_output, read_image, write_image

__all__ = ["draw_landmarks", "ImageLandmarks", "landmarks_of_image", "PARTS"]

#: The parts of the 68-point iBUG/dlib layout: (name, first, last + 1, closed, RGB colour).
#: One colour per part, chosen to stay apart from each other and from skin tones.
PARTS = (
    ("jaw", 0, 17, False, (255, 215, 0)),
    ("right brow", 17, 22, False, (255, 120, 0)),
    ("left brow", 22, 27, False, (255, 120, 0)),
    ("nose bridge", 27, 31, False, (0, 200, 255)),
    ("nostrils", 31, 36, False, (0, 200, 255)),
    ("right eye", 36, 42, True, (0, 255, 90)),
    ("left eye", 42, 48, True, (0, 255, 90)),
    ("outer lips", 48, 60, True, (255, 40, 160)),
    ("inner lips", 60, 68, True, (150, 90, 255)),
)

#: Eyes closer than this (px) make ``faceblit landmarks --draw`` enlarge the picture
#: (up to :data:`MAX_ENLARGE` times) so that the 68 numbers fit legibly.
LEGIBLE_INTER_OCULAR = 200.0
MAX_ENLARGE = 4.0


def _part_colors() -> np.ndarray:
    colors = np.zeros((N_POINTS, 3), np.int32)
    for _, a, b, _, color in PARTS:
        colors[a:b] = color
    return colors


def _label_spots(pts: np.ndarray, sizes: list, gap: float, image_size: tuple[int, int]) -> list:
    """Greedy placement of one label per point, each away from the points and the labels placed before.

    A label goes out from the centre of its point's part (eyes, lips) or of the face
    (jaw, brows, nose), at ``gap`` and then further (up to 7×), turning up to ±150° from that
    direction when the spot is taken: the first free spot inside the picture wins,
    else the least crowded one.

    Returns a list of ``(x0, y0, x1, y1)`` boxes (float, image px), one per point.
    """
    face_centre = pts.mean(axis=0)
    centre_of = np.empty_like(pts)
    for name, a, b, _, _ in PARTS:
        centre_of[a:b] = pts[a:b].mean(axis=0) if name in ("right eye", "left eye", "outer lips", "inner lips") else face_centre
    placed: list = []
    w, h = image_size
    for i, p in enumerate(pts):
        tw, th = sizes[i]
        d = p - centre_of[i]
        base = np.arctan2(d[1], d[0]) if np.hypot(*d) > 1e-6 else -np.pi / 2
        best, best_cost = None, np.inf
        for dist, turn in ((dist, turn) for dist in (1.0, 1.7, 2.5, 3.5, 5.0, 7.0) for turn in (0, 20, -20, 45, -45, 70, -70, 95, -95, 120, -120, 150, -150)):
            u = np.array([np.cos(base + np.radians(turn)), np.sin(base + np.radians(turn))])
            cx, cy = p + u * (gap * dist + 0.5 * np.hypot(tw * u[0], th * u[1]))
            box = (cx - tw / 2, cy - th / 2, cx + tw / 2, cy + th / 2)
            pad = gap * 0.25
            hit_points = int(np.sum((pts[:, 0] > box[0] - pad) & (pts[:, 0] < box[2] + pad) & (pts[:, 1] > box[1] - pad) & (pts[:, 1] < box[3] + pad)))
            hit_labels = sum(1 for q in placed if box[0] < q[2] and q[0] < box[2] and box[1] < q[3] and q[1] < box[3])
            outside = box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h
            if not (hit_labels or hit_points or outside):
                best = box  # the first free spot, nearest the preferred direction
                break
            cost = 10 * hit_labels + 3 * hit_points + 5 * outside + dist + abs(turn) / 90
            if cost < best_cost:
                best, best_cost = box, cost
        placed.append(best)
    return placed


def label_layout(points: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int, float, list]:
    """Sizes and label boxes of :func:`draw_landmarks` for one face.

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        ``(x, y)`` px.
    image_size : (width, height)
        px.

    Returns
    -------
    radius, thickness : int
        Dot radius and line thickness, px (from the inter-ocular distance).
    font_scale : float
        ``cv2.FONT_HERSHEY_SIMPLEX`` scale: digits about ``22 · font_scale`` px high, at least ~10 px.
    boxes : list of (x0, y0, x1, y1)
        One label box per point, px.
    """
    pts = np.asarray(points, dtype=np.float64)
    iod = max(inter_ocular(pts), 8.0)
    thick = max(1, int(round(iod / 150)))
    radius = max(2, int(round(iod / 60)))
    font = float(np.clip(iod / 320, 0.45, 1.4))
    sizes = []
    for i in range(N_POINTS):
        (tw, th), base = cv2.getTextSize(str(i), cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        sizes.append((tw + 2 * thick + 2, th + base + 2 * thick))
    gap = max(radius * 2.5, 0.6 * sizes[0][1])
    return radius, thick, font, _label_spots(pts, sizes, gap, image_size)


def draw_landmarks(
    image: np.ndarray,
    points: np.ndarray,
    *,
    numbers: bool = True,
    box: np.ndarray | None = None,
) -> np.ndarray:
    """Draw 68 landmarks for a person to check: parts as coloured lines, numbered points.

    The jaw, brows, nose bridge and nostrils are drawn as open polylines, the eyes
    and the outer and inner lips as closed ones, each part in its colour
    (:data:`PARTS`). Each point gets its index in a label placed away from the
    crowd (pushed out from its part's or the face's centre, never over another
    point or label where a free spot exists) with a thin leader line to it. Sizes
    (dots, lines, font) follow the inter-ocular distance; the font never falls
    under about 10 px: for small faces :func:`landmarks_of_image` enlarges the
    picture first.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB image.
    points : ndarray, shape (68, 2), float
        ``(x, y)`` image px, iBUG/dlib order.
    numbers : bool, keyword-only
        Write each point's index (``cv2.putText``, white on a dark outline).
    box : ndarray, shape (4,), optional, keyword-only
        Also draw this ``(x0, y0, x1, y1)`` detection box (thin, white).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        The annotated copy.

    Raises
    ------
    ValueError
        Wrong shapes or dtype.
    """
    check_array(image, "image", shape=(None, None, 3), dtype=np.uint8)
    check_array(points, "landmarks", shape=(N_POINTS, 2))
    out = np.ascontiguousarray(image).copy()
    pts = np.asarray(points, dtype=np.float64)
    radius, thick, font, spots = label_layout(pts, (out.shape[1], out.shape[0]))
    colors = _part_colors()
    if box is not None:
        b = np.asarray(box, dtype=np.float64)
        cv2.rectangle(out, (int(round(b[0])), int(round(b[1]))), (int(round(b[2])), int(round(b[3]))), (255, 255, 255), 1, cv2.LINE_AA)
    shift = 4  # sub-pixel drawing: 1/16 px
    fixed = np.round(pts * (1 << shift)).astype(np.int32)
    for _, a, b, closed, color in PARTS:
        cv2.polylines(out, [fixed[a:b]], closed, (0, 0, 0), thick + 2, cv2.LINE_AA, shift)
        cv2.polylines(out, [fixed[a:b]], closed, color, thick, cv2.LINE_AA, shift)
    if numbers:
        face_ = cv2.FONT_HERSHEY_SIMPLEX
        for i, (x0, y0, x1, y1) in enumerate(spots):
            # Leader line from the dot's edge to the nearest point of the label's box.
            target = np.array([np.clip(pts[i, 0], x0, x1), np.clip(pts[i, 1], y0, y1)])
            if np.hypot(*(target - pts[i])) > radius + 1:
                c = tuple(int(v) for v in colors[i])
                cv2.line(out, tuple(np.round(pts[i] * 16).astype(int)), tuple(np.round(target * 16).astype(int)), c, 1, cv2.LINE_AA, shift)
        for i, (x0, y0, x1, y1) in enumerate(spots):
            (tw, th), base = cv2.getTextSize(str(i), face_, font, thick)
            org = (int(round((x0 + x1) / 2 - tw / 2)), int(round((y0 + y1) / 2 + th / 2)))
            cv2.putText(out, str(i), org, face_, font, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.putText(out, str(i), org, face_, font, (255, 255, 255), thick, cv2.LINE_AA)
    for i, p in enumerate(fixed):
        cv2.circle(out, tuple(p), radius << shift, (0, 0, 0), -1, cv2.LINE_AA, shift)
        cv2.circle(out, tuple(p), max(1, radius - 1) << shift, tuple(int(v) for v in colors[i]), -1, cv2.LINE_AA, shift)
    return out


@dataclass
class ImageLandmarks:
    """Result of :func:`landmarks_of_image`: the faces found and the files written."""

    path: str
    faces: list
    drawn: str | None = None
    saved: str | None = None
    draw_scale: float = 1.0

    def describe(self) -> str:
        lines = [f"{self.path}: {len(self.faces)} face(s)"]
        for face in self.faces:
            x0, y0, x1, y1 = (float(v) for v in face.box)
            lines.append(f"  face {face.id}: box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}), score {face.score:.2f}, inter-ocular {inter_ocular(face.points):.1f} px")
        if self.drawn:
            enlarged = f" (enlarged {self.draw_scale:.2f}x so the numbers are legible)" if self.draw_scale > 1 else ""
            lines.append(f"drawn: {self.drawn}{enlarged}")
        if self.saved:
            lines.append(f"saved: {self.saved} (the largest face, FaceBlit's 68 lines 'x y')" if self.saved.endswith(".txt") else f"saved: {self.saved}")
        return "\n".join(lines)


def landmarks_of_image(
    path: str | os.PathLike,
    *,
    backend: str = "dlib",
    fan_weights: str | os.PathLike | None = None,
    draw: str | os.PathLike | None = None,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> ImageLandmarks:
    """Detect the 68 landmarks of every face in an image; optionally draw them and save them.

    What ``faceblit landmarks IMAGE`` does: lets a user check (``draw``) and correct
    (``save``, then edit) the landmarks of a style exemplar. Exemplars (paintings) get
    every detector fallback of :func:`faceblit_core.faces.detect_style_landmarks` when plain detection
    finds nothing.

    Parameters
    ----------
    path : path
        Image file.
    backend : str, keyword-only
        ``dlib`` or ``fan`` (:data:`faceblit_core.faces.BACKENDS`).
    fan_weights : path, keyword-only
        Weights of the ``fan`` backend.
    draw : path, keyword-only
        Write a picture with every face's parts drawn as lines and its points
        numbered (:func:`draw_landmarks`); enlarged (up to 4×) when the smallest
        face's eyes are under 200 px apart, so its numbers stay legible.
    save : path, keyword-only
        ``.txt`` (FaceBlit's format, the largest face) or ``.json`` (every face).
    overwrite : bool, keyword-only
        Replace existing ``draw``/``save`` files.

    Returns
    -------
    ImageLandmarks
        Faces (largest first) and the files written.

    Raises
    ------
    InputError
        The image cannot be read.
    StyleError
        No face found (the message says how to supply landmarks by hand).
    OutputError
        A file to write exists without ``overwrite``, or its folder is not writable.
    """
    image = read_image(path)
    options = {"weights": fan_weights} if backend == "fan" else {}
    faces = sorted(get_backend(backend, **options).detect(image), key=lambda f: -f.area)
    if not faces:
        try:
            points = detect_style_landmarks(image)
        except StyleError:  # its message is for stylize's exemplar (--style-landmarks): say it for this command
            raise StyleError(
                f"{path}: no face found (every detector tried); for a style exemplar, write its 68 landmarks by hand "
                f"(68 lines 'x y', iBUG/dlib order, pixels) into {Path(path).stem}.lm.txt beside it"
            ) from None
        faces = [Face(points=points, box=box_from_points(points), score=0.0, id=0)]
    faces = [f.copy(id=i) for i, f in enumerate(faces)]
    result = ImageLandmarks(path=str(path), faces=faces)
    if draw is not None:
        # Small faces: enlarge the picture so that the numbers of the smallest face fit legibly.
        smallest = min(max(inter_ocular(f.points), 1.0) for f in faces)
        scale = float(np.clip(LEGIBLE_INTER_OCULAR / smallest, 1.0, MAX_ENLARGE))
        canvas = image
        if scale > 1.0:
            h, w = image.shape[:2]
            canvas = cv2.resize(image, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_CUBIC)
            scale = canvas.shape[1] / w
        for face in faces:
            # Pixel centres at integer coordinates: x' = (x + 0.5)·s − 0.5.
            canvas = draw_landmarks(canvas, (face.points + 0.5) * scale - 0.5, box=(face.box + 0.5) * scale - 0.5)
        write_image(draw, canvas, overwrite=overwrite)
        result.drawn = str(draw)
        result.draw_scale = scale
    if save is not None:
        suffix = Path(save).suffix.lower()
        if suffix not in (".txt", ".json"):
            raise OutputError(f"{save}: landmarks are saved as .txt (FaceBlit's format) or .json")
        with atomic_output(save, overwrite=overwrite) as tmp:
            if suffix == ".txt":
                save_landmarks(tmp, faces[0].points)
            else:
                save_frame_landmarks(tmp, [faces])
        result.saved = str(save)
    return result
