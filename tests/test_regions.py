"""Issue 16 point 3: the user's control over what is repainted — ``keep`` (face parts kept as
the input's, feathered, following the landmarks) and ``strength`` (linear blend with the input).

Short clips, small frames: the team-made sample (6 frames, exemplar at 320 px) and 9 frames
of d18 (mouth wide open) with het_480x640 when the shared data is there.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core import media
from faceblit_core.config import StylizeConfig
from faceblit_core.errors import ConfigError
from faceblit_core.faces import get_backend, load_landmarks
from faceblit_core.geometry import KEEP_REGIONS
from faceblit_core.guides.segmentation import KEEP_FEATHER, keep_mask
from faceblit_core.setup import make_backend
from faceblit_core.style import prepare_style
from faceblit_core.stylizer import FrameStylizer

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "clip.mp4"
STYLE = REPO / "samples" / "exemplar.png"
SMALL = {"style_max_side": 320}


@pytest.fixture(scope="module")
def cache(style_cache) -> Path:
    return style_cache  # the session's (conftest): the exemplar is prepared once for every module


@pytest.fixture(scope="module")
def asset(cache):
    return prepare_style(STYLE, config=StylizeConfig(**SMALL), cache_dir=cache)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return list(media.iter_frames(media.probe(CLIP), end=6))


def render(asset, frames, **options) -> list[tuple[np.ndarray, list]]:
    """Each frame through one fresh FrameStylizer (CPU) with ``options`` on top of SMALL."""
    config = StylizeConfig(**SMALL, **options)
    stylizer = FrameStylizer(asset, config, fps=25.0, backend=make_backend(config, None, "cpu", video=True), device="cpu")
    return [stylizer(frame) for frame in frames]


def iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


# ------------------------------------------------------------------------------ the mask
def test_keep_mask_is_one_on_the_part_and_falls_to_zero_over_the_feather():
    image = media.read_image(STYLE)
    points = load_landmarks(STYLE.with_name("exemplar.lm.txt"), image_size=(image.shape[1], image.shape[0]))
    h, w = image.shape[:2]
    d = iod(points)
    lips = keep_mask(points, ["lips"], (h, w))
    assert lips.dtype == np.float32 and lips.shape == (h, w)
    outline = np.zeros((h, w), np.uint8)
    cv2.fillPoly(outline, [np.rint(points[48:60]).astype(np.int32)], 1)
    inner = cv2.erode(outline, np.ones((3, 3), np.uint8)).astype(bool)
    assert (lips[inner] == 1.0).all()                                    # the whole of the lips kept exactly
    # Beyond grow + feather nothing is kept; in between it falls off (feathered, not a hard edge).
    reach = (KEEP_REGIONS["lips"].grow + KEEP_FEATHER) * d
    far = cv2.distanceTransform((1 - outline).astype(np.uint8), cv2.DIST_L2, 5) > reach + 1.5
    assert (lips[far] == 0.0).all()
    assert ((lips > 0.05) & (lips < 0.95)).sum() > 0.5 * cv2.arcLength(np.float32(points[48:60]), True)
    # "mouth" is what lies between the lips (teeth, tongue): inside "lips", nowhere more.
    opened = points.copy()
    opened[[65, 66, 67], 1] += 20
    opened[[55, 56, 57, 58, 59], 1] += 20
    mouth, lips_open = keep_mask(opened, ["mouth"], (h, w)), keep_mask(opened, ["lips"], (h, w))
    cx, cy = opened[60:68].mean(0).round().astype(int)
    assert mouth[cy, cx] == 1.0 and (mouth <= lips_open).all() and mouth.sum() < 0.8 * lips_open.sum()
    # Eyes and brows where their landmarks are; an empty list keeps nothing.
    both = keep_mask(points, ["eyes", "brows"], (h, w))
    for i in (19, 24):
        assert both[int(round(points[i, 1])), int(round(points[i, 0]))] == 1.0
    for eye in (points[36:42], points[42:48]):
        cx, cy = eye.mean(0).round().astype(int)
        assert both[cy, cx] == 1.0 and lips[cy, cx] == 0.0
    assert not keep_mask(points, [], (h, w)).any()
    # A crop (holding the part and its feather) with an origin sees the same values; an
    # unknown part is a programming error.
    x0, y0 = np.floor(points[48:60].min(0) - reach - 3).astype(int)
    x1, y1 = np.ceil(points[48:60].max(0) + reach + 3).astype(int)
    crop = keep_mask(points, ["lips"], (y1 - y0, x1 - x0), origin=(x0, y0))
    np.testing.assert_allclose(crop, lips[y0:y1, x0:x1], atol=1e-5)
    with pytest.raises(ValueError, match="region"):
        keep_mask(points, ["nose"], (h, w))


# --------------------------------------------------------------------------- the config
@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"keep": "nose"}, "keep: expected a comma-separated list of eyes, brows, mouth, lips, got 'nose' ('nose' is not one of them)"),
        ({"keep": "eyes,teeth"}, "('teeth' is not one of them)"),
        ({"keep": ","}, "keep: expected a comma-separated list"),
        ({"keep": 3}, "keep: expected a non-empty string, got 3"),
        ({"strength": 1.5}, "strength: expected a value in [0.0, 1.0], got 1.5"),
        ({"strength": -0.1}, "strength: expected a value in [0.0, 1.0], got -0.1"),
        ({"strength": float("nan")}, "strength: expected a number, got nan"),
    ],
)
def test_bad_keep_and_strength_are_config_errors(changes, fragment):
    with pytest.raises(ConfigError) as info:
        StylizeConfig(**changes)
    assert fragment in str(info.value) and info.value.exit_code == 2


def test_keep_lists_any_subset_once():
    assert StylizeConfig().keep_regions == ()
    assert StylizeConfig(keep=" mouth, eyes,mouth ").keep_regions == ("mouth", "eyes")
    assert StylizeConfig(keep=",".join(KEEP_REGIONS)).keep_regions == tuple(KEEP_REGIONS)


# ---------------------------------------------------------------------------- rendering
def test_strength_zero_gives_the_input_and_strength_blends_linearly(asset, frames):
    full = render(asset, frames)
    none = render(asset, frames, strength=0.0)
    part = render(asset, frames, strength=0.4)
    assert all(f for _, f in full), "the sample's face was not found"
    for frame, (out1, _), (out0, _), (out4, _) in zip(frames, full, none, part):
        np.testing.assert_array_equal(out0, frame)                 # 0: the input, face included
        assert np.abs(out1.astype(int) - frame).max() > 40         # (1: the face is stylized)
        expected = 0.4 * out1.astype(np.float64) + 0.6 * frame
        assert np.abs(out4 - expected).max() <= 1.0                # linear, up to rounding


def test_keep_shows_the_input_on_the_parts_and_the_stylized_face_elsewhere(asset, frames):
    full = render(asset, frames)
    kept = render(asset, frames, keep="eyes,brows,lips")
    for frame, (stylized, _), (out, faces) in zip(frames, full, kept):
        assert len(faces) == 1
        m = keep_mask(faces[0].points, ("eyes", "brows", "lips"), frame.shape[:2])
        assert (m == 1.0).sum() > 500 and (m == 0.0).any()
        np.testing.assert_array_equal(out[m == 1.0], frame[m == 1.0])        # the parts: the input's own pixels
        np.testing.assert_array_equal(out[m == 0.0], stylized[m == 0.0])     # elsewhere: the render of today
        expected = m[..., None] * frame.astype(np.float64) + (1 - m[..., None]) * stylized
        assert np.abs(out - expected).max() <= 1.0                          # the feather: a blend of both


def test_keep_mouth_on_d18_shows_the_inputs_open_mouth(shared_data, cache):
    """d18 opens its mouth wide (frames ~115–125): with ``keep=mouth`` the output's mouth
    interior (the inner-lip polygon detected on the INPUT frame) is the input's, pixel for pixel."""
    d18 = shared_data / "videos" / "d18.mp4"
    style = shared_data / "styles" / "het_480x640.png"
    asset = prepare_style(style, config=StylizeConfig(), cache_dir=cache)
    clip = list(media.iter_frames(media.probe(d18), start=116, end=125))
    config = StylizeConfig(keep="mouth")
    stylizer = FrameStylizer(asset, config, fps=30.0, backend=make_backend(config, None, "cpu", video=True), device="cpu")
    plain = FrameStylizer(asset, StylizeConfig(), fps=30.0, backend=make_backend(config, None, "cpu", video=True), device="cpu")
    dlib = get_backend("dlib")
    for frame in clip:
        out, faces = stylizer(frame)
        stylized, _ = plain(frame)
        # The kept part, from the landmarks the stylizer used: the input's pixels, the whole opening in it.
        m = keep_mask(faces[0].points, ("mouth",), frame.shape[:2])
        np.testing.assert_array_equal(out[m == 1.0], frame[m == 1.0])
        used = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(used, [np.rint(faces[0].points[60:68]).astype(np.int32)], 1)
        assert (m[used.astype(bool)] == 1.0).all()
        # The frame's raw landmark fit (unsmoothed; the points used lie within landmark_bound =
        # 0.04 of the eye distance of it, the part's grow): its whole mouth interior is the input's.
        interior = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(interior, [np.rint(stylizer.tracker.last_raw[0].points[60:68]).astype(np.int32)], 1)
        interior = cv2.erode(interior, np.ones((3, 3), np.uint8)).astype(bool)   # (rasterization)
        assert interior.sum() > 1500                                         # wide open
        np.testing.assert_array_equal(out[interior], frame[interior])
        # So is dlib's own detection on the input, but for 8 px along its edge (the tracker fits in
        # its own box, up to 4 px off the detector's fit here, and smooths within 4 px of that).
        detected = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(detected, [np.rint(dlib.detect(frame)[0].points[60:68]).astype(np.int32)], 1)
        detected = cv2.erode(detected, np.ones((17, 17), np.uint8)).astype(bool)
        assert detected.sum() > 200
        np.testing.assert_array_equal(out[detected], frame[detected])
        assert np.abs(stylized[interior].astype(int) - frame[interior]).mean() > 5   # (without keep it is repainted)
        # Within the feather around the opening the output goes from the input's to the stylized face.
        band = (m > 0.0) & (m < 1.0)
        lo, hi = np.minimum(frame, stylized).astype(int), np.maximum(frame, stylized).astype(int)   # (int: 0 − 1 must not wrap)
        assert band.sum() > 200 and (out[band] >= lo[band] - 1).all() and (out[band] <= hi[band] + 1).all()
