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

__all__ = ["draw_landmarks", "ImageLandmarks", "landmarks_of_image"]

def draw_landmarks(
    image: np.ndarray,
    points: np.ndarray,
    *,
    numbers: bool = True,
    color: tuple[int, int, int] = (0, 255, 0),
    box: np.ndarray | None = None,
) -> np.ndarray:
    """Draw 68 landmarks (dots, optionally their indices) on a copy of an image.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB image.
    points : ndarray, shape (68, 2), float
        ``(x, y)`` image px.
    numbers : bool, keyword-only
        Write each point's index next to it (``cv2.putText``).
    color : (int, int, int), keyword-only
        RGB colour of the dots; numbers are drawn in a contrasting colour.
    box : ndarray, shape (4,), optional, keyword-only
        Also draw this ``(x0, y0, x1, y1)`` box.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        The annotated copy; sizes scale with the inter-ocular distance.

    Raises
    ------
    ValueError
        Wrong shapes or dtype.
    """
    check_array(image, "image", shape=(None, None, 3), dtype=np.uint8)
    check_array(points, "landmarks", shape=(N_POINTS, 2))
    out = np.ascontiguousarray(image).copy()
    pts = np.asarray(points, dtype=np.float64)
    iod = max(inter_ocular(pts), 8.0)
    radius = max(1, int(round(iod / 40)))
    font = max(0.25, iod / 250)
    thick = max(1, int(round(iod / 120)))
    text_color = tuple(255 - c for c in color)
    if box is not None:
        b = np.asarray(box, dtype=np.float64)
        cv2.rectangle(out, (int(round(b[0])), int(round(b[1]))), (int(round(b[2])), int(round(b[3]))), color, thick)
    for i, (x, y) in enumerate(pts):
        c = (int(round(x)), int(round(y)))
        cv2.circle(out, c, radius, color, -1, cv2.LINE_AA)
        if numbers:
            org = (c[0] + radius + 1, c[1] - radius - 1)
            cv2.putText(out, str(i), org, cv2.FONT_HERSHEY_SIMPLEX, font, text_color, thick + 1, cv2.LINE_AA)
            cv2.putText(out, str(i), org, cv2.FONT_HERSHEY_SIMPLEX, font, color, thick, cv2.LINE_AA)
    return out


@dataclass
class ImageLandmarks:
    """Result of :func:`landmarks_of_image`: the faces found and the files written."""

    path: str
    faces: list
    drawn: str | None = None
    saved: str | None = None

    def describe(self) -> str:
        lines = [f"{self.path}: {len(self.faces)} face(s)"]
        for face in self.faces:
            x0, y0, x1, y1 = (float(v) for v in face.box)
            lines.append(f"  face {face.id}: box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}), score {face.score:.2f}, inter-ocular {inter_ocular(face.points):.1f} px")
        if self.drawn:
            lines.append(f"drawn: {self.drawn}")
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
        Write a PNG with the numbered points of every face.
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
        canvas = image
        for face in faces:
            canvas = draw_landmarks(canvas, face.points, box=face.box)
        write_image(draw, canvas, overwrite=overwrite)
        result.drawn = str(draw)
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
