"""faceblit_core.occlusion: what moves in front of the face against the landmarks' motion (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from faceblit_core import occlusion
from faceblit_core.faces import load_landmarks
from faceblit_core.geometry import Region


@pytest.fixture(scope="module")
def points(shared_data) -> np.ndarray:
    return load_landmarks(shared_data / "styles" / "het_480x640.lm.txt").astype(np.float32)


def test_landmark_motion_follows_the_landmarks(points):
    region = Region(50, 250, 350, 600)
    still = occlusion.landmark_motion(points, points, region)
    assert still.shape == (350, 300, 2)
    np.testing.assert_allclose(still, 0.0, atol=1e-3)
    moved = occlusion.landmark_motion(points, points + np.float32([4.0, -2.5]), region)
    np.testing.assert_allclose(moved, np.broadcast_to([4.0, -2.5], moved.shape), atol=1e-3)


def test_landmark_hull_is_inset(points):
    region = Region(0, 0, 480, 640)
    full = occlusion.landmark_hull(points, region, inset=0.0)
    inner = occlusion.landmark_hull(points, region)
    assert inner.sum() < full.sum() and not (inner & ~full).any()
    nose = points[30].astype(int)
    assert inner[nose[1], nose[0]] and not full[5, 5]


def test_a_patch_moving_on_its_own_is_flagged():
    h, w = 120, 160
    expected = np.zeros((h, w, 2), np.float32)
    flow = expected.copy()
    flow[40:80, 50:90] = (-8.0, 0.0)  # a hand moving right: it came from 8 px to the left
    within = np.zeros((h, w), bool)
    within[20:100, 30:130] = True
    mask = occlusion.occluder_mask(flow, expected, iod=60.0, within=within)
    assert mask.dtype == np.float32 and mask.shape == (h, w)
    assert mask[45:75, 55:85].min() > 0.99
    assert mask[:10].max() == 0.0 and mask[:, 140:].max() == 0.0
    # Flow that agrees with the landmark motion is the face: nothing flagged.
    assert occlusion.occluder_mask(expected + 5.0, expected + 5.0, iod=60.0, within=within).max() == 0.0
    # Not sure anywhere in `within`: nothing, even where the flow disagrees outside it.
    outside = np.zeros((h, w), bool)
    outside[100:, :20] = True
    assert occlusion.occluder_mask(flow, expected, iod=60.0, within=outside).max() == 0.0


def test_tolerance_grows_with_the_motion():
    h, w = 60, 60
    expected = np.zeros((h, w, 2), np.float32)
    expected[...] = (30.0, 0.0)  # a fast head move
    flow = expected.copy()
    flow[20:40, 20:40] += (6.0, 0.0)  # 20 % off: flow error on a fast move, not an occluder
    assert occlusion.occluder_mask(flow, expected, iod=60.0).max() == 0.0
    flow[20:40, 20:40] += (10.0, 0.0)
    assert occlusion.occluder_mask(flow, expected, iod=60.0).max() > 0.99


def test_a_failed_flow_flags_nothing():
    expected = np.zeros((50, 50, 2), np.float32)
    flow = np.random.default_rng(0).normal(0, 20, (50, 50, 2)).astype(np.float32)
    assert occlusion.occluder_mask(flow, expected, iod=40.0).max() == 0.0
    with pytest.raises(ValueError):
        occlusion.occluder_mask(flow, expected[:-1], iod=40.0)
    with pytest.raises(ValueError):
        occlusion.occluder_mask(flow, expected, iod=0.0)


def test_what_was_in_front_fades_instead_of_vanishing():
    """``previous``: an occluder the cue misses on one frame (a failed judgement, or it moved
    with the face) is still kept ``persist`` strong, then fades; one found again is kept whole."""
    h, w = 120, 160
    expected = np.zeros((h, w, 2), np.float32)
    within = np.zeros((h, w), bool)
    within[20:100, 30:130] = True
    flow = expected.copy()
    flow[40:80, 50:90] = (-8.0, 0.0)
    seen = occlusion.occluder_mask(flow, expected, iod=60.0, within=within)
    # Missed: the flow agrees with the landmarks everywhere this frame.
    missed = occlusion.occluder_mask(expected, expected, iod=60.0, within=within, previous=seen)
    np.testing.assert_allclose(missed, 0.5 * seen)
    again = occlusion.occluder_mask(expected, expected, iod=60.0, within=within, previous=missed, persist=0.5)
    np.testing.assert_allclose(again, 0.25 * seen)
    # A failed judgement (most of the face disagrees) flags nothing new: the memory fades the same way.
    failed = np.random.default_rng(0).normal(0, 20, (h, w, 2)).astype(np.float32)
    np.testing.assert_allclose(occlusion.occluder_mask(failed, expected, iod=60.0, within=within, previous=seen), 0.5 * seen)
    # Found again: whole, whatever the memory says.
    assert occlusion.occluder_mask(flow, expected, iod=60.0, within=within, previous=missed)[45:75, 55:85].min() > 0.99
    # No memory (persist 0): this frame alone.
    np.testing.assert_array_equal(occlusion.occluder_mask(expected, expected, iod=60.0, within=within, previous=seen, persist=0.0), 0.0)
    with pytest.raises(ValueError):
        occlusion.occluder_mask(flow, expected, iod=60.0, previous=seen[:-1])
    with pytest.raises(ValueError):
        occlusion.occluder_mask(flow, expected, iod=60.0, persist=1.5)
