"""Texture figures: :func:`style_nn` (distance from the output's face patches to their
nearest patch of the style's face) and :func:`sharp_ratio` (crispness of the output's
face over the exemplar's, by mean |Laplacian| at a common eye distance).
"""

from __future__ import annotations

import math
from typing import Iterable

import cv2
import numpy as np
import torch

from faceblit_core.checks import check, check_array
from faceblit_core.errors import StyleError
from faceblit_core.faces import inter_ocular
from faceblit_core.guides.mask import whole_face_mask
from faceblit_core.evaluation.constants import MASK_FEATHER, MASK_THRESHOLD, NN_PATCH, NN_SAMPLES, NN_SCALE, SHARP_IOD
from faceblit_core.evaluation.warping import _check_mask, _zip_exact


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
    """Face mask of a style exemplar from its landmarks (the pipeline's exemplar face mask, whole image).

    The whole forehead ellipse is in (:func:`~faceblit_core.guides.mask.whole_face_mask`):
    the style patches pooled should be the whole face's.

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
    check_array(style_image, "style image", shape=(None, None, 3), dtype=np.uint8)
    return whole_face_mask(style_image, style_landmarks, feather=feather)


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
        Its face mask; default the face mask of ``points`` with the whole forehead
        (:func:`faceblit_core.guides.mask.whole_face_mask`, feather ``MASK_FEATHER``:
        the same region whether or not hair covers it).

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
    check_array(image, "image", shape=(None, None, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    points = np.asarray(points, np.float32)
    check_array(points, "landmarks", shape=(68, 2))
    mask = whole_face_mask(image, points, feather=MASK_FEATHER) if mask is None else _check_mask(mask, (h, w), 0)
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
