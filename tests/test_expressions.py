"""Issue 14: the target's expression survives a long clip (segmentation guide, re-anchored state)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core import media
from faceblit_core.config import StylizeConfig
from faceblit_core.faces import Face, get_backend, load_landmarks, save_frame_landmarks
from faceblit_core.guides.segmentation import (
    EYE,
    LIPS,
    LIPS_RAMP,
    MIN_OPENING,
    MOUTH_INTERIOR,
    OTHER,
    _lab,
    interior_source,
    mouth_opening,
    paint_mouth_interior,
    segmentation_guide,
)
from faceblit_core.pipeline import stylize_video

REPO = Path(__file__).resolve().parents[1]
STYLE = REPO / "samples" / "exemplar.png"
#: Frames with the mouth closed before it opens (issue 14: "opens its mouth after 300 frames").
CLOSED_FRAMES = 300
OPEN_FRAMES = 8


def _frame(path: Path, index: int) -> np.ndarray:
    return next(iter(media.iter_frames(media.probe(path), start=index, end=index + 1)))


def _style():
    image = media.read_image(STYLE)
    points = load_landmarks(STYLE.with_name("exemplar.lm.txt"), image_size=(image.shape[1], image.shape[0]))
    return image, points


# ------------------------------------------------------------------ segmentation guide
def test_segmentation_guide_classes_follow_the_landmarks():
    image, points = _style()
    seg = segmentation_guide(points, image.shape[:2])
    for i in (36, 39, 42, 45):                           # eye corners lie on the eye outline
        assert seg[int(round(points[i, 1])), int(round(points[i, 0]))] in (EYE, OTHER)
    eye_centre = points[36:42].mean(0).round().astype(int)
    assert seg[eye_centre[1], eye_centre[0]] == EYE
    lip = ((points[51] + points[62]) / 2).round().astype(int)   # between outer and inner upper lip
    assert seg[lip[1], lip[0]] == LIPS
    assert seg[5, 5] == OTHER
    # An open mouth gets an interior; with an origin the same pixels shift.
    opened = points.copy()
    opened[[65, 66, 67], 1] += 30
    opened[[55, 56, 57, 58, 59], 1] += 30
    seg2 = segmentation_guide(opened, image.shape[:2])
    centre = opened[60:68].mean(0).round().astype(int)
    assert seg2[centre[1], centre[0]] == MOUTH_INTERIOR
    shifted = segmentation_guide(opened, (100, 100), origin=(centre[0] - 50, centre[1] - 50))
    assert shifted[50, 50] == MOUTH_INTERIOR
    with pytest.raises(ValueError, match="landmarks"):
        segmentation_guide(points[:60], image.shape[:2])


def _opened_target(image, points, drop: float):
    """The exemplar with its mouth closed, then its lower lip and jaw moved down ``drop`` px, pink
    lips and a dark opening drawn in."""
    opened = points.copy()
    opened[[65, 66, 67]] = opened[[63, 62, 61]]
    opened[[65, 66, 67], 1] += drop
    opened[[55, 56, 57, 58, 59, 7, 8, 9], 1] += drop
    target = image.copy()
    cv2.fillPoly(target, [np.rint(opened[48:60]).astype(np.int32)], (205, 95, 110))   # pink lips
    cv2.fillPoly(target, [np.rint(opened[60:68]).astype(np.int32)], (25, 10, 12))     # a dark opening
    return opened, target


def test_open_mouth_is_painted_dark_inside_with_exemplar_lips_only_when_open():
    image, points = _style()
    face = np.zeros(image.shape[:2], bool)
    face[100:500, 100:400] = True
    source = interior_source(image, points, face)
    # A target: the exemplar itself with an open, dark mouth and pink lips drawn in, and a
    # "stylized" region that shows skin where the mouth is (what a stretched closed mouth gives).
    opened, target = _opened_target(image, points, 24)
    skin = np.median(image[face], axis=0).astype(np.uint8)
    stylized = np.broadcast_to(skin, image.shape).copy()
    before = stylized.copy()
    paint_mouth_interior(stylized, target, opened, source, face=face)
    seg = segmentation_guide(opened, image.shape[:2])
    inner = cv2.erode((seg == MOUTH_INTERIOR).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    luma = cv2.cvtColor(stylized, cv2.COLOR_RGB2GRAY).astype(float)
    skin_luma = float(cv2.cvtColor(before, cv2.COLOR_RGB2GRAY)[0, 0])
    assert luma[inner].mean() < 0.5 * skin_luma                  # a dark opening, not skin
    mouth = (seg == MOUTH_INTERIOR) | (seg == LIPS)
    ring = cv2.dilate(mouth.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    np.testing.assert_array_equal(stylized[~ring], before[~ring])  # nothing outside the mouth changes
    # The target's interior is flat: the grain painted over it is the exemplar's texture.
    assert luma[inner].std() > 1.0
    # The lips are painted in the exemplar's lip colour (L*a*b*), not the target's pink nor the skin.
    lips = cv2.erode((seg == LIPS).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    painted = _lab(stylized[lips][:, None, :]).reshape(-1, 3).mean(0)
    assert np.linalg.norm(painted - source.lips_mean) < 0.5 * np.linalg.norm(_lab(target[lips][:, None, :]).reshape(-1, 3).mean(0) - source.lips_mean)
    assert np.linalg.norm(painted - source.lips_mean) < 0.5 * np.linalg.norm(_lab(before[lips][:, None, :]).reshape(-1, 3).mean(0) - source.lips_mean)
    # A mouth just opening takes the lips over gradually; its interior is still painted whole.
    iod = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))
    slightly, target2 = _opened_target(image, points, (MIN_OPENING + 0.3 * LIPS_RAMP) * iod)
    weight = (mouth_opening(slightly) - MIN_OPENING) / LIPS_RAMP
    assert 0.0 < weight < 0.5
    partial = before.copy()
    paint_mouth_interior(partial, target2, slightly, source, face=face)
    lips2 = cv2.erode((segmentation_guide(slightly, image.shape[:2]) == LIPS).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    moved = np.abs(partial[lips2].astype(float) - before[lips2]).mean()
    full = before.copy()
    paint_mouth_interior(full, target2, opened, source, face=face)   # the same picture read as wide open
    assert 0 < moved < 0.6 * np.abs(full[lips2].astype(float) - before[lips2]).mean()
    # A closed mouth is left alone.
    closed = points.copy()
    closed[[65, 66, 67]] = closed[[63, 62, 61]]
    again = before.copy()
    paint_mouth_interior(again, image, closed, source, face=face)
    np.testing.assert_array_equal(again, before)
    assert mouth_opening(closed) < MIN_OPENING < mouth_opening(opened)


# ------------------------------------------------------------------ end to end
def _mouth_clip(shared_data: Path, folder: Path) -> tuple[Path, Path, np.ndarray]:
    """d18's closed-mouth frame 0 for CLOSED_FRAMES frames (moving ±2 px), then its wide-open frame 125.

    Returns the clip, its per-frame landmark file and the open frame's landmarks.
    """
    d18 = shared_data / "videos" / "d18.mp4"
    dlib = get_backend("dlib")
    shots = []
    for index in (0, 125):
        frame = _frame(d18, index)
        shots.append((frame, dlib.detect(frame)[0].points))
    clip, lm = folder / "mouth.mp4", folder / "mouth.json"
    h, w = shots[0][0].shape[:2]
    faces = []
    with media.VideoWriter(clip, width=w, height=h, fps=30, crf=12, preset="ultrafast") as writer:
        for t in range(CLOSED_FRAMES + OPEN_FRAMES):
            frame, points = shots[t >= CLOSED_FRAMES]
            # Every frame moves (no two in a row are equal): the stylizer shows a repeated
            # input frame's previous output again (issue 18), which would freeze the first
            # open frame and test that rule instead of the re-anchoring.
            dx, dy = (t % 5) - 2, round(np.sin(t / 13.0))
            moved = cv2.warpAffine(frame, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
            writer.write(moved)
            p = points + np.float32([dx, dy])
            faces.append([Face(points=p, box=np.float32([*p.min(0), *p.max(0)]), score=1.0, id=0)])
    save_frame_landmarks(lm, faces, fps=30, size=(w, h))
    return clip, lm, shots[1][1]


def test_a_mouth_opening_after_300_frames_shows_open_in_the_output(shared_data, style_cache, tmp_path):
    clip, lm, open_points = _mouth_clip(shared_data, tmp_path)
    out = tmp_path / "out.mp4"
    # The exemplar at half size (style_max_side): synthesis costs follow its face area.
    stylize_video(clip, STYLE, out, config=StylizeConfig(landmarks=str(lm), style_max_side=320),
                  cache_dir=style_cache, progress=False)
    dlib = get_backend("dlib")
    wanted = mouth_opening(open_points)
    assert wanted > 0.4                                           # the input's mouth is wide open
    n = CLOSED_FRAMES + OPEN_FRAMES
    got = []
    for frame in media.iter_frames(media.probe(out), start=n - 4, end=n):
        faces = dlib.detect(frame)
        assert faces, "the output lost the face"
        got.append(mouth_opening(faces[0].points))
    # Measured (opening 0.59): 0.49 with keep_tolerance 3, and it holds with 8 (kept entries are
    # re-synthesized once per 60 frames); 0.17 with the state of round 1 (keep_tolerance 8 without that refresh,
    # the flow-carried guide unbounded, no mouth-interior pass: the exemplar's lips stretched over it).
    assert np.mean(got) > 0.75 * wanted, (got, wanted)
    closed = next(iter(media.iter_frames(media.probe(out), start=CLOSED_FRAMES - 1, end=CLOSED_FRAMES)))
    assert mouth_opening(dlib.detect(closed)[0].points) < 0.1    # and closed while it was closed
