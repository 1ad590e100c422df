"""State carried from frame to frame, re-anchored to the current frame's evidence.

A video stylizer keeps things from the previous frame so the texture does not
flicker: the positional guide and the face mask carried along the input's
optical flow, and (face space) the exemplar pixel each pixel showed. Carried
state must not *integrate*: every frame adds the flow's small error, and a guide
that is 99 % last frame's wanders away from the face within a few hundred frames
(measured on a 34 s clip: the face "melts", struct_nme drift 1.5). Here every
carried value is a *bounded residual* on top of what this frame's landmarks say:

    carried_t = anchor_t + clamp(follow · (carried_{t−1} ∘ flow − anchor_t), bound)

so the error it can hold is at most ``bound``, whatever the clip's length — a
render of frame t differs from a render started a few frames before t by at most
the bound. Small landmark jitter (well under the bound) is still smoothed away by
the flow; real motion and expression changes move the anchor, and the carried
value follows within the bound at once.

The kept NNF of face-space synthesis is re-anchored the same way: an entry is
kept only while its guide error on THIS frame's guides stays below
``threshold × keep_tolerance`` (:func:`keep_threshold`); elsewhere StyleBlit runs
again (refresh where the error grows), and every entry is re-synthesized at least
once per :data:`MEMORY_FRAMES` (below).

Bounded memory (issue 15, chunks without seams). A bound on the error is not yet
a bound on the *memory*: a residual kept at 99 % per frame still remembers the frame
a render started on for hundreds of frames, so a render started at frame s (a chunk,
with a warm-up) showed 26–34 dB against the one-piece render long after s. Every
carried state therefore forgets within :data:`MEMORY_FRAMES` frames, on schedules
keyed to the ABSOLUTE frame index (never to the frame a render started on):

* the flow-carried guide and mask are two staggered chains, each restarted from this
  frame's landmark maps every ``MEMORY_FRAMES`` frames, half a period apart, and
  blended with triangular weights that are 0 at a chain's restart
  (:func:`carry_schedule`): the blend moves smoothly, and the result depends only
  on the last ``MEMORY_FRAMES`` frames;
* each pixel of a kept NNF is re-synthesized (StyleBlit's own result, instead of
  last frame's match) once every ``MEMORY_FRAMES`` frames, pixels spread evenly over
  the period by a fixed random phase (:func:`refresh_phases`, :func:`refresh_mask`),
  so about 1/``MEMORY_FRAMES`` of the face is re-tested per frame and the NNF voting
  hides the single refreshed pixels.

A render started ``MEMORY_FRAMES`` frames (plus the landmarks' settling: the One Euro
smoothing, and the tracker's fits, each started from the box of the last one — up to ~55
frames on d6) before frame t then shows frame t as the one-piece render does.

References
----------
Fišer et al. 2017, "Example-Based Synthesis of Stylized Facial Animations" (temporal
coherence through the guides, not through accumulated state); DESIGN §9 (drift).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from faceblit_core.checks import check
from faceblit_core.faces import inter_ocular

__all__ = ["clamp_residual", "clamp_mask", "carry_positional", "clamp_points", "reanchor_faces", "keep_threshold", "MASK_BOUND",
           "MEMORY_FRAMES", "carry_schedule", "refresh_phases", "refresh_mask"]

#: Largest deviation of the flow-carried face mask from this frame's, in mask units
#: (the mask is in [0, 1]): enough to smooth the feathered edge's jitter, never a
#: face outline of its own.
MASK_BOUND = 0.25

#: Frames within which every carried state (flow-carried guide and mask, kept NNF) is
#: rebuilt from the frames' own evidence (even). 2 s at 30 fps: long enough for the
#: carried guide to smooth landmark jitter, short enough for a chunk's warm-up
#: (``--chunk-warmup`` must be at least this, plus the landmark smoothing's settling).
#: 30 and 20 were measured and not taken: a render started mid-clip meets the one-piece
#: render sooner, but warp_ratio rises by 0.1–0.5 (30) and 0.3–0.8 (20) on d18, d12 and
#: target2 (README, "Seams"; ``scripts/memory_curve.py``).
MEMORY_FRAMES = 60


def clamp_residual(carried: np.ndarray, anchor: np.ndarray, bound: float) -> np.ndarray:
    """``anchor + r·min(1, bound/|r|)`` with ``r = carried − anchor`` per pixel (vector length).

    Parameters
    ----------
    carried, anchor : (h, w, 2) float32
        The carried map and this frame's map, in the same units (style px for the
        positional guide). ``carried`` may hold NaN (no previous value there): the
        result is ``anchor`` at those pixels.
    bound : float
        Largest allowed length of the residual, same units, ≥ 0.

    Returns
    -------
    (h, w, 2) float32
        A new array; ``|result − anchor| ≤ bound`` everywhere (up to float32 rounding).

    Raises
    ------
    ValueError
        Shapes differ or ``bound`` < 0.
    """
    check(carried.shape == anchor.shape and carried.ndim == 3 and carried.shape[-1] == 2, "carried shape",
          anchor.shape, carried.shape)
    check(bound >= 0, "bound", ">= 0", bound)
    r = np.subtract(carried, anchor, dtype=np.float32)
    length = np.sqrt(r[..., 0] * r[..., 0] + r[..., 1] * r[..., 1])
    # 1 inside the bound, bound/|r| beyond it; NaN residuals (no carried value) → 0.
    scale = np.minimum(np.float32(1.0), np.float32(bound) / np.maximum(length, np.float32(1e-12)))
    scale[~np.isfinite(length)] = 0.0
    r[~np.isfinite(r)] = 0.0
    return np.add(anchor, r * scale[..., None], dtype=np.float32)


def clamp_mask(carried: np.ndarray, anchor: np.ndarray, bound: float = MASK_BOUND) -> np.ndarray:
    """``anchor + clip(carried − anchor, −bound, bound)``, clipped to [0, 1]; NaN carried → anchor.

    Parameters
    ----------
    carried, anchor : (h, w) float32
        Carried and current face mask, in [0, 1] (``carried`` may hold NaN).
    bound : float
        Largest allowed deviation, mask units, ≥ 0.

    Returns
    -------
    (h, w) float32 in [0, 1]

    Raises
    ------
    ValueError
        Shapes differ or ``bound`` < 0.
    """
    check(carried.shape == anchor.shape, "carried shape", anchor.shape, carried.shape)
    check(bound >= 0, "bound", ">= 0", bound)
    r = np.subtract(carried, anchor, dtype=np.float32)
    r[~np.isfinite(r)] = 0.0
    np.clip(r, -bound, bound, out=r)
    return np.clip(np.add(anchor, r, dtype=np.float32), 0.0, 1.0)


def carry_positional(carried: np.ndarray, anchor: np.ndarray, *, follow: float, bound: float) -> np.ndarray:
    """The positional guide kept for this frame: ``anchor + clamp(follow·(carried − anchor), bound)``.

    Parameters
    ----------
    carried : (h, w, 2) float32
        Last frame's guide moved along the input's optical flow (NaN where it came
        from outside last frame's region), style px.
    anchor : (h, w, 2) float32
        This frame's landmark-based guide (MLS), style px.
    follow : float
        Share of the carried residual kept, in [0, 1) (``StylizeConfig.flow_follow``).
    bound : float
        Largest deviation from ``anchor``, style px (``flow_bound`` × the exemplar's
        inter-ocular distance).

    Returns
    -------
    (h, w, 2) float32
        Never further than ``bound`` from ``anchor``: the error carried state can
        accumulate is bounded, whatever the clip's length.

    Raises
    ------
    ValueError
        Shapes differ, ``follow`` outside [0, 1] or ``bound`` < 0.
    """
    check(0.0 <= follow <= 1.0, "follow", "in [0, 1]", follow)
    residual_carried = anchor + np.float32(follow) * (np.asarray(carried, np.float32) - anchor)
    return clamp_residual(residual_carried, anchor, bound)


def clamp_points(smoothed: np.ndarray, raw: np.ndarray, bound: float) -> np.ndarray:
    """Smoothed landmarks kept within ``bound`` of this frame's raw fit, per point.

    The One Euro filter of the tracker smooths the face shape hard (landmark jitter
    is mostly non-rigid), which makes a quickly opening mouth or a wink lag by
    several frames (measured on d18: the smoothed mouth opening trails the detected
    one by 0.13 of the eye distance on average while the mouth opens). Re-anchored:
    jitter smaller than ``bound`` is still smoothed, a real expression change is
    followed at once up to ``bound``.

    Parameters
    ----------
    smoothed, raw : (68, 2) float
        The tracker's smoothed points and this frame's raw fit, px.
    bound : float
        Largest distance of a returned point from its raw point, px, ≥ 0.

    Returns
    -------
    (68, 2) float32

    Raises
    ------
    ValueError
        Shapes differ or ``bound`` < 0.
    """
    check(np.shape(smoothed) == np.shape(raw) and np.ndim(raw) == 2, "raw points shape", np.shape(smoothed), np.shape(raw))
    return clamp_residual(np.asarray(smoothed, np.float32)[None], np.asarray(raw, np.float32)[None], bound)[0]


def reanchor_faces(faces: list, raw: list, bound: float) -> list:
    """The tracker's smoothed faces with their eye and mouth points (iBUG 36–67) kept within
    ``bound`` × inter-ocular distance of this frame's raw fit of the same face id
    (:func:`faceblit_core.temporal_state.clamp_points`). Jaw, brows and nose keep the full
    smoothing: they carry the head pose, whose jitter would shake the whole warp."""
    by_id = {f.id: f for f in raw}
    out = []
    for face in faces:
        r = by_id.get(face.id)
        if r is not None and r.points.shape == face.points.shape:
            points = face.points.copy()
            points[36:68] = clamp_points(face.points, r.points, bound * inter_ocular(r.points))[36:68]
            face = dataclasses.replace(face, points=points)
        out.append(face)
    return out


def keep_threshold(threshold: float, tolerance: float) -> float:
    """Error below which face-space synthesis keeps last frame's exemplar pixel, 8-bit guide units.

    ``threshold × tolerance``: a kept entry is re-tested on this frame's guides every
    frame; where the target changes (an opening mouth, a turning head) the error grows
    past it and the pixel is synthesized again. What stops a kept texture drifting is
    the refresh (:func:`refresh_mask`: every pixel re-synthesized once per
    :data:`MEMORY_FRAMES`), not a tight tolerance: since the refresh, tolerance 8
    (the default) is steadier than 3 and no less faithful (d6, 1008 frames × het:
    warp_ratio 3.29 → 2.68, struct_nme 0.051 → 0.047, drift 1.135 → 1.109,
    expr_err 0.096 → 0.101; the tolerance alone changed, issue 14).

    Raises
    ------
    ValueError
        Negative arguments.
    """
    check(threshold >= 0 and tolerance >= 0, "threshold, tolerance", ">= 0", (threshold, tolerance))
    return float(threshold) * float(tolerance)


def carry_schedule(index: int, period: int = MEMORY_FRAMES) -> tuple[tuple[float, float], tuple[bool, bool]]:
    """Weights of the two staggered carried chains at absolute frame ``index``, and which restarts now.

    Chain c restarts (takes this frame's landmark maps) when
    ``(index + c·period/2) mod period == 0``; its weight is a triangle over its age,
    0 at the restart and 1 half a period later, so the two weights sum to 1 and each
    changes by ``2/period`` per frame. The blend of the chains at frame t therefore
    depends only on frames ``t − period + 1 … t``.

    Parameters
    ----------
    index : int
        Absolute frame index in the clip (≥ 0).
    period : int
        Memory length, frames (even, ≥ 2).

    Returns
    -------
    weights : (float, float)
        Weights of chains 0 and 1, in [0, 1], summing to 1.
    restarts : (bool, bool)
        Whether each chain restarts at this frame (its weight is then 0).

    Raises
    ------
    ValueError
        ``period`` odd or < 2, ``index`` < 0.
    """
    check(period >= 2 and period % 2 == 0, "period", "an even number >= 2", period)
    check(index >= 0, "index", ">= 0", index)
    half = period // 2
    phases = [(index + c * half) % period for c in (0, 1)]
    weights = [min(p, period - p) / half for p in phases]
    return (weights[0], weights[1]), (phases[0] == 0, phases[1] == 0)


def refresh_phases(shape: tuple[int, int], period: int = MEMORY_FRAMES, *, seed: int = 0) -> np.ndarray:
    """Each pixel's refresh phase: a pixel is re-synthesized at the frames ``index ≡ phase (mod period)``.

    Phases are drawn uniformly (``numpy.random.default_rng(seed)``) so about
    ``1/period`` of the pixels, scattered, refresh on any frame: denoising and voting
    over their neighbours hide each one. (Phases per 4×4 or 16×16 block, measured on
    d18: crisper by 2–3 % sharp_ratio but warp_ratio 3.32/3.35 against 3.31.)

    Parameters
    ----------
    shape : (h, w)
        The synthesis region's size, px.
    period : int
        Frames between two refreshes of a pixel (≥ 1).
    seed : int, keyword-only
        Seed of the phases (fixed: same phases for every render of a clip).

    Returns
    -------
    (h, w) int16
        Phases in ``[0, period)``.

    Raises
    ------
    ValueError
        ``period`` < 1 or outside int16.
    """
    check(1 <= period <= 32767, "period", "in [1, 32767]", period)
    return np.random.default_rng(seed).integers(0, period, size=tuple(shape), dtype=np.int16)


def refresh_mask(phases, index: int, period: int = MEMORY_FRAMES, *, frames: int = 1):
    """``(h, w) bool``: the pixels due for re-synthesis at absolute frame ``index``.

    Those whose phase (:func:`refresh_phases`) fell on one of the last ``frames``
    frames ``index − frames + 1 … index`` (mod ``period``): a frame that was not
    synthesized (a repeated input frame, :func:`faceblit_core.faces.confidence.repeats`)
    hands its pixels on to the next one that is, so no pixel misses its refresh.

    Parameters
    ----------
    phases : (h, w) int16 numpy array or torch tensor
        From :func:`refresh_phases`; the result is of the same kind.
    index : int
        Absolute frame index (≥ 0).
    period : int
        As given to :func:`refresh_phases`.
    frames : int, keyword-only
        Frames since this region was last synthesized (≥ 1); ``period`` or more: all pixels.

    Raises
    ------
    ValueError
        ``index`` < 0 or ``frames`` < 1.
    """
    check(index >= 0, "index", ">= 0", index)
    check(frames >= 1, "frames", ">= 1", frames)
    return ((index % period) - phases) % period < frames
