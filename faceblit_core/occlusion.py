"""What is in front of a face: pixels whose motion the face's landmarks do not explain (issue 18).

A hand (or a cup, a strand of hair) passing in front of a face must stay in front
of the painted face. Skin colour cannot tell a hand from a cheek, but its motion
can: between two frames every pixel of the face moves as the landmarks say (a
smooth MLS warp from this frame's landmarks to last frame's, which also follows
the mouth and the eyelids), while an occluder moves on its own. Pixels whose
optical flow disagrees with the landmark motion by more than a fraction of the
inter-ocular distance are taken out of the face mask, so the input shows
through there.

Limits (measured on made clips and real footage, see the issue-18 note): an
occluder that does not move relative to the face (a hand resting on a cheek,
glasses) is not found by this cue; the flow of a uniform, textureless occluder
is filled in from its edges, so its interior may be found only partly.

References
----------
Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse Search" (the flow);
Schaefer et al. 2006, "Image Deformation Using Moving Least Squares" (the landmark warp).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceblit_core.checks import check
from faceblit_core.geometry import Region
from faceblit_core.guides import positional_guide


def landmark_motion(points: np.ndarray, previous_points: np.ndarray, region: Region, *, grid: int = 10) -> np.ndarray:
    """Where each pixel of ``region`` was in the previous frame if it moved with the face's landmarks.

    Parameters
    ----------
    points, previous_points : (68, 2) float
        The face's landmarks in this frame and the previous one, frame px.
    region : Region
        Frame region, px.
    grid : int, keyword-only
        MLS grid spacing, px (:func:`faceblit_core.guides.positional_guide`).

    Returns
    -------
    (h, w, 2) float32
        Backward displacement (previous position − position), px, on ``region``.

    Raises
    ------
    ValueError
        Wrong shapes, non-finite points, an empty region.
    """
    where = positional_guide(points, previous_points, region=region, grid=grid)
    ys, xs = np.mgrid[region.y0 : region.y1, region.x0 : region.x1].astype(np.float32)
    where[..., 0] -= xs
    where[..., 1] -= ys
    return where


def landmark_hull(points: np.ndarray, region: Region, *, inset: float = 0.15) -> np.ndarray:
    """The convex hull of the jaw and brow landmarks (0–26) on ``region``, shrunk by ``inset`` inter-ocular distances.

    Inside it the landmark motion is interpolated between landmarks; outside it
    (forehead, hair) the MLS warp extrapolates and does not predict the motion
    well enough to tell an occluder, and along its edge the flow mixes the face
    with what is behind it or the rims of glasses (measured on d12, a fast-moving
    head with glasses: hair, forehead, jaw line and brow line flagged otherwise).

    Returns
    -------
    (h, w) bool
    """
    hull = np.zeros(region.shape, np.uint8)
    p = np.asarray(points, dtype=np.float32)
    local = np.round(p[:27] - np.float32([region.x0, region.y0])).astype(np.int32)
    cv2.fillConvexPoly(hull, cv2.convexHull(local), 1)
    iod = float(np.linalg.norm(p[36:42].mean(axis=0) - p[42:48].mean(axis=0)))
    k = 2 * int(round(inset * iod)) + 1
    if k > 1:
        hull = cv2.erode(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return hull.astype(bool)


def occluder_mask(backward_flow: np.ndarray, expected: np.ndarray, *, iod: float, within: np.ndarray | None = None,
                  tolerance: float = 0.05, relative: float = 0.3, min_px: float = 1.5, max_share: float = 0.6,
                  previous: np.ndarray | None = None, persist: float = 0.5) -> np.ndarray:
    """Pixels whose optical flow the landmark motion does not explain: ``(h, w) float32`` in [0, 1], 1 = occluder.

    A pixel of ``within`` is flagged for sure when ``|flow − expected| > max(min_px,
    tolerance · iod, relative · |expected|)`` (the flow of a fast-moving face is
    less exact: motion blur, DIS's coarse scales, so the tolerance grows with the
    motion); pixels anywhere on the region disagreeing by half as much and
    connected to a sure one are flagged too.
    Specks smaller than a twelfth of the inter-ocular distance are removed
    (morphological opening), the rest grown by as much (the flow of an occluder
    bleeds over its edge) and softened by a box blur of that size. When more
    than ``max_share`` of the judged pixels disagree, the flow or the landmarks
    failed (motion blur, a fast turn) and nothing is flagged.

    What was in front a frame ago fades instead of vanishing: ``previous`` (last
    frame's result carried along the flow) counts ``persist`` times where this frame
    flags less. The cue misses an occluder on single frames — the judgement fails
    (the raw fit under a hand jumps), or the hand moves with the face for a frame —
    and the made hand clip of ``tests/test_hard_footage.py`` lost its whole hand in
    the middle of the face for one frame, painted over and shown again: its worst
    frame pair (warp_spike 3.86; 1.76 with the fading memory and the tracker's pose gate).

    Parameters
    ----------
    backward_flow : (h, w, 2) float32
        Optical flow from this frame to the previous one, px (OpenCV DIS).
    expected : (h, w, 2) float32
        The landmark motion (:func:`landmark_motion`) on the same region, px.
    iod : float, keyword-only
        The face's inter-ocular distance, px (> 0).
    within : (h, w) bool, keyword-only, optional
        Only pixels here can be flagged for sure (e.g. :func:`landmark_hull`).
    tolerance : float, keyword-only
        Largest disagreement still taken for the face, inter-ocular distances per frame.
    relative : float, keyword-only
        Largest disagreement still taken for the face, share of the landmark motion.
    min_px : float, keyword-only
        Floor of that disagreement, px (flow noise on small faces).
    max_share : float, keyword-only
        Share of ``within`` above which the frame is judged a failure of the flow.
    previous : (h, w) float32, keyword-only, optional
        Last frame's result carried onto this region along the flow (0 where unknown).
    persist : float, keyword-only
        Share of ``previous`` kept, in [0, 1] (memory of ~1/(1 − persist) frames).

    Returns
    -------
    (h, w) float32

    Raises
    ------
    ValueError
        Mismatched shapes, ``iod`` ≤ 0 or ``persist`` outside [0, 1].
    """
    check(backward_flow.shape == expected.shape and backward_flow.ndim == 3 and backward_flow.shape[2] == 2,
          "backward_flow/expected", "two (h, w, 2) fields of one region", (backward_flow.shape, expected.shape))
    check(iod > 0, "iod", "> 0 px", iod)
    check(0.0 <= persist <= 1.0, "persist", "in [0, 1]", persist)
    found = _flagged(backward_flow, expected, iod=iod, within=within, tolerance=tolerance, relative=relative,
                     min_px=min_px, max_share=max_share)
    if previous is None:
        return found
    check(previous.shape == found.shape, "previous", f"a {found.shape} mask", previous.shape)
    return np.maximum(found, np.float32(persist) * previous.astype(np.float32, copy=False))


def _flagged(backward_flow: np.ndarray, expected: np.ndarray, *, iod: float, within: np.ndarray | None, tolerance: float,
             relative: float, min_px: float, max_share: float) -> np.ndarray:
    """This frame's part of :func:`occluder_mask` (no memory)."""
    d = np.linalg.norm(backward_flow - expected, axis=-1)
    limit = np.maximum(np.float32(max(min_px, tolerance * iod)), np.float32(relative) * np.linalg.norm(expected, axis=-1))
    loose = d > 0.5 * limit
    strong = d > limit
    if within is not None:
        check(within.shape == d.shape, "within", f"a {d.shape} mask", within.shape)
        strong &= within
    # An occluder covers part of the face: when nearly all of it disagrees, the flow or
    # the landmarks failed (motion blur, a fast turn), and nothing can be told apart.
    judged = within if within is not None else np.ones(d.shape, bool)
    if not judged.any() or strong.sum() > max_share * judged.sum():
        return np.zeros(d.shape, np.float32)
    k = max(3, int(round(iod / 12)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    strong = cv2.morphologyEx(strong.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    if not strong.any():
        return np.zeros(d.shape, np.float32)
    # Hysteresis (as Canny's): the looser disagreement connected to a sure one, within
    # a few inter-ocular tenths of it, is the rest of the occluder (past the judged area too).
    reach = cv2.dilate(strong, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3 * k, 3 * k)))
    n, labels = cv2.connectedComponents((loose & reach.astype(bool)).astype(np.uint8) | strong, connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[strong.astype(bool)])] = True
    keep[0] = False
    flagged = cv2.dilate(keep[labels].astype(np.uint8), kernel)
    return cv2.blur(flagged.astype(np.float32), (k, k))
