"""Soft face mask for compositing the stylized face over the frame (DESIGN §4.4).

mask = feather( hull(jaw ∪ brows) ∪ forehead skin )            (hair-aware, frames)
mask = feather( hull(jaw ∪ brows) ∪ forehead ellipse ∪ skin )   (``hair_aware=False``)

* Hull of the jaw line (iBUG 0–16) and the brows (17–26): the jaw polygon
  closed across the brows. Always in: the landmarks place it.
* Forehead ellipse: centred on the brows, as wide as the jaw (points 0 and 16),
  reaching 0.6 × the brow-to-chin distance above the brows, turned with the eye
  line (FaceBlit's ellipse is axis-aligned). Its upper half is the forehead, its
  lower half the temples beside the hull. Laid in whole it puts the exemplar's
  forehead over whatever covers the target's: a dark fringe became a grey oval,
  blonde hair got the exemplar's hair painted on (issue 14).
* Forehead skin (the target's frames): above the brows only what is this face's
  skin is kept. The search area is the ellipse and a band above the brows (one
  jaw width wide, up to 1.0 × the brow-to-chin distance, for high foreheads and
  receding hairlines), on a grid of block means (at most 96 cells across, so the
  cost does not grow with the face). Skin samples: median (Y, Cr, Cb) of patches
  on both cheeks and the nose bridge, plus three just above the brows kept when
  close to the cheeks' colour (2.5 × ``skin_tol`` in chroma, at least 0.75 × their
  median luma): foreheads often differ from cheeks (blush, make-up, shine), and
  a fringe down to the brows is refused. A cell is skin when, for some sample,
  (chroma distance / ``skin_tol``)² + (darkness / 0.4)² ≤ 1, darkness = 1 − Y/Y_s
  when darker than the sample (0 when lighter: highlights and skin tone do not
  matter). Chroma alone cannot tell skin from brown or golden hair; hair is also
  darker than the lit skin beside it, and a cell near both limits is out. Then
  the skin map is cleaned: opened with a disc of 0.04 × the jaw width (specks,
  a parting, lit strands cannot bridge to hair or walls), kept where 4-connected
  to the hull, its holes filled (a highlight, a mole, a stray lock inside bare
  skin stay in), up-sampled bilinearly and cut at one half (a smooth edge, not
  grid steps), and joined to the exactly drawn hull without a gap. A bare
  forehead is covered up to the hairline; a fringe, hair at the temples and
  skin-coloured walls beyond the hair are left out.
* ``hair_aware=False`` (exemplars, and the evaluation's measuring masks): the
  whole ellipse, plus skin connected to it (the same test), as before issue 14 —
  a painting's colours are no skin test, and the region measured must not
  depend on where the input's hair lies. ``skin_tol=0``: hull ∪ ellipse only.
  Without skin samples in the frame the ellipse is laid in.
* Feathered with a ``feather`` × ``feather`` box blur (FaceBlit: 20).

Temporal behaviour: the colour test runs per frame on block means; where the
hair edge flickers the stylizer's flow-carried mask (``temporal_state.clamp_mask``,
±0.25) smooths it.
Limits: a golden fringe reaching the brows is taken for the forehead's colour
(then the mask is as before); a painted or heavily lit forehead whose colour is
far from the cheeks' is left out (the mask then stops at the brows).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceblit_core.checks import check, check_array
from faceblit_core.geometry import Region

__all__ = ["face_mask", "whole_face_mask", "continue_face_outward", "face_mask_outline", "mask_to_gray"]

_SHIFT = 4  # sub-pixel bits for OpenCV's polygon/ellipse drawing
_ONE = 1 << _SHIFT
_FOREHEAD_HEIGHT = 0.6  # × brow-to-chin distance
_BAND_HEIGHT = 1.0  # skin search band above the brows, × brow-to-chin distance
_BAND_WIDTH = 1.0  # × jaw width
_SKIN_GRID = 96  # skin test on a grid of at most this many cells across the forehead box
_MIN_REL_LUMA = 0.6  # at the sample's chroma, skin is at least this light relative to the sample
_FOREHEAD_SAMPLE_LIFT = 0.1  # forehead samples: this × brow-to-chin distance above the brows
_FOREHEAD_SAMPLE_TOL = 2.5  # × skin_tol: how far a forehead sample may be from the cheeks' colour
_FOREHEAD_SAMPLE_LUMA = 0.75  # ... and at least this light relative to the cheeks' median luma
_SQUARE = np.ones((3, 3), dtype=np.uint8)
_OPEN_RADIUS = 0.04  # × jaw width: skin narrower than ~2× this is dropped above the brows


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


def _ycrcb(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YCrCb)


def _patch_medians(frame: np.ndarray, centres: list[np.ndarray], r: int) -> list[np.ndarray]:
    """Median (Y, Cr, Cb) of the (2r+1)² patch around each centre (frame px); patches mostly off the frame are skipped."""
    H, W = frame.shape[:2]
    out = []
    for c in centres:
        x, y = int(round(c[0])), int(round(c[1]))
        x0, x1, y0, y1 = max(x - r, 0), min(x + r + 1, W), max(y - r, 0), min(y + r + 1, H)
        if x1 - x0 < 1 or y1 - y0 < 1 or (x1 - x0) * (y1 - y0) < (r + 1) ** 2:
            continue  # sample (mostly) outside the frame
        out.append(np.median(_ycrcb(frame[y0:y1, x0:x1]).reshape(-1, 3), axis=0).astype(np.float32))
    return out


def _is_skin(ycc: np.ndarray, sample: np.ndarray, tol: float) -> np.ndarray:
    """Skin test of YCrCb pixels ``(..., 3)`` float32 against skin samples (Y, Cr, Cb) ``(..., 3)``
    (broadcast against each other) → bool ``(...)``.

    Chroma alone does not tell brown or blonde hair (skin-like chroma) from skin,
    and hair is darker than the lit skin it lies on: a pixel is skin when its
    chroma distance (in ``tol``) and its darkness relative to the sample (in
    1 − ``_MIN_REL_LUMA``; lighter counts as 0, so highlights and skin tone do not
    matter) lie within the unit circle — a pixel near both limits (shaded hair of
    skin-like hue) is out.
    """
    chroma = ((ycc[..., 1] - sample[..., 1]) ** 2 + (ycc[..., 2] - sample[..., 2]) ** 2) / np.float32(tol * tol)
    dark = np.maximum(1.0 - ycc[..., 0] / np.maximum(sample[..., 0], 1.0), 0.0) / np.float32(1.0 - _MIN_REL_LUMA)
    return chroma + dark * dark <= 1.0


def _skin_samples(frame: np.ndarray, ff: _FaceFrame, tol: float) -> list[np.ndarray]:
    """Skin colours (Y, Cr, Cb) of this face: the cheeks and nose bridge, and the forehead where it is skin.

    Three patches on both cheeks and the nose bridge, then three just above the
    brows (over each brow's middle, points 19 and 24, and between them), each
    kept only if it passes :func:`_is_skin` against a cheek/nose sample at
    ``_FOREHEAD_SAMPLE_TOL`` × ``tol`` and is at least ``_FOREHEAD_SAMPLE_LUMA`` × as
    light as their median — the forehead's colour often differs from the
    cheeks' (blush, make-up, shine), and a fringe down to the brows is left out.
    """
    p = ff.pts
    r = max(1, int(round(0.02 * ff.jaw_w)))
    face = _patch_medians(frame, [0.5 * (p[2] + p[31]), 0.5 * (p[14] + p[35]), p[28]], r)
    lift = _FOREHEAD_SAMPLE_LIFT * ff.brow_chin * ff.up
    forehead = _patch_medians(frame, [p[19] + lift, p[24] + lift, 0.5 * (p[21] + p[22]) + lift], r)
    if not face:
        return []
    loose = _FOREHEAD_SAMPLE_TOL * tol
    # Hair is darker than the skin beside it: a forehead sample must also be nearly as
    # light as the face's typical (median) sample, not only as a shaded cheek.
    floor = _FOREHEAD_SAMPLE_LUMA * float(np.median([f[0] for f in face]))
    return face + [s for s in forehead if s[0] >= floor and any(bool(_is_skin(s, f, loose)) for f in face)]


def face_mask(
    frame: np.ndarray,
    landmarks: np.ndarray,
    *,
    region: Region,
    feather: int = 20,
    skin_tol: float = 8.0,
    hair_aware: bool = True,
) -> np.ndarray:
    """Soft mask of the face (jaw and brows, the forehead's skin or ellipse) on ``region``.

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
        Largest (Cr, Cb) distance from a skin sample for a pixel above the brows
        to count as skin (at the sample's luma or lighter), 8-bit YCrCb units (8);
        0 disables the skin test: the whole forehead ellipse is laid in, hair or
        not (FaceBlit's geometric mask).
    hair_aware : bool, keyword-only
        True (the target's frames): above the brows only the skin found by the
        colour test, so hair over the forehead keeps the frame. False (exemplars,
        measuring): the whole forehead ellipse, plus skin connected to it.

    Returns
    -------
    (h, w) float32 in [0, 1]
        ``(h, w) = region.shape``; 1 = face (fully stylized), 0 = keep the frame.
        The values do not depend on the region's placement (the shapes are drawn
        with the feathering's reach around it, the skin test runs on the whole
        forehead box): any region gives the same pixels as the full-frame mask.
        Where the face runs off the frame the mask stays opaque up to the frame
        edge. The forehead reaches above the landmarks' box: size the region with
        :func:`face_mask_outline` or the mask is cut at the region's top.

    Raises
    ------
    ValueError
        On wrong shapes/dtypes, non-finite landmarks, a region outside the
        frame, a negative ``feather``/``skin_tol`` or a non-bool ``hair_aware``.

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
    check(isinstance(hair_aware, (bool, np.bool_)), "hair_aware", "a bool", hair_aware)

    # Draw on the region grown by the feathering reach (clipped to the frame), blur,
    # then crop: the values then do not depend on where the region starts, and a
    # face running off the frame stays opaque up to the frame edge (replicated).
    reach = int(feather) // 2 + 1 if feather > 1 else 0
    canvas = Region(max(region.x0 - reach, 0), max(region.y0 - reach, 0),
                    min(region.x1 + reach, W), min(region.y1 + reach, H))
    ff = _FaceFrame(pts)
    mask = np.zeros(canvas.shape, dtype=np.uint8)
    _draw_hull(mask, ff, origin=canvas.origin, scale=1)
    drawn = skin_tol > 0 and _add_forehead_skin(mask, canvas, frame, ff, skin_tol, hair_aware=hair_aware)
    if not (drawn and hair_aware):
        _draw_ellipse(mask, ff, origin=canvas.origin, scale=1)
    if feather > 1:
        mask = cv2.blur(mask, (int(feather), int(feather)), borderType=cv2.BORDER_REPLICATE)
    mask = mask[region.y0 - canvas.y0 : region.y1 - canvas.y0, region.x0 - canvas.x0 : region.x1 - canvas.x0]
    return mask.astype(np.float32) / np.float32(255.0)


def whole_face_mask(image: np.ndarray, landmarks: np.ndarray, *, feather: int = 20) -> np.ndarray:
    """:func:`face_mask` with the whole forehead ellipse (``hair_aware=False``): the mask of a painting, and of what is measured.

    One place for the choice every exemplar and every measurement makes: a painting's
    colours are no skin test (all of its face is texture to copy), and a region
    measured must not depend on where the input's hair lies (renders that leave a
    fringe unstylized are measured over the same pixels as those that paint it).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB
        An exemplar or a frame.
    landmarks : (68, 2) float array
        Its iBUG landmarks, px.
    feather : int, keyword-only, ≥ 0
        Box-blur size, px (FaceBlit: 20).

    Returns
    -------
    (H, W) float32 in [0, 1]
        As :func:`face_mask` on the whole image (a crop of it is the mask of that
        region: :func:`face_mask` does not depend on the region's placement).

    Raises
    ------
    ValueError
        As :func:`face_mask`.
    """
    check_array(image, "image", shape=(None, None, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    return face_mask(image, np.asarray(landmarks, np.float64), region=Region.full(w, h), feather=feather, hair_aware=False)


def continue_face_outward(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The exemplar with its face's texture continued past the face's outline, mirrored.

    Every pixel outside ``face`` takes the colour of its mirror image across the
    outline, ``2·b − p`` (``b`` the nearest face pixel; ``b`` itself where the mirror
    point falls outside the face or the image): strokes go on as the painter's, not
    as a smear of edge pixels. Why: the face mask is feathered across the face's
    outline, and the synthesis copies what lies there in the exemplar — its
    background, collar, ears — which showed as a pale halo in the painting's
    background colour along the target's jaw and cheeks.

    Parameters
    ----------
    image : (H, W, 3) uint8
        The exemplar.
    face : (H, W) bool
        Its face (e.g. :func:`whole_face_mask` > 0.5); must not be empty.

    Returns
    -------
    (H, W, 3) uint8
        A new image, equal to ``image`` on ``face``.

    Raises
    ------
    ValueError
        Bad shapes, or an empty ``face``.
    """
    check_array(image, "image", shape=(None, None, 3), dtype=np.uint8)
    check(face.shape == image.shape[:2] and bool(face.any()), "face", f"a non-empty {image.shape[:2]} mask", face.shape)
    h, w = face.shape
    outside = np.where(face, 0, 255).astype(np.uint8)
    # Labels of DIST_LABEL_PIXEL number the zero (face) pixels in raster order from 1.
    _, labels = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL)
    fy, fx = np.nonzero(face)
    ys, xs = np.nonzero(~face)
    near = labels[ys, xs] - 1
    by, bx = fy[near], fx[near]
    my, mx = 2 * by - ys, 2 * bx - xs
    ok = (my >= 0) & (my < h) & (mx >= 0) & (mx < w)
    ok[ok] = face[my[ok], mx[ok]]
    out = image.copy()
    out[ys, xs] = np.where(ok[:, None], image[np.clip(my, 0, h - 1), np.clip(mx, 0, w - 1)], image[by, bx])
    return out


def _to_img(p: np.ndarray, origin: tuple[int, int], scale: int) -> np.ndarray:
    """Frame px → pixel coordinates of an image whose pixel (i, j) is the ``scale``×``scale``
    block of frame pixels starting at ``origin + scale·(i, j)``."""
    return (p - np.asarray(origin, dtype=np.float64)) / scale - 0.5 + 0.5 / scale


def _draw_hull(img: np.ndarray, ff: _FaceFrame, *, origin: tuple[int, int], scale: int) -> None:
    """Fill the convex hull of the jaw and brow landmarks (255) into ``img`` (see :func:`_to_img`)."""
    hull = cv2.convexHull(_fixed(_to_img(ff.pts[:27], origin, scale)).reshape(-1, 1, 2))
    cv2.fillConvexPoly(img, hull, 255, lineType=cv2.LINE_8, shift=_SHIFT)


def _draw_ellipse(img: np.ndarray, ff: _FaceFrame, *, origin: tuple[int, int], scale: int) -> None:
    """Fill the forehead ellipse (255) into ``img`` (see :func:`_to_img`).

    The whole ellipse: its upper half is the forehead, its lower half fills the
    temples between the hull's jaw-to-brow edges and the brow line.
    """
    ax, ay = ff.ellipse_axes()
    cx, cy = _fixed(_to_img(ff.brow, origin, scale))
    axes = (int(round(min(ax / scale, 1e6) * _ONE)), int(round(min(ay / scale, 1e6) * _ONE)))
    cv2.ellipse(img, (int(cx), int(cy)), axes, ff.angle, 0.0, 360.0, 255, thickness=-1,
                lineType=cv2.LINE_8, shift=_SHIFT)


def _forehead_box(ff: _FaceFrame, W: int, H: int) -> tuple[int, int, int, int]:
    """Frame-px box (x0, y0, x1, y1) of the skin band and the forehead ellipse, clipped to the frame."""
    ax, ay = ff.ellipse_axes()
    t = np.linspace(0.0, 2.0 * math.pi, 33)[:-1]
    arc = ff.brow + np.outer(np.cos(t) * ax, ff.ex) + np.outer(np.sin(t) * ay, ff.up)
    pts = np.concatenate([ff.band(), arc])
    # The arc's chords cut inside the true ellipse by at most a(1 − cos(π/32)) < 0.5 % of an axis: pad by 1 %.
    pad = 0.01 * max(ax, ay) + 1.0
    return (max(int(math.floor(pts[:, 0].min() - pad)), 0), max(int(math.floor(pts[:, 1].min() - pad)), 0),
            min(int(math.ceil(pts[:, 0].max() + pad)) + 1, W), min(int(math.ceil(pts[:, 1].max() + pad)) + 1, H))


def _add_forehead_skin(mask: np.ndarray, canvas: Region, frame: np.ndarray, ff: _FaceFrame, tol: float, *, hair_aware: bool) -> bool:
    """OR into ``mask`` (covering ``canvas``) the forehead's skin: the skin-coloured part of
    the forehead ellipse and the band above the brows, connected to the hull, holes filled.

    Works on the forehead box in the whole frame (so the result does not depend on
    the canvas), downsampled to at most ``_SKIN_GRID`` cells across by block means:
    the mask is feathered by ~20 px anyway, and this keeps the cost constant
    whatever the face size. With ``hair_aware`` False the ellipse counts as face
    (skin connected to it is added; the caller draws the ellipse itself). Returns
    False (nothing drawn) when no skin sample lies in the frame: the caller then
    lays in the fixed ellipse.
    """
    samples = _skin_samples(frame, ff, tol)
    if not samples:
        return False
    H, W = frame.shape[:2]
    bx0, by0, bx1, by1 = _forehead_box(ff, W, H)
    f = max(1, -(-max(bx1 - bx0, by1 - by0) // _SKIN_GRID))
    # Whole f×f blocks, so block means and the up-sampling line up.
    bw, bh = (bx1 - bx0) // f, (by1 - by0) // f
    if bw < 2 or bh < 2:
        return True  # the forehead is (almost) entirely off the frame
    bx1, by1 = bx0 + bw * f, by0 + bh * f
    if Region(bx0, by0, bx1, by1).intersect(canvas).is_empty:
        return True
    crop = frame[by0:by1, bx0:bx1]
    if f > 1:
        crop = cv2.resize(crop, (bw, bh), interpolation=cv2.INTER_AREA)
    ycc = _ycrcb(crop).astype(np.float32)
    skin = _is_skin(ycc[:, :, None, :], np.stack(samples), tol).any(axis=2)
    hull = np.zeros((bh, bw), dtype=np.uint8)
    _draw_hull(hull, ff, origin=(bx0, by0), scale=f)
    where = np.zeros((bh, bw), dtype=np.uint8)
    _draw_ellipse(where, ff, origin=(bx0, by0), scale=f)
    corners = _to_img(ff.band(), (bx0, by0), f)
    cv2.fillConvexPoly(where, _fixed(corners).reshape(-1, 1, 2), 255, lineType=cv2.LINE_8, shift=_SHIFT)
    skin &= where > 0
    # Opening with a disc of ~_OPEN_RADIUS × the jaw width drops specks and thin runs of
    # skin colour (a parting, light strands, a lit edge of hair) so they cannot bridge
    # the hull to skin-coloured hair or walls beyond.
    r = max(1, int(round(_OPEN_RADIUS * ff.jaw_w / f)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    skin = cv2.morphologyEx(skin.view(np.uint8), cv2.MORPH_OPEN, disc).astype(bool)
    if not hair_aware:  # the ellipse is laid in whole: skin only adds, connected to it
        _draw_ellipse(hull, ff, origin=(bx0, by0), scale=f)
    inside = hull > 0
    n, labels = cv2.connectedComponents((skin | inside).view(np.uint8), connectivity=4)
    keep = np.zeros(n, dtype=bool)
    keep[np.unique(labels[inside])] = True
    keep[0] = False
    face = keep[labels]
    # Fill holes (what no path of non-face cells joins to the box's border): a mole, a
    # highlight, a shadow or a lock of hair inside bare skin stays in the face.
    outside = np.pad((~face).view(np.uint8), 1, constant_values=1)
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)  # non-face cells reached from the border → 2
    face |= outside[1:-1, 1:-1] == 1
    # The hull (and ellipse) are drawn exactly at frame resolution by the caller; of
    # their cells only those next to skin stay, so the up-sampled skin reaches into
    # the exact shapes with no gap (a seam after feathering) between them.
    face8 = face.view(np.uint8)
    face = (face & ~inside) | (inside & (cv2.dilate(face8 & ~inside.view(np.uint8), _SQUARE) > 0))
    ys, xs = np.nonzero(face)
    if len(ys) == 0:
        return True
    # Up-sample bilinearly and cut at one half: a smooth edge at frame resolution
    # instead of f×f steps; only the cells' bounding box, with one empty cell around
    # it so the result equals the whole box's up-sampling.
    i0, i1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, bh)
    j0, j1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, bw)
    soft = face[i0:i1, j0:j1].view(np.uint8) * np.uint8(255)
    if f > 1:
        soft = cv2.resize(soft, ((j1 - j0) * f, (i1 - i0) * f), interpolation=cv2.INTER_LINEAR)
    part = Region(bx0 + j0 * f, by0 + i0 * f, bx0 + j1 * f, by0 + i1 * f)
    hit = part.intersect(canvas)
    if hit.is_empty:
        return True
    src = soft[hit.y0 - part.y0 : hit.y1 - part.y0, hit.x0 - part.x0 : hit.x1 - part.x0] >= 128
    mask[hit.y0 - canvas.y0 : hit.y1 - canvas.y0, hit.x0 - canvas.x0 : hit.x1 - canvas.x0][src] = 255
    return True


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
