"""One exemplar per face (issue 16, points 1 and 2): ``faceblit faces`` lists the tracked faces
and their ids, ``--style ID=S`` paints each face with its own exemplar, ``--faces`` selects
faces; ids are the same on every run and the same as the render's; bad ids and
contradictions are refused in one line before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core.config import StylizeConfig, parse_face_selection
from faceblit_core.errors import ConfigError, InputError, UsageError
from faceblit_core.face_styles import FaceStyles, as_style, needs_ids
from faceblit_core.faces import Face, box_from_points
from faceblit_core.faces.listing import THUMB, FaceEntry, FaceListing, contact_sheet
from faceblit_core.faces.types import MEAN_SHAPE

REPO = Path(__file__).resolve().parents[1]
FACEBLIT = [sys.executable, "-m", "cli.main"]
#: The two-face clip: frames and side of each half (small: the test runs on 2 cores).
FRAMES, SIDE = 36, 256
#: Face 0 (left, d10) and face 1 (right, d3) get these exemplars.
EXEMPLARS = ("prisma_480x640.png", "het_480x640.png")


def run(*args, cwd=REPO, env=None):
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([*FACEBLIT, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300, env=env)


def one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("faceblit: error: "), r.stderr[-2000:]
    return lines[0]


# ------------------------------------------------------------------------- no data needed
def test_style_values_parse_into_every_face_and_per_id():
    s = FaceStyles.parse(["a.png", "0=b.png", "12=c.png"])
    assert s.every == "a.png" and s.by_id == {0: "b.png", 12: "c.png"} and s.name == "a+b+c"
    assert as_style(["only.png"]) == "only.png"  # one exemplar: the plain run of before
    assert as_style({None: "a.png", 1: "b.png"}) == FaceStyles("a.png", {1: "b.png"})
    assert needs_ids("a.png", StylizeConfig()) is False
    assert needs_ids("a.png", StylizeConfig(faces="largest")) and needs_ids(FaceStyles(None, {0: "a"}), StylizeConfig())
    for bad in (["x=a.png"], ["-1=a.png"], ["0=a.png", "0=b.png"], ["a.png", "b.png"], [" =a.png"], ["3="]):
        with pytest.raises(UsageError):
            FaceStyles.parse(bad)
    with pytest.raises(UsageError):
        as_style({"0": "a.png"})


def test_face_selection_values():
    assert parse_face_selection("all") == "all" and parse_face_selection("Largest") == "largest"
    assert parse_face_selection("0, 3") == frozenset({0, 3})
    for bad in ("", "none", "1,,2", "-1", "1.5", "²"):
        with pytest.raises(ConfigError):
            StylizeConfig(faces=bad)
    # A repeated id is refused, not merged: "0,0" is more likely a typo for "0,1".
    for repeated, fid in (("0,0", 0), ("2, 1, 02", 2)):
        with pytest.raises(ConfigError, match=f"face {fid} is given twice") as err:
            StylizeConfig(faces=repeated)
        assert err.value.exit_code == 2


def _listing(sizes: dict[int, float]) -> FaceListing:
    faces = [FaceEntry(fid, ranges=[(0, 9)], count=10, size=(s, s), max_size=(s, s)) for fid, s in sizes.items()]
    return FaceListing(input="clip.mp4", frames=10, start=0, width=640, height=480, faces=faces)


def test_contradictions_are_usage_errors_and_unknown_ids_input_errors():
    two = _listing({0: 80.0, 1: 120.0})
    with pytest.raises(UsageError, match="face 1 is not selected"):
        FaceStyles(None, {0: "a", 1: "b"}).check(StylizeConfig(faces="0"))
    with pytest.raises(UsageError, match="face 2 has no exemplar"):
        FaceStyles(None, {0: "a"}).check(StylizeConfig(faces="0,2"))
    for styles, faces in ((FaceStyles(None, {0: "a"}), "all"), (FaceStyles("a", {}), "largest")):
        with pytest.raises(UsageError, match="background"):
            styles.check(StylizeConfig(background=True, faces=faces))
    FaceStyles("a", {}).check(StylizeConfig(background=True))
    with pytest.raises(InputError, match="face 5 never appears.*faces found are 0, 1"):
        FaceStyles(None, {5: "a"}).resolve(StylizeConfig(), two)
    with pytest.raises(InputError, match="face 3 never appears"):
        FaceStyles("a", {}).resolve(StylizeConfig(faces="0,3"), two)
    # largest = face 1 (median box); an exemplar for another face contradicts it
    assert two.largest() == [1] and two.shots == [(0, 9)]
    plan = FaceStyles("a", {}).resolve(StylizeConfig(faces="largest"), two)
    assert plan.only == frozenset({1}) and plan.default == "a"
    with pytest.raises(UsageError, match="not selected: --faces largest is face 1"):
        FaceStyles(None, {0: "a"}).resolve(StylizeConfig(faces="largest"), two)
    plan = FaceStyles(None, {0: "a", 1: "b"}).resolve(StylizeConfig(), two)
    assert plan.by_id == {0: "a", 1: "b"} and plan.only is None and plan.default is None


def test_largest_is_the_largest_face_of_each_shot():
    """Ids do not cross a scene cut: ``--faces largest`` paints the largest face of every shot,
    not one id that only one shot shows."""
    def entry(fid, first, last, side):
        return FaceEntry(fid, ranges=[(first, last)], count=last - first + 1, size=(side, side), max_size=(side, side))

    # shot 0-9: faces 0 (80 px) and 1 (120 px); a cut at 10; shot 10-19: faces 2 (60 px) and 3 (50 px, from 12)
    listing = FaceListing(input="cuts.mp4", frames=20, start=0, width=640, height=480,
                          faces=[entry(0, 0, 9, 80.0), entry(1, 0, 9, 120.0), entry(2, 10, 19, 60.0), entry(3, 12, 19, 50.0)], cuts=[10])
    assert listing.shots == [(0, 9), (10, 19)] and listing.largest() == [1, 2]
    assert listing.to_dict()["shots"] == [[0, 9], [10, 19]] and listing.to_dict()["largest"] == [1, 2]
    assert "20 frames in 2 shots" in listing.describe() and "largest: faces 1, 2 (one per shot)" in listing.describe()
    largest = StylizeConfig(faces="largest")
    assert FaceStyles("a", {}).resolve(largest, listing).only == frozenset({1, 2})
    assert FaceStyles(None, {1: "a", 2: "b"}).resolve(largest, listing).by_id == {1: "a", 2: "b"}
    with pytest.raises(UsageError, match="face 3 is not selected: --faces largest is faces 1, 2"):
        FaceStyles("a", {3: "b"}).resolve(largest, listing)
    with pytest.raises(UsageError, match="face 2 .*has no exemplar"):
        FaceStyles(None, {1: "a"}).resolve(largest, listing)
    assert FaceListing(input="x", frames=3, start=0, width=4, height=4, faces=[]).largest() == []


class _TwoFaces:
    """A backend finding two faces whose detector lists the right one first."""

    name = "two"

    def __init__(self):
        left, right = MEAN_SHAPE * 60 + [40, 40], MEAN_SHAPE * 60 + [200, 40]
        self.points = [right.astype(np.float32), left.astype(np.float32)]

    def detect(self, frame):
        return [Face(points=p, box=box_from_points(p), score=1.0, id=-1) for p in self.points]

    def fit(self, frame, box):
        p = min(self.points, key=lambda q: abs(float(box_from_points(q)[0] - box[0])))
        return Face(points=p, box=box_from_points(p), score=1.0, id=-1)


def test_faces_new_in_one_frame_are_numbered_left_to_right_and_sheet_shows_each():
    from faceblit_core.faces.listing import track_faces

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (160, 320, 3), dtype=np.uint8) for _ in range(5)]
    listing = track_faces(frames, _TwoFaces(), StylizeConfig(), fps=25.0)
    assert listing.ids == [0, 1]
    by_id = {f.id: f for f in listing.faces}
    assert by_id[0].max_size[0] > 0 and by_id[0].thumb_frame >= 0
    # face 0 is the left one although the detector gave the right one first
    assert _TwoFaces().points[1][:, 0].mean() < 160
    assert by_id[0].ranges == [(0, 4)] and by_id[0].count == 5
    sheet = contact_sheet(listing)
    assert sheet.dtype == np.uint8 and sheet.shape[1] >= 2 * THUMB and sheet.shape[0] >= THUMB
    # each cell holds its thumbnail (not the grey background) and a label box
    for k, entry in enumerate(listing.faces):
        x = 8 + k * (THUMB + 8)
        cell = sheet[8 + 40 : 8 + THUMB, x + 40 : x + THUMB]
        assert np.array_equal(cell, entry.thumbnail[40:, 40:])
    assert contact_sheet(_listing({})).shape[0] > 0  # no face: one cell saying so


def test_faces_lists_the_shots_and_the_largest_face_of_each():
    """A scene cut (dark frames, then bright ones) splits the clip in two shots; the tracker
    numbers the faces afresh after it, and ``largest`` names the larger face of each shot."""
    from faceblit_core.faces.listing import track_faces

    backend = _TwoFaces()
    backend.points[0] = (MEAN_SHAPE * 72 + [200, 30]).astype(np.float32)  # the right face is the larger
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 60, (160, 320, 3), dtype=np.uint8) for _ in range(5)]
    frames += [rng.integers(150, 255, (160, 320, 3), dtype=np.uint8) for _ in range(5)]
    listing = track_faces(frames, backend, StylizeConfig(), fps=25.0, thumbnails=False)
    assert listing.cuts == [5] and listing.shots == [(0, 4), (5, 9)]
    assert listing.ids == [0, 1, 2, 3]  # new ids after the cut, left to right
    assert [f.ranges for f in listing.faces] == [[(0, 4)], [(0, 4)], [(5, 9)], [(5, 9)]]
    assert listing.largest() == [1, 3]


def test_faces_not_selected_are_counted_apart_not_as_missing(tmp_path):
    """A face left as is because the run does not stylize it is neither 'no face' nor a fade:
    the summary counts the frames showing one (``frames_with_unselected``), and a frame whose
    faces are all such is ``unchanged`` for the reason ``unselected``, not ``no_face``."""
    from faceblit_core.style import prepare_style
    from faceblit_core.stylizer import FrameStylizer
    from faceblit_core.summary import RunSummary, add_frame_counts

    config = StylizeConfig(style_max_side=320)
    asset = prepare_style(REPO / "samples" / "exemplar.png", config=config, cache_dir=tmp_path)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (160, 320, 3), dtype=np.uint8) for _ in range(4)]

    def summary(backend, style=asset, **faces) -> RunSummary:
        stylizer = FrameStylizer(style, config, fps=25.0, backend=backend, device="cpu", **faces)
        for frame in frames:
            stylizer(frame)
        result = RunSummary("in.mp4", "out.mp4", frames=len(frames))
        add_frame_counts(result, stylizer)
        return result

    nobody = _TwoFaces()
    nobody.points = []
    # (stylized, unchanged, reasons, frames with a face not selected) on the 4 frames
    cases = {
        "none selected": (summary(_TwoFaces(), only=frozenset()), (0, 4, {"unselected": 4}, 4)),
        "face 0 selected": (summary(_TwoFaces(), only=frozenset({0})), (4, 0, {}, 4)),
        "an exemplar for face 1 alone": (summary(_TwoFaces(), style=None, face_styles={1: asset}), (4, 0, {}, 4)),
        "every face": (summary(_TwoFaces()), (4, 0, {}, 0)),
        "no face at all": (summary(nobody), (0, 4, {"no_face": 4}, 0)),
    }
    for name, (got, want) in cases.items():
        assert (got.frames_stylized, got.frames_unchanged, got.fade_reasons, got.frames_with_unselected) == want, name
        assert got.to_dict()["frames_with_unselected"] == want[3]
    assert "unchanged 4 (unselected 4); a face not selected left as is on 4;" in cases["none selected"][0].describe()
    assert "not selected" not in cases["every face"][0].describe()


# ------------------------------------------------------------------- the two-face clip
@pytest.fixture(scope="module")
def two_faces(shared_data, tmp_path_factory, style_cache):
    """Two real clips side by side (ffmpeg hstack, the product's ffmpeg): d10 left, d3 right,
    each scaled to 256×256, 36 frames; and the style cache (the session's) for both exemplars."""
    from faceblit_core.media import find_ffmpeg

    d = tmp_path_factory.mktemp("two-faces")
    videos = shared_data / "videos"
    clip = d / "two.mp4"
    graph = f"[0:v]scale={SIDE}:{SIDE},setsar=1[a];[1:v]scale={SIDE}:{SIDE},setsar=1[b];[a][b]hstack=inputs=2[v]"
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-i", str(videos / "d10.mp4"), "-i", str(videos / "d3.mp4"),
                    "-filter_complex", graph, "-map", "[v]", "-frames:v", str(FRAMES), "-an", "-c:v", "libx264", "-crf", "12",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", str(clip)], check=True, timeout=120)
    styles = [shared_data / "styles" / name for name in EXEMPLARS]
    return {"clip": clip, "styles": styles, "cache": style_cache, "dir": d}


def _frames(path) -> list[np.ndarray]:
    from faceblit_core import media

    return list(media.iter_frames(media.probe(path)))


def test_faces_lists_both_faces_with_the_same_ids_on_two_runs(two_faces, tmp_path):
    sheet = tmp_path / "faces.png"
    r1 = run("faces", two_faces["clip"], "-o", sheet, "--json")
    assert r1.returncode == 0, r1.stderr
    r2 = run("faces", two_faces["clip"], "--json")
    assert r2.returncode == 0, r2.stderr
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert a["faces"] == b["faces"]  # same ids, frames and sizes on every run
    from faceblit_core.faces import list_faces

    assert list_faces(two_faces["clip"]).to_dict()["faces"] == a["faces"]  # the one-call API is the command
    assert [f["id"] for f in a["faces"]] == [0, 1]
    for f in a["faces"]:
        assert (f["first"], f["last"], f["count"]) == (0, FRAMES - 1, FRAMES) and f["ranges"] == [[0, FRAMES - 1]]
        assert 60 < f["size"][0] < SIDE
    picture = cv2.imread(str(sheet))
    assert picture is not None and picture.shape[1] >= 2 * THUMB
    # the text form names each face
    text = run("faces", two_faces["clip"]).stdout
    assert "face 0: frames 0-35 (36 frames)" in text and "face 1:" in text
    out_dir = os.environ.get("FACEBLIT_SHEET_DIR")  # for the report: the picture, kept
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(Path(out_dir) / "faces.png"), picture)


def _face_masks(frames: list[np.ndarray]) -> dict[int, list[np.ndarray]]:
    """Each face's mask on each input frame (the stylizer's face mask, from the same tracker)."""
    from faceblit_core.faces.listing import make_tracker
    from faceblit_core.geometry import Region
    from faceblit_core.guides import face_mask
    from faceblit_core.setup import make_backend

    cfg = StylizeConfig()
    tracker = make_tracker(make_backend(cfg, None, "cpu", video=True), cfg, fps=30.0)
    masks: dict[int, list[np.ndarray]] = {}
    H, W = frames[0].shape[:2]
    for frame in frames:
        for face in tracker.update(frame):
            masks.setdefault(face.id, []).append(face_mask(frame, face.points, region=Region.full(W, H), feather=20))
    return masks


def test_each_face_gets_its_own_exemplar(two_faces, tmp_path):
    """``--style 0=A --style 1=B``: each face's style_nn is lower against its own exemplar than
    against the other's; and with the exemplars swapped (Python API, a mapping) too, so the
    texture follows the mapping, not what the faces resemble already (unstylized, both are
    nearer to het than to prisma)."""
    from faceblit_core.evaluation import style_face_mask, style_nn
    from faceblit_core.faces import load_landmarks
    from faceblit_core.pipeline import stylize_video

    a, b = two_faces["styles"]
    out = tmp_path / "out.mp4"
    r = run("stylize", two_faces["clip"], "--style", f"0={a}", "--style", f"1={b}", "-o", out, "--cache-dir", two_faces["cache"], "-q")
    assert r.returncode == 0, r.stderr
    swapped = tmp_path / "swapped.mp4"
    stylize_video(two_faces["clip"], {0: b, 1: a}, swapped, cache_dir=two_faces["cache"], progress=False)

    masks = _face_masks(_frames(two_faces["clip"]))
    assert sorted(masks) == [0, 1]
    exemplars = {}
    for path in (a, b):
        image = cv2.imread(str(path))[:, :, ::-1].copy()
        exemplars[path] = (image, style_face_mask(image, load_landmarks(path.with_suffix(".lm.txt"))))
    for video, own in ((out, {0: a, 1: b}), (swapped, {0: b, 1: a})):
        rendered = _frames(video)
        for fid in (0, 1):
            other = b if own[fid] == a else a
            mine = style_nn(iter(rendered), iter(masks[fid]), *exemplars[own[fid]], n_patches=1500)
            theirs = style_nn(iter(rendered), iter(masks[fid]), *exemplars[other], n_patches=1500)
            print(f"style_nn {video.name} face {fid}: own {own[fid].stem} {mine:.4f}, other {other.stem} {theirs:.4f}")
            assert mine < theirs, (video.name, fid, mine, theirs)


def test_faces_selects_and_the_others_stay_unchanged(two_faces, tmp_path):
    """``--faces 1`` with one exemplar: face 0 is written as it was (up to the encoder), face 1 is painted;
    the summary counts face 0 as not selected, not as a missing face."""
    from faceblit_core.quality import psnr

    a = two_faces["styles"][0]
    out = tmp_path / "one.mp4"
    r = run("stylize", two_faces["clip"], "--style", a, "--faces", "1", "-o", out, "--cache-dir", two_faces["cache"], "-q", "--json")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["frames_with_unselected"] == FRAMES and record["frames_with_face"] == FRAMES
    assert "no_face" not in record["fade_reasons"] and "unselected" not in record["fade_reasons"]
    src, got = _frames(two_faces["clip"]), _frames(out)
    left = min(psnr(x[:, :SIDE], y[:, :SIDE]) for x, y in zip(src, got))
    right = max(psnr(x[:, SIDE:], y[:, SIDE:]) for x, y in zip(src, got))
    assert left > 38 and right < 30, (left, right)


def test_bad_face_options_are_one_line_and_write_nothing(two_faces, tmp_path):
    a, b = two_faces["styles"]
    out = tmp_path / "out.mp4"
    cases = [
        (("--style", f"x={a}"), 2, "face id"),                       # bad id syntax
        (("--style", f"0={a}", "--style", f"0={b}"), 2, "has an exemplar already"),
        (("--style", f"1={a}", "--style", f"01={a}"), 2, "has an exemplar already"),  # the same id, written otherwise
        (("--style", a, "--faces", "0,0"), 2, "--faces: face 0 is given twice in '0,0'"),
        (("--style", a, "--faces", "everyone"), 2, "--faces: expected all, largest or face ids"),
        (("--style", f"1={b}", "--faces", "0"), 2, "not selected"),   # a mapping for a face not selected
        (("--style", f"0={a}", "--faces", "0,1"), 2, "face 1 has no exemplar"),
        (("--style", f"0={a}", "--style", f"7={b}"), 3, "face 7 never appears"),
        (("--style", a, "--faces", "4"), 3, "face 4 never appears"),
        (("--style", f"0={a}", "--chunk-seconds", "0.5"), 2, "not with chunks"),
    ]
    for args, code, text in cases:
        r = run("stylize", two_faces["clip"], *args, "-o", out, "--cache-dir", two_faces["cache"], "-q")
        line = one_error_line(r)
        assert r.returncode == code and text in line, (args, r.returncode, line)
        assert not out.exists() and not list(tmp_path.iterdir()), args
    r = run("faces", two_faces["clip"], "--frames", "500:")
    assert r.returncode == 3 and "starts after the last frame" in one_error_line(r)
    r = run("faces", tmp_path / "missing.mp4", "-o", tmp_path / "s.png")
    assert r.returncode == 3 and not (tmp_path / "s.png").exists()
