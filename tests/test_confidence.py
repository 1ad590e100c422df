"""faceblit_core.confidence: evidence cues, strength ramps, carry check, coasting (issue 18)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceblit_core.faces import confidence, load_landmarks


@pytest.fixture(scope="module")
def frontal(shared_data) -> np.ndarray:
    """A hand-corrected frontal exemplar's landmarks (style px)."""
    return load_landmarks(shared_data / "styles" / "het_480x640.lm.txt").astype(np.float64)


def _squeeze(points: np.ndarray, factor: float) -> np.ndarray:
    """Points squeezed horizontally about their centre (a head turned by acos(factor), seen flat)."""
    c = points.mean(axis=0)
    return (points - c) * np.array([factor, 1.0]) + c


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = points.mean(axis=0)
    return (points - c) @ r.T + c


def test_pose_of_the_exemplar_itself_is_neutral(frontal):
    assert abs(confidence.head_yaw(frontal)) < 10
    assert abs(confidence.head_roll(frontal)) < 5
    assert confidence.foreshortening(frontal, frontal) == pytest.approx(0.0, abs=1e-3)
    e = confidence.measure(frontal, frontal, frontal, frontal, (480, 640))
    assert e.yaw < 1 and e.roll < 1e-6 and e.outside == 0.0 and e.fit == pytest.approx(0.0, abs=1e-6)
    assert confidence.target_strength(e) == (1.0, None)


def test_foreshortening_reads_the_squeeze_and_ignores_roll_scale_and_move(frontal):
    for factor in (0.9, 0.7, 0.5):
        assert confidence.foreshortening(_squeeze(frontal, factor), frontal) == pytest.approx(math.degrees(math.acos(factor)), abs=1.0)
    moved = _rotate(frontal, 30) * 0.5 + 100
    assert confidence.foreshortening(moved, frontal) == pytest.approx(0.0, abs=0.5)
    assert confidence.head_roll(moved) - confidence.head_roll(frontal) == pytest.approx(30.0, abs=0.1)


def test_yaw_follows_the_nose_between_the_jaw_sides(frontal):
    turned = frontal.copy()
    width = turned[16, 0] - turned[0, 0]
    turned[27:36, 0] += 0.3 * width  # nose toward the image's right
    assert confidence.head_yaw(turned) > confidence.head_yaw(frontal) + 30
    flipped = frontal.copy()
    flipped[[0, 16]] = flipped[[16, 0]]
    flipped[[1, 15]] = flipped[[15, 1]]
    flipped[[2, 14]] = flipped[[14, 2]]
    assert confidence.head_yaw(flipped) == 90.0


def test_outside_fraction(frontal):
    W, H = 480, 640
    assert confidence.outside_fraction(frontal, (W, H)) == 0.0
    top = frontal[:27, 1].min()
    bottom = frontal[:27, 1].max()
    half = frontal - np.array([0.0, top + (bottom - top) / 2 + 0.5])
    assert 0.3 < confidence.outside_fraction(half, (W, H)) < 0.7
    gone = frontal + np.array([0.0, -2000.0])
    assert confidence.outside_fraction(gone, (W, H)) == 1.0
    with pytest.raises(ValueError):
        confidence.outside_fraction(frontal, (0, H))


def test_fit_error_lag_and_shape_jump(frontal):
    iod = np.linalg.norm(frontal[36:42].mean(0) - frontal[42:48].mean(0))
    assert confidence.fit_error(frontal, frontal + [0.2 * iod, 0.0]) == pytest.approx(0.2, abs=1e-6)
    # A face moving rigidly does not count as a jump; a shape that changes does.
    moved = _rotate(frontal, 10) * 1.1 + 30
    assert confidence.fit_error(moved, moved, frontal) < 1e-3
    broken = moved.copy()
    broken[:17] += np.random.default_rng(0).normal(0, 0.4 * iod, (17, 2))
    assert confidence.fit_error(broken, broken, frontal) > 0.05  # a quarter of the points 0.4 IOD off


def test_scores_and_reason(frontal):
    e = confidence.Evidence(yaw=45.0, roll=0.0, outside=0.0, fit=0.0, iod=100.0)
    s, why = confidence.target_strength(e)
    assert s == pytest.approx(0.5) and why == "turned"
    e = confidence.Evidence(yaw=0.0, roll=0.0, outside=0.6, fit=0.0, iod=100.0)
    assert confidence.target_strength(e) == (0.0, "outside_frame")
    e = confidence.Evidence(yaw=0.0, roll=0.0, outside=0.0, fit=math.inf, iod=5.0)
    assert confidence.target_strength(e)[0] == 0.0
    assert set(confidence.scores(e)) == set(confidence.CUES)


def test_step_ramps_and_hysteresis():
    assert confidence.step(1.0, 0.0, fade_frames=4) == pytest.approx(0.75)
    assert confidence.step(0.2, 1.0, fade_frames=4) == pytest.approx(0.45)
    assert confidence.step(0.5, 0.6, fade_frames=4) == pytest.approx(0.6)
    # Faded out: comes back only once the evidence reaches `rearm`.
    assert confidence.step(0.0, 0.7, fade_frames=4) == 0.0
    assert confidence.step(0.0, 0.8, fade_frames=4) == pytest.approx(0.25)
    assert confidence.step(0.0, 0.0, fade_frames=0) == 1.0


def test_update_fades_out_and_back(frontal):
    state = confidence.FadeState(strength=1.0)
    size = (480, 640)
    gone = frontal + np.array([0.0, -(frontal[:, 1].max() - 5)])  # almost all above the frame
    seen = []
    for points in [frontal] * 2 + [gone] * 5 + [frontal] * 7:
        seen.append(confidence.update(state, points, points, frontal, size, fade_frames=3))
    strengths = [s for s, _ in seen]
    assert strengths[:2] == [1.0, 1.0]
    assert strengths[2:6] == pytest.approx([2 / 3, 1 / 3, 0.0, 0.0])
    assert seen[3][1] == "outside_frame"
    assert strengths[-1] == 1.0 and seen[-1][1] is None
    assert any(reason == "recovering" for _, reason in seen[7:])
    assert confidence.fade_lost(state, frontal, fade_frames=3) == (pytest.approx(2 / 3), "lost")
    assert state.previous_raw is None


def test_frame_state():
    assert confidence.frame_state([]) == "unchanged"
    assert confidence.frame_state([0.0, 0.0]) == "unchanged"
    assert confidence.frame_state([1.0]) == "stylized"
    assert confidence.frame_state([1.0, 0.5]) == "faded"


def test_carry_left_face():
    h, w = 40, 50
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    guide = np.stack([xs, ys], axis=-1)
    mask = np.zeros((h, w), np.float32)
    mask[10:30, 10:40] = 1.0
    assert not confidence.carry_left_face(guide + 3.0, guide, mask, style_iod=100.0)
    assert confidence.carry_left_face(guide + 30.0, guide, mask, style_iod=100.0)
    torn = guide.copy()
    torn[15] = np.nan
    assert not confidence.carry_left_face(guide, guide, mask, style_iod=100.0)
    assert confidence.carry_left_face(torn, guide, mask, style_iod=100.0)
    with pytest.raises(ValueError):
        confidence.carry_left_face(guide, guide, mask[:-1], style_iod=100.0)


def test_coast_moves_points_with_the_face_flow(frontal):
    flow = np.zeros((700, 500, 2), np.float32)
    flow[...] = (7.0, -3.0)
    flow[:, :40] = (100.0, 100.0)  # background left of the face: not counted
    moved = confidence.coast(frontal, flow, (0, 0))
    np.testing.assert_allclose(moved - frontal, np.broadcast_to([7.0, -3.0], frontal.shape), atol=1e-4)


def test_repeats():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    noisy = np.clip(frame.astype(np.int16) + rng.integers(-1, 2, frame.shape), 0, 255).astype(np.uint8)
    assert confidence.repeats(frame, frame)
    assert confidence.repeats(noisy, frame)  # coding noise
    moved = frame.copy()
    moved[50:70, 60:100] = 255 - moved[50:70, 60:100]  # a mouth-sized change
    assert not confidence.repeats(moved, frame)
    assert not confidence.repeats(frame[:-2], frame)


def test_carry_left_face_sees_a_cut_mask():
    h, w = 40, 50
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    guide = np.stack([xs, ys], axis=-1)
    mask = np.zeros((h, w), np.float32)
    mask[10:30, 10:40] = 1.0
    cut = mask.copy()
    cut[:, :25] = 0.0  # half of the face cut off (carried from the frame edge)
    assert not confidence.carry_left_face(guide, guide, mask, style_iod=100.0, carried_mask=mask)
    assert confidence.carry_left_face(guide, guide, mask, style_iod=100.0, carried_mask=cut)
