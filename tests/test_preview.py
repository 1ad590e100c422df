"""Issue 16 point 4: ``faceblit preview`` — a few frames spread over a clip, each rendered
after a warm-up (the chunks' mechanism), on one picture: inputs above, outputs below.

On the team-made sample (75 frames, 360×480) with the exemplar at 320 px: 3 frames.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceblit_core import chunks, media
from faceblit_core.config import StylizeConfig
from faceblit_core.errors import ConfigError, UsageError
from faceblit_core.preview import contact_sheet, preview, preview_frames
from faceblit_core.quality import psnr
from faceblit_core.setup import make_backend
from faceblit_core.style import prepare_style
from faceblit_core.stylizer import FrameStylizer

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "clip.mp4"
STYLE = REPO / "samples" / "exemplar.png"
CONFIG = StylizeConfig(style_max_side=320)
WARMUP = 12
#: What the preview's frames reach against the one-piece render's with a short warm-up
#: (sample clip): a frame whose warm-up starts at frame 0 is identical; the others are close
#: (a render started mid-clip equals the one-piece render after 120 warm-up frames).
PSNR_FLOOR = 30.0


@pytest.fixture(scope="module")
def asset(style_cache):
    return prepare_style(STYLE, config=CONFIG, cache_dir=style_cache)


@pytest.fixture(scope="module")
def made(asset, tmp_path_factory):
    sheet = tmp_path_factory.mktemp("preview") / "sheet.png"
    return preview(CLIP, asset, sheet, frames=3, warmup=WARMUP, config=CONFIG), sheet


@pytest.fixture(scope="module")
def one_piece(asset, made) -> dict[int, np.ndarray]:
    """The frames the preview shows, from one render of frames 0… (not encoded)."""
    result, _ = made
    stylizer = FrameStylizer(asset, CONFIG, fps=25.0, backend=make_backend(CONFIG, None, "cpu", video=True), device="cpu")
    stylizer.start_at(0)
    found = {}
    for index, frame in enumerate(media.iter_frames(media.probe(CLIP), end=max(result.frames) + 1)):
        out, _ = stylizer(frame)
        if index in result.frames:
            found[index] = out
    return found


def test_frames_are_spread_over_the_clip():
    assert preview_frames(1008, 6) == [84, 252, 420, 588, 756, 924]         # the middle of 6 equal parts
    assert preview_frames(75, 3) == [12, 37, 62]
    assert preview_frames(3, 6) == [0, 1, 2]
    assert preview_frames(1, 1) == [0]
    assert preview_frames(12, 12) == list(range(12))


def test_preview_writes_one_picture_with_2xN_panels_and_frame_numbers(made):
    result, sheet_path = made
    assert result.frames == [12, 37, 62]
    assert result.output == str(sheet_path) and sorted(p.name for p in sheet_path.parent.iterdir()) == ["sheet.png"]
    sheet = media.read_image(sheet_path)
    np.testing.assert_array_equal(sheet, result.sheet)
    h, w = 480, 360                                        # panels at full size (≤ 480 px)
    assert sheet.shape == (2 * h, 3 * w, 3)
    frames = list(media.iter_frames(media.probe(CLIP)))
    label = (slice(0, 40), slice(0, 150))                  # the label's corner; the rest of a panel is the frame
    for k, index in enumerate(result.frames):
        top = sheet[:h, k * w:(k + 1) * w].copy()
        bottom = sheet[h:, k * w:(k + 1) * w].copy()
        assert np.any(top[label] != frames[index][label])  # a label is drawn
        top[label] = frames[index][label]
        bottom[label] = result.outputs[k][label]
        np.testing.assert_array_equal(top, frames[index])  # input above
        np.testing.assert_array_equal(bottom, result.outputs[k])   # output below
        np.testing.assert_array_equal(result.inputs[k], frames[index])
    # The labels are the frame numbers: another number draws other pixels.
    blank = [np.zeros((h, w, 3), np.uint8)]
    assert np.any(contact_sheet(blank, blank, [12])[label] != contact_sheet(blank, blank, [13])[label])
    assert result.rendered == sum(t + 1 - chunks.warmup_start(t, WARMUP) for t in result.frames)


def test_preview_frames_match_the_full_render(made, one_piece):
    result, _ = made
    scores = [psnr(one_piece[t], out) for t, out in zip(result.frames, result.outputs)]
    # Frame 8's warm-up starts at frame 0: the very same render.
    assert chunks.warmup_start(12, WARMUP) == 0 and scores[0] == float("inf")
    assert min(scores) >= PSNR_FLOOR, scores


@pytest.mark.xfail(reason="the default warm-up (10 frames, for speed) is short of what a start mid-clip needs to equal the "
                          "one-piece render: the tracker's fits and the carried state remember 60-120 frames, and a shorter "
                          "MEMORY_FRAMES costs steadiness (README; issue 16: 40 dB and 15 % of the render's time do not both hold)",
                   strict=False)
def test_preview_frames_match_the_full_render_at_40_db(made, one_piece):
    result, _ = made
    assert min(psnr(one_piece[t], out) for t, out in zip(result.frames, result.outputs)) >= 40.0


def test_preview_checks_its_arguments_before_any_work(asset, tmp_path):
    for bad in (0, 65, 2.5, True):
        with pytest.raises(ConfigError, match="--frames"):
            preview(CLIP, asset, tmp_path / "x.png", frames=bad)
    with pytest.raises(ConfigError, match="--warmup"):
        preview(CLIP, asset, tmp_path / "x.png", warmup=-1)
    # Face ids need a tracking of the whole clip (a preview starts mid-clip): refused, as chunks refuse them.
    with pytest.raises(UsageError, match="not with preview"):
        preview(CLIP, STYLE, tmp_path / "x.png", config=CONFIG.replace(faces="largest"))
    with pytest.raises(UsageError, match="not with preview"):
        preview(CLIP, {0: STYLE}, tmp_path / "x.png", config=CONFIG)
    assert list(tmp_path.iterdir()) == []


def test_cli_default_warmup_is_the_librarys():
    import inspect

    from cli.main import _preview
    from faceblit_core.preview import PREVIEW_WARMUP

    assert inspect.signature(_preview).parameters["warmup"].default.default == PREVIEW_WARMUP


def test_cli_preview(asset, style_cache, tmp_path):
    """The thin command: one picture, one summary line; a bad value is one line, exit 2, nothing written."""
    env_cmd = [sys.executable, "-m", "cli.main", "preview", str(CLIP), "--style", str(STYLE), "--style-max-side", "320",
               "--cache-dir", str(style_cache)]  # where ``asset`` is: the command's style is a cache hit
    sheet = tmp_path / "p.jpg"
    r = subprocess.run([*env_cmd, "--frames", "2", "--warmup", "0", "-o", str(sheet)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert media.read_image(sheet).shape == (2 * 480, 2 * 360, 3)
    assert f"wrote {sheet}: frames 18, 56" in r.stderr
    r = subprocess.run([*env_cmd, "--frames", "2", "-o", str(sheet)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 5 and r.stderr.startswith("faceblit: error: ") and len(r.stderr.splitlines()) == 1
    r = subprocess.run([*env_cmd, "--keep", "teeth", "-o", str(tmp_path / "q.png")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--keep" in r.stderr and len(r.stderr.splitlines()) == 1
    # Options it has no use for are not offered (nothing is encoded; one exemplar for every face).
    for flag in ("--crf", "--codec", "--preset", "--faces"):
        r = subprocess.run([*env_cmd, flag, "1", "-o", str(tmp_path / "q.png")], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 2 and "No such option" in r.stderr and "Traceback" not in r.stderr, (flag, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jpg"]  # the cache is elsewhere: nothing but the picture


def test_cli_preview_refuses_standard_input_and_exemplars_per_face(tmp_path):
    for args, words in ((["-", "--style", str(STYLE)], "save standard input to a file first"),
                        ([str(CLIP), "--style", f"0={STYLE}"], "not with preview yet")):
        with open(CLIP, "rb") as stdin:
            r = subprocess.run([sys.executable, "-m", "cli.main", "preview", *args, "-o", str(tmp_path / "p.png")], stdin=stdin,
                               capture_output=True, text=True, cwd=REPO, timeout=300)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "p.png").exists()

