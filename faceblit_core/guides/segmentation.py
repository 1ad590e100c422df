"""Segmentation guide from the 68 landmarks, and the mouth-interior pass that uses it.

FaceStyle (Fišer et al. 2017) keeps the target's expression by synthesizing the eyes
and the mouth under a strict *segmentation guide* G_seg: a pixel of class c may
only copy exemplar pixels of class c. Our exemplars are single portraits, most of
them with a closed mouth: the class "mouth interior" has no area in the exemplar,
and neither the positional guide (it squeezes the target's open mouth onto the
exemplar's lip line) nor StyleBlit can paint an open mouth — the output shows the
exemplar's lips stretched over it (measured: d18, mouth opening on the output 0.37
of the eye distance where the target's is 0.59).

So the target's open mouth (the outer-lip polygon, iBUG 48–59: lips and interior) gets
a pass of its own, in frame space, after the face is synthesized
(:func:`paint_mouth_interior`). Its colours are the target's own, transferred onto the
exemplar face's colour statistics (Reinhard et al. 2001, in L*a*b*), the lips then
moved onto the exemplar's lip colour: the dark opening, the teeth, the tongue and the
lips around them keep their shape, place and size. Its texture is the exemplar's: the
high-frequency detail of the exemplar's lips and mouth (the class the mouth belongs
to), copied in rigid chunks as in StyleBlit, one chunk per ``cell`` × ``cell`` cell
of the frame grid, each cell's donor fixed by a hash of the cell
(:class:`InteriorSource`). Colour follows the target continuously and the texture of
a cell never switches (measured: donors picked by colour every frame, from the
exemplar's eyes and lips, raised d18's warp_ratio by 0.5).

Classes (:func:`segmentation_guide`): 0 other, 1 lips (outer lip polygon 48–59
minus the interior), 2 mouth interior (60–67), 3 eye openings (36–41, 42–47).

:func:`keep_mask` draws the face parts a user keeps unstylized (``--keep``; the parts
and their landmarks: :data:`faceblit_core.geometry.KEEP_REGIONS`), feathered, from
each frame's landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceblit_core.checks import check, check_array
from faceblit_core.geometry import KEEP_REGIONS

__all__ = [
    "OTHER",
    "LIPS",
    "MOUTH_INTERIOR",
    "EYE",
    "segmentation_guide",
    "InteriorSource",
    "interior_source",
    "mouth_opening",
    "paint_mouth_interior",
    "keep_mask",
    "KEEP_FEATHER",
]

OTHER, LIPS, MOUTH_INTERIOR, EYE = 0, 1, 2, 3

_SHIFT = 4  # sub-pixel bits for OpenCV's polygon drawing
_OUTER_LIP = np.arange(48, 60)
_INNER_LIP = np.arange(60, 68)
_EYES = (np.arange(36, 42), np.arange(42, 48))
#: A mouth whose inner-lip opening is below this fraction of the eye distance is closed (no pass).
MIN_OPENING = 0.04


def _fill(canvas: np.ndarray, points: np.ndarray, value: int) -> None:
    cv2.fillPoly(canvas, [np.rint(points * (1 << _SHIFT)).astype(np.int32)], int(value), lineType=cv2.LINE_8, shift=_SHIFT)


def segmentation_guide(points: np.ndarray, shape: tuple[int, int], *, origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Class of every pixel from the 68 landmarks (G_seg).

    Parameters
    ----------
    points : (68, 2) float
        iBUG landmarks, px (x, y) of the image they come from.
    shape : (h, w)
        Size of the guide.
    origin : (x0, y0), keyword-only
        Image position of the guide's pixel (0, 0) (a region of the frame).

    Returns
    -------
    (h, w) uint8
        :data:`OTHER`, :data:`LIPS`, :data:`MOUTH_INTERIOR` or :data:`EYE` (pixel centres
        inside the polygons, as ``cv2.fillPoly`` decides).

    Raises
    ------
    ValueError
        ``points`` not (68, 2) or not finite.
    """
    check_array(points, "landmarks", shape=(68, 2))
    pts = np.asarray(points, np.float64) - np.asarray(origin, np.float64)
    check(bool(np.isfinite(pts).all()), "landmarks", "finite values", "NaN or inf")
    seg = np.zeros(shape, np.uint8)
    _fill(seg, pts[_OUTER_LIP], LIPS)
    _fill(seg, pts[_INNER_LIP], MOUTH_INTERIOR)
    for eye in _EYES:
        _fill(seg, pts[eye], EYE)
    return seg


#: Width of the soft edge of a kept face part (:func:`keep_mask`), fraction of the inter-ocular distance.
KEEP_FEATHER = 0.06


def keep_mask(points: np.ndarray, regions, shape: tuple[int, int], *, origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Where the target's own pixels are kept: 1 on the named face parts, 0 away from them.

    Each part of ``regions`` (:data:`~faceblit_core.geometry.KEEP_REGIONS`) is drawn from
    the landmarks: a closed outline filled, an open curve (brows) as a band; grown by the
    part's ``grow`` and feathered outside it: ``m = clip(1 − (d − grow)/feather, 0, 1)``
    with ``d`` the Euclidean distance (px) to the drawn part (0 inside it) and ``grow``,
    ``feather`` (:data:`KEEP_FEATHER`) in px from the inter-ocular distance. So the
    mask is exactly 1 on the part and its ``grow`` margin, and falls linearly to 0 over
    ``feather`` px beyond.

    Parameters
    ----------
    points : (68, 2) float
        iBUG landmarks, px (x, y) of the image they come from.
    regions : iterable of str
        Names of :data:`~faceblit_core.geometry.KEEP_REGIONS` (e.g. ``("eyes", "mouth")``).
    shape : (h, w)
        Size of the mask.
    origin : (x0, y0), keyword-only
        Image position of the mask's pixel (0, 0) (a region of the frame).

    Returns
    -------
    (h, w) float32 in [0, 1]
        All 0 when ``regions`` is empty.

    Raises
    ------
    ValueError
        ``points`` not (68, 2) or not finite; an unknown region name.
    """
    check_array(points, "landmarks", shape=(68, 2))
    pts = np.asarray(points, np.float64) - np.asarray(origin, np.float64)
    check(bool(np.isfinite(pts).all()), "landmarks", "finite values", "NaN or inf")
    parts = list(regions)
    for name in parts:
        check(name in KEEP_REGIONS, "region", f"one of {', '.join(KEEP_REGIONS)}", name)
    h, w = shape
    if not parts or h == 0 or w == 0:
        return np.zeros((h, w), np.float32)
    iod = max(1.0, float(np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0))))
    feather = max(1.0, KEEP_FEATHER * iod)
    mask = np.zeros((h, w), np.float32)
    for name in parts:
        part = KEEP_REGIONS[name]
        drawn = np.zeros((h, w), np.uint8)
        for group in part.groups:
            curve = pts[list(group)]
            if part.closed:
                _fill(drawn, curve, 255)
            else:
                cv2.polylines(drawn, [np.rint(curve * (1 << _SHIFT)).astype(np.int32)], False, 255, thickness=1, lineType=cv2.LINE_8,
                              shift=_SHIFT)
        # Distance of every pixel to the drawn part (0 on it): grown and feathered in one step.
        distance = cv2.distanceTransform(np.where(drawn > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        grow = part.grow * iod
        np.maximum(mask, np.clip((grow + feather - distance) / np.float32(feather), 0.0, 1.0), out=mask)
    return mask


def mouth_opening(points: np.ndarray) -> float:
    """Mean distance of the inner-lip pairs (61, 67), (62, 66), (63, 65) / inter-ocular distance (DESIGN §9)."""
    p = np.asarray(points, np.float64)
    iod = float(np.linalg.norm(p[36:42].mean(0) - p[42:48].mean(0)))
    d = np.linalg.norm(p[[61, 62, 63]] - p[[67, 66, 65]], axis=1).mean()
    return float(d / iod) if iod > 1e-6 else 0.0


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (L in [0, 100], a and b about [−128, 127]) of uint8 RGB, float32."""
    return cv2.cvtColor(np.ascontiguousarray(rgb).astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_RGB2Lab)


@dataclass(frozen=True)
class InteriorSource:
    """The exemplar's donor texture for the mouth-interior pass (built once per exemplar).

    Attributes
    ----------
    detail : (Hs, Ws, 3) float32
        The exemplar's L*a*b* high frequencies: colours minus their Gaussian blur
        (σ = :data:`DETAIL_SIGMA` px).
    face_mean, face_std : (3,) float32
        Mean and standard deviation of L*a*b* over its face (the colour transfer target of
        the target's mouth interior).
    lips_mean : (3,) float32
        Mean L*a*b* of its lips (class :data:`LIPS`): the colour the target's lips are moved onto.
    donors : (n, 2) int32
        Style px (x, y) of the donor pixels: its lips and mouth interior (classes
        :data:`LIPS`, :data:`MOUTH_INTERIOR`), row-major order.
    """

    detail: np.ndarray
    face_mean: np.ndarray
    face_std: np.ndarray
    lips_mean: np.ndarray
    donors: np.ndarray


#: Gaussian σ (px) separating an exemplar's texture (detail) from its colour.
DETAIL_SIGMA = 2.0
#: Multiplier of the cell hash picking a cell's donor (a large odd constant: neighbouring
#: cells get donors far apart, the same cell always the same donor).
_HASH = np.int64(2654435761)


def interior_source(style_image: np.ndarray, style_landmarks: np.ndarray, style_face: np.ndarray) -> InteriorSource:
    """Collect the exemplar's mouth texture (lips, mouth interior) and its face and lip colour statistics.

    Parameters
    ----------
    style_image : (Hs, Ws, 3) uint8
        The exemplar.
    style_landmarks : (68, 2) float
        Its landmarks, style px.
    style_face : (Hs, Ws) bool
        Its face (for the colour statistics the target is transferred onto).

    Returns
    -------
    InteriorSource

    Raises
    ------
    ValueError
        Bad shapes, or the exemplar's mouth has no pixel (degenerate landmarks).
    """
    check_array(style_image, "style image", shape=(None, None, 3), dtype=np.uint8)
    check(style_face.shape == style_image.shape[:2] and bool(style_face.any()), "style face mask",
          f"a non-empty {style_image.shape[:2]} mask", style_face.shape)
    seg = segmentation_guide(style_landmarks, style_image.shape[:2])
    ys, xs = np.nonzero((seg == LIPS) | (seg == MOUTH_INTERIOR))
    check(len(xs) > 0, "style mouth", "lip pixels", "none")
    raw = _lab(style_image)
    detail = raw - cv2.GaussianBlur(raw, (0, 0), DETAIL_SIGMA)
    face, lips = raw[style_face], raw[seg == LIPS]
    check(len(lips) > 0, "style lips", "lip pixels", "none")
    return InteriorSource(detail=detail, face_mean=face.mean(0), face_std=np.maximum(face.std(0), 1e-3),
                          lips_mean=lips.mean(0),
                          donors=np.stack([xs, ys], axis=1).astype(np.int32))


#: Opening (per eye distance) above :data:`MIN_OPENING` over which the lips are faded from
#: the synthesis to the pass: a mouth that opens takes the pass on smoothly.
LIPS_RAMP = 0.1


#: Bounds of the per-channel deviation ratio of the colour transfer: a target's lips or face
#: can vary 5–8× less in b* than a painting's (d18 against het), and an unbounded ratio
#: turns noise into coloured blotches.
TRANSFER_SCALE = (0.5, 2.5)


def _transfer(lab: np.ndarray, source_mean: np.ndarray, source_std: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Reinhard's colour transfer ``(lab − source_mean) · s + mean``, ``s = std / source_std`` per channel within :data:`TRANSFER_SCALE`."""
    scale = np.clip(std / np.maximum(source_std, 1e-3), *TRANSFER_SCALE)
    return (lab - source_mean) * scale + mean


def paint_mouth_interior(
    stylized: np.ndarray,
    frame_crop: np.ndarray,
    points: np.ndarray,
    source: InteriorSource,
    *,
    face: np.ndarray | None = None,
    cell: int = 8,
) -> np.ndarray:
    """Paint the target's open mouth, lips and interior: its colours on the exemplar's palette, the exemplar's texture (in place).

    ``out(p) = Lab⁻¹( T(target)(p) + s·[p ∉ interior] + detail(o(p)) )`` inside the
    target's outer-lip polygon, where ``T`` transfers the L*a*b* mean and deviation of
    the target's face onto the exemplar's face (the target σ = 1 px blurred; the
    deviation ratio bounded by :data:`TRANSFER_SCALE`; Reinhard et al. 2001), ``s``
    moves the transferred lips (class :data:`LIPS` of :func:`segmentation_guide`) as a
    whole onto the exemplar's mean lip colour, and ``o(p) = u(q) + (p − q)`` copies
    the exemplar's detail rigidly around the donor ``u(q)`` of the cell's seed ``q`` (cell
    centre on a grid anchored at the mouth's centre, whole pixels, so the texture moves
    with the mouth; the donor, a pixel of the exemplar's mouth, is fixed per cell).

    Why the lips too: synthesized, an open mouth's lips are the exemplar's closed lips
    stretched around the opening, with its dark line between them drawn as a thick rim:
    the mouth reads smaller than it is (measured on d18 × het: dlib put the inner lips
    10–14 px inside the input's; the mouth error of DESIGN §9 fell 0.049 → 0.042 once
    the lips came from the target). The interior is written whole (a soft 1 px edge); the
    lips are blended in with weight ``clip((opening − MIN_OPENING) / LIPS_RAMP, 0, 1)``
    (soft 2 px edge), so the pass takes a mouth over gradually as it opens.

    Parameters
    ----------
    stylized : (h, w, 3) uint8
        The stylized region; modified in place inside the target's outer-lip polygon.
    frame_crop : (h, w, 3) uint8
        The input frame on the same region.
    points : (68, 2) float
        The target's landmarks in region coordinates, px.
    source : InteriorSource
        :func:`interior_source` of the exemplar.
    face : (h, w) bool, optional, keyword-only
        The target's face pixels (colour statistics); default the whole region.
    cell : int, keyword-only
        Seed spacing, px (one rigidly copied chunk of texture per cell).

    Returns
    -------
    (h, w, 3) uint8
        ``stylized`` (same object). Unchanged when the mouth is closed
        (:func:`mouth_opening` < ``MIN_OPENING``) or outside the region.

    Raises
    ------
    ValueError
        Shapes differ.

    References
    ----------
    Fišer et al. 2017, "Example-Based Synthesis of Stylized Facial Animations" (segmentation
    guide for eyes and mouth); Reinhard et al. 2001, "Color Transfer between Images";
    Sýkora et al. 2019, "StyleBlit" (chunks copied rigidly from seeds).
    """
    check(stylized.shape == frame_crop.shape, "frame crop shape", stylized.shape, frame_crop.shape)
    h, w = stylized.shape[:2]
    opening = mouth_opening(points)
    if opening < MIN_OPENING:
        return stylized
    pts = np.asarray(points, np.float64)
    outer = pts[_OUTER_LIP]
    x0, y0 = np.floor(outer.min(0)).astype(int) - 3
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 4
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return stylized
    seg = segmentation_guide(pts, (y1 - y0, x1 - x0), origin=(x0, y0))
    lips_only = seg == LIPS
    if not lips_only.any() and not (seg == MOUTH_INTERIOR).any():
        return stylized
    inside = np.where(seg == MOUTH_INTERIOR, 255, 0).astype(np.uint8)
    lips = np.where(lips_only, 255, inside).astype(np.uint8)
    # Soft edges (~1 px inside, ~2 px at the lips' outline) so nothing is cut by a hard polygon.
    interior_alpha = cv2.blur(inside, (3, 3)).astype(np.float32) * np.float32(1.0 / 255.0)
    lips_weight = float(np.clip((opening - MIN_OPENING) / LIPS_RAMP, 0.0, 1.0))
    lips_alpha = cv2.blur(lips, (5, 5)).astype(np.float32) * np.float32(lips_weight / 255.0)
    alpha = np.maximum(interior_alpha, lips_alpha)

    # Colour statistics from every 4th pixel each way of the face (plenty for a mean and
    # a deviation) and of the lips (all their pixels: they are few).
    sub = frame_crop[::4, ::4]
    sub_face = face[::4, ::4] if face is not None else None
    pixels = sub[sub_face] if sub_face is not None and sub_face.any() else sub.reshape(-1, 3)
    face_lab = _lab(pixels[:, None, :]).reshape(-1, 3)
    target = cv2.GaussianBlur(_lab(frame_crop[y0:y1, x0:x1]), (0, 0), 1.0)
    mapped = _transfer(target, face_lab.mean(0), face_lab.std(0), source.face_mean, source.face_std)
    if lips_only.any():
        # The lips keep the face's transfer and are moved, as a whole, onto the exemplar's lip colour.
        shift = source.lips_mean - mapped[lips_only].mean(0)
        mapped += shift * (1.0 - interior_alpha)[..., None]

    hs, ws = source.detail.shape[:2]
    ys, xs = np.nonzero(alpha > 0)
    # Seeds: one per cell of a grid anchored at the mouth (cell centre q), each with its
    # fixed donor u. Anchored on the frame instead, the texture stood still while the face
    # moved (measured: d12 × watercolorgirl warp_ratio 4.99 with the lips painted, 4.67 without).
    ax, ay = np.rint(outer.mean(0)).astype(int)
    gx, gy = (xs + x0 - ax) // cell, (ys + y0 - ay) // cell
    qx = gx * cell + cell // 2 + ax - x0
    qy = gy * cell + cell // 2 + ay - y0
    key = (gx.astype(np.int64) * 92821 + gy.astype(np.int64)) * _HASH
    u = source.donors[(key >> 16) % len(source.donors)]
    ox = np.clip(u[:, 0] + (xs - qx), 0, ws - 1)
    oy = np.clip(u[:, 1] + (ys - qy), 0, hs - 1)
    lab = (mapped[ys, xs] + source.detail[oy, ox])[:, None, :]
    colour = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB)[:, 0, :] * np.float32(255.0)
    a = alpha[ys, xs][:, None]
    region = stylized[y0:y1, x0:x1]
    region[ys, xs] = np.clip(np.rint(a * colour + (1.0 - a) * region[ys, xs].astype(np.float32)), 0, 255).astype(np.uint8)
    return stylized
