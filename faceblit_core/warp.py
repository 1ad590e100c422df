"""Warps between the video frame and the exemplar's face space, and the optical-flow carry.

Pure functions (no state), used by :class:`faceblit_core.stylizer.FrameStylizer`:

* :func:`fixed_point_maps` — ``(h, w, 2) float32`` source positions as OpenCV's
  fixed-point remap maps (every warp below samples through them);
* :func:`face_space_maps` / :func:`warp_to_face_space` — frame → exemplar: the
  inverse MLS map (style landmarks → target landmarks) over the exemplar's face
  region, and the frame (or the previous output) resampled with it;
* :func:`face_space_to_frame` — the face-space result back into the frame region
  along the positional guide, with how much of the region it covers;
* :func:`carry_along_flow` — last frame's positional guide and mask moved along
  the backward optical flow and blended with this frame's.

Every warp is ``cv2.remap`` bilinear with fixed-point maps (1/32 px); see
docs/ARCHITECTURE.md, "Where the code departs from DESIGN.md", for why face space
and the flow carry exist.

References
----------
Schaefer et al. 2006, "Image Deformation Using Moving Least Squares" (the MLS map).
Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse Search" (the flow carried along).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from faceblit_core.geometry import Region
from faceblit_core.guides import positional_guide

__all__ = ["fixed_point_maps", "face_space_maps", "warp_to_face_space", "face_space_to_frame", "carry_along_flow"]

Maps = tuple[np.ndarray, np.ndarray]


def fixed_point_maps(xy: np.ndarray) -> Maps:
    """``(h, w, 2) float32`` source positions as OpenCV's fixed-point remap maps (1/32 px).

    ``cv2.remap`` with these runs ~2.5× faster than with float maps; a map used
    twice is converted once.
    """
    return cv2.convertMaps(np.ascontiguousarray(xy, dtype=np.float32), None, cv2.CV_16SC2)


def face_space_maps(style_landmarks: np.ndarray, face_points: np.ndarray, style_region: Region, *, alpha: float, grid: int) -> Maps:
    """Frame → face space: for each pixel of ``style_region`` of the exemplar, where it lies in the frame.

    The inverse of the positional guide: the MLS map with the exemplar's landmarks
    as control points and the face's as their images
    (:func:`faceblit_core.guides.positional_guide` with the roles swapped).

    Parameters
    ----------
    style_landmarks : (68, 2) float32
        The exemplar's landmarks, style px.
    face_points : (68, 2) float32
        The face's landmarks, frame px.
    style_region : Region
        The part of the exemplar synthesized (style px).
    alpha, grid : keyword-only
        MLS weight exponent and grid step (``StylizeConfig.mls_alpha``, ``mls_grid``).

    Returns
    -------
    maps
        Fixed-point maps (:func:`fixed_point_maps`) of frame px, for :func:`warp_to_face_space`.
    """
    return fixed_point_maps(positional_guide(style_landmarks, face_points, region=style_region, alpha=alpha, grid=grid))


def warp_to_face_space(image: np.ndarray, maps: Maps) -> np.ndarray:
    """``image`` (a frame, or the previous output) resampled onto the exemplar's face region.

    Parameters
    ----------
    image : (H, W, C) uint8
        Frame-sized image.
    maps : fixed-point maps
        From :func:`face_space_maps`.

    Returns
    -------
    (hs, ws, C) uint8
        Bilinear; positions outside the frame take the nearest border pixel.
    """
    return cv2.remap(image, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def face_space_to_frame(stylized_face: np.ndarray, g_pos: np.ndarray, style_region: Region, *, feather: int) -> tuple[np.ndarray, np.ndarray]:
    """The face-space result warped into the frame region with ``g_pos`` (bicubic, sub-pixel).

    This is the one resampling of synthesized texture on the face-space path (voting
    copies exemplar pixels at whole-pixel offsets). Bilinear interpolation at
    fractional positions is a low-pass (at half a pixel it removes the highest
    frequency entirely) and took ~3 % of the strokes' crispness below FaceBlit's
    screen-space synthesis, which needs no resampling; bicubic (OpenCV's Keys
    kernel) keeps it (measured on d18 × het: sharp_ratio 0.648 → 0.727, issue 14).

    Parameters
    ----------
    stylized_face : (hs, ws, 3) uint8
        The stylized ``style_region`` of the exemplar.
    g_pos : (h, w, 2) float32
        Positional guide of the frame region, style px.
    style_region : Region
        Where ``stylized_face`` lies in the exemplar.
    feather : int, keyword-only
        The face mask's feather (px, ``StylizeConfig.mask_feather``): the coverage
        fades out over half of it.

    Returns
    -------
    stylized : (h, w, 3) uint8
        The stylized frame region.
    covered : (h, w) float32 in [0, 1]
        1 where ``g_pos`` lands inside the synthesized part of the exemplar, fading
        to 0 outside it (multiplied into the face mask).
    """
    sr = style_region
    maps = g_pos - np.array([sr.x0, sr.y0], dtype=np.float32)
    stylized = cv2.remap(stylized_face, *fixed_point_maps(maps), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    mx, my = maps[..., 0], maps[..., 1]
    # Bicubic reads the pixels x−1 … x+2 around a position x.
    inside = ((mx >= 1) & (my >= 1) & (mx < sr.width - 2) & (my < sr.height - 2)).astype(np.float32)
    k = max(1, feather // 2)
    covered = np.minimum(inside, cv2.blur(inside, (k, k))) if k > 1 else inside
    return stylized, covered


def carry_along_flow(
    back: np.ndarray,
    region: Region,
    prev_region: Region,
    previous: Sequence[np.ndarray],
    current: Sequence[np.ndarray],
    *,
    follow: float,
) -> list[np.ndarray]:
    """Carry last frame's maps along the input's optical flow, pulled toward this frame's.

    Landmarks jitter and lag, optical flow follows the skin: a guide (and mask) that
    moves with the flow keeps the stylized texture glued to the face from frame to
    frame, while the pull ``1 − follow`` toward this frame's landmark-based values
    stops it drifting.

    Parameters
    ----------
    back : (h, w, 2) float32
        Backward flow (t → t−1) of ``region``, px. Overwritten: it becomes the
        sampling positions in the previous region.
    region, prev_region : Region
        This frame's and the previous frame's region of the face (frame px).
    previous : sequence of (h', w', ...) float32
        Last frame's maps on ``prev_region`` (positional guide, mask).
    current : sequence of (h, w, ...) float32
        This frame's landmark-based maps on ``region``, in the same order.
    follow : float in [0, 1], keyword-only
        Weight of the carried maps (``StylizeConfig.flow_follow``).

    Returns
    -------
    list of (h, w, ...) float32
        ``follow · carried + (1 − follow) · current``; ``current`` where the flow
        comes from outside the previous region (bilinear: also from its last row
        or column, whose right/lower neighbours are outside).

    Notes
    -----
    Known quirk, kept so that outputs stay bit-identical: ``borderValue=np.nan`` is
    the OpenCV scalar ``(nan, 0, 0, 0)``, so for a 2-channel map (the positional
    guide) only x falls back to ``current`` there; y is blended with 0.
    """
    out = []
    for carried, now in zip(carry_maps(back, region, prev_region, previous), current):
        blended = cv2.addWeighted(carried, follow, now, 1.0 - follow, 0.0)
        np.copyto(blended, now, where=np.isnan(carried))      # came from outside the last region
        out.append(blended)
    return out


def carry_maps(back: np.ndarray, region: Region, prev_region: Region, previous: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Last frame's maps moved along the backward flow onto ``region`` (bilinear), NaN where the
    flow comes from outside ``prev_region`` (first channel only, see :func:`carry_along_flow`).

    ``back`` (h, w, 2) float32 is overwritten with the sampling positions; ``previous``
    are float32 maps on ``prev_region``. Returns one (h, w, ...) float32 map per input.
    """
    h, w = back.shape[:2]
    # Position of each pixel in the previous frame, in the previous region's coordinates.
    back[..., 0] += np.arange(w, dtype=np.float32) + np.float32(region.x0 - prev_region.x0)
    back[..., 1] += np.arange(h, dtype=np.float32)[:, None] + np.float32(region.y0 - prev_region.y0)
    maps = fixed_point_maps(back)
    return [cv2.remap(before, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
            for before in previous]
