"""Quality metrics of a stylized clip, measured rather than eyeballed (DESIGN §9).

Figures comparing an output with its input (and the style exemplar):

``warp_ratio`` — temporal stability
    Warping error of the output, mean ``|O_t − warp(O_{t−1})|`` over the face,
    divided by the same error of the input; the warp comes from optical flow of
    the INPUT frames. 1.0 = exactly as stable as the source; > 1 = the output
    flickers more than the source moves. FaceBlit's own published clips: 6.8–8.0.
``struct_nme`` — structure / identity
    68 landmarks re-detected on the output (each frame on its own) against the
    ones detected on the input, mean point error / inter-ocular distance.
    0 = the face is where it was. FaceBlit's clips: 0.031–0.053.
``style_nn`` — style fidelity
    Mean distance from the output's face patches (7×7 RGB at half scale) to
    their nearest patch of the style's face. Lower = more of the exemplar's own
    texture. See :func:`style_nn` for the unit and measured reference values.

Five more from the same landmarks and warping errors (issues 14 and 18):

``expr_err`` — expression kept
    Mean over frames of ``|mouth_out − mouth_in| + |eyes_out − eyes_in|``, the
    inner-lip and eyelid openings per inter-ocular distance. 0 = same expression.
``drift`` — faithful over time
    ``struct_nme`` over the last third of the clip / over its first third. 1.0 = no drift.
``sharp_ratio`` — crispness
    Mean |Laplacian| of the output's face over the exemplar's face, both at 60 px
    eye distance. 1.0 = strokes as crisp as the painting's.
``warp_spike`` — break-ups
    Largest per-frame-pair warping-error ratio over its median (the input's error
    floored at its clip median: repeated input frames). 1 = even.
``redetect_rate`` — still a face
    Fraction of the frames with an input face where the output's face is re-found.

:func:`evaluate_pair` measures all of them on two media files in one streaming
pass (``scripts/evaluate.py IN OUT --style S`` prints them as ``key=value``).
The lower-level functions take in-memory frame sequences.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from faceblit_core.checks import check, check_array
from faceblit_core.errors import InputError, StyleError
from faceblit_core.faces import N_POINTS, box_iou, detect_style_landmarks, get_backend, inter_ocular
from faceblit_core.style import resolve_landmarks

__all__ = [
    "WarpErrors",
    "StructNME",
    "warp_errors",
    "warp_ratio",
    "struct_nme_stats",
    "struct_nme",
    "nme",
    "landmark_jitter",
    "style_face_mask",
    "style_nn",
    "ExprErr",
    "WarpSpike",
    "mouth_opening",
    "eye_opening",
    "expr_err_stats",
    "expr_err",
    "drift",
    "redetect_rate",
    "face_sharpness",
    "sharp_ratio",
    "warp_spike_stats",
    "warp_spike",
    "evaluate_pair",
    "evaluate_outputs",
    "MOUTH_PAIRS",
    "EYE_PAIRS",
    "SHARP_IOD",
    "SPIKE_INPUT_FLOOR",
    "FB_ALPHA",
    "FB_BETA",
    "NN_PATCH",
    "NN_SCALE",
    "NN_SAMPLES",
    "MASK_THRESHOLD",
    "MATCH_IOU",
    "MASK_FEATHER",
]

#: Forward-backward flow consistency, ``|f + b|² ≤ FB_ALPHA·(|f|² + |b|²) + FB_BETA`` (px²);
#: the constants of Sundaram et al. 2010 as used by Ruder et al. 2016.
FB_ALPHA = 0.01
FB_BETA = 0.5
#: Patch side of ``style_nn``, px at the working scale.
NN_PATCH = 7
#: Working scale of ``style_nn`` (both the output and the style are resized by it).
NN_SCALE = 0.5
#: Output patches sampled per clip for ``style_nn``.
NN_SAMPLES = 4000
#: A pixel belongs to the face for ``style_nn`` where the (feathered) mask is at least this.
MASK_THRESHOLD = 0.5
#: An output face matches the input face when their boxes overlap at least this much (IoU).
MATCH_IOU = 0.3
#: Feathering of the masks made by :func:`evaluate_pair` / :func:`style_face_mask`, px (FaceBlit: 20).
MASK_FEATHER = 20


# ======================================================================================
# Temporal stability: warping error
# ======================================================================================


@dataclass(frozen=True)
class WarpErrors:
    """Warping errors of an output and of its input (see :func:`warp_errors`).

    Attributes
    ----------
    output, input : float
        Mean ``|X_t − warp(X_{t−1})|`` over the reliable face pixels of all frame
        pairs, mean of the three channels, RGB in [0, 1] (so 0.01 ≈ 2.6 8-bit levels);
        ``nan`` when no pixel was reliable.
    weight : float
        Sum of the pixel weights (mask × reliable) over all pairs, px — how much
        face the figures rest on.
    reliable : float
        Fraction of the mask weight whose flow passed the forward-backward check, in [0, 1].
    pairs : int
        Frame pairs measured.
    """

    output: float
    input: float
    weight: float
    reliable: float
    pairs: int

    @property
    def ratio(self) -> float:
        """``output / input``: 1.0 = as stable as the source; ``nan`` when undefined."""
        if not (self.input > 0.0) or math.isnan(self.output):
            return math.nan
        return self.output / self.input


class _FlowWarp:
    """Backward flow of consecutive INPUT frames, its reliable pixels, and warping with it."""

    def __init__(self, *, fb_alpha: float, fb_beta: float) -> None:
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.fb_alpha = fb_alpha
        self.fb_beta = fb_beta

    def maps(self, gray_prev: np.ndarray, gray_cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(map_x, map_y, reliable)``: where each pixel of frame t was in frame t−1, and
        whether that is trustworthy (flow consistent both ways and inside frame t−1)."""
        h, w = gray_cur.shape
        # DIS: calc(I0, I1) gives u with I0(x) ≈ I1(x + u(x))
        back = self.dis.calc(gray_cur, gray_prev, None)  # t → t−1
        fwd = self.dis.calc(gray_prev, gray_cur, None)  # t−1 → t
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x = gx + back[..., 0]
        map_y = gy + back[..., 1]
        fwd_at = cv2.remap(fwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Sundaram et al. 2010: a round trip t → t−1 → t must come back to the start
        loop = ((fwd_at + back) ** 2).sum(axis=2)
        scale = (fwd_at**2).sum(axis=2) + (back**2).sum(axis=2)
        reliable = loop <= self.fb_alpha * scale + self.fb_beta
        reliable &= (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        return map_x, map_y, reliable

    @staticmethod
    def error(prev: np.ndarray, cur: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
        """Per-pixel ``mean_c |cur − warp(prev)|`` (H, W) float32, RGB in [0, 1]."""
        warped = cv2.remap(prev.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.abs(cur.astype(np.float32) - warped).mean(axis=2) * np.float32(1.0 / 255.0)


class _WarpAccumulator:
    """Streams frames (input, mask, outputs) and pools the warping errors.

    Any number of outputs of the same input share the input's flow and error (the
    costly part): output k's figures are ``result(k)`` and ``per_pair[k]``.
    """

    def __init__(self, n_outputs: int = 1, *, fb_alpha: float = FB_ALPHA, fb_beta: float = FB_BETA) -> None:
        self.flow = _FlowWarp(fb_alpha=fb_alpha, fb_beta=fb_beta)
        self.prev: tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]] | None = None
        self.sum_out = [0.0] * n_outputs
        self.sum_in = 0.0
        self.weight = 0.0
        self.mask_weight = 0.0
        self.pairs = 0
        #: per output, per measured pair: (frame index t, output error sum, input error sum, weight)
        self.per_pair: list[list[tuple[int, float, float, float]]] = [[] for _ in range(n_outputs)]

    def add(self, inp: np.ndarray, mask: np.ndarray, *outs: np.ndarray) -> None:
        gray = cv2.cvtColor(inp, cv2.COLOR_RGB2GRAY)
        if self.prev is not None and not mask.any():
            self.pairs += 1  # no face in frame t: nothing to weigh, skip the flow
        elif self.prev is not None:
            prev_in, prev_gray, prev_outs = self.prev
            map_x, map_y, reliable = self.flow.maps(prev_gray, gray)
            # the mask of the CURRENT frame: the error lives at frame t's pixels
            w = mask.astype(np.float64) * reliable
            pair_in = float((w * _FlowWarp.error(prev_in, inp, map_x, map_y)).sum())
            pair_weight = float(w.sum())
            for k, (prev_out, out) in enumerate(zip(prev_outs, outs)):
                pair_out = float((w * _FlowWarp.error(prev_out, out, map_x, map_y)).sum())
                self.per_pair[k].append((self.pairs + 1, pair_out, pair_in, pair_weight))
                self.sum_out[k] += pair_out
            self.sum_in += pair_in
            self.weight += pair_weight
            self.mask_weight += float(mask.sum(dtype=np.float64))
            self.pairs += 1
        self.prev = (inp, gray, outs)

    def result(self, k: int = 0) -> WarpErrors:
        if self.weight <= 0.0:
            return WarpErrors(math.nan, math.nan, 0.0, 0.0, self.pairs)
        return WarpErrors(
            output=self.sum_out[k] / self.weight,
            input=self.sum_in / self.weight,
            weight=self.weight,
            reliable=self.weight / self.mask_weight,
            pairs=self.pairs,
        )


def _check_frame_pair(inp: Any, out: Any, index: int) -> None:
    check_array(inp, f"input frame {index}", shape=(None, None, 3), dtype=np.uint8)
    check_array(out, f"output frame {index}", shape=inp.shape, dtype=np.uint8)


def _check_mask(mask: Any, shape: tuple[int, int], index: int) -> np.ndarray:
    mask = np.asarray(mask)
    check_array(mask, f"face mask {index}", shape=shape)
    check(np.issubdtype(mask.dtype, np.floating), f"face mask {index} dtype", "float", mask.dtype)
    return mask.astype(np.float32, copy=False)


def warp_errors(
    input_frames: Iterable[np.ndarray],
    output_frames: Iterable[np.ndarray],
    face_masks: Iterable[np.ndarray],
    *,
    fb_alpha: float = FB_ALPHA,
    fb_beta: float = FB_BETA,
) -> WarpErrors:
    """Warping error of an output clip and of its input, over the face.

    For each pair of consecutive frames (t−1, t): the backward optical flow
    t → t−1 of the INPUT (OpenCV DIS, preset MEDIUM, on grayscale) gives for
    every pixel x of frame t its position x + b(x) in frame t−1; the previous
    frame is warped onto frame t there (``cv2.remap``, bilinear), and the
    per-pixel error is the mean over R, G, B of ``|X_t(x) − X_{t−1}(x + b(x))|``.
    The SAME flow and the SAME pixels are used for the output (X = O) and the
    input (X = I), so the input's error is the floor set by the flow's own
    inaccuracy and by real changes of the scene (shading, occlusion).

    Unreliable flow is excluded, identically in both: a pixel counts only when
    the forward flow f (t−1 → t) taken at x + b(x) brings it back,
    ``|f + b|² ≤ fb_alpha·(|f|² + |b|²) + fb_beta`` (disoccluded and badly
    matched pixels fail), and x + b(x) lies inside frame t−1. Each pixel is
    weighted by the face mask of frame t; errors are pooled over all pairs
    (a weighted mean over every reliable face pixel of the clip).

    Parameters
    ----------
    input_frames, output_frames : iterable of ndarray, shape (H, W, 3), dtype uint8
        RGB frames, T of each (a list, a (T, H, W, 3) array or a generator;
        consumed once). Frame t of the output is the stylization of frame t of
        the input.
    face_masks : iterable of ndarray, shape (H, W), float
        Per-frame face weights in [0, 1] (e.g. :func:`faceblit_core.guides.mask.face_mask`
        of the input's landmarks); all zeros for a frame without a face.
    fb_alpha : float, keyword-only
        Relative tolerance of the forward-backward check (default 0.01).
    fb_beta : float, keyword-only
        Absolute tolerance of the forward-backward check, px² (default 0.5).

    Returns
    -------
    WarpErrors
        ``output`` and ``input`` errors (RGB in [0, 1]), their ``ratio``, the weight
        and reliable fraction behind them. ``nan`` errors with fewer than 2 frames or
        no reliable face pixel.

    Raises
    ------
    ValueError
        Frames not uint8 RGB, output shape ≠ input shape, mask shape ≠ frame size,
        or different numbers of input frames, output frames and masks.

    References
    ----------
    W.-S. Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018, §4.4
    (warping error); N. Sundaram, T. Brox, K. Keutzer, "Dense Point Trajectories by
    GPU-accelerated Large Displacement Optical Flow", ECCV 2010 (forward-backward
    check); M. Ruder, A. Dosovitskiy, T. Brox, "Artistic Style Transfer for Videos",
    GCPR 2016, §3.2 (its constants); T. Kroeger et al., "Fast Optical Flow using Dense
    Inverse Search", ECCV 2016 (DIS). DESIGN §9.
    """
    acc = _WarpAccumulator(fb_alpha=fb_alpha, fb_beta=fb_beta)
    for index, (inp, out, mask) in enumerate(_zip_exact(input_frames, output_frames, face_masks)):
        _check_frame_pair(inp, out, index)
        acc.add(inp, _check_mask(mask, inp.shape[:2], index), out)
    return acc.result()


def warp_ratio(
    input_frames: Iterable[np.ndarray],
    output_frames: Iterable[np.ndarray],
    face_masks: Iterable[np.ndarray],
    *,
    fb_alpha: float = FB_ALPHA,
    fb_beta: float = FB_BETA,
) -> float:
    """Temporal stability: output warping error / input warping error over the face.

    ``warp_errors(...).ratio``; see :func:`warp_errors` for the definition.

    Parameters
    ----------
    input_frames, output_frames : iterable of ndarray, shape (H, W, 3), dtype uint8
        T RGB frames each.
    face_masks : iterable of ndarray, shape (H, W), float in [0, 1]
        T face masks (of the input).
    fb_alpha, fb_beta : float, keyword-only
        Forward-backward check tolerances (0.01, 0.5 px²).

    Returns
    -------
    float
        Dimensionless, ≥ 0: exactly 1.0 when the output is the input; < 1 = steadier
        than the source (e.g. blurred), > 1 = flickers. FaceBlit's clips: 6.8–8.0.
        ``nan`` when undefined (< 2 frames, no reliable face pixel, a static input).

    Raises
    ------
    ValueError
        See :func:`warp_errors`.

    References
    ----------
    W.-S. Lai et al., ECCV 2018, §4.4 (warping error). DESIGN §9.
    """
    return warp_errors(input_frames, output_frames, face_masks, fb_alpha=fb_alpha, fb_beta=fb_beta).ratio


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
# Style fidelity: nearest style patch
# ======================================================================================


def _working(image: np.ndarray, mask: np.ndarray, scale: float, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Image at the working scale (float32 RGB in [0, 1]) and the (ys, xs) top-left corners
    of its patches whose centre pixel has mask ≥ MASK_THRESHOLD and that lie inside."""
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = image if scale == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32) * np.float32(1.0 / 255.0)
    m = mask if scale == 1.0 else cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    r = patch // 2
    inner = m[r : size[1] - (patch - 1 - r), r : size[0] - (patch - 1 - r)]
    ys, xs = np.nonzero(inner >= MASK_THRESHOLD)
    return small, np.stack([ys, xs], axis=1)


def _patches(small: np.ndarray, corners: np.ndarray, patch: int) -> np.ndarray:
    """(N, patch·patch·3) float32 patches with top-left ``corners`` (N, 2) (y, x)."""
    if len(corners) == 0:
        return np.empty((0, patch * patch * small.shape[2]), np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(small, (patch, patch), axis=(0, 1))
    return np.ascontiguousarray(windows[corners[:, 0], corners[:, 1]].reshape(len(corners), -1))


class _PatchSampler:
    """Uniform random sample of ``n`` face patches over a whole clip, streaming.

    Priority sampling: every candidate patch gets a key from one seeded generator,
    in frame and raster order; the ``n`` smallest keys are kept. Deterministic for a
    given seed and input, and uniform over all face pixels of all frames.
    Patches of several aligned images (output and input) are kept at the same places.
    """

    def __init__(self, n: int, *, seed: int, scale: float, patch: int, layers: int) -> None:
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.scale = scale
        self.patch = patch
        self.keys = np.empty(0, np.float64)
        self.kept = [np.empty((0, patch * patch * 3), np.float32) for _ in range(layers)]

    def add(self, mask: np.ndarray, *images: np.ndarray) -> None:
        smalls, corners = [], None
        for image in images:
            small, corners = _working(image, mask, self.scale, self.patch)
            smalls.append(small)
        keys = self.rng.random(len(corners))
        if len(self.keys) + len(keys) > self.n:
            chosen = np.argpartition(np.concatenate([self.keys, keys]), self.n - 1)[: self.n]
        else:
            chosen = np.arange(len(self.keys) + len(keys))
        old = chosen[chosen < len(self.keys)]
        new = chosen[chosen >= len(self.keys)] - len(self.keys)
        self.keys = np.concatenate([self.keys[old], keys[new]])
        self.kept = [np.concatenate([k[old], _patches(s, corners[new], self.patch)]) for k, s in zip(self.kept, smalls)]


def _nearest_sq(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Exact squared L2 distance from each query row to its nearest pool row, float64 (N,).

    Brute force with torch matrix products in chunks (|q|² − 2 q·p + |p|², float32) to
    find the nearest row; its distance is then recomputed directly in float64, so
    the value is exact and only a float32 near-tie could pick a neighbour whose
    distance differs by ~1e-6.
    """
    import torch

    q = torch.from_numpy(queries)
    p = torch.from_numpy(pool)
    p2 = (p * p).sum(dim=1)
    chunk = max(1, (1 << 24) // max(1, len(pool)))  # ≤ 64 MiB of distances at a time
    out = np.empty(len(queries), np.float64)
    with torch.no_grad():
        for i in range(0, len(queries), chunk):
            a = q[i : i + chunk]
            idx = torch.argmin(p2[None, :] - 2.0 * (a @ p.T), dim=1)
            diff = a.double() - p[idx].double()
            out[i : i + len(a)] = (diff * diff).sum(dim=1).numpy()
    return out


def style_face_mask(style_image: np.ndarray, style_landmarks: np.ndarray, *, feather: int = MASK_FEATHER) -> np.ndarray:
    """Face mask of a style exemplar from its landmarks (the pipeline's face mask, whole image).

    Parameters
    ----------
    style_image : ndarray, shape (Hs, Ws, 3), dtype uint8
        RGB exemplar.
    style_landmarks : ndarray, shape (68, 2), float
        Its landmarks, style px.
    feather : int, keyword-only
        Box-blur size, px (FaceBlit: 20).

    Returns
    -------
    ndarray, shape (Hs, Ws), float32 in [0, 1]

    Raises
    ------
    ValueError
        Bad shapes.

    References
    ----------
    A. Texler et al., "FaceBlit: Instant Real-time Example-based Style Transfer to
    Facial Videos", Proc. ACM CGIT 2021 (face mask). DESIGN §4.4.
    """
    from faceblit_core.geometry import Region
    from faceblit_core.guides.mask import face_mask

    check_array(style_image, "style image", shape=(None, None, 3), dtype=np.uint8)
    h, w = style_image.shape[:2]
    return face_mask(style_image, np.asarray(style_landmarks, np.float32), region=Region.full(w, h), feather=feather)


def _style_pool(style_image: np.ndarray, style_mask: np.ndarray, scale: float, patch: int) -> np.ndarray:
    check_array(style_image, "style image", shape=(None, None, 3), dtype=np.uint8)
    mask = _check_mask(style_mask, style_image.shape[:2], 0)
    small, corners = _working(style_image, mask, scale, patch)
    if len(corners) == 0:
        raise StyleError("style_nn: the style's face mask holds no whole patch; check the style landmarks")
    return _patches(small, corners, patch)


def _rms(sq: np.ndarray, patch: int) -> float:
    if len(sq) == 0:
        return math.nan
    return float(np.sqrt(sq / (patch * patch)).mean())


def style_nn(
    output_frames: Iterable[np.ndarray],
    face_masks: Iterable[np.ndarray],
    style_image: np.ndarray,
    style_mask: np.ndarray,
    *,
    n_patches: int = NN_SAMPLES,
    seed: int = 0,
    scale: float = NN_SCALE,
    patch: int = NN_PATCH,
) -> float:
    """Style fidelity: mean distance of output face patches to their nearest style face patch.

    Both the output frames and the style are resized by ``scale`` (area
    averaging). Output patches (``patch``×``patch`` RGB, RGB in [0, 1]) are taken
    around face pixels (mask ≥ 0.5); ``n_patches`` of them over the whole clip are
    drawn uniformly with a fixed seed. Each is compared with EVERY patch of the
    style's face (style mask ≥ 0.5) by exact brute force; its distance is the RMS
    over the patch's pixels of the per-pixel RGB distance, ``sqrt(|a − b|² / patch²)``
    (the convention of DESIGN §9's reference figures); the result is the mean over
    the sampled patches.

    Reference values: DESIGN §9 quotes FaceBlit stills 0.069–0.092 and unstylized
    inputs 0.10–0.14. Measured here with ``n_patches=4000``: target2.png
    (unstylized) against the watercolorgirl exemplar 0.139–0.141 for seeds 0–2;
    the first frames of the shared videos and photos against watercolorgirl
    0.117–0.155. Compare a stylization against the same input's own figure
    (``evaluate_pair`` reports ``style_nn_input``): the score depends on the
    exemplar and on how similar the input already is to it.

    Parameters
    ----------
    output_frames : iterable of ndarray, shape (H, W, 3), dtype uint8
        T RGB frames (consumed once).
    face_masks : iterable of ndarray, shape (H, W), float in [0, 1]
        T face masks (of the input frames).
    style_image : ndarray, shape (Hs, Ws, 3), dtype uint8
        RGB exemplar.
    style_mask : ndarray, shape (Hs, Ws), float in [0, 1]
        Its face mask, e.g. :func:`style_face_mask`.
    n_patches : int, keyword-only
        Output patches sampled per clip (default 4000; ~0.002 standard error).
    seed : int, keyword-only
        Seed of the sampling.
    scale : float, keyword-only
        Working scale, (0, 1] (default 0.5).
    patch : int, keyword-only
        Patch side, px at the working scale (default 7).

    Returns
    -------
    float
        ≥ 0, RGB in [0, 1], per pixel; 0.0 when every output patch occurs in
        the style. ``nan`` when the output has no face pixel.

    Raises
    ------
    ValueError
        Bad shapes/dtypes or options, different numbers of frames and masks.
    StyleError
        The style mask holds no whole patch.

    References
    ----------
    A. Texler et al., "FaceBlit", Proc. ACM CGIT 2021; D. Sýkora et al., "StyleBlit:
    Fast Example-Based Stylization with Local Guidance", Eurographics 2019 (the
    output is assembled from exemplar patches, so it should lie near them). DESIGN §9.
    """
    _check_nn_options(n_patches, scale, patch)
    pool = _style_pool(style_image, style_mask, scale, patch)
    sampler = _PatchSampler(n_patches, seed=seed, scale=scale, patch=patch, layers=1)
    for index, (out, mask) in enumerate(_zip_exact(output_frames, face_masks)):
        check_array(out, f"output frame {index}", shape=(None, None, 3), dtype=np.uint8)
        sampler.add(_check_mask(mask, out.shape[:2], index), out)
    return _rms(_nearest_sq(sampler.kept[0], pool), patch)


def _check_nn_options(n_patches: int, scale: float, patch: int) -> None:
    check(isinstance(n_patches, (int, np.integer)) and n_patches >= 1, "n_patches", "an integer >= 1", n_patches)
    check(0.0 < scale <= 1.0, "scale", "in (0, 1]", scale)
    check(isinstance(patch, (int, np.integer)) and patch >= 1, "patch", "an integer >= 1", patch)


# ======================================================================================
# Faithfulness over time and crispness: expr_err, drift, redetect_rate, sharp_ratio,
# warp_spike (DESIGN §9, issues 14 and 18). All come from the landmarks and warping
# errors measured above (one detection per frame), so evaluate_pair adds no pass.
# ======================================================================================

#: Inner-lip point pairs (upper, lower) whose distances make the mouth opening (iBUG order).
MOUTH_PAIRS = ((61, 67), (62, 66), (63, 65))
#: Eyelid point pairs (upper, lower) of both eyes whose distances make the eye opening.
EYE_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
#: Inter-ocular distance the faces are rescaled to before ``sharp_ratio``'s Laplacian, px.
SHARP_IOD = 60.0
#: ``warp_spike``: a pair's input warping error counts as at least this × its clip median.
SPIKE_INPUT_FLOOR = 1.0


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


def face_sharpness(image: np.ndarray, points: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int]:
    """Mean |Laplacian| of a face at a fixed scale (inter-ocular distance ``SHARP_IOD`` = 60 px).

    The face's part of the image (bounding box of mask ≥ ``MASK_THRESHOLD`` plus a
    margin) is rescaled by ``60 / inter_ocular(points)`` (area averaging when it
    shrinks, bilinear when it grows), converted to luminance in [0, 1], and filtered
    with the 4-neighbour Laplacian (``cv2.Laplacian``, ksize 1); the mean of its
    absolute value over the rescaled mask ≥ ``MASK_THRESHOLD`` (1 px in from the
    crop's edge) is returned, with the pixel count, so clips can be pooled.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), dtype uint8
        RGB frame or exemplar.
    points : ndarray, shape (68, 2), float
        The face's landmarks, px (they set the scale).
    mask : ndarray, shape (H, W), float in [0, 1], optional
        Its face mask; default the pipeline's mask of ``points``
        (:func:`faceblit_core.guides.mask.face_mask`, feather ``MASK_FEATHER``).

    Returns
    -------
    (float, int)
        Mean |Laplacian|, luminance [0, 1] per px² at the fixed scale (0 for a flat
        face; ``nan`` with count 0 when the mask is empty), and the pixels it averages.

    Raises
    ------
    ValueError
        Bad shapes or dtypes.

    References
    ----------
    J. L. Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a
    comparative study", ICPR 2000 (Laplacian-based focus measures). DESIGN §9 (``sharp_ratio``).
    """
    from faceblit_core.geometry import Region
    from faceblit_core.guides.mask import face_mask

    check_array(image, "image", shape=(None, None, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    points = np.asarray(points, np.float32)
    check_array(points, "landmarks", shape=(68, 2))
    mask = face_mask(image, points, region=Region.full(w, h), feather=MASK_FEATHER) if mask is None else _check_mask(mask, (h, w), 0)
    ys, xs = np.nonzero(mask >= MASK_THRESHOLD)
    if len(ys) == 0:
        return math.nan, 0
    scale = SHARP_IOD / max(inter_ocular(points), 1e-6)
    margin = int(math.ceil(3.0 / min(scale, 1.0)))  # ≥ 3 px at the working scale around the face
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
    size = (max(3, round((x1 - x0) * scale)), max(3, round((y1 - y0) * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    gray = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray.astype(np.float32) * np.float32(1.0 / 255.0), size, interpolation=interp)
    small_mask = cv2.resize(np.ascontiguousarray(mask[y0:y1, x0:x1]), size, interpolation=interp) >= MASK_THRESHOLD
    small_mask[[0, -1], :] = False  # the Laplacian's border pixels see a reflected frame
    small_mask[:, [0, -1]] = False
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1))
    count = int(small_mask.sum())
    return (float(lap[small_mask].mean(dtype=np.float64)) if count else math.nan), count


class _SharpAccumulator:
    """Pools face_sharpness over a clip (a pixel-weighted mean over all frames)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, image: np.ndarray, points: np.ndarray, mask: np.ndarray | None = None) -> None:
        value, count = face_sharpness(image, points, mask)
        if count:
            self.total += value * count
            self.count += count

    def result(self) -> float:
        return self.total / self.count if self.count else math.nan


def sharp_ratio(
    output_frames: Iterable[np.ndarray],
    face_points: Iterable[np.ndarray | None],
    style_image: np.ndarray,
    style_landmarks: np.ndarray,
) -> float:
    """Crispness: the output face's mean |Laplacian| over the exemplar face's, both at 60 px eye distance.

    Each output frame's face (located by the INPUT's landmarks of that frame, which
    say where the face is and how large) and the exemplar's face (its landmarks) go
    through :func:`face_sharpness`; the output's values are pooled over all frames
    (pixel-weighted mean). Every resampling of synthesized texture (warps, bilinear
    maps) and every blur lowers it.

    Parameters
    ----------
    output_frames : iterable of ndarray, shape (H, W, 3), dtype uint8
        T RGB frames (consumed once).
    face_points : iterable of ndarray, shape (68, 2), or None
        T landmark sets of the input face per frame (None: no face, frame skipped).
    style_image : ndarray, shape (Hs, Ws, 3), dtype uint8
        RGB exemplar.
    style_landmarks : ndarray, shape (68, 2), float
        Its landmarks (e.g. its ``NAME.lm.txt``), style px.

    Returns
    -------
    float
        Dimensionless, ≥ 0: 1.0 = as crisp as the painting (exactly 1.0 for the
        exemplar itself), < 1 softer. ``nan`` without an output face.

    Raises
    ------
    ValueError
        Bad shapes/dtypes or different numbers of frames and landmark sets.
    StyleError
        The exemplar's face mask is empty or flat.

    References
    ----------
    DESIGN §9, issue 14; see :func:`face_sharpness`.
    """
    reference = _style_sharpness(style_image, style_landmarks)
    acc = _SharpAccumulator()
    for out, points in _zip_exact(output_frames, face_points):
        if points is not None:
            acc.add(out, points)
    return acc.result() / reference


def _style_sharpness(style_image: np.ndarray, style_landmarks: np.ndarray, style_mask: np.ndarray | None = None) -> float:
    value, count = face_sharpness(style_image, style_landmarks, style_mask)
    if not count or not value > 1e-6:  # float rounding of the resize leaves ~1e-8 on a flat image
        raise StyleError("sharp_ratio: the style's face is empty or flat; check the style landmarks")
    return value


@dataclass(frozen=True)
class WarpSpike:
    """The worst frame pair of the warping error (see :func:`warp_spike_stats`).

    Attributes
    ----------
    spike : float
        ``max_t r_t / median_t r_t`` with ``r_t`` the pair's output/input warping-error
        ratio (input error floored, see :func:`warp_spike_stats`); 1.0 = even, a break-up spikes (issue 18: 166 on a garbled clip).
    frame : int
        Index ``t`` of the worst pair's second frame (in the frames given), −1 when undefined.
    median : float
        The median pair ratio.
    pairs : int
        Pairs with a defined ratio (reliable face pixels, a non-zero floored input error).
    floored : int
        Pairs whose input error was raised to the floor (below the clip's median: the
        slower half of the pairs, repeated input frames among them).
    """

    spike: float
    frame: int
    median: float
    pairs: int
    floored: int


def _spike_from_pairs(per_pair: Sequence[tuple[int, float, float, float]]) -> WarpSpike:
    measured = [(t, err_out / weight, err_in / weight) for t, err_out, err_in, weight in per_pair if weight > 0.0]
    if not measured:
        return WarpSpike(math.nan, -1, math.nan, 0, 0)
    frames = [t for t, _, _ in measured]
    e_out = np.array([e for _, e, _ in measured], np.float64)
    e_in = np.array([e for _, _, e in measured], np.float64)
    # a repeated input frame (frame-rate conversion: d6, d12, s20 repeat every ~3rd) has
    # an input error of compression noise only; unfloored, any output flicker there
    # reads as a 100x "spike" that no one can see (see warp_spike_stats)
    floor = SPIKE_INPUT_FLOOR * float(np.median(e_in))
    keep = np.maximum(e_in, floor) > 0.0
    if not keep.any():
        return WarpSpike(math.nan, -1, math.nan, 0, 0)
    r = e_out[keep] / np.maximum(e_in[keep], floor)
    median = float(np.median(r))
    worst = int(np.argmax(r))
    spike = float(r[worst] / median) if median > 0.0 else (1.0 if r[worst] == 0.0 else math.inf)
    return WarpSpike(spike, [t for t, k in zip(frames, keep) if k][worst], median, len(r), int((e_in[keep] < floor).sum()))


def warp_spike_stats(
    input_frames: Iterable[np.ndarray],
    output_frames: Iterable[np.ndarray],
    face_masks: Iterable[np.ndarray],
    *,
    fb_alpha: float = FB_ALPHA,
    fb_beta: float = FB_BETA,
) -> WarpSpike:
    """Break-ups: the largest per-frame-pair warping-error ratio over its median over the clip.

    For each consecutive pair (t−1, t), ``r_t`` = the output's warping error over the
    input's on the face, measured exactly as :func:`warp_errors` does (INPUT flow,
    OpenCV DIS, forward-backward check, face mask of frame t) but per pair instead
    of pooled. ``warp_spike = max_t r_t / median_t r_t``: a stylizer that flickers
    evenly scores ~1 however much it flickers (that is ``warp_ratio``'s job); one
    whose face tears apart between two frames scores far above (issue 18 asks ≤ 3).
    The input's error in ``r_t`` counts as at least its median over the clip's
    pairs (``SPIKE_INPUT_FLOOR`` = 1): a repeated input frame (clips converted to
    30 fps repeat every ~3rd frame; d6, d12, s20 of the data set) has an input error
    of compression noise only, ~1/100 of a moving pair's, and the output's faint
    flicker there (0.1–0.25 8-bit levels) read as spikes of 62–105 on d12's renders,
    placed on such a pair (frames 99→100, 11→12) instead of where the face tears.
    With the floor, a still pair's ratio is its output error against a
    typical input error, which a break-up still exceeds many times; a lower floor
    (0.25) let an evenly flickering made clip spike 4× on its one still pair.
    Pairs without reliable face pixels are left out.

    Parameters
    ----------
    input_frames, output_frames : iterable of ndarray, shape (H, W, 3), dtype uint8
        T RGB frames each (consumed once).
    face_masks : iterable of ndarray, shape (H, W), float in [0, 1]
        T face masks of the input.
    fb_alpha, fb_beta : float, keyword-only
        Forward-backward check tolerances (0.01, 0.5 px²).

    Returns
    -------
    WarpSpike
        ``spike`` (dimensionless, ≥ 1; ≈ 1 when the output is the input — the floor
        puts the slower pairs' ratios a little under 1, measured 1.02 on the sample
        clip; ``nan`` with no measurable pair), the worst pair's frame, the median ratio.

    Raises
    ------
    ValueError
        See :func:`warp_errors`.

    References
    ----------
    Issue 18; W.-S. Lai et al., ECCV 2018, §4.4 (warping error). DESIGN §9.
    """
    acc = _WarpAccumulator(fb_alpha=fb_alpha, fb_beta=fb_beta)
    for index, (inp, out, mask) in enumerate(_zip_exact(input_frames, output_frames, face_masks)):
        _check_frame_pair(inp, out, index)
        acc.add(inp, _check_mask(mask, inp.shape[:2], index), out)
    return _spike_from_pairs(acc.per_pair[0])


def warp_spike(
    input_frames: Iterable[np.ndarray],
    output_frames: Iterable[np.ndarray],
    face_masks: Iterable[np.ndarray],
    *,
    fb_alpha: float = FB_ALPHA,
    fb_beta: float = FB_BETA,
) -> float:
    """``warp_spike_stats(...).spike``: see :func:`warp_spike_stats` (≥ 1, 1 = even, ``nan`` when undefined)."""
    return warp_spike_stats(input_frames, output_frames, face_masks, fb_alpha=fb_alpha, fb_beta=fb_beta).spike


# ======================================================================================
# Both files at once
# ======================================================================================


def _zip_exact(*iterables: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    """zip that raises ValueError when the iterables have different lengths."""
    sentinel = object()
    iterators = [iter(it) for it in iterables]
    index = 0
    while True:
        items = [next(it, sentinel) for it in iterators]
        done = [item is sentinel for item in items]
        if all(done):
            return
        check(not any(done), "number of frames/masks", "equal", f"one sequence ended after {index}")
        yield tuple(items)
        index += 1


def _load_style(style_path: Path, style_landmarks: str | os.PathLike[str] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    from faceblit_core.media import read_image

    image = read_image(style_path)
    points, _ = resolve_landmarks(style_path, style_landmarks, image_size=(image.shape[1], image.shape[0]))
    return image, points if points is not None else detect_style_landmarks(image)


def evaluate_pair(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    style_path: str | os.PathLike[str],
    style_landmarks: str | os.PathLike[str] | np.ndarray | None = None,
    *,
    max_frames: int | None = None,
    step: int = 1,
    n_patches: int = NN_SAMPLES,
    seed: int = 0,
    backend: Any = None,
) -> dict[str, float | int]:
    """Measure an output video (or still) against its input and the style: all of DESIGN §9.

    One streaming pass over both files (memory stays a few frames). On every
    evaluated input frame, faces are detected on their own (``backend``, no
    tracking); their union mask (:func:`faceblit_core.guides.mask.face_mask`,
    feather 20) weighs the warping error (pooled for ``warp_ratio``, per pair for
    ``warp_spike``) and selects the ``style_nn`` patches; the largest face is the
    reference of every landmark figure (``struct_nme``, ``expr_err``, ``drift``,
    ``redetect_rate``: one detection per output frame serves them all) and its
    mask and landmarks place the face for ``sharp_ratio``. The style's mask comes
    from its landmarks the same way.

    Parameters
    ----------
    input_path, output_path : str or path-like
        The source clip and its stylization: same size and frame count (stills work:
        ``warp_*`` are then ``nan``).
    style_path : str or path-like
        The style exemplar image.
    style_landmarks : path, (68, 2) float array, or None
        Its landmarks; default ``NAME.lm.txt`` beside the style, else detected
        (:func:`faceblit_core.faces.detect_style_landmarks`).
    max_frames : int, optional, keyword-only
        Only the first ``max_frames`` frames of the clips (before ``step``).
    step : int, keyword-only
        Evaluate every ``step``-th frame (0, step, 2·step, …); the warping error then
        compares frames ``step`` apart, with the flow between those input frames.
    n_patches : int, keyword-only
        Patches sampled for ``style_nn`` (4000).
    seed : int, keyword-only
        Seed of that sampling.
    backend : LandmarkBackend, optional, keyword-only
        Landmark detector for masks and the landmark figures (default dlib).

    Returns
    -------
    dict
        ``warp_ratio``, ``struct_nme``, ``style_nn``, ``expr_err``, ``drift``,
        ``sharp_ratio``, ``warp_spike``, ``redetect_rate`` (the figures, see
        :func:`warp_ratio`, :func:`struct_nme`, :func:`style_nn`, :func:`expr_err_stats`,
        :func:`drift`, :func:`sharp_ratio`, :func:`warp_spike_stats`,
        :func:`redetect_rate`), and the raw figures: ``expr_err_mouth``,
        ``expr_err_eyes`` (the two terms of ``expr_err``), ``struct_nme_first_third``,
        ``struct_nme_last_third`` (drift's denominator and numerator),
        ``sharp_ratio_input`` (the input face's own crispness over the exemplar's),
        ``warp_spike_frame`` (clip frame index of the worst pair's second frame, −1
        if none), ``warp_pair_ratio_median`` (the median per-pair ratio),
        ``warp_pairs_floored`` (pairs whose input error was floored, see :func:`warp_spike_stats`),
        ``warp_error_output``, ``warp_error_input`` (RGB [0, 1]), ``warp_reliable``
        (fraction of face weight with consistent flow), ``struct_nme_median``,
        ``struct_nme_frames``, ``no_face_input``, ``no_face_output`` (frames),
        ``style_nn_input`` (the input's own style_nn at the same patches: the
        unstylized baseline), ``style_patches``, ``frames`` (evaluated),
        ``width``, ``height``.

    Raises
    ------
    InputError
        A file is missing or unreadable, or the output's size or frame count differs
        from the input's.
    StyleError
        The style cannot be read, its landmarks are bad or not found, or its mask is empty.
    ValueError
        Bad ``max_frames``, ``step`` or sampling options.

    References
    ----------
    DESIGN §9; see :func:`warp_errors`, :func:`struct_nme_stats`, :func:`style_nn`.
    """
    return evaluate_outputs(
        input_path, [(output_path, style_path, style_landmarks)],
        max_frames=max_frames, step=step, n_patches=n_patches, seed=seed, backend=backend,
    )[0]  # fmt: skip


def evaluate_outputs(
    input_path: str | os.PathLike[str],
    outputs: Sequence[tuple[Any, Any, Any]],
    *,
    max_frames: int | None = None,
    step: int = 1,
    n_patches: int = NN_SAMPLES,
    seed: int = 0,
    backend: Any = None,
) -> list[dict[str, float | int]]:
    """:func:`evaluate_pair` for several outputs of one input (e.g. one per exemplar) in one pass.

    The input's share of the work — decoding, face detection, face masks, the optical
    flow and the input's warping error, its crispness — is done once per frame for
    all outputs; each output adds its own detection and errors. Every dict is exactly
    what :func:`evaluate_pair` returns for that output alone (same sampling seed).

    Parameters
    ----------
    input_path : str or path-like
        The source clip.
    outputs : sequence of (output_path, style_path, style_landmarks)
        Each stylization with its exemplar and the exemplar's landmarks (path, (68, 2)
        array, or None for ``NAME.lm.txt`` beside it / detection); at least one.
    max_frames, step, n_patches, seed, backend : keyword-only
        As :func:`evaluate_pair`.

    Returns
    -------
    list of dict
        One per output, in order; keys as :func:`evaluate_pair`.

    Raises
    ------
    InputError, StyleError, ValueError
        As :func:`evaluate_pair` (for any of the outputs), or ``outputs`` empty.
    """
    from faceblit_core.geometry import Region
    from faceblit_core.guides.mask import face_mask
    from faceblit_core.media import iter_frames, probe

    check(isinstance(step, (int, np.integer)) and step >= 1, "step", "an integer >= 1", step)
    check(max_frames is None or (isinstance(max_frames, (int, np.integer)) and max_frames >= 1), "max_frames", "None or an integer >= 1", max_frames)
    check(len(outputs) >= 1, "outputs", "at least one", len(outputs))
    _check_nn_options(n_patches, NN_SCALE, NN_PATCH)
    in_info = probe(input_path)
    compared = min(in_info.n_frames, max_frames) if max_frames is not None else in_info.n_frames
    out_infos, styles = [], []
    for output_path, style_path, style_landmarks in outputs:
        out_info = probe(output_path)
        if (out_info.width, out_info.height) != (in_info.width, in_info.height):
            raise InputError(
                f"{output_path}: {out_info.width}x{out_info.height} frames, the input has {in_info.width}x{in_info.height}"
            )
        if out_info.n_frames < compared or (max_frames is None and out_info.n_frames != in_info.n_frames):
            raise InputError(f"{output_path}: {out_info.n_frames} frames, the input has {in_info.n_frames}")
        style_image, style_lm = _load_style(Path(style_path), style_landmarks)
        style_mask = style_face_mask(style_image, style_lm)
        pool = _style_pool(style_image, style_mask, NN_SCALE, NN_PATCH)
        out_infos.append(out_info)
        styles.append((pool, _style_sharpness(style_image, style_lm, style_mask)))

    n = len(outputs)
    backend = _default_backend() if backend is None else backend
    end = in_info.n_frames if max_frames is None else min(in_info.n_frames, int(max_frames))
    full = Region.full(in_info.width, in_info.height)
    warp = _WarpAccumulator(n)
    nme_accs = [_NMEAccumulator() for _ in range(n)]
    expr_accs = [_ExprAccumulator() for _ in range(n)]
    sharp_outs = [_SharpAccumulator() for _ in range(n)]
    sharp_in = _SharpAccumulator()
    # one sampler for all: the same patch places in every output and the input, as for one output
    sampler = _PatchSampler(n_patches, seed=seed, scale=NN_SCALE, patch=NN_PATCH, layers=n + 1)
    frames = 0
    streams = [iter_frames(in_info, start=0, end=end)] + [iter_frames(info, start=0, end=end) for info in out_infos]
    for index, (inp, *outs) in enumerate(zip(*streams)):
        if index % step:
            continue
        faces = backend.detect(inp)
        mask = np.zeros((in_info.height, in_info.width), np.float32)
        masks = [face_mask(inp, face.points, region=full, feather=MASK_FEATHER) for face in faces]
        for face_weight in masks:
            np.maximum(mask, face_weight, out=mask)
        warp.add(inp, mask, *outs)
        ref_mask = None
        for k, out in enumerate(outs):
            ref, matched = nme_accs[k].add(faces, backend.detect(out) if faces else [])
            expr_accs[k].add(ref, matched)
            if ref is not None:  # crispness of the face the landmark figures are about
                if ref_mask is None:
                    ref_mask = masks[next(i for i, face in enumerate(faces) if face is ref)]
                    sharp_in.add(inp, ref.points, ref_mask)
                sharp_outs[k].add(out, ref.points, ref_mask)
        sampler.add(mask, inp, *outs)
        frames += 1

    results = []
    for k, (pool, style_sharp) in enumerate(styles):
        w = warp.result(k)
        s = nme_accs[k].result()
        e = expr_accs[k].result()
        spike = _spike_from_pairs(warp.per_pair[k])
        first, last = _third_means(s.per_frame)
        results.append({
            "warp_ratio": w.ratio,
            "struct_nme": s.mean,
            "style_nn": _rms(_nearest_sq(sampler.kept[k + 1], pool), NN_PATCH),
            "expr_err": e.mean,
            "drift": drift(s),
            "sharp_ratio": sharp_outs[k].result() / style_sharp,
            "warp_spike": spike.spike,
            "redetect_rate": redetect_rate(s),
            "expr_err_mouth": e.mouth,
            "expr_err_eyes": e.eyes,
            "struct_nme_first_third": first,
            "struct_nme_last_third": last,
            "sharp_ratio_input": sharp_in.result() / style_sharp,
            "warp_spike_frame": spike.frame * step if spike.frame >= 0 else -1,
            "warp_pair_ratio_median": spike.median,
            "warp_pairs_floored": spike.floored,
            "warp_error_output": w.output,
            "warp_error_input": w.input,
            "warp_reliable": w.reliable,
            "struct_nme_median": s.median,
            "struct_nme_frames": s.frames,
            "no_face_input": s.no_face_input,
            "no_face_output": s.no_face_output,
            "style_nn_input": _rms(_nearest_sq(sampler.kept[0], pool), NN_PATCH),
            "style_patches": int(len(sampler.keys)),
            "frames": frames,
            "width": in_info.width,
            "height": in_info.height,
        })  # fmt: skip
    return results
