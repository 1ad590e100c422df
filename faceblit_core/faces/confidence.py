"""How far a tracked face can be trusted, and how strongly to stylize it (graceful degradation).

StyleBlit copies exemplar chunks to where the positional guide says; the guide
comes from 68 landmarks and the exemplar's landmarks. When the evidence is poor
— the head turned beyond what the (frontal) exemplar shows, the face half out of
the frame, a landmark fit that jumps, a face too small to paint — the guides are
wrong and the painted face tears apart. Instead of painting it anyway, the
stylizer multiplies its compositing mask by a *strength* in [0, 1] that follows
the evidence: full on good frames, fading toward the original frame over a few
frames as the evidence worsens, 0 (frame written unchanged, carried state
dropped) when it is gone, and fading back in when the face returns.

Everything here is a pure function of landmarks and sizes (plus the small
:class:`FadeState` value a caller keeps per face), so it is tested on its own.

Evidence (:class:`Evidence`), each cue turned into a score in [0, 1] by a linear
ramp between a "fine" and a "hopeless" value (:data:`DEFAULT_LIMITS`):

* ``turned`` — head turned out of the exemplar's pose (yaw, pitch), degrees
  (:func:`head_yaw`, :func:`foreshortening`);
* ``tilted`` — head roll relative to the exemplar's, degrees (:func:`head_roll`);
* ``outside_frame`` — fraction of the landmarks' hull outside the frame (:func:`outside_fraction`);
* ``unreliable_landmarks`` — how far the points used stray from the raw fit and how much
  the raw fit's shape jumped since the last frame, per inter-ocular distance
  (:func:`fit_error`);
* ``small`` — inter-ocular distance, frame px.

The target strength is the smallest score; its cue is the *reason*.

References
----------
Texler et al. 2021, "FaceBlit", Sec. 3 (landmarks drive the guides; a wrong fit
gives a wrong guide). Sagonas et al. 2016 (68-point iBUG layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from faceblit_core.checks import check, check_array

#: Why a face was not stylized fully, in the order reported. ``no_face``: no face
#: in the frame; ``unselected``: faces in the frame, but none the run stylizes
#: (``--faces``, or ``--style ID=S`` without an exemplar for every face: they are
#: written as they are); ``lost``: the tracker lost a face, which fades out where
#: the optical flow carries it; ``recovering``: the evidence is fine again, the
#: strength is still fading back in.
CUES = ("turned", "tilted", "outside_frame", "unreliable_landmarks", "small")
REASONS = ("no_face", "unselected", "lost", *CUES, "recovering")

#: Frame states counted in the run summary.
FRAME_STATES = ("stylized", "faded", "unchanged")

# iBUG indices: jaw sides (ear level down to the cheek), nose tip, eyes.
_LEFT_JAW = [0, 1, 2]
_RIGHT_JAW = [14, 15, 16]
_NOSE_TIP = 30
# Landmarks that move with the skull, not with the expression (jaw line, nose, eye corners).
_RIGID = [*range(17), 27, 28, 29, 30, 31, 35, 36, 39, 42, 45]
# Nose-tip depth over the half width of the face, for the yaw of a turned head:
# on a cylinder-like head the asymmetry of the nose between the jaw sides is
# ≈ K·tan(yaw) (0.55 puts 30° at ≈ 0.32 and 60° at ≈ 0.95).
_NOSE_DEPTH = 0.55
# Foreshortening that two faces in the same pose show because their shapes differ (a
# rounder or longer face than the exemplar's): 10-25° (see foreshortening). Only what
# goes beyond it counts as a turn; without it frontal faces of another shape were faded
# as "turned" (d10 x het: median 27°, nose yaw under 13°).
_SHAPE_ALLOWANCE = 15.0


@dataclass(frozen=True)
class Limits:
    """Where each cue starts to cost strength (``fine``) and where it leaves none (``hopeless``).

    Each pair is (fine, hopeless); the score falls linearly between them. Degrees
    for the angles, a fraction for ``outside``, inter-ocular distances for
    ``fit``, frame px for ``iod`` (there the order is reversed: bigger is better).
    """

    # The yaw read from the nose is compressed: ordinary turns read high (s20 and target2,
    # faces turned ~20-30°: up to 41-42° against watercolorgirl or het). From 30° on,
    # frontal-looking frames were faded (s20 x watercolorgirl 99 of 297 frames, target2 x
    # het 48 of 195) although the MLS warp paints such faces well; the made 80° turn still
    # fades out (tests/test_hard_footage.py).
    yaw: tuple[float, float] = (40.0, 50.0)
    roll: tuple[float, float] = (35.0, 65.0)
    outside: tuple[float, float] = (0.04, 0.25)
    fit: tuple[float, float] = (0.10, 0.30)
    iod: tuple[float, float] = (18.0, 9.0)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Evidence:
    """What the landmarks of one face in one frame say about their reliability.

    Attributes
    ----------
    yaw : float
        How far the head is turned out of the exemplar's pose, degrees, ≥ 0: the
        larger of |:func:`head_yaw` − the exemplar's| and :func:`foreshortening`
        less what face shapes alone give (15°).
    roll : float
        |head roll − the exemplar's|, degrees in [0, 180].
    outside : float
        Fraction of the landmarks' convex hull outside the frame, [0, 1].
    fit : float
        Landmark fit error (:func:`fit_error`), inter-ocular distances, ≥ 0.
    iod : float
        Inter-ocular distance, frame px.
    """

    yaw: float
    roll: float
    outside: float
    fit: float
    iod: float


def _eye_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Eye-line unit vector, its normal (pointing down the face) and the inter-ocular distance."""
    left, right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    axis = right - left
    iod = float(np.hypot(*axis))
    if iod <= 1e-6:
        return np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.0
    axis = axis / iod
    return axis, np.array([-axis[1], axis[0]]), iod


def head_yaw(points: np.ndarray) -> float:
    """Head yaw from 2-D landmarks, degrees (positive: nose toward the image's right).

    The nose tip (30) moves toward one side of the face as the head turns while
    the jaw sides (0–2, 14–16) stay near the silhouette: with ``a`` the nose's
    asymmetry between them, measured along the eye line (so roll does not count),
    ``yaw = atan(a / 0.55)`` (a cylinder-like head whose nose sticks out 0.55 of
    its half width). A nose beyond the silhouette gives |a| > 1 (yaw > 60°).

    Parameters
    ----------
    points : (68, 2) float
        iBUG landmarks, px.

    Returns
    -------
    float
        Degrees in (−90, 90); ±90 when the jaw sides coincide or swap.

    Raises
    ------
    ValueError
        Wrong shape.
    """
    p = np.asarray(points, dtype=np.float64)
    check_array(p, "points", shape=(68, 2))
    axis, _, _ = _eye_frame(p)
    left = float(p[_LEFT_JAW].mean(axis=0) @ axis)
    right = float(p[_RIGHT_JAW].mean(axis=0) @ axis)
    nose = float(p[_NOSE_TIP] @ axis)
    width = right - left
    if width <= 1e-6:
        return 90.0
    asym = ((nose - left) - (right - nose)) / width
    return math.degrees(math.atan(asym / _NOSE_DEPTH))


def foreshortening(points: np.ndarray, style_points: np.ndarray) -> float:
    """Out-of-plane turn (yaw or pitch) of a face relative to the exemplar's, from its foreshortening, degrees.

    A head turned by θ away from the exemplar's pose squeezes the face by ≈ cos θ
    along one direction. The best affine map from the exemplar's rigid landmarks
    (jaw, nose, eye corners: not the mouth, whose opening is expression) onto the
    face's has singular values σ1 ≥ σ2; ``acos(σ2 / σ1)`` is that angle. It also
    sees turns the nose-based :func:`head_yaw` misses (a fit that keeps the nose
    centred) and pitch (a head tilted back). Different face shapes give ≈ 10–25°.

    Parameters
    ----------
    points, style_points : (68, 2) float
        iBUG landmarks of the face (frame px) and of the exemplar (style px).

    Returns
    -------
    float
        Degrees in [0, 90]; 90 when no map is found.

    Raises
    ------
    ValueError
        Wrong shapes.
    """
    p = np.asarray(points, dtype=np.float32)
    s = np.asarray(style_points, dtype=np.float32)
    check_array(p, "points", shape=(68, 2))
    check_array(s, "style_points", shape=(68, 2))
    affine, _ = cv2.estimateAffine2D(s[_RIGID], p[_RIGID], method=cv2.LMEDS)
    if affine is None or not np.isfinite(affine).all():
        return 90.0
    sv = np.linalg.svd(affine[:, :2].astype(np.float64), compute_uv=False)
    if sv[0] <= 1e-9:
        return 90.0
    return math.degrees(math.acos(float(min(1.0, sv[1] / sv[0]))))


def head_roll(points: np.ndarray) -> float:
    """Head roll: angle of the line from the left to the right eye centre, degrees in (−180, 180].

    Parameters
    ----------
    points : (68, 2) float
        iBUG landmarks, px (y down, so a positive roll turns clockwise on screen).

    Raises
    ------
    ValueError
        Wrong shape.
    """
    p = np.asarray(points, dtype=np.float64)
    check_array(p, "points", shape=(68, 2))
    d = p[42:48].mean(axis=0) - p[36:42].mean(axis=0)
    return math.degrees(math.atan2(d[1], d[0]))


def outside_fraction(points: np.ndarray, frame_size: tuple[int, int]) -> float:
    """Fraction of the landmarks' convex hull (jaw, brows: the part the guides rest on) outside the frame.

    Parameters
    ----------
    points : (68, 2) float
        iBUG landmarks, frame px (may lie outside the frame).
    frame_size : (W, H)
        Frame size, px; the frame covers [−0.5, W − 0.5) × [−0.5, H − 0.5).

    Returns
    -------
    float
        In [0, 1]; 1 for a degenerate (zero-area) hull.

    Raises
    ------
    ValueError
        Wrong shape or non-positive frame size.
    """
    p = np.asarray(points, dtype=np.float32)
    check_array(p, "points", shape=(68, 2))
    W, H = frame_size
    check(W > 0 and H > 0, "frame_size", "positive (W, H)", frame_size)
    hull = cv2.convexHull(np.ascontiguousarray(p[:27]))
    area = float(cv2.contourArea(hull))
    if area <= 1e-6:
        return 1.0
    frame = np.array([[-0.5, -0.5], [W - 0.5, -0.5], [W - 0.5, H - 0.5], [-0.5, H - 0.5]], dtype=np.float32)
    inside, _ = cv2.intersectConvexConvex(hull, frame)
    return float(min(1.0, max(0.0, 1.0 - inside / area)))


def fit_error(points: np.ndarray, raw: np.ndarray, previous_raw: np.ndarray | None = None) -> float:
    """How unreliable the landmarks used are, inter-ocular distances.

    The larger of two figures: the mean distance between the points used (smoothed)
    and the raw fit of this frame (the smoother lags a fast move; the guides are
    then off the face), and the change of the raw fit's *shape* since the last
    frame — mean point distance after removing the best similarity (move, turn,
    scale) — which a fit that jumps onto a hand, a hair line or the frame edge
    shows while a moving face does not.

    Parameters
    ----------
    points : (68, 2) float
        Landmarks used for the guides (smoothed), px.
    raw : (68, 2) float
        This frame's unsmoothed fit, px.
    previous_raw : (68, 2) float, optional
        Last frame's unsmoothed fit of the same face (None on its first frame).

    Returns
    -------
    float
        ≥ 0; inf when the face has no inter-ocular distance.

    Raises
    ------
    ValueError
        Wrong shapes.
    """
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(raw, dtype=np.float64)
    check_array(p, "points", shape=(68, 2))
    check_array(r, "raw", shape=(68, 2))
    _, _, iod = _eye_frame(r)
    if iod <= 1e-6:
        return math.inf
    lag = float(np.linalg.norm(p - r, axis=1).mean()) / iod
    if previous_raw is None:
        return lag
    q = np.asarray(previous_raw, dtype=np.float64)
    check_array(q, "previous_raw", shape=(68, 2))
    similarity, _ = cv2.estimateAffinePartial2D(q.astype(np.float32), r.astype(np.float32), method=cv2.LMEDS)
    if similarity is None:
        return math.inf
    moved = q @ similarity[:, :2].T + similarity[:, 2]
    jump = float(np.linalg.norm(moved - r, axis=1).mean()) / iod
    return max(lag, jump)


def measure(points: np.ndarray, raw: np.ndarray, previous_raw: np.ndarray | None, style_points: np.ndarray,
            frame_size: tuple[int, int]) -> Evidence:
    """All cues of one face in one frame (:class:`Evidence`).

    The head pose comes from the raw fit (the smoothed shape lags a turn by many
    frames), the frame and size cues from the points the guides use.

    Parameters
    ----------
    points : (68, 2) float
        Landmarks used for the guides (smoothed), frame px.
    raw : (68, 2) float
        The unsmoothed fit of this frame, frame px.
    previous_raw : (68, 2) float or None
        Last frame's unsmoothed fit of the same face.
    style_points : (68, 2) float
        The exemplar's landmarks, style px (its own yaw and roll are the reference:
        a three-quarter portrait covers a three-quarter face).
    frame_size : (W, H)
        Frame size, px.

    Raises
    ------
    ValueError
        Wrong shapes.
    """
    # The pose from the raw fit: the smoothed shape lags a turning head by many frames.
    roll = abs(head_roll(raw) - head_roll(style_points)) % 360.0
    return Evidence(
        yaw=max(abs(head_yaw(raw) - head_yaw(style_points)), foreshortening(raw, style_points) - _SHAPE_ALLOWANCE),
        roll=min(roll, 360.0 - roll),
        outside=outside_fraction(points, frame_size),
        fit=fit_error(points, raw, previous_raw),
        iod=_eye_frame(np.asarray(points, dtype=np.float64))[2],
    )


def _ramp(value: float, fine: float, hopeless: float) -> float:
    """1 at ``fine``, 0 at ``hopeless``, linear between (either order), clipped; 0 for NaN."""
    if not math.isfinite(value):
        return 0.0 if not (value == -math.inf and hopeless > fine) else 1.0
    t = (value - fine) / (hopeless - fine)
    return float(min(1.0, max(0.0, 1.0 - t)))


def scores(evidence: Evidence, limits: Limits = DEFAULT_LIMITS) -> dict[str, float]:
    """Each cue's score in [0, 1] (1 = no reason to hold back), keyed by :data:`CUES`."""
    return {
        "turned": _ramp(evidence.yaw, *limits.yaw),
        "tilted": _ramp(evidence.roll, *limits.roll),
        "outside_frame": _ramp(evidence.outside, *limits.outside),
        "unreliable_landmarks": _ramp(evidence.fit, *limits.fit),
        "small": _ramp(evidence.iod, *limits.iod),
    }


def target_strength(evidence: Evidence, limits: Limits = DEFAULT_LIMITS) -> tuple[float, str | None]:
    """The strength the evidence allows and the cue that limits it.

    Returns
    -------
    (strength, reason)
        ``strength`` in [0, 1] = the smallest cue score; ``reason`` = that cue's
        name (:data:`CUES`), or None when every score is 1.
    """
    s = scores(evidence, limits)
    reason = min(s, key=s.get)
    return s[reason], (reason if s[reason] < 1.0 else None)


@dataclass
class FadeState:
    """What one face's fade carries from frame to frame (keep one per face id).

    Attributes
    ----------
    strength : float
        Strength applied on the last frame, [0, 1]. A new face starts at 0 and fades in.
    previous_raw : (68, 2) float32 or None
        Last frame's unsmoothed fit, for :func:`fit_error`'s shape jump.
    points : (68, 2) float32 or None
        Last frame's landmarks as used (smoothed or coasted, :func:`coast`), frame px.
    """

    strength: float = 0.0
    previous_raw: np.ndarray | None = field(default=None, repr=False)
    points: np.ndarray | None = field(default=None, repr=False)


def step(previous: float, target: float, *, fade_frames: int, rearm: float = 0.8) -> float:
    """Next strength: ``previous`` moved toward ``target`` by at most ``1/fade_frames`` a frame.

    Fading out and in over several frames keeps the output's change between two
    frames small (no pop: the warping error of the output stays even), and an
    extinguished face (strength 0) comes back only once its evidence reaches
    ``rearm`` (hysteresis: a face on the edge of the limits does not blink).

    Parameters
    ----------
    previous, target : float
        In [0, 1].
    fade_frames : int, keyword-only
        Frames for a full fade (≥ 1); 0 disables fading: always 1.
    rearm : float, keyword-only
        Target a face at strength 0 needs before it fades in again, (0, 1].

    Returns
    -------
    float
        In [0, 1].
    """
    if fade_frames <= 0:
        return 1.0
    if previous <= 0.0 and target < rearm:
        return 0.0
    rate = 1.0 / fade_frames
    return float(min(1.0, max(0.0, previous + float(np.clip(target - previous, -rate, rate)))))


def update(state: FadeState, points: np.ndarray, raw: np.ndarray, style_points: np.ndarray, frame_size: tuple[int, int], *,
           fade_frames: int, limits: Limits = DEFAULT_LIMITS) -> tuple[float, str | None]:
    """One frame of one face: measure, step the strength, remember the raw fit.

    Parameters
    ----------
    state : FadeState
        The face's state; ``strength`` and ``previous_raw`` are updated in place.
    points, raw, style_points, frame_size
        As :func:`measure`.
    fade_frames : int, keyword-only
        As :func:`step` (0 = always full strength, the cues are still measured).
    limits : Limits, keyword-only

    Returns
    -------
    (strength, reason)
        The strength to apply in [0, 1] and why it is below 1 (a cue of
        :data:`CUES`, ``"recovering"`` while fading back in), or None at 1.
    """
    evidence = measure(points, raw, state.previous_raw, style_points, frame_size)
    target, reason = target_strength(evidence, limits)
    state.strength = step(state.strength, target, fade_frames=fade_frames)
    state.previous_raw = np.array(raw, dtype=np.float32)
    state.points = np.array(points, dtype=np.float32)
    if state.strength >= 1.0:
        return 1.0, None
    return state.strength, reason if reason is not None else "recovering"


def fade_lost(state: FadeState, points: np.ndarray, *, fade_frames: int) -> tuple[float, str]:
    """One frame of a face the tracker lost: its strength steps toward 0 (reason ``"lost"``).

    Parameters
    ----------
    state : FadeState
        Updated in place (``previous_raw`` forgotten: there is no fit).
    points : (68, 2) float
        Where the face is assumed to be now (:func:`coast`), frame px.
    fade_frames : int, keyword-only
        As :func:`step`; 0 drops the face at once.
    """
    state.strength = step(state.strength, 0.0, fade_frames=fade_frames) if fade_frames > 0 else 0.0
    state.previous_raw = None
    state.points = np.array(points, dtype=np.float32)
    return state.strength, "lost"


def coast(points: np.ndarray, forward_flow: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """Last frame's landmarks moved by the face's optical flow (for a face the tracker lost).

    The face moves by the median forward flow (t−1 → t) over the landmarks' convex
    hull (jaw, brows) in the previous frame: robust to the background and to a
    hand in front, enough to fade the face out where it goes.

    Parameters
    ----------
    points : (68, 2) float
        Landmarks in the previous frame, frame px.
    forward_flow : (h, w, 2) float32
        Optical flow from the previous frame to this one on a region, px.
    origin : (x0, y0)
        The region's top-left corner in the frame, px.

    Returns
    -------
    (68, 2) float32
        The moved landmarks (unmoved when the hull holds no flow pixel).

    Raises
    ------
    ValueError
        Wrong shapes.
    """
    p = np.asarray(points, dtype=np.float32)
    check_array(p, "points", shape=(68, 2))
    check(forward_flow.ndim == 3 and forward_flow.shape[2] == 2, "forward_flow", "(h, w, 2)", forward_flow.shape)
    hull = np.zeros(forward_flow.shape[:2], np.uint8)
    local = np.round(p[:27] - np.asarray(origin, dtype=np.float32)).astype(np.int32)
    cv2.fillConvexPoly(hull, cv2.convexHull(local), 1)
    moving = forward_flow[hull.astype(bool)]
    if len(moving) == 0:
        return p.copy()
    return p + np.median(moving, axis=0).astype(np.float32)


def frame_state(strengths: list[float]) -> str:
    """How a frame was written, from its stylized faces' strengths: one of :data:`FRAME_STATES`.

    ``strengths`` holds the faces the run stylizes (faces not selected are left out):
    ``stylized`` when there is one and every one is at full strength, ``unchanged``
    when none is stylized at all (none found or selected, or all at 0), else ``faded``.
    """
    if not strengths or max(strengths) <= 0.0:
        return "unchanged"
    return "stylized" if min(strengths) >= 1.0 else "faded"


def carry_left_face(carried: np.ndarray, landmark_guide: np.ndarray, mask: np.ndarray, *, style_iod: float,
                    tolerance: float = 0.25, carried_mask: np.ndarray | None = None, mask_tolerance: float = 0.1) -> bool:
    """Whether a positional guide carried along the optical flow has left the face.

    The flow-carried guide (``flow_follow``) is pulled toward the landmark-based one
    by only a small share per frame, so a bad flow field (a fast move, a hand
    crossing, the frame edge) would leave a torn guide for many frames. Where the
    face is (``mask`` ≥ 0.5), the median distance between the two guides is
    compared with ``tolerance`` inter-ocular distances of the exemplar.

    Parameters
    ----------
    carried, landmark_guide : (h, w, 2) float32
        Positional guides (style px) on the same region: after the flow carry and
        from this frame's landmarks.
    mask : (h, w) float32
        Face mask in [0, 1] on that region.
    style_iod : float, keyword-only
        The exemplar's inter-ocular distance, style px (> 0).
    tolerance : float, keyword-only
        Largest median distance kept, exemplar inter-ocular distances.
    carried_mask : (h, w) float32, keyword-only, optional
        The face mask after the flow carry: dropped too when it leaves out more than
        ``mask_tolerance`` of the landmark mask's face (a cut from the frame edge).
    mask_tolerance : float, keyword-only
        Share of the face the carried mask may miss.

    Returns
    -------
    bool
        True when the carry should be dropped (also when it holds NaN on the face).

    Raises
    ------
    ValueError
        Mismatched shapes.
    """
    check(carried.shape == landmark_guide.shape and carried.shape[:2] == mask.shape, "carried/landmark_guide/mask",
          "guides (h, w, 2) and a mask (h, w) of one region", (carried.shape, landmark_guide.shape, mask.shape))
    on_face = mask >= 0.5
    if not on_face.any() or style_iod <= 0:
        return False
    d = np.linalg.norm(carried[on_face] - landmark_guide[on_face], axis=-1)
    if not np.isfinite(d).all():
        return True
    if carried_mask is not None:
        # A mask carried from a face cut by the frame edge keeps the cut for ~1/(1 − flow_follow) frames.
        lost = float((carried_mask[on_face] < 0.5).mean())
        if lost > mask_tolerance:
            return True
    return bool(np.median(d) > tolerance * style_iod)


def repeats(frame: np.ndarray, previous: np.ndarray, *, tolerance: float = 1.0, blocks: int = 16) -> bool:
    """Whether ``frame`` repeats ``previous`` (a duplicated frame, e.g. from a frame-rate conversion).

    A repeated input frame gets the previous output again: stylizing it anew moves
    the painted face (its landmark filter and carried state keep going) while the
    video stands still. The frames are compared on a ``blocks × blocks`` grid of
    mean absolute differences (area averages): a repeat differs only by coding
    noise everywhere, while a moving mouth in a large frame still changes its
    block by several levels (measured: d12's duplicates ≤ 0.9 except one at 1.2,
    d18's near-still frames ≥ 1.4, s20's duplicate 0.5).

    Parameters
    ----------
    frame, previous : (H, W, 3) uint8
        Consecutive frames.
    tolerance : float, keyword-only
        Largest block mean |difference| of a repeat, 8-bit levels.
    blocks : int, keyword-only
        Grid size.

    Returns
    -------
    bool
        False when the shapes differ.
    """
    if frame.shape != previous.shape:
        return False
    diff = cv2.absdiff(frame, previous)
    grid = cv2.resize(diff, (blocks, blocks), interpolation=cv2.INTER_AREA).astype(np.float32).mean(axis=2)
    return bool(grid.max() <= tolerance)
