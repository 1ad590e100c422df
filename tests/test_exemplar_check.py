"""The exemplar check (faceblit_core.exemplar_check, issue 17): measures, verdicts on made cases and
on the team's exemplars, refusal and --force in prepare_style and the CLI; the --draw picture's labels."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core.errors import StyleError
from faceblit_core.exemplar_check import (
    LIMITS,
    ExemplarWarning,
    background_fraction,
    check_exemplar,
    face_size,
    head_pose,
    outside_fraction,
)
from faceblit_core.faces import load_landmarks
from faceblit_core.faces.types import MEAN_SHAPE
from faceblit_core.media import read_image
from faceblit_core.style import prepare_style_report

REPO = Path(__file__).resolve().parents[1]
EXEMPLARS = ("expressive", "frank", "girl", "het", "laurinbust", "malevich", "oldman", "prisma", "watercolorgirl", "woodenmask")


def _face(width: float = 300.0, centre=(400.0, 500.0)) -> np.ndarray:
    """The dlib predictor's mean shape made left-right symmetric (frontal, upright), ``width`` px from point 0 to 16."""
    unit = MEAN_SHAPE.astype(np.float64)
    mirrored = unit * [-1, 1]
    partner = np.argmin(np.linalg.norm(mirrored[:, None] - unit[None], axis=2), axis=1)  # each point's mirror partner
    unit = (unit + mirrored[partner]) / 2
    unit = unit / np.linalg.norm(unit[16] - unit[0])
    return (unit - unit.mean(0)) * width + np.asarray(centre)


def _turned(points: np.ndarray, squeeze: float) -> np.ndarray:
    """Points right of the nose tip pulled towards it by ``squeeze`` (a head turned to the picture's left)."""
    out = points.copy()
    right = out[:, 0] > out[30, 0]
    out[right, 0] = out[30, 0] + (out[right, 0] - out[30, 0]) * squeeze
    return out


def _rotated(points: np.ndarray, degrees: float, centre) -> np.ndarray:
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), degrees, 1.0)
    return np.c_[points, np.ones(len(points))] @ m.T


# ------------------------------------------------------------------------------- measures
def test_a_frontal_upright_face_measures_zero_pose_and_its_size():
    pts = _face(300.0)
    yaw, roll = head_pose(pts)
    assert abs(yaw) < 3 and abs(roll) < 1
    width, iod = face_size(pts)
    assert width == pytest.approx(300.0) and 0.35 * width < iod < 0.55 * width
    assert outside_fraction(pts, (800, 1000)) == 0.0


def test_yaw_grows_with_the_asymmetry_and_keeps_its_sign():
    pts = _face()
    # squeeze s: asymmetry (1 - s) / (1 + s), yaw = atan of it
    for s in (0.7, 0.4, 0.15):
        yaw, _ = head_pose(_turned(pts, s))
        assert yaw == pytest.approx(np.degrees(np.arctan((1 - s) / (1 + s))), abs=3)
    mirrored = pts.copy()
    mirrored[:, 0] = 800 - mirrored[:, 0]
    assert head_pose(_turned(mirrored, 0.4))[0] < -15  # turned the other way: negative


def test_roll_is_the_eye_line_and_does_not_change_yaw():
    pts = _face()
    for deg in (-45.0, 20.0, 45.0):
        yaw, roll = head_pose(_rotated(pts, deg, pts[27]))
        assert roll == pytest.approx(deg, abs=1) and abs(yaw) < 3  # cv2's positive angle: counter-clockwise on screen
    yaw, roll = head_pose(_rotated(_turned(pts, 0.4), 30.0, pts[27]))
    assert roll == pytest.approx(30, abs=2) and yaw == pytest.approx(head_pose(_turned(pts, 0.4))[0], abs=2)


def test_outside_fraction_of_a_face_cut_in_half():
    pts = _face(300.0, centre=(0.0, 500.0))  # the picture starts at the nose
    assert outside_fraction(pts, (800, 1000)) == pytest.approx(0.5, abs=0.08)
    assert outside_fraction(pts + [2000, 0], (800, 1000)) == 1.0


def test_background_counts_flat_ground_connected_to_the_border_only():
    image = np.full((400, 300, 3), 20, np.uint8)  # a black ground
    pts = _face(160.0, centre=(150.0, 220.0))
    rng = np.random.default_rng(0)
    skin = rng.integers(120, 220, (400, 300, 3), dtype=np.uint8)  # textured "paint"
    hull = np.zeros((400, 300), np.uint8)
    from faceblit_core.exemplar_check import face_outline

    cv2.fillConvexPoly(hull, np.round(face_outline(pts)).astype(np.int32), 1)
    painted = image.copy()
    painted[hull > 0] = skin[hull > 0]
    assert background_fraction(painted, pts) < 0.02
    half = painted.copy()
    half[:, 150:] = 20  # the right half of the face is ground, joined to the border
    assert 0.35 < background_fraction(half, pts) < 0.65
    island = painted.copy()
    island[200:240, 130:170] = 20  # a flat patch of ground colour inside the face: not background
    assert background_fraction(island, pts) < 0.02


# ------------------------------------------------------------------------------- verdicts
def test_made_cases_get_the_documented_verdicts():
    size = (800, 1000)
    ok = check_exemplar(None, _face(300.0), image_size=size)
    assert ok.verdict == "ok" and ok.problems == []
    tiny = check_exemplar(None, _face(60.0), image_size=size)
    assert tiny.verdict == "error" and "only 60 px wide" in tiny.message()
    small = check_exemplar(None, _face(120.0), image_size=size)
    assert small.verdict == "warn" and "120 px wide" in small.message()
    tilted = check_exemplar(None, _rotated(_face(300.0), 45.0, (400, 500)), image_size=size)
    assert tilted.verdict == "warn" and "tilted 45°" in tilted.message()  # roll alone is never an error
    three_quarter = check_exemplar(None, _turned(_face(300.0), 0.15), image_size=size)
    assert three_quarter.verdict == "error" and "turned about" in three_quarter.message() and "to the left" in three_quarter.message()
    half_off = check_exemplar(None, _face(300.0, centre=(0.0, 500.0)), image_size=size)
    assert half_off.verdict == "error" and "outside the picture" in half_off.message()
    assert set(LIMITS) >= {"min_width_error", "yaw_error", "outside_error"}


@pytest.mark.parametrize("name", EXEMPLARS)
def test_the_team_exemplars_pass(shared_data, name):
    """The product's own exemplars (hand-corrected landmarks, both sizes) pass without a warning."""
    for stem in (name, f"{name}_480x640"):
        image = read_image(shared_data / "styles" / f"{stem}.png")
        report = check_exemplar(image, load_landmarks(shared_data / "styles" / f"{stem}.lm.txt"))
        assert report.verdict == "ok", (stem, report.describe())


def test_made_cases_on_a_real_exemplar(shared_data):
    """het.png shrunk to a 60 px face, turned 45° in the image plane, cut at the nose — with its own landmarks moved along."""
    image = read_image(shared_data / "styles" / "het.png")
    lm = load_landmarks(shared_data / "styles" / "het.lm.txt").astype(np.float64)
    f = 60.0 / np.linalg.norm(lm[16] - lm[0])
    small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    assert check_exemplar(small, (lm + 0.5) * f - 0.5).verdict == "error"
    m = cv2.getRotationMatrix2D((float(lm[27, 0]), float(lm[27, 1])), 45, 1.0)
    turned = cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    report = check_exemplar(turned, np.c_[lm, np.ones(68)] @ m.T)
    assert report.verdict == "warn" and report.roll == pytest.approx(45, abs=1)
    cut = int(lm[30, 0])
    half = np.ascontiguousarray(image[:, cut:])
    report = check_exemplar(half, lm - [cut, 0])
    assert report.verdict == "error" and report.outside > 0.4


# --------------------------------------------------------------------- prepare_style, CLI
@pytest.fixture(scope="module")
def tiny_style(tmp_path_factory):
    """het.png's sample cousin shrunk so that its face is 60 px wide, with its landmarks beside it."""
    d = tmp_path_factory.mktemp("tiny-style")
    bgr = cv2.imread(str(REPO / "samples" / "exemplar.png"))
    lm = np.loadtxt(REPO / "samples" / "exemplar.lm.txt")
    f = 60.0 / np.linalg.norm(lm[16] - lm[0])
    cv2.imwrite(str(d / "tiny.png"), cv2.resize(bgr, None, fx=f, fy=f, interpolation=cv2.INTER_AREA))
    np.savetxt(d / "tiny.lm.txt", (lm + 0.5) * f - 0.5, fmt="%.3f")
    return d / "tiny.png"


def test_prepare_style_refuses_a_hopeless_exemplar_unless_forced(tiny_style, tmp_path):
    with pytest.raises(StyleError) as err:
        prepare_style_report(tiny_style, cache_dir=tmp_path, lut_radius=3.0)
    assert err.value.exit_code == 4
    assert "unusable exemplar: the face is only 60 px wide" in err.value.message and "--force" in err.value.message
    assert not list(tmp_path.iterdir())  # nothing cached
    with pytest.warns(ExemplarWarning, match="only 60 px wide"):
        report = prepare_style_report(tiny_style, cache_dir=tmp_path, lut_radius=3.0, force=True)
    assert report.check.verdict == "error" and not report.cache_hit
    with pytest.raises(StyleError):  # a cache hit is checked too
        prepare_style_report(tiny_style, cache_dir=tmp_path, lut_radius=3.0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert prepare_style_report(tiny_style, cache_dir=tmp_path, lut_radius=3.0, force=True).cache_hit
    assert [w.category for w in seen] == [ExemplarWarning]


def test_cli_prepare_style_exit_4_then_force_warns_in_one_line(tiny_style, tmp_path):
    cmd = [sys.executable, "-m", "cli.main", "prepare-style", str(tiny_style), "--cache-dir", str(tmp_path), "--lut-radius", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 4 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("faceblit: error: style image ") and "unusable exemplar" in r.stderr
    r = subprocess.run([*cmd, "--force"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("faceblit: warning: style image ") and "60 px wide" in r.stderr
    assert "exemplar check: yaw" in r.stdout and ": error (" in r.stdout


def test_cli_stylize_refuses_the_exemplar_before_rendering(tiny_style, tmp_path):
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), cv2.imread(str(REPO / "samples" / "exemplar.png")))
    out = tmp_path / "out.png"
    r = subprocess.run([sys.executable, "-m", "cli.main", "stylize", str(still), "--style", str(tiny_style), "-o", str(out),
                        "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 4 and "unusable exemplar" in r.stderr and "--force" in r.stderr
    assert not out.exists()


# ------------------------------------------------------------------------ --draw picture
def test_draw_labels_do_not_overlap_and_parts_are_coloured():
    from cli.landmarks_drawing import LEGIBLE_INTER_OCULAR, PARTS, draw_landmarks, label_layout

    for iod in (LEGIBLE_INTER_OCULAR, 300.0):  # the smallest face landmarks_of_image draws (it enlarges smaller ones), a large one
        pts = _face(iod / face_size(_face(1.0))[1], centre=(500, 500))
        spots = np.array(label_layout(pts, (1000, 1000))[3])
        overlaps = [(i, j) for i in range(68) for j in range(i) if spots[i, 0] < spots[j, 2] and spots[j, 0] < spots[i, 2]
                    and spots[i, 1] < spots[j, 3] and spots[j, 1] < spots[i, 3]]
        assert overlaps == []
    image = np.zeros((1000, 1000, 3), np.uint8)
    drawn = draw_landmarks(image, _face(450.0, centre=(500, 500)))
    colours = {tuple(c) for *_, c in PARTS}
    present = {tuple(c) for c in drawn.reshape(-1, 3)[::1]}
    assert colours <= present  # every part's line colour is on the picture
    assert {255} <= set(np.unique(drawn[..., 0]))  # white numbers
