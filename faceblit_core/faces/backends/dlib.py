"""The ``dlib`` landmark backend (default, offline, CPU), and the exemplars' robust detection.

dlib's HOG face detector on a downscaled frame, the 68-point regression-tree shape
predictor at full size (both from the ``face-recognition-models`` wheel). Where HOG
finds nothing (paintings) it retries with one 2x upsampling, then with dlib's CNN
(MMOD) detector, whose boxes are mapped to the proportions the predictor was
trained on (:data:`CNN_TO_HOG`, :func:`~faceblit_core.faces.types.box_from_points`).
:func:`detect_style_landmarks` runs it with every fallback and the robust fit on a
style exemplar.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceblit_core.cache import model_file
from faceblit_core.checks import check
from faceblit_core.errors import EnvironmentProblem, StyleError
from faceblit_core.faces.types import Face, LandmarkBackend, box_from_points, check_frame

__all__ = ["DlibBackend", "CNN_TO_HOG", "detect_style_landmarks"]

_MODEL_FILES = {
    "predictor": "shape_predictor_68_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
}
_dlib_cache: dict[str, Any] = {}
_dlib_lock = threading.Lock()
#: Held around every call into a dlib model. The models are loaded once per process and
#: shared by every backend, and dlib's HOG detector is not thread-safe: two threads
#: preparing exemplars at once crashed the process (segmentation fault in
#: ``fhog_object_detector.run``, 5 of 6 tries). The calls release the GIL, so without
#: this lock they really ran at the same time.
_dlib_calls = threading.Lock()
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
            # Imported on first use, not with the module: importing faceblit_core.faces
            # stays light (CLI start-up), and a missing dlib becomes a one-line error.
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
    import dlib  # lazy like _dlib_model (start-up); already loaded by the time a box is fitted

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
        frame = check_frame(frame)
        small, sx, sy = self._downscale(frame)
        with _dlib_calls:
            rects, scores, _ = self._hog.run(small, 0, 0.0)
            if not rects and self.upsample_fallback:
                rects, scores, _ = self._hog.run(small, 1, 0.0)
        if rects:
            return [_from_rect(r, sx, sy) for r in rects], [float(s) for s in scores], False
        if self.cnn_fallback and min(small.shape[:2]) >= _CNN_MIN_SIDE:
            cnn = _dlib_model("cnn")
            with _dlib_calls:
                dets = cnn(small, 0)
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
        frame = check_frame(frame)
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
        frame = check_frame(frame)
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
        with _dlib_calls:
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
        with _dlib_calls:
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
        frame = check_frame(frame)
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
    image = check_frame(image)
    if backend is None:
        backend = DlibBackend(upsample_fallback=True, cnn_fallback=True, robust_fit=True)
    faces = backend.detect(image)
    if not faces:
        raise StyleError(
            "no face found in the style image; give its 68 landmarks with --style-landmarks FILE (68 lines 'x y')"
        )
    return max(faces, key=lambda f: f.area).points.copy()
