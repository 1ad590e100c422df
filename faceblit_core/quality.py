"""Measuring outputs (DESIGN §9).

Frame comparison (this part): :func:`psnr`, :func:`ssim` and :func:`compare_media`,
which backs ``faceblit compare A B [--min-psnr X]`` (regression clips in CI).
Self-contained: it needs only numpy, OpenCV and :mod:`faceblit_core.media`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from faceblit_core.checks import check
from faceblit_core.errors import InputError

# ======================================================================================
# PSNR / SSIM frame comparison
# ======================================================================================

#: SSIM constants of Wang et al. 2004 for 8-bit data: C1 = (0.01·255)², C2 = (0.03·255)².
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
#: Gaussian window of Wang et al. 2004: 11×11, σ = 1.5.
_SSIM_WIN = 11
_SSIM_SIGMA = 1.5


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    check(isinstance(a, np.ndarray) and isinstance(b, np.ndarray), "images", "numpy arrays", (type(a).__name__, type(b).__name__))
    check(a.dtype == np.uint8 and b.dtype == np.uint8, "image dtypes", "uint8", (a.dtype, b.dtype))
    check(a.shape == b.shape, "image shapes", "equal", (a.shape, b.shape))
    check((a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) and a.size > 0, "image shape", "(H, W) or (H, W, 3), non-empty", a.shape)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit images, in dB.

    ``10 · log10(255² / MSE)`` with the mean squared error over all pixels
    and channels.

    Parameters
    ----------
    a, b : ndarray, shape (H, W, 3) or (H, W), dtype uint8
        Same shape.

    Returns
    -------
    float
        dB; ``math.inf`` when the images are identical.

    Raises
    ------
    ValueError
        Different shapes or not uint8.

    References
    ----------
    Standard definition (e.g. Wang et al. 2004, §I).
    """
    import cv2

    _check_pair(a, b)
    # cv2.norm accumulates in double: exact for any image size, no int overflow.
    sse = cv2.norm(np.ascontiguousarray(a), np.ascontiguousarray(b), cv2.NORM_L2SQR)
    if sse == 0:
        return math.inf
    mse = sse / a.size
    return float(10.0 * math.log10(255.0**2 / mse))


def _luma(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim == 2:
        return img.astype(np.float64)
    # BT.601 luma (Y = 0.299 R + 0.587 G + 0.114 B), as OpenCV's RGB2GRAY, in float
    # so no rounding is added before the comparison.
    return cv2.transform(img.astype(np.float64), np.array([[0.299, 0.587, 0.114]]))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of the luma of two 8-bit images.

    Wang et al. 2004 with their standard settings: 11×11 Gaussian window,
    σ = 1.5, C1 = (0.01·255)², C2 = (0.03·255)², population (not sample)
    covariances. Computed with OpenCV filters on BT.601 luma; like
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255)`` the mean is
    taken over pixels at least 5 px from the border (reflected borders) —
    the tests check the two agree.

    Parameters
    ----------
    a, b : ndarray, shape (H, W, 3) RGB or (H, W), dtype uint8
        Same shape; H, W ≥ 11.

    Returns
    -------
    float
        SSIM in [-1, 1]; 1.0 for identical images.

    Raises
    ------
    ValueError
        Different shapes, not uint8, or smaller than the 11×11 window.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality
    assessment: from error visibility to structural similarity", IEEE TIP
    13(4), 2004, §III-B (eq. 13) and §III-C (window, constants).
    """
    import cv2

    _check_pair(a, b)
    check(min(a.shape[:2]) >= _SSIM_WIN, "image size", f">= {_SSIM_WIN} px on each side", a.shape[:2])
    x, y = _luma(a), _luma(b)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    num = (2.0 * mx * my + _SSIM_C1) * (2.0 * sxy + _SSIM_C2)
    den = (mx * mx + my * my + _SSIM_C1) * (sxx + syy + _SSIM_C2)
    pad = (_SSIM_WIN - 1) // 2
    return float((num / den)[pad:-pad, pad:-pad].mean())


@dataclass(frozen=True)
class FrameScore:
    """Scores of one frame pair: ``index`` (0-based), ``psnr`` (dB, inf if equal), ``ssim`` ([-1, 1], NaN if not computed)."""

    index: int
    psnr: float
    ssim: float


def compare_media(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    with_ssim: bool = True,
    end: int | None = None,
) -> list[FrameScore]:
    """Per-frame PSNR and SSIM of two videos, or of two still images.

    Both inputs are decoded with :mod:`faceblit_core.media` (upright RGB, every
    frame) and compared frame by frame.

    Parameters
    ----------
    a, b : str or PathLike
        Two videos with the same frame count and size, or two images of the same size.
    with_ssim : bool, keyword-only
        Also compute SSIM (about 3× the time of PSNR); ``ssim`` is NaN otherwise.
    end : int or None, keyword-only
        Compare only the first ``end`` frames (``None`` = all).

    Returns
    -------
    list of FrameScore
        One per frame, in order.

    Raises
    ------
    InputError
        An input cannot be read; one is an image and the other a video; the
        sizes differ; the frame counts differ (the message gives both numbers).

    References
    ----------
    Wang et al. 2004 (SSIM); DESIGN §9.
    """
    from faceblit_core import media

    ia, ib = media.probe(a), media.probe(b)
    if ia.is_image != ib.is_image:
        kind = lambda i: "an image" if i.is_image else "a video"  # noqa: E731
        raise InputError(f"cannot compare {kind(ia)} ({os.fspath(a)}) with {kind(ib)} ({os.fspath(b)})")
    if (ia.width, ia.height) != (ib.width, ib.height):
        raise InputError(f"sizes differ: {os.fspath(a)} is {ia.width}x{ia.height}, {os.fspath(b)} is {ib.width}x{ib.height}")
    if ia.n_frames != ib.n_frames:
        raise InputError(f"frame counts differ: {os.fspath(a)} has {ia.n_frames}, {os.fspath(b)} has {ib.n_frames}")
    n = ia.n_frames if end is None else min(end, ia.n_frames)
    scores: list[FrameScore] = []
    frames_a = media.iter_frames(ia, end=n)
    frames_b = media.iter_frames(ib, end=n)
    try:
        for i, (fa, fb) in enumerate(zip(frames_a, frames_b)):
            scores.append(FrameScore(i, psnr(fa, fb), ssim(fa, fb) if with_ssim else math.nan))
    finally:
        frames_a.close()
        frames_b.close()
    return scores
