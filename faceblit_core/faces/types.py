"""The face every landmark source produces, the backend protocol, and face-box geometry.

Every face is described by 68 iBUG/dlib points in frame px (``docs/ARCHITECTURE.md``,
"faces"): :class:`Face` holds them with a box, a score and a track id;
:class:`LandmarkBackend` is what a landmark source must offer (``backends/``);
:func:`box_from_points` maps fitted points back to a detector-shaped box (the
mean shape it uses, :data:`MEAN_SHAPE`, also drives :mod:`.tracking`'s pose/shape
split); :func:`box_iou` and :func:`inter_ocular` are the box overlap and the
eye distance everything normalises by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from faceblit_core.checks import check_array

__all__ = [
    "N_POINTS",
    "MEAN_SHAPE",
    "Face",
    "LandmarkBackend",
    "box_from_points",
    "box_iou",
    "inter_ocular",
    "check_frame",
]

#: Number of points of the iBUG 68-point layout.
N_POINTS = 68

#: Mean 68-point shape of dlib's predictor output relative to the HOG detector box:
#: ``(point - box centre) / box side``, median over 261 HOG detections (the shared
#: clips every 7th frame, the exemplars and photos); measured by
#: ``bench/landmarks.py --calibrate``. It maps fitted points back to a box of the
#: proportions the predictor was trained on (tracking, CNN-box refinement).
MEAN_SHAPE = np.array(
    [
        -0.4865, -0.1645, -0.4826, -0.0475, -0.4635, 0.0774, -0.4288, 0.1968, -0.3736, 0.3050,
        -0.3069, 0.4032, -0.2181, 0.4733, -0.1153, 0.5251, 0.0048, 0.5448, 0.1221, 0.5243,
        0.2145, 0.4595, 0.2945, 0.3746, 0.3586, 0.2773, 0.3977, 0.1669, 0.4204, 0.0541,
        0.4359, -0.0676, 0.4440, -0.1892, -0.3784, -0.2990, -0.3183, -0.3458, -0.2347, -0.3680,
        -0.1500, -0.3633, -0.0718, -0.3320, 0.0815, -0.3292, 0.1641, -0.3617, 0.2481, -0.3746,
        0.3299, -0.3664, 0.3807, -0.3183, 0.0116, -0.2258, 0.0138, -0.1484, 0.0160, -0.0718,
        0.0160, 0.0097, -0.0801, 0.0792, -0.0336, 0.0961, 0.0116, 0.1061, 0.0618, 0.0956,
        0.1030, 0.0807, -0.2894, -0.1988, -0.2379, -0.2287, -0.1743, -0.2287, -0.1169, -0.1910,
        -0.1768, -0.1821, -0.2394, -0.1811, 0.1308, -0.1890, 0.1887, -0.2323, 0.2488, -0.2375,
        0.2952, -0.2065, 0.2510, -0.1798, 0.1901, -0.1801, -0.1678, 0.2540, -0.1019, 0.2065,
        -0.0348, 0.1817, 0.0116, 0.1931, 0.0611, 0.1815, 0.1192, 0.2067, 0.1823, 0.2471,
        0.1177, 0.2994, 0.0602, 0.3243, 0.0081, 0.3317, -0.0459, 0.3258, -0.1061, 0.3000,
        -0.1400, 0.2523, -0.0370, 0.2371, 0.0094, 0.2394, 0.0602, 0.2387, 0.1533, 0.2486,
        0.0580, 0.2619, 0.0077, 0.2664, -0.0392, 0.2605,
    ],
    dtype=np.float64,
).reshape(N_POINTS, 2)
MEAN_SHAPE_CENTRED = MEAN_SHAPE - MEAN_SHAPE.mean(axis=0)
#: Squared norm of the centred mean shape (the denominator of the least-squares fits).
MEAN_SHAPE_NORM2 = float((MEAN_SHAPE_CENTRED**2).sum())
#: Inter-ocular distance of the mean shape, box units.
MEAN_SHAPE_IOD = float(np.linalg.norm(MEAN_SHAPE[36:42].mean(axis=0) - MEAN_SHAPE[42:48].mean(axis=0)))


def box_from_points(points: np.ndarray) -> np.ndarray:
    """Square face box of HOG-detector proportions that best explains 68 fitted points.

    Least-squares fit of ``points ≈ c + s · m`` (centre ``c``, side ``s``, no rotation)
    where ``m`` is the predictor's mean shape in box-normalised coordinates measured
    on faces found by dlib's HOG detector. The box it returns is what the HOG
    detector would most likely have reported for that face, so the shape predictor
    (trained on HOG boxes) can be re-run in it: this drives tracking and the
    refinement of CNN-detector boxes.

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        ``(x, y)`` frame px.

    Returns
    -------
    box : ndarray, shape (4,), float32
        ``(x0, y0, x1, y1)`` frame px (edges), ``x1 - x0 == y1 - y0``.

    Raises
    ------
    ValueError
        Wrong shape.

    References
    ----------
    Kazemi & Sullivan 2014, "One millisecond face alignment with an ensemble of
    regression trees", Sec. 2.1 (the cascade starts from the mean shape placed in
    the detector box). Dalal & Triggs 2005 (HOG detector).
    """
    check_array(points, "landmarks", shape=(N_POINTS, 2))
    p = np.asarray(points, dtype=np.float64)
    pc = p - p.mean(axis=0)
    side = float((pc * MEAN_SHAPE_CENTRED).sum()) / MEAN_SHAPE_NORM2
    side = max(side, 1e-3)
    centre = p.mean(axis=0) - side * MEAN_SHAPE.mean(axis=0)
    half = side / 2.0
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half], dtype=np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes, in [0, 1]."""
    ix = max(0.0, min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0])))
    iy = max(0.0, min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1])))
    inter = ix * iy
    area_a = max(0.0, float(a[2] - a[0])) * max(0.0, float(a[3] - a[1]))
    area_b = max(0.0, float(b[2] - b[0])) * max(0.0, float(b[3] - b[1]))
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the eye centres (means of points 36–41 and 42–47), px.

    Parameters
    ----------
    points : ndarray, shape (68, 2) or (..., 68, 2), float
        iBUG/dlib order.

    Returns
    -------
    float
        Inter-ocular distance in the points' px (for a batch, of the last face).

    References
    ----------
    Sagonas et al. 2016, "300 Faces In-The-Wild Challenge", Sec. 5 (NME normalisation).
    """
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(p[..., 36:42, :].mean(axis=-2) - p[..., 42:48, :].mean(axis=-2), axis=-1).reshape(-1)[-1])


def check_frame(frame: np.ndarray) -> np.ndarray:
    """A backend's input frame, checked and C-contiguous.

    Parameters
    ----------
    frame : ndarray, shape (H, W, 3), uint8
        RGB.

    Returns
    -------
    ndarray
        ``frame`` itself when already C-contiguous, else a contiguous copy.

    Raises
    ------
    ValueError
        Not ``(H, W, 3) uint8``.
    """
    check_array(frame, "frame", shape=(None, None, 3), dtype=np.uint8)
    # dlib's numpy wrapper and cv2 need C-contiguous memory
    return np.ascontiguousarray(frame)


@dataclass
class Face:
    """One face in one image.

    Attributes
    ----------
    points : ndarray, shape (68, 2), float32
        Landmarks ``(x, y)`` in frame px, iBUG/dlib order (jaw 0–16, brows 17–26,
        nose 27–35, eyes 36–47, mouth 48–67).
    box : ndarray, shape (4,), float32
        Face box ``(x0, y0, x1, y1)`` in frame px (edges), as the detector reports
        it or, for tracked faces, :func:`box_from_points` of the points.
    score : float
        Detector confidence (dlib HOG: SVM margin, ~0–3; dlib CNN: MMOD confidence;
        FAN: mean heatmap peak in [0, 1]); tracked faces carry the score of their
        last detection; 0.0 for a plain :meth:`LandmarkBackend.fit`.
    id : int
        Track id, stable while :class:`FaceTracker` follows the face; −1 untracked.
    """

    points: np.ndarray
    box: np.ndarray
    score: float = 0.0
    id: int = -1

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float32)
        self.box = np.ascontiguousarray(self.box, dtype=np.float32).reshape(-1)
        check_array(self.points, "Face.points", shape=(N_POINTS, 2))
        check_array(self.box, "Face.box", shape=(4,))
        self.score = float(self.score)
        self.id = int(self.id)

    @property
    def area(self) -> float:
        """Box area, px²."""
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def copy(self, **changes: Any) -> "Face":
        """A deep copy with ``changes`` applied."""
        kw = dict(points=self.points.copy(), box=self.box.copy(), score=self.score, id=self.id)
        kw.update(changes)
        return Face(**kw)


@runtime_checkable
class LandmarkBackend(Protocol):
    """What :class:`~faceblit_core.faces.tracking.FaceTracker` and the pipeline need from a landmark source.

    ``name`` is the registry name. ``detect(frame)`` runs full face detection on a
    ``(H, W, 3) uint8`` RGB frame and returns every face found (largest first, ``id``
    −1). ``fit(frame, box)`` fits 68 points inside a given ``(x0, y0, x1, y1)`` box
    (frame px, HOG-box proportions, see :func:`box_from_points`) — the cheap step
    used while tracking. Backends may also offer ``detect_near(frame, box) ->
    list[Face]`` (detection restricted to the surroundings of a box), which the
    tracker uses to confirm a track the full detector missed.
    """

    name: str

    def detect(self, frame: np.ndarray) -> list[Face]: ...

    def fit(self, frame: np.ndarray, box: np.ndarray) -> Face: ...
