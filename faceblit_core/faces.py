"""Facial landmarks: detection, tracking and temporal smoothing (DESIGN §3).

Every face is described by 68 iBUG/dlib points in frame px (``docs/ARCHITECTURE.md``,
"faces"). Three backends produce them, all behind the :class:`LandmarkBackend`
protocol and the explicit :data:`BACKENDS` registry:

``dlib`` (default, offline, CPU)
    dlib's HOG face detector on a downscaled frame, the 68-point regression-tree
    shape predictor at full size (both from the ``face-recognition-models`` wheel).
    Where HOG finds nothing (paintings) it retries with one 2x upsampling, then
    with dlib's CNN (MMOD) detector, whose boxes are mapped to the proportions
    the predictor was trained on (:data:`CNN_TO_HOG`, :func:`box_from_points`).
``fan``
    FAN heatmap regression (``face_alignment``, torch, CPU or CUDA) on boxes from
    dlib. Weights come from a local file; a network model can be injected
    (the documented seam of :class:`FanBackend`).
a per-frame JSON file
    Replays landmarks saved earlier (:func:`save_frame_landmarks`), for
    reproducible renders: ``get_backend("clip.landmarks.json")``.

:class:`FaceTracker` turns per-frame fits into stable, smoothed tracks: it
detects once, then fits the predictor in the box of the previous points,
re-detects every ``detect_every`` frames or when a fit degrades, keeps ids by
box overlap, smooths the points with One Euro filters (:class:`OneEuroFilter`,
applied to face shape and head pose separately by :class:`LandmarkSmoother`)
and resets at scene cuts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import cv2
import numpy as np

from faceblit_core.checks import check, check_array
from faceblit_core.errors import ConfigError, EnvironmentProblem, InputError, StyleError
from faceblit_core.landmarks_io import (
    N_POINTS,
    load_frame_landmarks,
    load_landmarks,
    save_frame_landmarks,
    save_landmarks,
)

__all__ = [
    "Face",
    "LandmarkBackend",
    "BACKENDS",
    "get_backend",
    "backend_names",
    "DlibBackend",
    "FanBackend",
    "FrameLandmarksBackend",
    "FaceTracker",
    "OneEuroFilter",
    "load_landmarks",
    "save_landmarks",
    "load_frame_landmarks",
    "save_frame_landmarks",
    "detect_style_landmarks",
    "draw_landmarks",
    "box_from_points",
    "box_iou",
    "inter_ocular",
    "nme",
    "landmark_jitter",
    "LandmarkSmoother",
    "similarity_to_points",
    "CNN_TO_HOG",
]

# ----------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------

#: Mean 68-point shape of dlib's predictor output relative to the HOG detector box:
#: ``(point - box centre) / box side``, median over 261 HOG detections (the shared
#: clips every 7th frame, the exemplars and photos); measured by
#: ``bench/landmarks.py --calibrate``. It maps fitted points back to a box of the
#: proportions the predictor was trained on (tracking, CNN-box refinement).
_BOX_MEAN_SHAPE = np.array(
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
_MS_CENTRED = _BOX_MEAN_SHAPE - _BOX_MEAN_SHAPE.mean(axis=0)
_MS_NORM2 = float((_MS_CENTRED**2).sum())
#: Inter-ocular distance of the mean shape, box units.
_IOD_MEAN = float(np.linalg.norm(_BOX_MEAN_SHAPE[36:42].mean(axis=0) - _BOX_MEAN_SHAPE[42:48].mean(axis=0)))


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
    side = float((pc * _MS_CENTRED).sum()) / _MS_NORM2
    side = max(side, 1e-3)
    centre = p.mean(axis=0) - side * _BOX_MEAN_SHAPE.mean(axis=0)
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


def nme(points: np.ndarray, reference: np.ndarray) -> float:
    """Normalised mean error: mean point distance / inter-ocular distance of ``reference``.

    Parameters
    ----------
    points, reference : ndarray, shape (68, 2), float
        Estimated and reference landmarks, same image px.

    Returns
    -------
    float
        Dimensionless, ≥ 0 (0.03 ≈ 3 % of the eye distance).

    Raises
    ------
    ValueError
        Wrong shapes.

    References
    ----------
    Sagonas et al. 2016, "300 Faces In-The-Wild Challenge", Sec. 5.
    """
    check_array(points, "landmarks", shape=(N_POINTS, 2))
    check_array(reference, "reference landmarks", shape=(N_POINTS, 2))
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    return float(np.linalg.norm(p - r, axis=1).mean() / max(inter_ocular(r), 1e-9))


def landmark_jitter(sequence: np.ndarray) -> float:
    """Mean non-rigid frame-to-frame landmark motion, in inter-ocular distances.

    For each pair of consecutive frames, the least-squares similarity (rotation,
    uniform scale, translation) taking frame t−1's points to frame t's is removed;
    the mean remaining point displacement is divided by frame t's inter-ocular
    distance; the result is the mean over all pairs. Head motion does not count;
    landmark noise and genuine expression/out-of-plane changes do.

    Parameters
    ----------
    sequence : ndarray, shape (T, 68, 2), float
        One face's landmarks over T ≥ 2 consecutive frames, px.

    Returns
    -------
    float
        Dimensionless, ≥ 0.

    Raises
    ------
    ValueError
        Wrong shape or fewer than 2 frames.

    References
    ----------
    Umeyama 1991, IEEE PAMI 13(4) (similarity fit); Casiez et al. 2012, "1€ Filter",
    Sec. 4 (jitter vs. lag trade-off).
    """
    seq = np.asarray(sequence, dtype=np.float64)
    check_array(seq, "landmark sequence", shape=(None, N_POINTS, 2))
    check(len(seq) >= 2, "landmark sequence length", ">= 2 frames", len(seq))
    out = []
    for prev, cur in zip(seq[:-1], seq[1:]):
        pc, cc = prev - prev.mean(axis=0), cur - cur.mean(axis=0)
        n2 = float((pc**2).sum())
        a = float((pc[:, 0] * cc[:, 0] + pc[:, 1] * cc[:, 1]).sum()) / n2
        b = float((pc[:, 0] * cc[:, 1] - pc[:, 1] * cc[:, 0]).sum()) / n2
        pred = np.stack([a * pc[:, 0] - b * pc[:, 1], b * pc[:, 0] + a * pc[:, 1]], axis=1)
        out.append(np.linalg.norm(cc - pred, axis=1).mean() / max(inter_ocular(cur), 1e-9))
    return float(np.mean(out))


def _check_frame(frame: np.ndarray) -> np.ndarray:
    check_array(frame, "frame", shape=(None, None, 3), dtype=np.uint8)
    # dlib's numpy wrapper and cv2 need C-contiguous memory
    return np.ascontiguousarray(frame)


# ----------------------------------------------------------------------------------------
# Face and backend protocol
# ----------------------------------------------------------------------------------------


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
    """What :class:`FaceTracker` and the pipeline need from a landmark source.

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


# ----------------------------------------------------------------------------------------
# dlib backend
# ----------------------------------------------------------------------------------------

_MODEL_FILES = {
    "predictor": "shape_predictor_68_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
}
_dlib_cache: dict[str, Any] = {}
_dlib_lock = threading.Lock()
#: Smallest image side (px) the CNN detector is run on. Its smallest face is ~40 px,
#: so nothing can be found below that, and dlib aborts (and may corrupt its heap)
#: when its filters do not fit the image (below ~10 px), e.g. on a 2x2 video.
_CNN_MIN_SIDE = 40


def _models_dir() -> Path:
    # Importing face_recognition_models runs `import pkg_resources`, which current
    # setuptools no longer ships; locating the package without importing it works.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(
            "dlib landmark models not found: install the 'face-recognition-models' package "
            "(it ships shape_predictor_68_face_landmarks.dat)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _hog_detector(dlib: Any) -> Any:
    """dlib's frontal-face HOG detector, kept decoded in the cache folder.

    ``dlib.get_frontal_face_detector()`` decodes a compressed model built into
    dlib: ~0.4 s of CPU, a tenth of a whole one-still run. Its saved form (150 KB,
    ``models/`` of the cache folder, one file per dlib version) loads in ~2 ms and
    detects identically. A missing or damaged file is rebuilt; an unwritable
    folder only costs the time.
    """
    from faceblit_core.cache import model_file

    path = model_file(f"dlib-{dlib.__version__}-frontal-face.svm")
    try:
        return dlib.fhog_object_detector(str(path))
    except RuntimeError:  # absent or damaged (dlib raises RuntimeError for both)
        pass
    model = dlib.get_frontal_face_detector()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(str(tmp))
        os.replace(tmp, path)  # concurrent runs never read half a file
    except (OSError, RuntimeError):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return model


def _dlib_model(kind: str) -> Any:
    """Load a dlib model once per process ("hog", "predictor" or "cnn")."""
    with _dlib_lock:
        if kind in _dlib_cache:
            return _dlib_cache[kind]
        try:
            import dlib
        except ImportError:
            raise EnvironmentProblem("dlib is not installed (pip install dlib-bin)") from None
        if kind == "hog":
            model = _hog_detector(dlib)
        else:
            path = _models_dir() / _MODEL_FILES[kind]
            if not path.is_file():
                raise EnvironmentProblem(f"dlib model file missing: {path} (from the 'face-recognition-models' package)")
            model = dlib.shape_predictor(str(path)) if kind == "predictor" else dlib.cnn_face_detection_model_v1(str(path))
        _dlib_cache[kind] = model
        return model


#: How dlib's CNN (MMOD) boxes relate to HOG boxes of the same face, median over 54
#: faces found by both (``bench/landmarks.py --calibrate``): HOG side / CNN side, and
#: the HOG centre minus the CNN centre as fractions of the CNN side (x, y).
CNN_TO_HOG = (1.093, 0.034, 0.093)


def _cnn_to_hog(box: np.ndarray) -> np.ndarray:
    scale, dx, dy = CNN_TO_HOG
    side = float(box[2] - box[0])
    cx = float(box[0] + box[2]) / 2 + dx * side
    cy = float(box[1] + box[3]) / 2 + dy * side
    half = side * scale / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float32)


def _to_rect(box: np.ndarray):
    import dlib

    # Box edges (x0 = left edge) → dlib's inclusive pixel indices.
    l, t = int(round(float(box[0]) + 0.5)), int(round(float(box[1]) + 0.5))
    r, b = int(round(float(box[2]) + 0.5)) - 1, int(round(float(box[3]) + 0.5)) - 1
    return dlib.rectangle(l, t, max(r, l + 1), max(b, t + 1))


def _from_rect(rect, sx: float, sy: float) -> np.ndarray:
    # dlib's inclusive indices in an image scaled by (sx, sy) → edges in the full frame.
    return np.array(
        [rect.left() / sx - 0.5, rect.top() / sy - 0.5, (rect.right() + 1) / sx - 0.5, (rect.bottom() + 1) / sy - 0.5],
        dtype=np.float32,
    )


class DlibBackend:
    """dlib HOG detector + 68-point shape predictor, with fallbacks for paintings.

    Parameters
    ----------
    detect_size : int, keyword-only
        Full detection runs on the frame downscaled so its longest side is at most
        this many px (the HOG window is 80 px, so faces down to ~80·W/detect_size
        frame px are found without upsampling). Default 512.
    upsample_fallback : bool, keyword-only
        When HOG finds nothing, retry it with one 2x upsampling (~4x the time).
    cnn_fallback : bool, keyword-only
        When HOG still finds nothing, run dlib's CNN (MMOD) detector (~1 s at 512 px
        on 2 CPU cores) and refit its boxes (see :meth:`detect`).
    robust_fit : bool, keyword-only
        Fit in boxes jittered by ±10 % size and ±5 % position (27 per box; in
        :meth:`detect`, around both the detector box and the box of its first fit)
        and take the per-coordinate median (~30–60x the fit time): more accurate on
        paintings, used for style exemplars. Default False.
    device : str, keyword-only
        ``"auto"`` or ``"cpu"``; dlib runs on the CPU only.

    Raises
    ------
    EnvironmentProblem
        dlib or the model files are missing, or ``device`` asks for CUDA.

    References
    ----------
    Dalal & Triggs 2005 (HOG detector); King 2015, "Max-Margin Object Detection"
    (CNN detector); Kazemi & Sullivan 2014 (shape predictor).
    """

    name = "dlib"

    def __init__(
        self,
        *,
        detect_size: int = 512,
        upsample_fallback: bool = True,
        cnn_fallback: bool = True,
        robust_fit: bool = False,
        device: str = "auto",
    ) -> None:
        check(isinstance(detect_size, int) and detect_size >= 64, "detect_size", "an integer >= 64", detect_size)
        if device not in ("auto", "cpu"):
            raise EnvironmentProblem(
                f"the dlib landmark backend runs on the CPU only (device {device!r}); use --landmarks fan for CUDA"
            )
        self.detect_size = detect_size
        self.upsample_fallback = upsample_fallback
        self.cnn_fallback = cnn_fallback
        self.robust_fit = robust_fit
        self._predictor = _dlib_model("predictor")
        self._hog = _dlib_model("hog")

    # -- detection ---------------------------------------------------------------------------
    def _downscale(self, frame: np.ndarray) -> tuple[np.ndarray, float, float]:
        h, w = frame.shape[:2]
        s = min(1.0, self.detect_size / max(h, w))
        if s >= 1.0:
            return frame, 1.0, 1.0
        sw, sh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        return small, sw / w, sh / h

    def detect_boxes(self, frame: np.ndarray) -> tuple[list[np.ndarray], list[float], bool]:
        """Face boxes by the fallback chain, without landmarks.

        Parameters
        ----------
        frame : ndarray, shape (H, W, 3), uint8
            RGB.

        Returns
        -------
        boxes : list of ndarray, shape (4,), float32
            ``(x0, y0, x1, y1)`` frame px, HOG-box proportions (CNN boxes are mapped
            to them with the calibrated :data:`CNN_TO_HOG`).
        scores : list of float
            Detector scores.
        from_cnn : bool
            True when the boxes come from the CNN detector.

        References
        ----------
        Dalal & Triggs 2005; King 2015.
        """
        frame = _check_frame(frame)
        small, sx, sy = self._downscale(frame)
        rects, scores, _ = self._hog.run(small, 0, 0.0)
        if not rects and self.upsample_fallback:
            rects, scores, _ = self._hog.run(small, 1, 0.0)
        if rects:
            return [_from_rect(r, sx, sy) for r in rects], [float(s) for s in scores], False
        if self.cnn_fallback and min(small.shape[:2]) >= _CNN_MIN_SIDE:
            dets = _dlib_model("cnn")(small, 0)
            return [_cnn_to_hog(_from_rect(d.rect, sx, sy)) for d in dets], [float(d.confidence) for d in dets], True
        return [], [], False

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Detect every face and fit its 68 landmarks (largest first).

        HOG on the frame downscaled to ``detect_size``; if nothing, HOG with one
        upsampling; if nothing, the CNN detector. CNN boxes are tighter and higher
        than the HOG boxes the predictor was trained on, so they are first mapped to
        HOG proportions (:data:`CNN_TO_HOG`). With ``robust_fit`` the box is also
        refined: the median fit over boxes jittered around the detector box and
        around :func:`box_from_points` of its first fit (HOG proportions again).

        Parameters
        ----------
        frame : ndarray, shape (H, W, 3), uint8
            RGB frame.

        Returns
        -------
        faces : list of Face
            ``id`` −1, ``score`` = detector score; ``[]`` when no face is found.

        Raises
        ------
        ValueError
            ``frame`` is not ``(H, W, 3) uint8``.

        References
        ----------
        Kazemi & Sullivan 2014, Sec. 2 (predictor); King 2015 (MMOD CNN detector).
        """
        frame = _check_frame(frame)
        boxes, scores, _ = self.detect_boxes(frame)
        faces = []
        for box, score in zip(boxes, scores):
            points = self._fit_once(frame, box)
            if self.robust_fit:
                # Jitter around the detector box and around the box of its fit: the two
                # disagree most on paintings, where the median of both sets is steadier.
                points = self._median_fit(frame, [box, box_from_points(points)])
            faces.append(Face(points=points, box=box, score=score))
        faces.sort(key=lambda f: -f.area)
        return faces

    def detect_near(self, frame: np.ndarray, box: np.ndarray) -> list[Face]:
        """HOG detection restricted to twice the box around its centre, at a scale where the face is ~110 px.

        Cheap (a few ms) and more sensitive than full-frame detection (the crop is
        scaled so the face fills the detector window comfortably, and the threshold
        is lowered by 0.3); used by :class:`FaceTracker` to confirm a track.

        Parameters
        ----------
        frame : ndarray, shape (H, W, 3), uint8
            RGB frame.
        box : ndarray, shape (4,), float
            ``(x0, y0, x1, y1)`` frame px.

        Returns
        -------
        faces : list of Face
            Faces found there, with landmarks, largest first.
        """
        frame = _check_frame(frame)
        h, w = frame.shape[:2]
        side = float(max(box[2] - box[0], box[3] - box[1]))
        cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
        x0, y0 = max(0, int(cx - side)), max(0, int(cy - side))
        x1, y1 = min(w, int(math.ceil(cx + side))), min(h, int(math.ceil(cy + side)))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return []
        s = 110.0 / max(side, 1.0)
        crop = frame[y0:y1, x0:x1]
        cw, ch = max(1, int(round((x1 - x0) * s))), max(1, int(round((y1 - y0) * s)))
        crop = cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        rects, scores, _ = self._hog.run(np.ascontiguousarray(crop), 0, -0.3)
        faces = []
        for r, sc in zip(rects, scores):
            b = _from_rect(r, cw / (x1 - x0), ch / (y1 - y0)) + np.array([x0, y0, x0, y0], dtype=np.float32)
            f = self.fit(frame, b)
            faces.append(Face(points=f.points, box=b, score=float(sc)))
        faces.sort(key=lambda f: -f.area)
        return faces

    # -- landmarks ---------------------------------------------------------------------------
    def _fit_once(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        shape = self._predictor(frame, _to_rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def fit(self, frame: np.ndarray, box: np.ndarray) -> Face:
        """Fit 68 landmarks inside ``box`` with the shape predictor at full resolution.

        Parameters
        ----------
        frame : ndarray, shape (H, W, 3), uint8
            RGB frame.
        box : array_like, shape (4,), float
            ``(x0, y0, x1, y1)`` frame px, HOG-detector proportions.

        Returns
        -------
        Face
            ``points`` (68, 2) float32 frame px, ``box`` as given, ``score`` 0.0.

        References
        ----------
        Kazemi & Sullivan 2014, "One millisecond face alignment with an ensemble of
        regression trees", Sec. 2.
        """
        frame = _check_frame(frame)
        box = np.asarray(box, dtype=np.float32).reshape(4)
        if not self.robust_fit:
            return Face(points=self._fit_once(frame, box), box=box)
        return Face(points=self._median_fit(frame, [box]), box=box)

    def _median_fit(self, frame: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        # The cascade's result depends on where its mean shape starts; the median over
        # boxes jittered by ±10 % size and ±5 % position cancels much of that.
        fits = []
        for box in boxes:
            side = float(box[2] - box[0])
            centre = (np.asarray(box[:2], dtype=np.float64) + np.asarray(box[2:], dtype=np.float64)) / 2.0
            for scale in (0.9, 1.0, 1.1):
                for dy in (-0.05, 0.0, 0.05):
                    for dx in (-0.05, 0.0, 0.05):
                        c = centre + side * np.array([dx, dy])
                        half = side * scale / 2.0
                        fits.append(self._fit_once(frame, np.r_[c - half, c + half]))
        return np.median(np.stack(fits), axis=0).astype(np.float32)


# ----------------------------------------------------------------------------------------
# FAN backend (face_alignment)
# ----------------------------------------------------------------------------------------

#: File name of face_alignment's 2D FAN weights in torch's hub cache.
FAN_WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"
FAN_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/" + FAN_WEIGHTS_FILE


def default_fan_weights() -> Path:
    """Where face_alignment keeps its weights: ``torch.hub.get_dir()/checkpoints/2DFAN4-11f355bf06.pth.tar``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / FAN_WEIGHTS_FILE


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EnvironmentProblem(f"device {device!r} asked for, but torch sees no CUDA device")
    return device


def load_fan_model(path: str | os.PathLike, *, device: str = "cpu") -> Any:
    """Build face_alignment's FAN and load a local weights file (never downloads).

    The number of stacked hourglass modules is read from the state dict
    (``m0.``, ``m1.``, … prefixes; 4 for 2DFAN4), so any FAN checkpoint loads.

    Parameters
    ----------
    path : str or path-like
        ``2DFAN4-11f355bf06.pth.tar`` or another FAN state dict (optionally under a
        ``"state_dict"`` key).
    device : str, keyword-only
        torch device.

    Returns
    -------
    torch.nn.Module
        In eval mode on ``device``; maps (N, 3, 256, 256) float in [0, 1] to a list
        of (N, 68, 64, 64) heatmaps (one per stack).

    Raises
    ------
    EnvironmentProblem
        The file is missing, unreadable or not FAN weights; the message names the
        file and where it comes from.

    References
    ----------
    Bulat & Tzimiropoulos 2017, "How far are we from solving the 2D & 3D Face
    Alignment problem?", Sec. 3 (FAN).
    """
    import re

    import torch

    p = Path(path)
    if not p.is_file():
        raise EnvironmentProblem(
            f"FAN weights not found: {p} (download {FAN_WEIGHTS_URL} on a machine with network access, "
            f"then pass --fan-weights PATH or copy it to {default_fan_weights()})"
        )
    try:
        from face_alignment.models import FAN
    except ImportError as exc:
        raise EnvironmentProblem(f"the fan landmark backend needs the 'face-alignment' package ({exc})") from None
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise EnvironmentProblem(f"cannot read FAN weights {p}: {str(exc).splitlines()[0][:200]}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EnvironmentProblem(f"cannot read FAN weights {p}: not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    stacks = {int(m.group(1)) for k in state for m in [re.match(r"m(\d+)\.", k)] if m}
    if not stacks:
        raise EnvironmentProblem(f"cannot read FAN weights {p}: no hourglass modules (not a FAN checkpoint)")
    net = FAN(max(stacks) + 1)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise EnvironmentProblem(f"cannot load FAN weights {p}: {str(exc).splitlines()[0][:200]}") from None
    return net.to(device).eval()


def _min_side(box: np.ndarray, side: float) -> np.ndarray:
    # A degenerate box (e.g. from a failed fit) would make face_alignment's crop empty.
    c = (box[:2] + box[2:]) / 2.0
    half = np.maximum((box[2:] - box[:2]) / 2.0, side / 2.0)
    return np.r_[c - half, c + half]


class FanBackend:
    """FAN landmarks (face_alignment) on boxes from dlib, CPU or CUDA.

    The seam: any ``torch.nn.Module`` mapping a ``(N, 3, 256, 256)`` float tensor
    (RGB crops in [0, 1]) to ``(N, 68, 64, 64)`` heatmaps (or a list of such, the
    last used) can be injected with ``model=``; everything around it is
    face_alignment's own pre/post-processing, as in
    ``FaceAlignment.get_landmarks_from_image`` (1.5.0): box → centre/scale
    (``CENTER_Y_OFFSET``, ``REFERENCE_SCALE``), ``utils.crop`` to 256², optional
    left-right flip averaging (``utils.flip``), ``utils.get_preds_fromhm`` back to
    frame px. Without ``model``, the weights are loaded from ``weights`` or
    :func:`default_fan_weights` (never downloaded).

    Parameters
    ----------
    weights : str or path-like, optional, keyword-only
        FAN weights file (CLI ``--fan-weights PATH``).
    model : torch.nn.Module, optional, keyword-only
        Injected network (tests, other checkpoints); ``weights`` is then ignored.
    device : str, keyword-only
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    flip_input : bool, keyword-only
        Average with the prediction on the mirrored crop (face_alignment's default;
        2x the network time).
    boxes : DlibBackend, optional, keyword-only
        Where face boxes come from (default: a :class:`DlibBackend`), so no detector
        weights need downloading.

    Raises
    ------
    EnvironmentProblem
        face_alignment/torch missing, weights file missing or invalid, CUDA asked for
        but absent.

    References
    ----------
    Bulat & Tzimiropoulos 2017, "How far are we from solving the 2D & 3D Face
    Alignment problem?", Sec. 3–4.
    """

    name = "fan"

    def __init__(
        self,
        *,
        weights: str | os.PathLike | None = None,
        model: Any = None,
        device: str = "auto",
        flip_input: bool = True,
        boxes: DlibBackend | None = None,
    ) -> None:
        try:
            import torch
            from face_alignment import utils as fa_utils
        except ImportError as exc:
            raise EnvironmentProblem(f"the fan landmark backend needs torch and face-alignment ({exc})") from None
        self._torch = torch
        self._fa = fa_utils
        self.device = _resolve_device(device)
        self.flip_input = flip_input
        if model is None:
            model = load_fan_model(weights if weights is not None else default_fan_weights(), device=self.device)
        else:
            model = model.to(self.device).eval()
        self.model = model
        self._dtype = next((p.dtype for p in model.parameters()), torch.float32)
        self._boxes = boxes if boxes is not None else DlibBackend()
        # Constants of face_alignment 1.5 (utils); older releases hard-coded the same values.
        self._ref_scale = float(getattr(fa_utils, "REFERENCE_SCALE", 195.0))
        self._y_offset = float(getattr(fa_utils, "CENTER_Y_OFFSET", 0.12))

    def _centre_scale(self, box: np.ndarray) -> tuple[np.ndarray, float]:
        # Our box edges → face_alignment's [left, top, right, bottom] pixel indices (dlib rect).
        l, t, r, b = float(box[0]) + 0.5, float(box[1]) + 0.5, float(box[2]) - 0.5, float(box[3]) - 0.5
        centre = np.array([r - (r - l) / 2.0, b - (b - t) / 2.0])
        centre[1] -= (b - t) * self._y_offset
        return centre, (r - l + b - t) / self._ref_scale

    def fit_many(self, frame: np.ndarray, boxes: list[np.ndarray]) -> list[Face]:
        """Fit 68 points in each box with one batched network call.

        Parameters
        ----------
        frame : ndarray, shape (H, W, 3), uint8
            RGB frame.
        boxes : list of ndarray, shape (4,), float
            ``(x0, y0, x1, y1)`` frame px.

        Returns
        -------
        faces : list of Face
            One per box; ``score`` = mean of the 68 heatmap maxima.

        Raises
        ------
        ValueError
            The model's output is not (N, 68, 64, 64).

        References
        ----------
        Bulat & Tzimiropoulos 2017, Sec. 3 (heatmap regression, 4x sub-sampled output).
        """
        frame = _check_frame(frame)
        if not boxes:
            return []
        torch, fa = self._torch, self._fa
        cs = [self._centre_scale(_min_side(np.asarray(b, dtype=np.float64), 16.0)) for b in boxes]
        crops = np.stack([fa.crop(frame, c, s).transpose(2, 0, 1) for c, s in cs]).astype(np.float32) / 255.0
        with torch.no_grad():
            inp = torch.from_numpy(crops).to(self.device, dtype=self._dtype)
            out = self._last(self.model(inp))
            if self.flip_input:
                out = out + fa.flip(self._last(self.model(fa.flip(inp))), is_label=True)
            heat = out.to(device="cpu", dtype=torch.float32).numpy()
        check_array(heat, "FAN heatmaps", shape=(len(boxes), N_POINTS, None, None))
        faces = []
        for i, (box, (centre, scale)) in enumerate(zip(boxes, cs)):
            res = fa.get_preds_fromhm(np.ascontiguousarray(heat[i : i + 1]), centre, scale)
            pts_img = np.asarray(res[1]).reshape(N_POINTS, 2)
            peaks = np.asarray(res[2]).reshape(-1) if len(res) > 2 else heat[i].reshape(N_POINTS, -1).max(axis=1)
            if self.flip_input:
                peaks = peaks / 2.0  # two summed heatmaps
            faces.append(Face(points=pts_img, box=np.asarray(box, dtype=np.float32), score=float(np.mean(peaks))))
        return faces

    @staticmethod
    def _last(out: Any) -> Any:
        return out[-1] if isinstance(out, (list, tuple)) else out

    def fit(self, frame: np.ndarray, box: np.ndarray) -> Face:
        """Fit 68 points in one box (see :meth:`fit_many`)."""
        return self.fit_many(frame, [np.asarray(box, dtype=np.float32)])[0]

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Boxes from dlib (:meth:`DlibBackend.detect_boxes`, with its fallbacks), landmarks from FAN; largest first."""
        frame = _check_frame(frame)
        boxes, scores, _ = self._boxes.detect_boxes(frame)
        faces = self.fit_many(frame, boxes)
        for f, s in zip(faces, scores):
            f.score = s
        faces.sort(key=lambda f: -f.area)
        return faces

    def detect_near(self, frame: np.ndarray, box: np.ndarray) -> list[Face]:
        """Local dlib detection (:meth:`DlibBackend.detect_near`), landmarks from FAN."""
        found = self._boxes.detect_near(frame, box)
        faces = self.fit_many(frame, [f.box for f in found])
        for f, g in zip(faces, found):
            f.score = g.score
        return faces


# ----------------------------------------------------------------------------------------
# Per-frame file backend
# ----------------------------------------------------------------------------------------


class FrameLandmarksBackend:
    """Replays a per-frame landmark file (:func:`save_frame_landmarks`), for reproducible renders.

    :class:`FaceTracker` recognises it and returns the stored faces of each frame
    unchanged (no tracking, no smoothing, ids from the file). Used directly,
    ``detect`` returns the faces of the next frame in order (the n-th call gets
    frame n) and ``fit`` the stored face of the current frame that overlaps the
    box most.

    Parameters
    ----------
    path : str or path-like
        JSON ``{"frames": [[{"points", "box", "score", "id"}, ...], ...]}``.

    Raises
    ------
    InputError
        Missing file.
    StyleError
        Malformed file.
    """

    name = "file"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.frames = load_frame_landmarks(self.path)
        self._cursor = 0

    def __len__(self) -> int:
        return len(self.frames)

    def faces_at(self, index: int) -> list[Face]:
        """Copies of the stored faces of frame ``index``.

        Raises
        ------
        StyleError
            The file has no entry for that frame.
        """
        if not 0 <= index < len(self.frames):
            raise StyleError(f"{self.path}: has landmarks for {len(self.frames)} frames, frame {index} asked for")
        return [f.copy() for f in self.frames[index]]

    def detect(self, frame: np.ndarray) -> list[Face]:
        """The stored faces of the next frame in order (``frame`` is not looked at)."""
        faces = self.faces_at(self._cursor)
        self._cursor += 1
        return faces

    def fit(self, frame: np.ndarray, box: np.ndarray) -> Face:
        """The stored face of the frame last returned by :meth:`detect` that overlaps ``box`` most.

        Raises
        ------
        StyleError
            That frame has no face.
        """
        index = max(0, self._cursor - 1)
        faces = self.faces_at(index)
        if not faces:
            raise StyleError(f"{self.path}: frame {index} has no face to fit")
        return max(faces, key=lambda f: box_iou(f.box, np.asarray(box, dtype=np.float32)))


# ----------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------

#: Landmark backends by name (the CLI's ``--landmarks`` choices); each factory takes
#: keyword options (see the classes). A per-frame ``.json`` file path is also
#: accepted by :func:`get_backend`.
BACKENDS: dict[str, Callable[..., LandmarkBackend]] = {
    "dlib": DlibBackend,
    "fan": FanBackend,
}


def backend_names() -> tuple[str, ...]:
    """Names in :data:`BACKENDS`, default first."""
    return tuple(BACKENDS)


def get_backend(name: str, **options: Any) -> LandmarkBackend:
    """Create a landmark backend by registry name, or a replay backend for a per-frame JSON file.

    Parameters
    ----------
    name : str
        A key of :data:`BACKENDS` (``dlib``, ``fan``) or the path of an existing
        ``*.json`` per-frame landmark file.
    **options
        Keyword options of the backend class (e.g. ``weights=``, ``device=`` for
        ``fan``). A file backend takes none.

    Returns
    -------
    LandmarkBackend

    Raises
    ------
    ConfigError
        Unknown name (the message lists the choices), or options given to a file backend.
    InputError
        A ``.json`` path that does not exist.
    StyleError
        A malformed per-frame file.
    EnvironmentProblem
        The backend's libraries or weights are missing.
    """
    if name in BACKENDS:
        return BACKENDS[name](**options)
    if name.lower().endswith(".json"):
        if not Path(name).is_file():
            raise InputError(f"landmark file not found: {name}")
        if options:
            raise ConfigError(f"landmarks: a per-frame file takes no options, got {sorted(options)}")
        return FrameLandmarksBackend(name)
    raise ConfigError(f"landmarks: expected one of {', '.join(BACKENDS)} or a per-frame .json file, got {name!r}")


# ----------------------------------------------------------------------------------------
# One Euro filter
# ----------------------------------------------------------------------------------------


class OneEuroFilter:
    """One Euro filter: an adaptive low-pass whose cutoff rises with the signal's speed.

    For each element: ``x̂_t = α(f_c)·x_t + (1 − α(f_c))·x̂_{t−1}`` with
    ``α(f) = 1 / (1 + 1/(2π f Δt))`` and ``f_c = min_cutoff + beta·|dx̂_t| / scale``,
    ``dx̂`` the speed low-passed at ``d_cutoff``. Slow motion (jitter) is smoothed
    with ``min_cutoff``; fast motion raises the cutoff, so it lags little.

    Parameters
    ----------
    min_cutoff : float, keyword-only
        Minimum cutoff frequency, Hz (> 0). Lower = steadier, more lag.
    beta : float, keyword-only
        Speed coefficient, Hz per (``scale`` units per second), ≥ 0.
    d_cutoff : float, keyword-only
        Cutoff of the speed estimate, Hz (> 0). Default 1 Hz (Casiez et al.).

    Raises
    ------
    ValueError
        Non-positive cutoffs or negative beta.

    References
    ----------
    Casiez, Roussel & Vogel 2012, "1€ Filter: A Simple Speed-based Low-pass Filter
    for Noisy Input in Interactive Systems", CHI, Sec. 3 (algorithm and tuning).
    """

    def __init__(self, *, min_cutoff: float, beta: float, d_cutoff: float = 1.0) -> None:
        check(min_cutoff > 0, "min_cutoff", "> 0 Hz", min_cutoff)
        check(beta >= 0, "beta", ">= 0", beta)
        check(d_cutoff > 0, "d_cutoff", "> 0 Hz", d_cutoff)
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the history; the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, *, scale: float = 1.0) -> np.ndarray:
        """Filter one sample.

        Parameters
        ----------
        x : ndarray, any shape, float
            The sample (e.g. 68×2 landmark coordinates, px); same shape every call.
        t : float
            Timestamp, s, strictly increasing.
        scale : float, keyword-only
            Divides the speed before ``beta`` applies (e.g. the inter-ocular distance
            in px, so ``beta`` does not depend on the face size). > 0.

        Returns
        -------
        ndarray, same shape as ``x``, float64
            Filtered sample.

        Raises
        ------
        ValueError
            ``t`` not after the previous timestamp, a shape change, or ``scale`` ≤ 0.
        """
        x = np.asarray(x, dtype=np.float64)
        check(scale > 0, "scale", "> 0", scale)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        check(x.shape == self._x.shape, "sample shape", self._x.shape, x.shape)
        dt = float(t) - self._t
        check(dt > 0, "timestamp", f"> {self._t}", t)
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * (x - self._x) / dt + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / scale
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1.0 - a) * self._x
        self._t = float(t)
        return self._x.copy()


class LandmarkSmoother:
    """One Euro smoothing of 68 landmarks split into head pose and face shape.

    Each sample is decomposed exactly as ``points = (a + i·b)·q + t`` (complex
    notation for a 2-D similarity): ``q`` (68 × 2, the 136 shape coordinates) is the
    face in the frame of the predictor's mean shape (:func:`box_from_points`'s box
    units), found by the least-squares similarity from the mean shape to the points;
    ``(a, b, t)`` is the head's position, scale and in-plane rotation. The shape is
    smoothed with ``min_cutoff``/``beta`` (landmark noise is mostly non-rigid, so it
    can be smoothed hard); the pose, estimated from all 68 points and therefore
    far less noisy, with the higher ``pose_min_cutoff`` so the face does not lag
    behind head motion. Speeds are normalised by the inter-ocular distance, so
    ``beta`` is in Hz per (inter-ocular distance per second) for both.

    Why split: on target2.mp4 (an expression clip) about half of the frame-to-frame
    non-rigid landmark motion is genuine (expressions, head turns), so one filter on
    the 136 frame coordinates cannot cut jitter 3x without lag — measured, its best
    is ~2.3x at a mean lag of 0.027 inter-ocular distances, while this split gives
    3.1x at the same lag (min_cutoff 0.2 Hz, beta 0.2, pose 20 Hz; bench/landmarks.py).

    Parameters
    ----------
    min_cutoff : float, keyword-only
        Shape filter minimum cutoff, Hz (> 0).
    beta : float, keyword-only
        Speed coefficient of both filters (≥ 0).
    pose_min_cutoff : float, keyword-only
        Pose filter minimum cutoff, Hz (> 0). Default 20.
    d_cutoff : float, keyword-only
        Speed-estimate cutoff, Hz. Default 1.

    References
    ----------
    Casiez et al. 2012, "1€ Filter", CHI, Sec. 3; Umeyama 1991, "Least-squares
    estimation of transformation parameters between two point patterns", IEEE PAMI
    13(4) (the similarity fit); Cootes et al. 1995, "Active Shape Models", CVIU 61(1),
    Sec. 3 (shape separated from pose by Procrustes alignment).
    """

    def __init__(self, *, min_cutoff: float, beta: float, pose_min_cutoff: float = 20.0, d_cutoff: float = 1.0) -> None:
        self.shape_filter = OneEuroFilter(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        self.pose_filter = OneEuroFilter(min_cutoff=pose_min_cutoff, beta=beta, d_cutoff=d_cutoff)

    def reset(self) -> None:
        """Forget the history (a track restarts)."""
        self.shape_filter.reset()
        self.pose_filter.reset()

    def __call__(self, points: np.ndarray, t: float) -> np.ndarray:
        """Smooth one frame's landmarks.

        Parameters
        ----------
        points : ndarray, shape (68, 2), float
            Raw landmarks, frame px.
        t : float
            Timestamp, s, strictly increasing.

        Returns
        -------
        ndarray, shape (68, 2), float64
            Smoothed landmarks, frame px (the first sample is returned unchanged).
        """
        a, b, tx, ty = similarity_to_points(points)
        if not a * a + b * b > 1e-12:
            # Degenerate (all points coincide): no pose to separate; pass through, restart.
            self.reset()
            return np.asarray(points, dtype=np.float64).copy()
        q = _apply_similarity(points, *_invert_similarity(a, b, tx, ty))
        q_hat = self.shape_filter(q, t, scale=_IOD_MEAN)
        iod_px = max(math.hypot(a, b) * _IOD_MEAN, 1e-6)
        pose = self.pose_filter(np.array([tx, ty, a * _IOD_MEAN, b * _IOD_MEAN]), t, scale=iod_px)
        return _apply_similarity(q_hat, pose[2] / _IOD_MEAN, pose[3] / _IOD_MEAN, pose[0], pose[1])


def similarity_to_points(points: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares similarity ``z ↦ (a + i·b)·z + t`` from the predictor's mean shape to ``points``.

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        Landmarks, px.

    Returns
    -------
    a, b, tx, ty : float
        ``a = s·cos θ``, ``b = s·sin θ`` (scale s in px per box unit, rotation θ),
        translation ``(tx, ty)`` px.

    References
    ----------
    Umeyama 1991, IEEE PAMI 13(4), Eq. 40–42 (no reflection: the complex form cannot reflect).
    """
    p = np.asarray(points, dtype=np.float64)
    pc = p - p.mean(axis=0)
    m = _MS_CENTRED
    a = float((m[:, 0] * pc[:, 0] + m[:, 1] * pc[:, 1]).sum()) / _MS_NORM2
    b = float((m[:, 0] * pc[:, 1] - m[:, 1] * pc[:, 0]).sum()) / _MS_NORM2
    mm = _BOX_MEAN_SHAPE.mean(axis=0)
    pm = p.mean(axis=0)
    tx = float(pm[0] - (a * mm[0] - b * mm[1]))
    ty = float(pm[1] - (b * mm[0] + a * mm[1]))
    return a, b, tx, ty


def _invert_similarity(a: float, b: float, tx: float, ty: float) -> tuple[float, float, float, float]:
    n = a * a + b * b
    ia, ib = a / n, -b / n
    return ia, ib, -(ia * tx - ib * ty), -(ib * tx + ia * ty)


def _apply_similarity(points: np.ndarray, a: float, b: float, tx: float, ty: float) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    return np.stack([a * p[:, 0] - b * p[:, 1] + tx, b * p[:, 0] + a * p[:, 1] + ty], axis=1)


# ----------------------------------------------------------------------------------------
# Tracker
# ----------------------------------------------------------------------------------------

#: Limits on how much a tracking fit may differ from the box it was fitted in before the
#: tracker re-detects (measured on the shared clips, see bench/landmarks.py): side ratio,
#: centre shift as a fraction of the side, fraction of points outside the frame.
_MAX_SIDE_RATIO = 1.10
_MAX_SHIFT = 0.08
_MAX_OUTSIDE = 0.25
#: Detection/track boxes overlapping at least this much are the same face.
_MATCH_IOU = 0.3
#: A confirmed track whose box overlaps its detection less than this is re-anchored on it.
_REANCHOR_IOU = 0.6
#: Tracks overlapping more than this are duplicates (the younger one is dropped).
_DUPLICATE_IOU = 0.5


@dataclass
class _Track:
    id: int
    raw: np.ndarray  # (68, 2) float32, last unsmoothed fit
    score: float
    filter: LandmarkSmoother | None
    last_box: np.ndarray  # (4,) float32, the box of the last fit
    ok: bool = True
    misses: int = 0

    @property
    def box(self) -> np.ndarray:
        return box_from_points(self.raw)


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return gray.astype(np.int16)


def _fit_degraded(box: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> bool:
    """True when a tracking fit moved/scaled too far from its box or left the frame."""
    new = box_from_points(points)
    side, new_side = float(box[2] - box[0]), float(new[2] - new[0])
    if side <= 0 or not np.isfinite(points).all():
        return True
    ratio = new_side / side
    if not (1.0 / _MAX_SIDE_RATIO <= ratio <= _MAX_SIDE_RATIO):
        return True
    shift = math.hypot(float(new[0] + new[2] - box[0] - box[2]) / 2, float(new[1] + new[3] - box[1] - box[3]) / 2)
    if shift > _MAX_SHIFT * side:
        return True
    w, h = size
    outside = (points[:, 0] < -0.5) | (points[:, 0] > w - 0.5) | (points[:, 1] < -0.5) | (points[:, 1] > h - 0.5)
    return float(outside.mean()) > _MAX_OUTSIDE


class FaceTracker:
    """Landmarks of every face in a video, tracked with stable ids and smoothed over time.

    Per frame: scene-cut test; each track is re-fitted in the box of its previous
    (unsmoothed) points (:func:`box_from_points`) instead of running the detector;
    full detection runs on the first frame, every ``detect_every`` frames, after a
    scene cut, and as soon as a fit degrades (its box grows/shrinks by more than
    10 %, moves by more than 8 % of its side, or a quarter of the points leave the
    frame). Detections are matched to tracks greedily by box IoU (≥ 0.3) so ids stay
    stable; a degraded track matched by a detection restarts from it, an unmatched
    degraded track is dropped (the face left), an unmatched healthy track is kept
    only if the backend's ``detect_near`` confirms it. Unmatched detections start
    new tracks; at most ``max_faces`` are kept, largest first. For ``detect_every``
    frames after a face is lost, ``detect_near`` looks for it where it was, and a
    face found there (or by the next detection) gets the lost id back.
    Without tracks, detection keeps its ``detect_every`` period (it can be slow:
    the dlib backend's CNN fallback takes ~1 s on 2 cores).

    Parameters
    ----------
    backend : LandmarkBackend
        Landmark source; a :class:`FrameLandmarksBackend` is replayed unchanged.
    detect_every : int, keyword-only
        Full re-detection period, frames (≥ 1).
    max_faces : int, keyword-only
        At most this many faces per frame (≥ 1).
    min_cutoff : float, keyword-only
        One Euro minimum cutoff of the face-shape filter, Hz; 0 disables smoothing
        (see :class:`LandmarkSmoother`).
    beta : float, keyword-only
        One Euro speed coefficient, Hz per (inter-ocular distance per second).
    scene_cut : float, keyword-only
        Mean absolute difference of consecutive 64×64 gray thumbnails, 8-bit units,
        above which all tracks reset; 0 disables.
    fps : float, keyword-only
        Frame rate, for the filter's timestamps (frame index / fps).
    pose_min_cutoff : float, keyword-only
        One Euro minimum cutoff of the head-pose filter, Hz (default 20).
    d_cutoff : float, keyword-only
        One Euro speed cutoff, Hz (default 1).

    Attributes
    ----------
    scene_cut_detected : bool
        Whether the last :meth:`update` found a scene cut.
    last_raw : list of Face
        The unsmoothed fits of the last update (same ids), for measuring jitter.
    detections : int
        Number of full detections run so far.

    Raises
    ------
    ValueError
        Out-of-range parameters.

    References
    ----------
    Casiez et al. 2012, "1€ Filter", CHI (smoothing); Kazemi & Sullivan 2014
    (fitting from the previous frame's shape); Texler et al. 2021, FaceBlit, Sec. 3
    (landmarks drive the guides, so their jitter is the first cause of flicker).
    """

    def __init__(
        self,
        backend: LandmarkBackend,
        *,
        detect_every: int = 10,
        max_faces: int = 8,
        min_cutoff: float = 0.2,
        beta: float = 0.2,
        scene_cut: float = 40.0,
        fps: float = 30.0,
        pose_min_cutoff: float = 20.0,
        d_cutoff: float = 1.0,
    ) -> None:
        check(int(detect_every) == detect_every and detect_every >= 1, "detect_every", "an integer >= 1", detect_every)
        check(int(max_faces) == max_faces and max_faces >= 1, "max_faces", "an integer >= 1", max_faces)
        check(min_cutoff >= 0, "min_cutoff", ">= 0 Hz", min_cutoff)
        check(beta >= 0, "beta", ">= 0", beta)
        check(scene_cut >= 0, "scene_cut", ">= 0", scene_cut)
        check(fps > 0 and math.isfinite(fps), "fps", "> 0", fps)
        check(d_cutoff > 0, "d_cutoff", "> 0 Hz", d_cutoff)
        check(pose_min_cutoff > 0, "pose_min_cutoff", "> 0 Hz", pose_min_cutoff)
        self.pose_min_cutoff = float(pose_min_cutoff)
        self.backend = backend
        self.detect_every = int(detect_every)
        self.max_faces = int(max_faces)
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.scene_cut = float(scene_cut)
        self.fps = float(fps)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks, ids, the frame counter and the previous thumbnail."""
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._index = 0
        self._last_detect = -(10**9)
        self._lost: list[tuple[int, np.ndarray, int]] = []  # (id, last box, search until frame)
        self._thumb: np.ndarray | None = None
        self.scene_cut_detected = False
        self.last_raw: list[Face] = []
        self.detections = 0

    def _new_filter(self) -> LandmarkSmoother | None:
        if self.min_cutoff <= 0:
            return None
        return LandmarkSmoother(
            min_cutoff=self.min_cutoff, beta=self.beta, pose_min_cutoff=self.pose_min_cutoff, d_cutoff=self.d_cutoff
        )

    def _start(self, face: Face, *, fid: int | None = None) -> _Track:
        if fid is None:
            fid = self._next_id
            self._next_id += 1
        return _Track(id=fid, raw=face.points.copy(), score=face.score, filter=self._new_filter(), last_box=face.box.copy())

    def update(self, frame: np.ndarray) -> list[Face]:
        """Landmarks of the next frame.

        Parameters
        ----------
        frame : ndarray, shape (H, W, 3), uint8
            RGB frame; frames must come in order, one call each.

        Returns
        -------
        faces : list of Face
            Smoothed points, ``box`` = :func:`box_from_points` of them, ``score`` of
            the track's last detection, stable ``id``; ordered by id; ``[]`` when
            no face is found.

        Raises
        ------
        ValueError
            ``frame`` is not ``(H, W, 3) uint8``.
        StyleError
            A replayed per-frame file has no entry for this frame.

        References
        ----------
        Casiez et al. 2012, Sec. 3 (One Euro filter).
        """
        frame = _check_frame(frame)
        index = self._index
        self._index += 1
        h, w = frame.shape[:2]

        self.scene_cut_detected = False
        if self.scene_cut > 0:
            thumb = _thumbnail(frame)
            if self._thumb is not None and float(np.abs(thumb - self._thumb).mean()) > self.scene_cut:
                self.scene_cut_detected = True
                self._tracks = []
                self._lost = []
                self._last_detect = -(10**9)
            self._thumb = thumb

        if isinstance(self.backend, FrameLandmarksBackend):
            faces = self.backend.faces_at(index)
            self.last_raw = [f.copy() for f in faces]
            return faces

        # 1. Track: refit every face in the box of its previous unsmoothed points
        #    (one batched call where the backend offers it, e.g. FAN on a GPU).
        boxes = [tr.box for tr in self._tracks]
        fit_many = getattr(self.backend, "fit_many", None)
        if fit_many is not None and len(boxes) > 1:
            fits = fit_many(frame, boxes)
        else:
            fits = [self.backend.fit(frame, box) for box in boxes]
        for tr, box, fit in zip(self._tracks, boxes, fits):
            tr.ok = not _fit_degraded(box, fit.points, (w, h))
            tr.last_box = box
            tr.raw = fit.points

        # 2. Detect when due or when a fit degraded; else look for recently lost faces
        #    where they were (cheap), so a face missed for a frame or two comes back.
        due = index - self._last_detect >= self.detect_every
        if due or any(not tr.ok for tr in self._tracks):
            self._detect(frame, index)
        elif self._lost:
            self._search_lost(frame, index)

        # 3. Smooth.
        t = index / self.fps
        out, raw = [], []
        for tr in sorted(self._tracks, key=lambda tr: tr.id):
            pts = tr.raw.astype(np.float64)
            if tr.filter is not None:
                pts = tr.filter(pts, t)
            out.append(Face(points=pts, box=box_from_points(pts), score=tr.score, id=tr.id))
            raw.append(Face(points=tr.raw, box=tr.box, score=tr.score, id=tr.id))
        self.last_raw = raw
        return out

    def _search_lost(self, frame: np.ndarray, index: int) -> None:
        detect_near = getattr(self.backend, "detect_near", None)
        self._lost = [lost for lost in self._lost if lost[2] >= index]
        if not self._lost:
            return
        if detect_near is None:
            self._detect(frame, index)
            return
        still = []
        for fid, box, until in self._lost:
            found = [
                f
                for f in detect_near(frame, box)
                if box_iou(box_from_points(f.points), box) >= _MATCH_IOU
                and all(box_iou(box_from_points(f.points), tr.box) <= _DUPLICATE_IOU for tr in self._tracks)
            ]
            if found and len(self._tracks) < self.max_faces:
                self._tracks.append(self._start(found[0], fid=fid))
            else:
                still.append((fid, box, until))
        self._lost = still

    def _detect(self, frame: np.ndarray, index: int) -> None:
        self._last_detect = index
        self.detections += 1
        dets = self.backend.detect(frame)
        det_boxes = [box_from_points(d.points) for d in dets]
        pairs = sorted(
            (
                (box_iou(tr.box, db), ti, di)
                for ti, tr in enumerate(self._tracks)
                for di, db in enumerate(det_boxes)
            ),
            reverse=True,
        )
        matched_t: dict[int, int] = {}
        used_d: set[int] = set()
        for iou, ti, di in pairs:
            if iou < _MATCH_IOU:
                break
            if ti in matched_t or di in used_d:
                continue
            matched_t[ti] = di
            used_d.add(di)

        keep: list[_Track] = []
        dropped: list[_Track] = []
        detect_near = getattr(self.backend, "detect_near", None)
        for ti, tr in enumerate(self._tracks):
            if ti in matched_t:
                det = dets[matched_t[ti]]
                if not tr.ok:
                    # The fit lost the face but the detector has it: restart from the detection.
                    tr.raw = det.points.copy()
                    tr.filter = self._new_filter()
                elif box_iou(tr.box, det_boxes[matched_t[ti]]) < _REANCHOR_IOU:
                    tr.raw = det.points.copy()
                tr.score, tr.ok, tr.misses = det.score, True, 0
                keep.append(tr)
                continue
            confirmed = False
            if tr.ok and detect_near is not None:
                near = [f for f in detect_near(frame, tr.box) if box_iou(box_from_points(f.points), tr.box) >= _MATCH_IOU]
                if near:
                    tr.score, tr.misses, confirmed = near[0].score, 0, True
            elif tr.ok:
                # No way to confirm locally: tolerate one missed re-detection.
                tr.misses += 1
                confirmed = tr.misses < 2
            (keep if confirmed else dropped).append(tr)

        # New faces; one appearing where a face was just lost gets that face's id back.
        lost = self._lost + [(tr.id, tr.last_box, index + self.detect_every) for tr in dropped]
        for di, det in enumerate(dets):
            if di in used_d or any(box_iou(det_boxes[di], tr.box) > _DUPLICATE_IOU for tr in keep):
                continue
            reuse = max(lost, key=lambda lo: box_iou(lo[1], det_boxes[di]), default=None)
            if reuse is not None and box_iou(reuse[1], det_boxes[di]) >= _MATCH_IOU:
                lost.remove(reuse)
                keep.append(self._start(det, fid=reuse[0]))
            else:
                keep.append(self._start(det))

        # Duplicates (two tracks converged on one face): keep the older id.
        keep.sort(key=lambda tr: tr.id)
        unique: list[_Track] = []
        for tr in keep:
            if all(box_iou(tr.box, u.box) <= _DUPLICATE_IOU for u in unique):
                unique.append(tr)
        unique.sort(key=lambda tr: -float((tr.box[2] - tr.box[0]) ** 2))
        self._tracks = unique[: self.max_faces]
        self._lost = [lo for lo in lost if lo[2] > index]


# ----------------------------------------------------------------------------------------
# Style exemplars and drawing
# ----------------------------------------------------------------------------------------


def detect_style_landmarks(image: np.ndarray, *, backend: LandmarkBackend | None = None) -> np.ndarray:
    """68 landmarks of the main face of a style exemplar (painting or photo).

    Uses the dlib backend with every fallback (HOG, HOG upsampled, CNN with box
    refinement) and the robust (27-box median) fit, then picks the largest face.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        RGB exemplar.
    backend : LandmarkBackend, optional, keyword-only
        Another backend to use instead (its ``detect``).

    Returns
    -------
    points : ndarray, shape (68, 2), float32
        ``(x, y)`` style px.

    Raises
    ------
    StyleError
        No face found (the message says how to give the landmarks by hand).
    ValueError
        ``image`` is not ``(H, W, 3) uint8``.

    References
    ----------
    Texler et al. 2021, FaceBlit, Sec. 4 (landmarks of the exemplar, corrected by hand
    where detection fails on paintings).
    """
    image = _check_frame(image)
    if backend is None:
        backend = DlibBackend(upsample_fallback=True, cnn_fallback=True, robust_fit=True)
    faces = backend.detect(image)
    if not faces:
        raise StyleError(
            "no face found in the style image; give its 68 landmarks with --style-landmarks FILE (68 lines 'x y')"
        )
    return max(faces, key=lambda f: f.area).points.copy()


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
    every detector fallback of :func:`detect_style_landmarks` when plain detection
    finds nothing.

    Parameters
    ----------
    path : path
        Image file.
    backend : str, keyword-only
        ``dlib`` or ``fan`` (:data:`BACKENDS`).
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
    from faceblit_core.errors import OutputError
    from faceblit_core.media import atomic_output, read_image, write_image

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
