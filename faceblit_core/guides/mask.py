"""Soft face mask for compositing the stylized face over the frame (DESIGN §4.4).

mask = feather( hull(jaw ∪ brows) ∪ forehead half-ellipse ∪ forehead skin ).

* Hull of the jaw line (iBUG 0–16) and the brows (17–26): the jaw polygon
  closed across the brows, so the bottom of the forehead is in.
* Forehead: an ellipse centred on the brows, as wide as the jaw (points
  0 and 16), reaching 0.6 × the brow-to-chin distance above the brows, turned
  with the eye line — it covers the forehead of tilted and rotated faces,
  which FaceBlit's axis-aligned ellipse does not. Its lower half fills the
  temples between the hull and the brow line.
* Skin: pixels of a band above the brows (one jaw width wide, up to 1.0 ×
  the brow-to-chin distance) whose chroma (YCrCb Cr, Cb) lies within
  ``skin_tol`` of one of three skin samples taken on the cheeks and the nose
  bridge, kept only where connected to the shapes above (a skin-coloured wall
  next to the head stays out). Luma is not compared, so shading does not
  matter, except for a floor (60 % of the sample's luma): dark brown hair has
  skin-like chroma. This follows high foreheads and receding hairlines the
  fixed ellipse misses; on the test photos it adds little and rarely strays.
* Feathered with a ``feather`` × ``feather`` box blur (FaceBlit: 20).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceblit_core.checks import check, check_array
from faceblit_core.geometry import Region

__all__ = ["face_mask", "face_mask_outline", "mask_to_gray"]

_SHIFT = 4  # sub-pixel bits for OpenCV's polygon/ellipse drawing
_ONE = 1 << _SHIFT
_FOREHEAD_HEIGHT = 0.6  # × brow-to-chin distance
_BAND_HEIGHT = 1.0  # skin search band above the brows, × brow-to-chin distance
_BAND_WIDTH = 1.0  # × jaw width
_SKIN_GRID = 96  # skin test on a grid of at most this many cells across the band
_MIN_REL_LUMA = 0.6  # skin must be at least this bright relative to the sample


class _FaceFrame:
    """Landmark-derived measures shared by the mask and its outline (all float64, px)."""

    def __init__(self, pts: np.ndarray) -> None:
        self.pts = pts
        self.brow = pts[17:27].mean(axis=0)
        eye_l, eye_r = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
        ex = eye_r - eye_l
        n = math.hypot(ex[0], ex[1])
        # Degenerate eyes (all points equal): fall back to an upright face.
        self.ex = ex / n if n > 1e-6 else np.array([1.0, 0.0])
        # "Up" is the eye line turned by −90° (y grows downwards); flip it if the
        # chin is on that side (mirrored landmark order).
        up = np.array([self.ex[1], -self.ex[0]])
        self.mirrored = bool(np.dot(up, self.brow - pts[8]) < 0)
        self.up = -up if self.mirrored else up
        self.angle = math.degrees(math.atan2(self.ex[1], self.ex[0]))
        self.jaw_w = max(float(np.linalg.norm(pts[16] - pts[0])), 1.0)
        self.brow_chin = max(float(np.linalg.norm(pts[8] - self.brow)), 1.0)

    def ellipse_axes(self) -> tuple[float, float]:
        return self.jaw_w / 2.0, _FOREHEAD_HEIGHT * self.brow_chin

    def band(self) -> np.ndarray:
        half = 0.5 * _BAND_WIDTH * self.jaw_w * self.ex
        top = _BAND_HEIGHT * self.brow_chin * self.up
        b = self.brow
        return np.array([b - half, b + half, b + half + top, b - half + top])


def _fixed(points: np.ndarray) -> np.ndarray:
    # Clamp far-away points so the fixed-point coordinates cannot overflow int32.
    return np.rint(np.clip(points, -1e6, 1e6) * _ONE).astype(np.int32)


def _skin_samples(ycrcb_of, frame: np.ndarray, ff: _FaceFrame) -> list[np.ndarray]:
    """Median (Y, Cr, Cb) of small patches on both cheeks and the nose bridge (frame coordinates)."""
    p = ff.pts
    centres = [0.5 * (p[2] + p[31]), 0.5 * (p[14] + p[35]), p[28]]
    r = max(1, int(round(0.02 * ff.jaw_w)))
    H, W = frame.shape[:2]
    samples = []
    for c in centres:
        x, y = int(round(c[0])), int(round(c[1]))
        x0, x1, y0, y1 = max(x - r, 0), min(x + r + 1, W), max(y - r, 0), min(y + r + 1, H)
        if x1 - x0 < 1 or y1 - y0 < 1 or (x1 - x0) * (y1 - y0) < (r + 1) ** 2:
            continue  # sample (mostly) outside the frame
        patch = ycrcb_of(frame[y0:y1, x0:x1])
        samples.append(np.median(patch.reshape(-1, 3), axis=0))
    return samples


def face_mask(
    frame: np.ndarray,
    landmarks: np.ndarray,
    *,
    region: Region,
    feather: int = 20,
    skin_tol: float = 8.0,
) -> np.ndarray:
    """Soft mask of the face (jaw, forehead, forehead skin) on ``region``.

    Parameters
    ----------
    frame : (H, W, 3) uint8 RGB
        The whole frame (skin samples may lie outside ``region``).
    landmarks : (68, 2) float array
        iBUG landmarks of the face, frame px; points outside the frame are fine.
    region : Region, keyword-only
        Part of the frame the mask covers, frame px (non-empty, inside the frame).
    feather : int, keyword-only, ≥ 0
        Box-blur size, frame px (``StylizeConfig.mask_feather``; FaceBlit: 20);
        0 or 1 gives a hard mask.
    skin_tol : float, keyword-only, ≥ 0
        Largest (Cr, Cb) distance from a skin sample for a forehead pixel to count
        as skin, 8-bit YCrCb units (8); 0 disables the skin part.

    Returns
    -------
    (h, w) float32 in [0, 1]
        ``(h, w) = region.shape``; 1 = face (fully stylized), 0 = keep the frame.
        The values do not depend on the region's placement (the shapes are drawn
        with the feathering's reach around it, the skin test runs on the whole
        band): any region gives the same pixels as the full-frame mask. Where
        the face runs off the frame the mask stays opaque up to the frame edge.
        The forehead reaches above the landmarks' box: size the region with
        :func:`face_mask_outline` or the mask is cut at the region's top.

    Raises
    ------
    ValueError
        On wrong shapes/dtypes, non-finite landmarks, a region outside the
        frame or a negative ``feather``/``skin_tol``.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (face mask: jaw polygon, forehead
    ellipse, skin by YUV chroma distance; 20×20 box-blur feathering).
    """
    check_array(frame, "frame", shape=(None, None, 3), dtype=np.uint8)
    pts = np.asarray(landmarks, dtype=np.float64)
    check_array(pts, "landmarks", shape=(68, 2))
    check(bool(np.isfinite(pts).all()), "landmarks", "finite coordinates", "NaN or inf")
    H, W = frame.shape[:2]
    check(isinstance(region, Region) and not region.is_empty and region.x0 >= 0 and region.y0 >= 0
          and region.x1 <= W and region.y1 <= H, "region", f"a non-empty Region inside the {W}x{H} frame", region)
    check(isinstance(feather, (int, np.integer)) and feather >= 0, "feather", "an integer >= 0", feather)
    check(math.isfinite(skin_tol) and skin_tol >= 0, "skin_tol", "a finite value >= 0", skin_tol)

    # Draw on the region grown by the feathering reach (clipped to the frame), blur,
    # then crop: the values then do not depend on where the region starts, and a
    # face running off the frame stays opaque up to the frame edge (replicated).
    reach = int(feather) // 2 + 1 if feather > 1 else 0
    canvas = Region(max(region.x0 - reach, 0), max(region.y0 - reach, 0),
                    min(region.x1 + reach, W), min(region.y1 + reach, H))
    ff = _FaceFrame(pts)
    mask = np.zeros(canvas.shape, dtype=np.uint8)
    _draw_shapes(mask, ff, origin=canvas.origin, scale=1)
    if skin_tol > 0:
        _add_forehead_skin(mask, canvas, frame, ff, skin_tol)
    if feather > 1:
        mask = cv2.blur(mask, (int(feather), int(feather)), borderType=cv2.BORDER_REPLICATE)
    mask = mask[region.y0 - canvas.y0 : region.y1 - canvas.y0, region.x0 - canvas.x0 : region.x1 - canvas.x0]
    return mask.astype(np.float32) / np.float32(255.0)


def _draw_shapes(img: np.ndarray, ff: _FaceFrame, *, origin: tuple[int, int], scale: int) -> None:
    """Fill the jaw/brow hull and the forehead ellipse (255) into ``img``.

    ``img`` pixel (i, j) is the ``scale``×``scale`` block of frame pixels
    starting at ``origin + scale·(i, j)``.
    """
    def to_img(p: np.ndarray) -> np.ndarray:
        return (p - np.asarray(origin, dtype=np.float64)) / scale - 0.5 + 0.5 / scale

    hull = cv2.convexHull(_fixed(to_img(ff.pts[:27])).reshape(-1, 1, 2))
    cv2.fillConvexPoly(img, hull, 255, lineType=cv2.LINE_8, shift=_SHIFT)
    ax, ay = ff.ellipse_axes()
    cx, cy = _fixed(to_img(ff.brow))
    # The whole ellipse: its upper half is the forehead, its lower half fills the
    # temples between the hull's jaw-to-brow edges and the brow line.
    axes = (int(round(min(ax / scale, 1e6) * _ONE)), int(round(min(ay / scale, 1e6) * _ONE)))
    cv2.ellipse(img, (int(cx), int(cy)), axes, ff.angle, 0.0, 360.0, 255, thickness=-1,
                lineType=cv2.LINE_8, shift=_SHIFT)


def _add_forehead_skin(mask: np.ndarray, canvas: Region, frame: np.ndarray, ff: _FaceFrame, tol: float) -> None:
    """OR into ``mask`` (covering ``canvas``) the skin-coloured band pixels connected to the face shapes.

    Works on the band's bounding box in the whole frame (so the result does not
    depend on the canvas), downsampled to at most ~96 cells across by block
    means: the mask is feathered by ~20 px anyway, and this keeps the cost
    constant whatever the face size.
    """
    def ycrcb_of(rgb: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YCrCb)

    samples = _skin_samples(ycrcb_of, frame, ff)
    if not samples:
        return
    H, W = frame.shape[:2]
    band = ff.band()
    bx0 = max(int(math.floor(band[:, 0].min())), 0)
    by0 = max(int(math.floor(band[:, 1].min())), 0)
    bx1 = min(int(math.ceil(band[:, 0].max())) + 1, W)
    by1 = min(int(math.ceil(band[:, 1].max())) + 1, H)
    f = max(1, -(-max(bx1 - bx0, by1 - by0) // _SKIN_GRID))
    # Whole f×f blocks, so block means and the nearest-neighbour up-sampling line up.
    bw, bh = (bx1 - bx0) // f, (by1 - by0) // f
    if bw < 2 or bh < 2:
        return
    bx1, by1 = bx0 + bw * f, by0 + bh * f
    hit = Region(bx0, by0, bx1, by1).intersect(canvas)
    if hit.is_empty:
        return
    crop = frame[by0:by1, bx0:bx1]
    if f > 1:
        crop = cv2.resize(crop, (bw, bh), interpolation=cv2.INTER_AREA)
    ycc = ycrcb_of(crop).astype(np.float32)
    base8 = np.zeros((bh, bw), dtype=np.uint8)
    _draw_shapes(base8, ff, origin=(bx0, by0), scale=f)
    base = base8 > 0
    in_band = np.zeros((bh, bw), dtype=np.uint8)
    corners = (band - np.array([bx0, by0], dtype=np.float64)) / f - 0.5 + 0.5 / f
    cv2.fillConvexPoly(in_band, _fixed(corners).reshape(-1, 1, 2), 1, lineType=cv2.LINE_8, shift=_SHIFT)
    skin = np.zeros((bh, bw), dtype=bool)
    for s in samples:
        d = (ycc[..., 1] - s[1]) ** 2 + (ycc[..., 2] - s[2]) ** 2
        # Chroma is unreliable in the dark (dark brown hair has skin-like chroma):
        # also require some light, relative to the sample so skin tone does not matter.
        skin |= (d <= tol * tol) & (ycc[..., 0] >= _MIN_REL_LUMA * s[0])
    skin &= in_band.astype(bool)
    n, labels = cv2.connectedComponents((skin | base).view(np.uint8), connectivity=4)
    if n <= 1:
        return
    keep = np.zeros(n, dtype=bool)
    keep[np.unique(labels[base])] = True
    keep[0] = False
    grown = (keep[labels] & skin).view(np.uint8)
    if f > 1:
        grown = cv2.resize(grown, (bw * f, bh * f), interpolation=cv2.INTER_NEAREST)
    src = grown[hit.y0 - by0 : hit.y1 - by0, hit.x0 - bx0 : hit.x1 - bx0].astype(bool)
    mask[hit.y0 - canvas.y0 : hit.y1 - canvas.y0, hit.x0 - canvas.x0 : hit.x1 - canvas.x0][src] = 255


def face_mask_outline(landmarks: np.ndarray) -> np.ndarray:
    """Points whose bounding box holds the unfeathered mask's hull and forehead ellipse.

    Useful to size the synthesis region so the forehead is not cut off:
    ``Region.around(face_mask_outline(lm), margin, frame_size)`` — the landmarks
    alone stop at the brows. (Forehead skin found above the ellipse and the
    feathering are not included.)

    Parameters
    ----------
    landmarks : (68, 2) float array
        iBUG landmarks, px.

    Returns
    -------
    (M, 2) float32
        The 27 jaw/brow landmarks followed by 32 points on the forehead ellipse, px.

    Raises
    ------
    ValueError
        On a wrong shape or non-finite landmarks.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (face mask).
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    check_array(pts, "landmarks", shape=(68, 2))
    check(bool(np.isfinite(pts).all()), "landmarks", "finite coordinates", "NaN or inf")
    ff = _FaceFrame(pts)
    ax, ay = ff.ellipse_axes()
    t = np.linspace(0.0, 2.0 * math.pi, 33)[:-1]
    arc = ff.brow + np.outer(np.cos(t) * ax, ff.ex) + np.outer(np.sin(t) * ay, ff.up)
    return np.concatenate([pts[:27], arc]).astype(np.float32)


def mask_to_gray(mask: np.ndarray) -> np.ndarray:
    """8-bit picture of a mask (for ``--save-guides``).

    Parameters
    ----------
    mask : (h, w) float array in [0, 1]

    Returns
    -------
    (h, w) uint8
        ``clip(round(255 · mask), 0, 255)``.

    Raises
    ------
    ValueError
        On a wrong shape.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (face mask used as alpha).
    """
    check_array(mask, "mask", shape=(None, None))
    return np.clip(np.rint(np.asarray(mask, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
