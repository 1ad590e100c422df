"""Is a style exemplar usable? Head pose, face size, face outside the image, flat background.

FaceBlit copies the exemplar's own pixels onto the target face through a
positional guide built from the two sets of 68 landmarks (Texler et al. 2021,
§3). That works when the exemplar shows a near-frontal face, large enough to
hold brush strokes, entirely inside the picture. This module measures those
properties from the landmarks (and a little of the image) and gives a verdict:

* ``ok`` — nothing to say;
* ``warn`` — usable, but the result will suffer; one line says what and what to do;
* ``error`` — hopeless (the output would be garbage): ``prepare-style`` and
  ``stylize`` refuse it with exit 4 unless ``--force``.

Pure functions, no I/O: :func:`check_exemplar` returns an :class:`ExemplarReport`;
the caller (``faceblit_core.style``) raises or warns, the CLI prints.

In-plane rotation (roll) alone is NOT an error and the exemplar is not rotated:
the positional guide is a moving-least-squares *similarity* map between the two
landmark sets (Schaefer et al. 2006), which absorbs a rotation exactly, and the
exemplar's strokes turn with its face. A roll beyond 15° only earns a warning
because dlib's frontal face detector, trained on upright faces, places points on
a tilted face less reliably (on ``het.png`` turned 45° in the image plane it
returned points with a roll of 20° and a yaw of 19°): the user should check
them with ``faceblit landmarks S --draw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from faceblit_core.checks import check_array

__all__ = ["ExemplarReport", "ExemplarWarning", "check_exemplar", "head_pose", "face_size", "face_outline",
           "outside_fraction", "background_fraction", "LIMITS"]

#: Thresholds of the verdict, one source of truth (the README quotes them).
#: ``error`` values make an exemplar hopeless, ``warn`` values poor.
LIMITS = {
    "min_width_error": 80.0,      # jaw width (point 0 to 16), px: under this the face has no strokes to copy
    "min_width_warn": 160.0,      # px: strokes get blurred when such a face is enlarged onto a video face
    "yaw_error": 35.0,            # |yaw|, degrees: beyond it one cheek is hidden, the far side is background
    "yaw_warn": 20.0,             # degrees
    "roll_warn": 15.0,            # |roll|, degrees (never an error, see the module docstring): detection drifts beyond it
    "outside_error": 0.25,        # fraction of the face outline outside the picture
    "outside_warn": 0.03,
    "background_warn": 0.15,      # fraction of the face outline that is flat background colour
}


class ExemplarWarning(UserWarning):
    """A usable but poor style exemplar (:func:`check_exemplar` verdict ``warn``)."""


@dataclass(frozen=True)
class ExemplarReport:
    """What :func:`check_exemplar` measured and concluded.

    Attributes
    ----------
    yaw, roll : float
        Head pose, degrees. ``yaw`` > 0: the face turns towards the picture's
        left (its nose points left); ``roll`` > 0: the eye line rises to the left
        (the head tilts clockwise in the picture).
    face_width : float
        Jaw width, landmark 0 to 16, px.
    inter_ocular : float
        Distance of the two eye centres, px.
    outside : float
        Fraction in [0, 1] of the face outline (:func:`face_outline`) outside the picture.
    background : float
        Fraction in [0, 1] of the face outline inside the picture that is flat and of
        the picture border's colour (:func:`background_fraction`); NaN when not measured.
    verdict : str
        ``"ok"``, ``"warn"`` or ``"error"``.
    problems : list of str
        One message per problem found (what is wrong and what to do), worst first.
    """

    yaw: float
    roll: float
    face_width: float
    inter_ocular: float
    outside: float
    background: float
    verdict: str
    problems: list = field(default_factory=list)

    def message(self) -> str:
        """All problems in one line (empty when the verdict is ``ok``)."""
        return "; ".join(self.problems)

    def describe(self) -> str:
        """The measures and the verdict in one line, e.g. for ``prepare-style`` and notes."""
        bg = "n/a" if np.isnan(self.background) else f"{self.background:.0%}"
        text = (f"yaw {self.yaw:+.0f}°, roll {self.roll:+.0f}°, face {self.face_width:.0f} px wide "
                f"(eyes {self.inter_ocular:.0f} px apart), outside {self.outside:.0%}, flat background {bg}: {self.verdict}")
        return text + (f" ({self.message()})" if self.problems else "")


def _points(points: np.ndarray) -> np.ndarray:
    check_array(points, "landmarks", shape=(68, 2))
    pts = np.asarray(points, dtype=np.float64)
    if not np.isfinite(pts).all():
        raise ValueError("landmarks: NaN or infinite values")
    return pts


def head_pose(points: np.ndarray) -> tuple[float, float]:
    """Yaw and roll of a face from its 68 landmarks, degrees.

    Roll is the angle of the line from the right eye's centre (points 36–41, on
    the picture's left) to the left eye's (42–47). Yaw comes from the asymmetry
    of the nose tip (30) between the two sides of the jaw, measured along the eye
    line: for the jaw pairs (0, 16), (1, 15), (2, 14) with horizontal distances
    ``l`` (left point to nose tip) and ``r`` (nose tip to right point),
    ``a = (l − r) / (l + r)``, and ``yaw = atan(mean a)``. That is the projection
    of a nose standing out of the face plane by about the half-width of the
    face, the occluding cheek contour included: a = 0 frontal, a ≈ 1 in a
    three-quarter view (45°, the nose tip on the far cheek's outline).

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        ``(x, y)`` px, iBUG/dlib order.

    Returns
    -------
    yaw, roll : float
        Degrees; see :class:`ExemplarReport` for the signs. Yaw is an estimate
        (±5–10°: faces and painters differ), roll is exact for the landmarks given.

    Raises
    ------
    ValueError
        Wrong shape, NaN or infinite values.
    """
    pts = _points(points)
    eye_r, eye_l = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
    dx, dy = eye_l - eye_r
    roll = float(np.degrees(np.arctan2(-dy, dx)))
    axis = np.array([dx, dy]) / max(np.hypot(dx, dy), 1e-9)  # along the eye line
    x = pts @ axis
    asym = []
    for i, j in ((0, 16), (1, 15), (2, 14)):
        left, right = x[30] - x[i], x[j] - x[30]
        asym.append((left - right) / max(left + right, 1e-9))
    a = float(np.clip(np.mean(asym), -1.5, 1.5))  # beyond ±1 the nose is outside the jaw: a profile
    return float(np.degrees(np.arctan(a))), roll


def face_size(points: np.ndarray) -> tuple[float, float]:
    """Jaw width (landmark 0 to 16) and inter-ocular distance (eye centres), px.

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        ``(x, y)`` px.

    Returns
    -------
    face_width, inter_ocular : float
        px.
    """
    pts = _points(points)
    return float(np.linalg.norm(pts[16] - pts[0])), float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))


def face_outline(points: np.ndarray) -> np.ndarray:
    """The face region as a convex polygon: the jaw line and the brows raised to the hair-line.

    The 68 points stop at the brows; FaceBlit's face mask covers the forehead too,
    so the brow points (17–26) are moved up, perpendicular to the eye line, by one
    inter-ocular distance (the forehead's usual height).

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        ``(x, y)`` px.

    Returns
    -------
    ndarray, shape (N, 2), float32
        The convex hull's vertices, px (may lie outside the picture).
    """
    pts = _points(points)
    eye_r, eye_l = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
    along = eye_l - eye_r
    up = np.array([along[1], -along[0]])  # eye line turned 90°: towards the forehead in image coordinates
    forehead = pts[17:27] + up
    hull = cv2.convexHull(np.vstack([pts[0:17], forehead]).astype(np.float32))
    return hull.reshape(-1, 2)


def outside_fraction(points: np.ndarray, image_size: tuple[int, int]) -> float:
    """Fraction of the face outline (:func:`face_outline`) that lies outside the picture.

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        ``(x, y)`` px.
    image_size : (width, height)
        px.

    Returns
    -------
    float
        In [0, 1]; 0 when the whole outline is inside.
    """
    hull = face_outline(points)
    area = float(cv2.contourArea(hull))
    if area <= 0:
        return 1.0
    w, h = image_size
    rect = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]], np.float32)
    inside, _ = cv2.intersectConvexConvex(hull, rect)
    outside = 1.0 - inside / area
    return 0.0 if outside < 1e-6 else float(min(outside, 1.0))  # the two areas differ by rounding alone when inside


def background_fraction(image: np.ndarray, points: np.ndarray, *, tolerance: float = 18.0, flat: float = 4.0) -> float:
    """Fraction of the face outline (inside the picture) that looks like the painting's background.

    A pixel counts as background when it is flat (grey-level standard deviation
    over 7×7 below ``flat``), its colour is within ``tolerance`` (Euclidean RGB)
    of the median colour of the picture's border (the outer 2 % on each side), and
    such pixels connect it to the picture's border —
    e.g. the black ground of a portrait whose turned head brings it into the
    cheek's place. A painting whose face and ground share one flat colour is
    over-counted; the measure only ever warns.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB exemplar.
    points : ndarray, shape (68, 2), float
        ``(x, y)`` px.
    tolerance, flat : float, keyword-only
        RGB distance and standard deviation thresholds, 8-bit levels.

    Returns
    -------
    float
        In [0, 1]; 0 when no part of the outline is inside the picture.
    """
    check_array(image, "image", shape=(None, None, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    b = max(1, int(round(0.02 * min(h, w))))
    border = np.concatenate([image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3), image[:, :b].reshape(-1, 3), image[:, -b:].reshape(-1, 3)])
    ground = np.median(border, axis=0)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(face_outline(points)).astype(np.int32), 1)
    inside = mask.astype(bool)
    if not inside.any():
        return 0.0
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = cv2.blur(gray, (7, 7))
    std = np.sqrt(np.maximum(cv2.blur(gray * gray, (7, 7)) - mean * mean, 0.0))
    close = np.linalg.norm(image.astype(np.float32) - ground, axis=2) < tolerance
    ground_like = (close & (std < flat)).astype(np.uint8)
    # Only ground connected to the picture's border counts: unpainted paper left as a
    # highlight inside a watercolour face (prisma) is not background.
    n, labels = cv2.connectedComponents(ground_like, connectivity=8)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    background = np.isin(labels, edge)
    return float(np.mean(background[inside]))


def check_exemplar(image: np.ndarray | None, points: np.ndarray, *, image_size: tuple[int, int] | None = None) -> ExemplarReport:
    """Measure a style exemplar and judge whether FaceBlit can use it (thresholds: :data:`LIMITS`).

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8, or None
        RGB exemplar; None skips the background measure (then ``image_size`` is needed).
    points : ndarray, shape (68, 2), float
        Its landmarks, ``(x, y)`` px (they may lie outside the picture).
    image_size : (width, height), optional, keyword-only
        px; default the image's.

    Returns
    -------
    ExemplarReport
        Measures, verdict (``error`` when the face is under 80 px wide, turned
        beyond 35°, or a quarter of it is outside the picture; ``warn`` for the
        milder limits) and one message per problem saying what to do.

    Raises
    ------
    ValueError
        Wrong shapes, non-finite points, neither ``image`` nor ``image_size``.

    References
    ----------
    Texler et al. 2021, FaceBlit, §3–4 (the exemplar: a frontal portrait with 68 landmarks).
    """
    pts = _points(points)
    if image_size is None:
        if image is None:
            raise ValueError("check_exemplar: give the image or its size")
        image_size = (image.shape[1], image.shape[0])
    yaw, roll = head_pose(pts)
    width, iod = face_size(pts)
    outside = outside_fraction(pts, image_size)
    background = background_fraction(image, pts) if image is not None else float("nan")
    L = LIMITS
    errors, warns = [], []
    if width < L["min_width_error"]:
        errors.append(f"the face is only {width:.0f} px wide (under {L['min_width_error']:.0f}): crop the painting closer around the face "
                      f"or use a larger scan, so that the face is at least {L['min_width_warn']:.0f} px wide")
    elif width < L["min_width_warn"]:
        warns.append(f"the face is only {width:.0f} px wide: its strokes will look blurred on larger video faces; "
                     f"a scan with the face at least {L['min_width_warn']:.0f} px wide gives crisper strokes")
    side = "left" if yaw > 0 else "right"
    if abs(yaw) > L["yaw_error"]:
        errors.append(f"the head is turned about {abs(yaw):.0f}° to the {side} (beyond {L['yaw_error']:.0f}°): its far cheek is hidden "
                      f"and would be painted with background; choose a near-frontal portrait")
    elif abs(yaw) > L["yaw_warn"]:
        warns.append(f"the head is turned about {abs(yaw):.0f}° to the {side}: the far cheek may get background strokes; "
                     f"a more frontal portrait works better")
    if outside > L["outside_error"]:
        errors.append(f"{outside:.0%} of the face lies outside the picture: use an exemplar that shows the whole face")
    elif outside > L["outside_warn"]:
        warns.append(f"{outside:.0%} of the face (forehead or chin) lies outside the picture: faces will get edge strokes there; "
                     f"a picture with room around the face works better")
    if abs(roll) > L["roll_warn"]:
        warns.append(f"the head is tilted {abs(roll):.0f}° in the picture: fine for the synthesis, but check the detected landmarks "
                     f"with 'faceblit landmarks S --draw check.png'")
    if background == background and background > L["background_warn"]:
        warns.append(f"{background:.0%} of the face region looks like flat background: check the landmarks with "
                     f"'faceblit landmarks S --draw check.png' and fix them in NAME.lm.txt")
    verdict = "error" if errors else ("warn" if warns else "ok")
    return ExemplarReport(yaw=yaw, roll=roll, face_width=width, inter_ocular=iod, outside=outside,
                          background=background, verdict=verdict, problems=errors + warns)
