"""Appearance guide G_app: high-pass luminance, 128 = no detail (DESIGN §4.2).

``G_app = (gray − up(pyrDown³(gray))) / 2 + 128``. The style's guide is
contrast-stretched symmetrically about 128 (:func:`stretch_contrast`); the
target's is histogram-matched to the style's (:func:`match_histogram`), so dark
strokes of the exemplar land on dark detail of the target.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceblit_core.checks import check, check_array

__all__ = ["appearance_guide", "stretch_contrast", "app_cdf", "match_histogram"]

_LEVELS = 3  # pyramid levels below the image: low-pass cut-off at ~1/8 of the resolution
_STEP = 1 << _LEVELS


def appearance_guide(rgb: np.ndarray) -> np.ndarray:
    """High-pass luminance of an image, stored as ``diff/2 + 128`` in uint8.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 RGB
        Image (or crop), H, W ≥ 1.

    Returns
    -------
    (H, W) uint8
        ``clip(round((gray − low)/2 + 128), 0, 255)`` where gray is the BT.601
        luma (``cv2.COLOR_RGB2GRAY``) and ``low`` the three-times ``pyrDown``
        image brought back to full size by bilinear interpolation. A constant
        image gives 128 everywhere.

    Raises
    ------
    ValueError
        On a wrong shape or dtype.

    Notes
    -----
    Geometry: ``pyrDown`` centres output pixel j on input pixel 2j, so pixel j
    of the third level sits on full-resolution pixel 8j. The up-sampling puts
    it back there exactly, for any size (not only multiples of 8), with the
    last level-3 value held constant beyond pixel 8·(n − 1). (FaceBlit's
    ``cv::resize`` instead stretches the level to the full size with
    pixel-centre alignment, which shifts the low-pass by ~3.5 px.) The
    up-sampling runs on uint8 with OpenCV's fixed-point bilinear weights
    (exact at the nodes, rounded to the nearest level elsewhere: ≤ 0.25 of an
    output level), twice as fast as a float32 pipeline.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (appearance guide G_app).
    """
    check_array(rgb, "image", shape=(None, None, 3), dtype=np.uint8)
    h, w = rgb.shape[:2]
    check(h >= 1 and w >= 1, "image size", ">= 1 px", (h, w))
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    low = gray
    for _ in range(_LEVELS):
        if low.shape[0] < 2 and low.shape[1] < 2:
            break  # pyrDown of a 1×1 image is itself; OpenCV rejects it
        low = cv2.pyrDown(low)
    # Node j of `low` on pixel 8j: dst→src x/8 (exact in warpAffine's 1/32-px table).
    m = np.array([[1.0 / _STEP, 0.0, 0.0], [0.0, 1.0 / _STEP, 0.0]])
    up = cv2.warpAffine(low, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE)
    # 0.5·gray − 0.5·up + 128, rounded and saturated in one pass.
    return cv2.addWeighted(gray, 0.5, up, -0.5, 128.0)


def stretch_contrast(app: np.ndarray, *, percentile: float = 99.0, target: float = 127.0) -> np.ndarray:
    """Stretch an appearance guide symmetrically about 128 (for the style exemplar).

    ``out = clip(round(128 + g·(app − 128)), 0, 255)`` with the gain
    g = ``target`` / (the ``percentile``-th percentile of |app − 128|). The
    map is odd about 128, so 128 stays 128 and the mean moves only by g times
    the (near-zero) mean of the high-pass; the top 1 % of details saturate
    instead of one outlier setting the gain (FaceBlit stretches by the min/max).

    Parameters
    ----------
    app : (H, W) uint8
        Appearance guide (:func:`appearance_guide`).
    percentile : float, keyword-only, in (0, 100]
        Percentile of |app − 128| mapped to ``target`` (99).
    target : float, keyword-only, in (0, 128]
        Output distance from 128 of that percentile (127: almost full range).

    Returns
    -------
    (H, W) uint8
        The stretched guide; ``app`` unchanged (copied) when it is flat (the
        percentile is 0).

    Raises
    ------
    ValueError
        On a wrong shape/dtype or out-of-range options.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (style G_app contrast-stretched,
    symmetric so the mean does not shift).
    """
    check_array(app, "appearance guide", shape=(None, None), dtype=np.uint8)
    check(0 < percentile <= 100, "percentile", "a value in (0, 100]", percentile)
    check(0 < target <= 128, "target", "a value in (0, 128]", target)
    if app.size == 0:
        return app.copy()
    # Percentile of |app − 128| from a 129-bin histogram: exact for integer data, no sort.
    hist = cv2.calcHist([np.ascontiguousarray(app)], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    dev = np.zeros(129)
    dev[0] = hist[128]
    dev[1:128] = hist[129:256] + hist[127:0:-1]
    dev[128] = hist[0]
    cdf = np.cumsum(dev) / dev.sum()
    spread = int(np.searchsorted(cdf, percentile / 100.0 - 1e-12))
    if spread == 0:
        return app.copy()
    gain = target / spread
    lut = np.clip(np.rint(128.0 + gain * (np.arange(256) - 128.0)), 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(app), lut)


def _as_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    check(m.shape == shape, "mask shape", shape, m.shape)
    if m.dtype == np.bool_:
        return np.ascontiguousarray(m).view(np.uint8)
    if m.dtype == np.uint8:
        return np.ascontiguousarray(m)
    # Float masks (e.g. the feathered face mask): pixels above one half count.
    return (m > 0.5).view(np.uint8)


def _histogram(app: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return cv2.calcHist([np.ascontiguousarray(app)], [0], mask, [256], [0, 256]).ravel().astype(np.float64)


def app_cdf(app: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Cumulative distribution of an appearance guide's values (the histogram-matching reference).

    Parameters
    ----------
    app : (H, W) uint8
        Appearance guide.
    mask : (H, W) bool, uint8 or float array, keyword-only, optional
        Only pixels where the mask is true / non-zero (uint8) / > 0.5 (float) count.

    Returns
    -------
    (256,) float64
        ``cdf[v]`` = fraction of counted pixels with value ≤ v; non-decreasing,
        ``cdf[255] = 1``. All zeros when no pixel counts.

    Raises
    ------
    ValueError
        On a wrong shape or dtype.

    References
    ----------
    R. C. Gonzalez, R. E. Woods, "Digital Image Processing", §3.3.2 (histogram matching).
    """
    check_array(app, "appearance guide", shape=(None, None), dtype=np.uint8)
    hist = _histogram(app, _as_mask(mask, app.shape))
    total = hist.sum()
    if total <= 0:
        return np.zeros(256)
    cdf = np.cumsum(hist) / total
    cdf[-1] = 1.0
    return cdf


def match_histogram(app: np.ndarray, reference_cdf: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Map an appearance guide's values so their distribution matches a reference CDF.

    Classic CDF matching through a 256-entry look-up table: value v goes to
    the smallest r with ``reference_cdf[r] ≥ cdf(v)``. The source CDF is taken
    over ``mask`` (the face, so background clutter does not steer it) but the
    table is applied to the whole image.

    Parameters
    ----------
    app : (H, W) uint8
        Target appearance guide (:func:`appearance_guide` of the frame crop).
    reference_cdf : (256,) float array
        Non-decreasing, last value 1: :func:`app_cdf` of the style's stretched
        guide (``StyleAsset.app_cdf``).
    mask : (H, W) bool, uint8 or float array, keyword-only, optional
        Pixels that define the source histogram; all pixels when ``None`` or
        when the mask selects none.

    Returns
    -------
    (H, W) uint8
        The matched guide.

    Raises
    ------
    ValueError
        On wrong shapes/dtypes or a reference that is not a CDF.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (target G_app histogram-matched to the style's).
    R. C. Gonzalez, R. E. Woods, "Digital Image Processing", §3.3.2 (histogram matching).
    """
    check_array(app, "appearance guide", shape=(None, None), dtype=np.uint8)
    ref = np.asarray(reference_cdf, dtype=np.float64)
    check_array(ref, "reference CDF", shape=(256,))
    check(bool(np.all(np.diff(ref) >= -1e-9)) and math.isclose(ref[-1], 1.0, abs_tol=1e-6),
          "reference CDF", "non-decreasing, ending at 1", f"ends at {ref[-1]!r}")
    if app.size == 0:
        return app.copy()
    m = _as_mask(mask, app.shape)
    hist = _histogram(app, m)
    if hist.sum() <= 0:
        hist = _histogram(app, None)
    src = np.cumsum(hist) / hist.sum()
    # Tolerance: float sums of identical histograms must map v to v.
    lut = np.searchsorted(ref, src - 1e-9, side="left")
    lut = np.clip(lut, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(app), lut)
