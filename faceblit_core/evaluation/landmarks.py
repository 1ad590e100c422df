"""Landmark figures: :func:`struct_nme` (structure kept, per frame), :func:`nme`,
:func:`landmark_jitter`, :func:`expr_err` (mouth and eye openings kept), :func:`drift`
and :func:`redetect_rate` (from the same per-frame detections).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from faceblit_core.checks import check, check_array
from faceblit_core.faces import N_POINTS, box_iou, get_backend, inter_ocular
from faceblit_core.evaluation.constants import EYE_PAIRS, MATCH_IOU, MOUTH_PAIRS
from faceblit_core.evaluation.warping import _check_frame_pair, _zip_exact


# ======================================================================================
# Structure: landmark NME
# ======================================================================================


@dataclass(frozen=True)
class StructNME:
    """Landmark error of the output against the input (see :func:`struct_nme_stats`).

    Attributes
    ----------
    mean, median : float
        Over the frames with a face in both; ``nan`` when there is none.
    per_frame : tuple of float
        NME of every frame, ``nan`` where the input or the output had no (matching) face.
    frames : int
        Frames measured (faces in both).
    no_face_input : int
        Frames where the input had no face (not counted at all).
    no_face_output : int
        Frames with a face on the input but none on the output (or none overlapping
        the input's face by IoU ≥ ``MATCH_IOU``) — the stylization lost the face.
    """

    mean: float
    median: float
    per_frame: tuple[float, ...]
    frames: int
    no_face_input: int
    no_face_output: int


class _NMEAccumulator:
    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, input_faces: Sequence[Any], output_faces: Sequence[Any]) -> tuple[Any, Any]:
        """Adds one frame; returns its matched ``(input face, output face)`` (see :func:`_match_faces`)."""
        ref, best = _match_faces(input_faces, output_faces)
        if ref is None:
            self.values.append(math.nan)
        elif best is None:
            self.values.append(-math.inf)  # marker: face lost on the output
        else:
            self.values.append(nme(best.points, ref.points))
        return ref, best

    def result(self) -> StructNME:
        v = np.array(self.values, dtype=np.float64)
        ok = np.isfinite(v)
        per_frame = tuple(float(x) if np.isfinite(x) else math.nan for x in v)
        return StructNME(
            mean=float(v[ok].mean()) if ok.any() else math.nan,
            median=float(np.median(v[ok])) if ok.any() else math.nan,
            per_frame=per_frame,
            frames=int(ok.sum()),
            no_face_input=int(np.isnan(v).sum()),
            no_face_output=int(np.isneginf(v).sum()),
        )


def _match_faces(input_faces: Sequence[Any], output_faces: Sequence[Any]) -> tuple[Any, Any]:
    """The input's largest face and the output face overlapping it most (IoU ≥ ``MATCH_IOU``);
    ``(None, None)`` without an input face, ``(ref, None)`` when the output lost it."""
    if not input_faces:
        return None, None
    ref = max(input_faces, key=lambda f: f.area)
    best = max(output_faces, key=lambda f: box_iou(f.box, ref.box), default=None)
    if best is None or box_iou(best.box, ref.box) < MATCH_IOU:
        return ref, None
    return ref, best


def _default_backend() -> Any:
    return get_backend("dlib")


def struct_nme_stats(
    input_frames: Iterable[np.ndarray],
    output_frames: Iterable[np.ndarray],
    *,
    backend: Any = None,
) -> StructNME:
    """Landmarks re-detected on the output against the input's, per frame.

    Every frame of both clips goes through ``backend.detect`` on its own — no
    tracking, no smoothing, so the figure reflects what is visible in each frame.
    The reference is the input's largest face; its counterpart on the output is
    the detected face whose box overlaps it most (IoU ≥ ``MATCH_IOU``). Per frame,
    NME = mean distance of the 68 points / inter-ocular distance of the input's
    points (eye centres = means of points 36–41 and 42–47). The summary is the
    MEAN over frames with a face in both (the median is reported too); frames
    where the output lost the face are counted, not averaged in.

    Parameters
    ----------
    input_frames, output_frames : iterable of ndarray, shape (H, W, 3), dtype uint8
        T RGB frames each (consumed once); output frame t stylizes input frame t.
    backend : LandmarkBackend, optional, keyword-only
        Anything with ``detect(frame) -> list[Face]``; default
        ``faceblit_core.faces.get_backend("dlib")`` (HOG + 68-point predictor).

    Returns
    -------
    StructNME
        ``mean`` (dimensionless, ≥ 0; 0.03 = 3 % of the eye distance), ``median``,
        per-frame values and the counts of frames without a face.

    Raises
    ------
    ValueError
        Frames not uint8 RGB, shapes differ, or different frame counts.

    References
    ----------
    C. Sagonas et al., "300 Faces In-The-Wild Challenge: database and results",
    Image and Vision Computing 2016, §5 (NME normalised by the inter-ocular distance);
    V. Kazemi, J. Sullivan, "One Millisecond Face Alignment with an Ensemble of
    Regression Trees", CVPR 2014 (dlib's predictor). DESIGN §9.
    """
    backend = _default_backend() if backend is None else backend
    acc = _NMEAccumulator()
    for index, (inp, out) in enumerate(_zip_exact(input_frames, output_frames)):
        _check_frame_pair(inp, out, index)
        acc.add(backend.detect(inp), backend.detect(out))
    return acc.result()


def struct_nme(
    input_frames: Iterable[np.ndarray],
    output_frames: Iterable[np.ndarray],
    *,
    backend: Any = None,
) -> float:
    """Structure/identity: mean landmark NME of the output against the input.

    ``struct_nme_stats(...).mean``; see :func:`struct_nme_stats` for the definition
    and for the number of frames where the output had no face.

    Parameters
    ----------
    input_frames, output_frames : iterable of ndarray, shape (H, W, 3), dtype uint8
        T RGB frames each.
    backend : LandmarkBackend, optional, keyword-only
        Default: dlib.

    Returns
    -------
    float
        Dimensionless, ≥ 0; 0.0 when the output is the input. FaceBlit's clips:
        0.031–0.053. ``nan`` when no frame has a face in both.

    Raises
    ------
    ValueError
        See :func:`struct_nme_stats`.

    References
    ----------
    C. Sagonas et al., Image and Vision Computing 2016, §5. DESIGN §9.
    """
    return struct_nme_stats(input_frames, output_frames, backend=backend).mean


# ======================================================================================
# Landmark accuracy and stability
# ======================================================================================


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


# ======================================================================================
# Faithfulness over time and crispness: expr_err, drift, redetect_rate, sharp_ratio,
# warp_spike (DESIGN §9, issues 14 and 18). All come from the landmarks and warping
# errors measured above (one detection per frame), so evaluate_pair adds no pass.
# ======================================================================================


def _pair_opening(points: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> float:
    p = np.asarray(points, dtype=np.float64)
    check_array(p, "landmarks", shape=(68, 2))
    upper, lower = np.array(pairs).T
    return float(np.linalg.norm(p[upper] - p[lower], axis=1).mean() / max(inter_ocular(p), 1e-9))


def mouth_opening(points: np.ndarray) -> float:
    """Mouth opening: mean distance of the inner-lip pairs 61–67, 62–66, 63–65 / inter-ocular distance.

    Parameters
    ----------
    points : ndarray, shape (68, 2), float
        iBUG/dlib landmarks of one face, px.

    Returns
    -------
    float
        Dimensionless, ≥ 0: ~0 for a closed mouth, ~0.3–0.6 for a wide-open one
        (the eye distance is the unit, eye centres = means of points 36–41, 42–47).

    Raises
    ------
    ValueError
        Wrong shape.
    """
    return _pair_opening(points, MOUTH_PAIRS)


def eye_opening(points: np.ndarray) -> float:
    """Eye opening: mean distance of the eyelid pairs 37–41, 38–40, 43–47, 44–46 / inter-ocular distance.

    Both eyes together (a wink halves it). Parameters, return and raises as
    :func:`mouth_opening`; typical open eyes ≈ 0.1 of the eye distance.
    """
    return _pair_opening(points, EYE_PAIRS)


@dataclass(frozen=True)
class ExprErr:
    """Expression error of an output against its input (see :func:`expr_err_stats`).

    Attributes
    ----------
    mean : float
        Mean over frames of ``|mouth_out − mouth_in| + |eyes_out − eyes_in|`` (the
        ``expr_err`` figure, dimensionless, per inter-ocular distance); ``nan`` when
        no frame has a face in both.
    mouth, eyes : float
        The means of the two terms (``mean = mouth + eyes``).
    per_frame : tuple of float
        Per evaluated frame, ``nan`` where the input or the output had no (matching) face.
    frames : int
        Frames measured (a face in both).
    """

    mean: float
    mouth: float
    eyes: float
    per_frame: tuple[float, ...]
    frames: int


class _ExprAccumulator:
    """Mouth and eye opening differences of matched (input, output) faces, frame by frame."""

    def __init__(self) -> None:
        self.mouth: list[float] = []
        self.eyes: list[float] = []

    def add(self, ref: Any, out: Any) -> None:
        if ref is None or out is None:
            self.mouth.append(math.nan)
            self.eyes.append(math.nan)
            return
        self.mouth.append(abs(mouth_opening(out.points) - mouth_opening(ref.points)))
        self.eyes.append(abs(eye_opening(out.points) - eye_opening(ref.points)))

    def result(self) -> ExprErr:
        mouth, eyes = np.array(self.mouth, np.float64), np.array(self.eyes, np.float64)
        ok = np.isfinite(mouth)
        total = mouth + eyes
        if not ok.any():
            return ExprErr(math.nan, math.nan, math.nan, tuple(float(x) for x in total), 0)
        return ExprErr(float(total[ok].mean()), float(mouth[ok].mean()), float(eyes[ok].mean()), tuple(float(x) for x in total), int(ok.sum()))


def expr_err_stats(
    input_frames: Iterable[np.ndarray],
    output_frames: Iterable[np.ndarray],
    *,
    backend: Any = None,
) -> ExprErr:
    """Expression kept: mouth and eye openings of the output's landmarks against the input's.

    Faces are detected on every frame of both clips on their own and matched as in
    :func:`struct_nme_stats` (the input's largest face; the output face overlapping
    it most, IoU ≥ ``MATCH_IOU``). Per frame with a face in both, the error is
    ``|mouth_out − mouth_in| + |eyes_out − eyes_in|`` with :func:`mouth_opening`
    and :func:`eye_opening`, each face normalised by its own inter-ocular distance;
    ``expr_err`` is its mean. An open mouth drawn closed, a lost smile or wink
    shows here; :func:`evaluate_pair` measures it from the landmarks it already has.

    Parameters
    ----------
    input_frames, output_frames : iterable of ndarray, shape (H, W, 3), dtype uint8
        T RGB frames each (consumed once); output frame t stylizes input frame t.
    backend : LandmarkBackend, optional, keyword-only
        Default: dlib (HOG + 68-point predictor).

    Returns
    -------
    ExprErr
        ``mean`` (dimensionless, ≥ 0; 0.0 when the output is the input; FaceBlit's
        target1 clip: 0.038), its mouth and eye terms and the per-frame values.

    Raises
    ------
    ValueError
        Frames not uint8 RGB, shapes differ, or different frame counts.

    References
    ----------
    DESIGN §9 (the definition), issue 14; O. Fišer et al., "Example-Based Synthesis
    of Stylized Facial Animations", SIGGRAPH 2017 (FaceStyle; why expressions must
    follow the target, not the exemplar).
    """
    backend = _default_backend() if backend is None else backend
    acc = _ExprAccumulator()
    for index, (inp, out) in enumerate(_zip_exact(input_frames, output_frames)):
        _check_frame_pair(inp, out, index)
        acc.add(*_match_faces(backend.detect(inp), backend.detect(out)))
    return acc.result()


def expr_err(input_frames: Iterable[np.ndarray], output_frames: Iterable[np.ndarray], *, backend: Any = None) -> float:
    """``expr_err_stats(...).mean``: see :func:`expr_err_stats` (dimensionless, ≥ 0, ``nan`` when undefined)."""
    return expr_err_stats(input_frames, output_frames, backend=backend).mean


def _third_means(per_frame: Sequence[float]) -> tuple[float, float]:
    """Mean of the finite values over the first and over the last third of the frames."""
    v = np.array(per_frame, np.float64)
    n = len(v) // 3
    first, last = v[:n], v[len(v) - n :]
    first, last = first[np.isfinite(first)], last[np.isfinite(last)]
    return (float(first.mean()) if len(first) else math.nan), (float(last.mean()) if len(last) else math.nan)


def drift(stats: StructNME) -> float:
    """Drift: ``struct_nme`` over the last third of the clip / over its first third.

    The thirds are ``T // 3`` evaluated frames at each end (the middle is not used);
    within each, the mean NME over the frames with a face in both. A stylizer that
    carries state from frame to frame must not accumulate error.

    Parameters
    ----------
    stats : StructNME
        From :func:`struct_nme_stats` (or ``evaluate_pair``'s pass), ≥ 3 frames.

    Returns
    -------
    float
        Dimensionless, ≥ 0: 1.0 = as faithful at the end as at the start, > 1 = the
        face drifts away from the input over time. Exactly 1.0 when both thirds are
        0 (the output is the input there), ``inf`` when only the first third is 0,
        ``nan`` when a third has no measured frame (fewer than 3 frames, face absent).

    References
    ----------
    DESIGN §9, issue 14.
    """
    first, last = _third_means(stats.per_frame)
    if math.isnan(first) or math.isnan(last):
        return math.nan
    if first == 0.0:
        return 1.0 if last == 0.0 else math.inf
    return last / first


def redetect_rate(stats: StructNME) -> float:
    """Fraction of the frames with an input face where the face is re-found on the output.

    "Re-found": the detector finds a face on the output frame whose box overlaps the
    input's largest face by IoU ≥ ``MATCH_IOU`` (as :func:`struct_nme_stats` matches).

    Parameters
    ----------
    stats : StructNME
        From :func:`struct_nme_stats` (or ``evaluate_pair``'s pass).

    Returns
    -------
    float
        In [0, 1]; 1.0 = found on every output frame (issue 18 asks ≥ 0.95);
        ``nan`` when the input has no face at all.

    References
    ----------
    Issue 18 (a garbled face is no longer a face to the detector).
    """
    seen = stats.frames + stats.no_face_output
    return stats.frames / seen if seen else math.nan
