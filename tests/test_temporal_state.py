"""Issue 14: state carried from frame to frame is a bounded residual on this frame's evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceblit_core.temporal_state import (
    MASK_BOUND,
    carry_positional,
    carry_schedule,
    clamp_mask,
    clamp_points,
    clamp_residual,
    keep_threshold,
    refresh_mask,
    refresh_phases,
)


def test_clamp_residual_keeps_small_residuals_and_caps_large_ones():
    anchor = np.zeros((2, 3, 2), np.float32)
    carried = np.array([[[0.5, 0.0], [3.0, 4.0], [np.nan, 1.0]], [[-6.0, 8.0], [0.0, -0.1], [1e6, 0.0]]], np.float32)
    out = clamp_residual(carried, anchor, 2.0)
    np.testing.assert_allclose(out[0, 0], [0.5, 0.0])                 # inside the bound: unchanged
    np.testing.assert_allclose(out[0, 1], [1.2, 1.6], rtol=1e-6)      # 5 px → 2 px, same direction
    np.testing.assert_array_equal(out[0, 2], [0.0, 0.0])             # no carried value → the anchor
    np.testing.assert_allclose(out[1, 0], [-1.2, 1.6], rtol=1e-6)
    np.testing.assert_allclose(out[1, 2], [2.0, 0.0], rtol=1e-6)
    assert np.all(np.linalg.norm(out - anchor, axis=-1) <= 2.0 + 1e-5)
    with pytest.raises(ValueError, match="bound"):
        clamp_residual(carried, anchor, -1.0)
    with pytest.raises(ValueError, match="carried shape"):
        clamp_residual(carried[:1], anchor, 1.0)


def test_a_guide_carried_along_a_biased_flow_never_leaves_its_bound():
    # 1000 frames of a flow that is wrong by 0.3 px per frame in a random-walk way
    # (what integrates into a "melted" face): the old 99 % blend wanders tens of px,
    # the re-anchored guide stays within its bound of the landmark guide every frame.
    rng = np.random.default_rng(1)
    h, w, bound = 12, 16, 2.5
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    truth = np.stack([xs, ys], -1)
    carried_old = truth.copy()
    carried_new = truth.copy()
    bias = np.zeros(2, np.float32)
    worst_new = worst_old = 0.0
    for t in range(1000):
        bias += rng.normal(0, 0.3, 2).astype(np.float32)
        anchor = truth + rng.normal(0, 0.4, truth.shape).astype(np.float32)      # landmark jitter
        flow_error = bias + rng.normal(0, 0.2, truth.shape).astype(np.float32)
        carried_old = 0.99 * (carried_old + flow_error) + 0.01 * anchor
        carried_new = carry_positional(carried_new + flow_error, anchor, follow=0.99, bound=bound)
        worst_new = max(worst_new, float(np.linalg.norm(carried_new - anchor, axis=-1).max()))
        worst_old = max(worst_old, float(np.linalg.norm(carried_old - anchor, axis=-1).max()))
    assert worst_new <= bound + 1e-4
    assert worst_old > 4 * bound                 # what the bound prevents
    # Below the bound the carried guide still smooths the landmark jitter.
    still = carry_positional(truth + 0.1, truth + 0.3, follow=0.99, bound=bound)
    np.testing.assert_allclose(still, truth + 0.102, atol=1e-5)


def test_clamp_mask_and_points_and_keep_threshold():
    anchor = np.array([[0.0, 0.5, 1.0]], np.float32)
    out = clamp_mask(np.array([[1.0, np.nan, 0.0]], np.float32), anchor)
    np.testing.assert_allclose(out, [[MASK_BOUND, 0.5, 1.0 - MASK_BOUND]])
    raw = np.zeros((68, 2), np.float32)
    smoothed = raw + np.float32([3.0, 4.0])
    np.testing.assert_allclose(clamp_points(smoothed, raw, 1.0), np.tile([0.6, 0.8], (68, 1)), rtol=1e-6)
    np.testing.assert_allclose(clamp_points(smoothed, raw, 10.0), smoothed)
    assert keep_threshold(50.0, 1.5) == 75.0
    with pytest.raises(ValueError):
        keep_threshold(50.0, -1.0)


def test_reanchor_faces_bounds_only_eye_and_mouth_points_of_the_same_face():
    from faceblit_core.faces import Face
    from faceblit_core.temporal_state import reanchor_faces

    rng = np.random.default_rng(0)
    raw_points = (rng.random((68, 2)) * 100).astype(np.float32)
    raw_points[36:42] = [10, 50]                                  # eyes 80 px apart
    raw_points[42:48] = [90, 50]
    smoothed = raw_points + np.float32([0.0, 30.0])                # lags 30 px behind
    face = Face(points=smoothed, box=np.float32([0, 0, 100, 100]), id=3)
    raw = Face(points=raw_points, box=np.float32([0, 0, 100, 100]), id=3)
    (out,) = reanchor_faces([face], [raw], 0.05)
    moved = np.linalg.norm(out.points - raw_points, axis=1)
    np.testing.assert_allclose(moved[36:68], 4.0, rtol=1e-5)       # 0.05 x 80 px
    np.testing.assert_array_equal(out.points[:36], smoothed[:36])  # pose points keep their smoothing
    (other,) = reanchor_faces([face], [Face(points=raw_points, box=raw.box, id=4)], 0.05)
    np.testing.assert_array_equal(other.points, smoothed)          # another face id: untouched


# ------------------------------------------------------------- bounded memory (issue 15)
def test_carry_schedule_blends_two_staggered_chains_with_weights_summing_to_one():
    period = 8
    restarts_at = {0: [], 1: []}
    previous = None
    for index in range(3 * period):
        (w0, w1), (r0, r1) = carry_schedule(index, period)
        assert w0 + w1 == pytest.approx(1.0) and 0.0 <= w0 <= 1.0
        # A chain restarts (takes this frame's landmark maps) exactly when its weight is 0.
        assert r0 == (w0 == 0.0) and r1 == (w1 == 0.0)
        for c, r in enumerate((r0, r1)):
            if r:
                restarts_at[c].append(index)
        if previous is not None:
            assert abs(w0 - previous) <= 2.0 / period + 1e-9   # smooth: no jump in the blend
        previous = w0
    # Each chain restarts every period, the two half a period apart, on absolute indices.
    assert restarts_at[0] == [0, 8, 16] and restarts_at[1] == [4, 12, 20]
    assert carry_schedule(1000 * period + 3, period) == carry_schedule(3, period)
    with pytest.raises(ValueError):
        carry_schedule(0, 7)
    with pytest.raises(ValueError):
        carry_schedule(-1, 8)


def test_every_pixel_is_refreshed_once_per_period_even_across_skipped_frames():
    phases = refresh_phases((30, 40), 12, seed=5)
    assert phases.dtype == np.int16 and phases.min() >= 0 and phases.max() < 12
    np.testing.assert_array_equal(phases, refresh_phases((30, 40), 12, seed=5))   # fixed per seed
    count = sum(refresh_mask(phases, i, 12).astype(int) for i in range(100, 112))
    np.testing.assert_array_equal(count, 1)                                       # once per period
    # About 1/period of the region per frame, scattered.
    assert 30 * 40 / 12 * 0.6 < refresh_mask(phases, 7, 12).sum() < 30 * 40 / 12 * 1.4
    # Frames 101-103 not synthesized (repeated input): frame 104 refreshes their pixels too.
    late = refresh_mask(phases, 104, 12, frames=4)
    np.testing.assert_array_equal(late, sum(refresh_mask(phases, i, 12) for i in range(101, 105)) > 0)
    assert refresh_mask(phases, 5, 12, frames=12).all()
    t = refresh_mask(torch.from_numpy(phases), 2**40 + 3, 12)                     # large indices, torch
    np.testing.assert_array_equal(t.numpy(), refresh_mask(phases, 2**40 + 3, 12))


def test_blended_chains_forget_where_they_started_within_one_period():
    # The stylizer's carry (stylizer.FrameStylizer._follow_flow) on a still scene with
    # jittering anchors: two runs that start with different carried chains (a one-piece
    # render and a chunk started later) give the same guide once a period has passed.
    period, rng = 10, np.random.default_rng(0)
    anchors = rng.normal(0, 1, (60, 4, 4, 2)).astype(np.float32)

    def run(first, chains):
        out = {}
        for index in range(first, 60):
            (w0, w1), restarts = carry_schedule(index, period)
            a = anchors[index]
            chains = [a if r or c is None else carry_positional(c, a, follow=0.99, bound=3.0) for c, r in zip(chains, restarts)]
            out[index] = chains[0] * np.float32(w0) + chains[1] * np.float32(w1)
        return out

    whole = run(0, [None, None])
    late = run(23, [None, None])
    for index in range(23, 60):
        if index >= 23 + period:
            np.testing.assert_array_equal(late[index], whole[index])
    assert not np.array_equal(late[24], whole[24])   # ... and did differ before
