"""Robustness of ``faceblit stylize`` (issue 7): bad input gets a clear one-line answer
with the documented exit code, unusual but valid input gets a correct output, an
interrupted run leaves nothing behind, and inputs are never modified.

The CLI is driven as a user would (``python -m cli.main`` in a subprocess). The
test corpus is made here, at test time, from the team-made sample
(``samples/clip.mp4``, ``samples/exemplar.png``) with the ffmpeg binary of
:func:`faceblit_core.media.find_ffmpeg`, OpenCV and Pillow: nothing binary is committed.
To stay quick on 2 cores, the valid inputs go through ONE batch run (which is also
the batch test: a bad input sits among them), with a 200×260 style, and clips are
2–6 frames long.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core import media
from faceblit_core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
FACEBLIT = [sys.executable, "-m", "cli.main"]
CLIP = REPO / "samples" / "clip.mp4"
STYLE = REPO / "samples" / "exemplar.png"
STYLE_LM = REPO / "samples" / "exemplar.lm.txt"


# ----------------------------------------------------------------------------- helpers
def run_cli(*args, timeout: float = 300, preexec_fn=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
    return subprocess.run([*FACEBLIT, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=env, preexec_fn=preexec_fn)


def ffmpeg(*args) -> None:
    r = subprocess.run([media.find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def encode(frames: list[np.ndarray], path: Path, *, fps: int = 25, codec: tuple = ("-c:v", "libx264", "-pix_fmt", "yuv420p")) -> Path:
    """Encode (H, W, 3) uint8 RGB frames with the ffmpeg binary (not with faceblit's own writer)."""
    h, w = frames[0].shape[:2]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    r = subprocess.run([media.find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                        "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:", *codec, str(path)], input=data, capture_output=True)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _default_signals() -> None:
    """In the child: SIGINT/SIGTERM to their defaults. A test suite started in the background
    (``cmd &``) inherits SIGINT ignored, and the CLI rightly keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def names(folder: Path) -> list[str]:
    """Every entry of a folder, hidden ``.NAME.partial-*`` temporaries included."""
    return sorted(os.listdir(folder))


def frames_of(path: Path) -> list[np.ndarray]:
    return list(media.iter_frames(media.probe(path)))


def without_small_style_warning(text: str) -> list[str]:
    """The non-empty stderr lines but the exemplar check's warning about the 200×260 test style
    (its face is 103 px wide: under the 160 px the check asks for, on purpose, for speed)."""
    return [ln for ln in text.splitlines() if ln.strip() and not (ln.startswith("faceblit: warning: style image ") and "103 px wide" in ln)]


def assert_one_line_error(r: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """Exit ``code`` and exactly one stderr line ``faceblit: error: …`` holding ``words``."""
    lines = without_small_style_warning(r.stderr)
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("faceblit: error: "), r.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    assert r.stdout == ""
    return lines[0]


def _drop_file_permission_override() -> None:
    """preexec_fn: as root, drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH from the bounding
    set so the exec'd CLI obeys file modes like an ordinary user (as in test_media.py)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (e.g. an orphaned ffmpeg)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(cmd)
    return found


def _points_scaled(points: np.ndarray, old: tuple[int, int], new: tuple[int, int]) -> np.ndarray:
    """Landmarks of an image resized from ``old`` to ``new`` (w, h); pixel centres at integers."""
    return (points + 0.5) * [new[0] / old[0], new[1] / old[1]] - 0.5


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("robust-style-cache")


@pytest.fixture(scope="module")
def styles(tmp_path_factory, cache) -> dict[str, Path]:
    """Style files: a 200×260 exemplar (the one used for speed) with its sibling landmarks,
    and the bad ones. The small style's cache entry is built here through the CLI."""
    d = tmp_path_factory.mktemp("styles")
    bgr = cv2.imread(str(STYLE))
    h, w = bgr.shape[:2]
    lm = np.loadtxt(STYLE_LM)
    cv2.imwrite(str(d / "small.png"), cv2.resize(bgr, (200, 260), interpolation=cv2.INTER_AREA))
    np.savetxt(d / "small.lm.txt", _points_scaled(lm, (w, h), (200, 260)), fmt="%.3f")
    (d / "not_an_image.png").write_text("this is a text file, not a picture\n")
    cv2.imwrite(str(d / "flat.png"), np.full((260, 200, 3), (60, 120, 200), np.uint8))
    shutil.copy(STYLE, d / "exemplar.png")  # no sibling: landmarks come from the files below
    np.savetxt(d / "lm_67_points.txt", lm[:67], fmt="%.2f")
    (d / "lm_not_numbers.txt").write_text("\n".join(["12.5 abc"] + [f"{x} {y}" for x, y in lm[1:]]) + "\n")
    np.savetxt(d / "lm_outside.txt", lm * 10, fmt="%.2f")
    r = run_cli("prepare-style", d / "small.png", "--cache-dir", cache)
    assert r.returncode == 0 and "200x260" in r.stdout, r.stderr
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """Frame 0 of the sample clip: (480, 360, 3) uint8 RGB, face at x 115–260, y 129–270."""
    return frames_of(CLIP)[0]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, face) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-inputs")
    ffmpeg("-i", CLIP, "-frames:v", "6", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", d / "whole.mp4")
    data = (d / "whole.mp4").read_bytes()  # moov at the end: cut it off
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    ffmpeg("-i", d / "whole.mp4", "-c", "copy", "-movflags", "+faststart", d / "faststart.mp4")
    data = (d / "faststart.mp4").read_bytes()  # moov first: the frames are cut off
    (d / "truncated_faststart.mp4").write_bytes(data[: len(data) // 2])
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 40)
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "aac", d / "audio_only.mp4")
    (d / "folder.mp4").mkdir()
    for p in (d / "whole.mp4", d / "faststart.mp4"):
        p.unlink()
    return {p.name: p for p in d.iterdir()}


# ------------------------------------------------------------------------ invalid input
@pytest.mark.parametrize(
    "name, words",
    [
        ("empty.mp4", ["empty.mp4", "empty (0 bytes)"]),
        ("truncated.mp4", ["truncated.mp4", "truncated or corrupt"]),
        ("truncated_faststart.mp4", ["truncated_faststart.mp4", "truncated or corrupt"]),
        ("text.mp4", ["text.mp4", "not a video or image"]),
        ("audio_only.mp4", ["audio_only.mp4", "no video stream (audio only)"]),
        ("folder.mp4", ["folder.mp4", "directory"]),
        ("missing.mp4", ["missing.mp4", "no such file"]),
    ],
)
def test_bad_input_exits_3_with_one_line_and_writes_nothing(name, words, bad_inputs, styles, cache, tmp_path):
    src = bad_inputs.get(name, tmp_path / name)
    before = sha(src) if src.is_file() else None
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("stylize", src, "--style", styles["small"], "-o", out / "x.mp4", "--cache-dir", cache, "-q")
    assert_one_line_error(r, 3, *words)
    assert names(out) == []
    assert (sha(src) if src.is_file() else None) == before


def test_frame_range_after_the_end_is_an_input_error(styles, cache, tmp_path):
    clip = encode([np.full((64, 48, 3), 100, np.uint8)] * 3, tmp_path / "three.mp4")
    r = run_cli("stylize", clip, "--style", styles["small"], "-o", tmp_path / "o.mp4", "--frames", "5:9", "--cache-dir", cache, "-q")
    assert_one_line_error(r, 3, "--frames 5:9", "has 3")
    assert names(tmp_path) == ["three.mp4"]


# ------------------------------------------------------------------------------ bad style
@pytest.mark.parametrize(
    "style, landmarks, words",
    [
        ("not_an_image", None, ["not_an_image.png", "not an image"]),
        ("flat", None, ["flat.png", "no face found", "--style-landmarks"]),
        ("exemplar", "lm_67_points", ["lm_67_points.txt", "expected 68 landmarks, got 67"]),
        ("exemplar", "lm_not_numbers", ["lm_not_numbers.txt:1", "expected two numbers"]),
        ("exemplar", "lm_outside", ["lm_outside.txt", "outside the 480x640 image"]),
        ("exemplar", "missing", ["missing.txt", "not found"]),
    ],
)
def test_bad_style_exits_4_with_one_line_and_writes_nothing(style, landmarks, words, styles, cache, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    clip = encode([np.full((64, 48, 3), 100, np.uint8)], tmp_path / "in.mp4")
    before = sha(clip), sha(styles[style])
    extra = ["--style-landmarks", styles.get(landmarks, tmp_path / "missing.txt")] if landmarks else []
    r = run_cli("stylize", clip, "--style", styles[style], *extra, "-o", out / "x.mp4", "--cache-dir", cache, "-q")
    assert_one_line_error(r, 4, *words)
    assert names(out) == [] and (sha(clip), sha(styles[style])) == before


# ----------------------------------------------------------------------------- bad output
@pytest.fixture()
def small_clip(tmp_path) -> Path:
    return encode([np.full((64, 48, 3), 100, np.uint8)] * 2, tmp_path / "in.mp4")


def test_output_folder_missing(small_clip, styles, cache, tmp_path):
    r = run_cli("stylize", small_clip, "--style", styles["small"], "-o", tmp_path / "nope" / "x.mp4", "--cache-dir", cache, "-q")
    assert_one_line_error(r, 5, "nope", "does not exist")
    assert names(tmp_path) == ["in.mp4"]


@pytest.mark.parametrize(
    "command, option, value, words",
    [
        ("stylize", "--keep", "eyes,nose", ["--keep", "eyes, brows, mouth", "'nose' is not one of them"]),
        ("stylize", "--strength", "1.5", ["--strength", "[0.0, 1.0]", "1.5"]),
        ("stylize", "--strength", "-0.2", ["--strength", "[0.0, 1.0]", "-0.2"]),
        ("preview", "--keep", "teeth", ["--keep", "'teeth' is not one of them"]),
        ("preview", "--frames", "0", ["--frames", "[1, 64]", "0"]),
        ("preview", "--warmup", "-1", ["--warmup", "[0, 100000]"]),
    ],
)
def test_bad_keep_strength_and_preview_values_exit_2_and_write_nothing(command, option, value, words, small_clip, styles, cache, tmp_path):
    """Issue 16: an unknown face part, a strength out of [0, 1], a preview of no frames — one line, exit 2, nothing written."""
    before = sha(small_clip)
    out = tmp_path / "out"
    out.mkdir()
    target = out / ("x.mp4" if command == "stylize" else "x.png")
    r = run_cli(command, small_clip, "--style", styles["small"], "-o", target, "--cache-dir", cache, option, value, "-q")
    assert_one_line_error(r, 2, *words)
    assert names(out) == [] and sha(small_clip) == before


def test_output_folder_read_only(small_clip, styles, cache, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    preexec = _drop_file_permission_override if os.geteuid() == 0 else None
    try:
        r = run_cli("stylize", small_clip, "--style", styles["small"], "-o", folder / "x.mp4", "--cache-dir", cache, "-q", preexec_fn=preexec)
    except subprocess.SubprocessError as e:  # prctl refused: no CAP_SETPCAP in this container
        pytest.skip(f"cannot make file permissions apply to the CLI: {e}")
    finally:
        folder.chmod(0o755)
    assert_one_line_error(r, 5, "ro", "not writable")
    assert names(folder) == []


@pytest.mark.parametrize("how", ["same path", "same path --overwrite", "symlink to the input"])
def test_output_equal_to_input_is_refused(how, small_clip, styles, cache, tmp_path):
    before = sha(small_clip)
    target = small_clip
    if how == "symlink to the input":
        target = tmp_path / "link.mp4"
        target.symlink_to(small_clip)
    extra = ["--overwrite"] if how != "same path" else []
    r = run_cli("stylize", small_clip, "--style", styles["small"], "-o", target, *extra, "--cache-dir", cache, "-q")
    assert_one_line_error(r, 5, "same file as the input")
    assert sha(small_clip) == before
    assert names(tmp_path) == sorted({"in.mp4", target.name})


def test_existing_output_is_kept_without_overwrite(small_clip, styles, cache, tmp_path):
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"precious")
    r = run_cli("stylize", small_clip, "--style", styles["small"], "-o", existing, "--cache-dir", cache, "-q")
    assert_one_line_error(r, 5, "exists", "--overwrite")
    assert existing.read_bytes() == b"precious" and names(tmp_path) == ["in.mp4", "out.mp4"]


# --------------------------------------------------------------------------------- device
def test_device_cuda_without_cuda_exits_6(small_clip, styles, cache, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = run_cli("stylize", small_clip, "--style", styles["small"], "-o", tmp_path / "o.mp4", "--device", "cuda", "--cache-dir", cache, "-q")
    assert_one_line_error(r, 6, "--device cuda", "no CUDA device", "--device cpu")
    assert names(tmp_path) == ["in.mp4"]


# ------------------------------------------------------------------ unusual, valid input
def _rotated_clip(upright: list[np.ndarray], rotation: int, folder: Path, display_rotated) -> Path:
    """A clip whose coded frames are turned so that its display matrix (``rotation`` degrees
    counter-clockwise) shows ``upright`` again: ``upright = rot90(coded, rotation // 90)``."""
    coded = encode([np.ascontiguousarray(np.rot90(f, -(rotation // 90))) for f in upright], folder / f"coded{rotation}.mp4")
    out = display_rotated(coded, folder / f"rot{rotation}.mp4", rotation)
    coded.unlink()
    return out


@pytest.fixture(scope="module")
def unusual(tmp_path_factory, face, display_rotated) -> dict[str, Path]:
    """Unusual but valid inputs, each 1–6 frames (see the test's table for what each is)."""
    d = tmp_path_factory.mktemp("unusual")
    frames3 = [face, np.roll(face, 2, axis=1), np.roll(face, 4, axis=1)]
    x264 = ("-c:v", "libx264", "-preset", "ultrafast")
    encode(frames3[:1], d / "one_frame.mp4")
    encode([cv2.resize(f, (2, 2), interpolation=cv2.INTER_AREA) for f in frames3], d / "tiny_2x2.mp4", codec=(*x264, "-pix_fmt", "yuv444p"))
    encode([cv2.resize(f, (33, 47), interpolation=cv2.INTER_AREA) for f in frames3], d / "odd_33x47.mkv", codec=("-c:v", "ffv1", "-pix_fmt", "yuv444p"))
    encode([f[:447, :333] for f in frames3], d / "odd_333x447.mkv", codec=("-c:v", "ffv1", "-pix_fmt", "yuv444p"))
    encode(frames3, d / "high10.mp4", codec=(*x264, "-pix_fmt", "yuv420p10le"))
    encode(frames3, d / "ffv1_10bit.mkv", codec=("-c:v", "ffv1", "-pix_fmt", "yuv420p10le"))
    encode(frames3, d / "yuv444.mp4", codec=(*x264, "-pix_fmt", "yuv444p"))
    # Variable frame rate: frames 0-2 at 25 fps, then a 0.2 s gap (timestamps kept as they are).
    encode(frames3 * 2, d / "cfr.mkv", codec=x264)
    ffmpeg("-i", d / "cfr.mkv", "-vf", "setpts='N/25/TB+if(gte(N,3),0.2/TB,0)'", "-fps_mode", "vfr", *x264, d / "vfr.mkv")
    (d / "cfr.mkv").unlink()
    for rot in (90, 180, 270):
        _rotated_clip(frames3[:2], rot, d, display_rotated)
    bgr = face[:, :, ::-1]
    cv2.imwrite(str(d / "gray.jpg"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    from PIL import Image

    Image.fromarray(face).convert("CMYK").save(d / "cmyk.jpg")
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = np.linspace(0, 255, bgra.shape[1], dtype=np.uint8)[None, :]
    cv2.imwrite(str(d / "alpha.png"), bgra)
    cv2.imwrite(str(d / "deep16.png"), bgr.astype(np.uint16) * 257)
    (d / "png_named.mp4").write_bytes(cv2.imencode(".png", bgr)[1].tobytes())  # an image with a video name
    # The face cut by the left edge, then by the top edge, more each frame.
    encode([face[100:400, x : x + 200] for x in (110, 135, 160)], d / "border_left.mp4")
    encode([face[y : y + 300, 150:350] for y in (60, 120, 150)], d / "border_top.mp4")
    # A face turned to the side: the right half squeezed in perspective (a yaw of ~40-70°).
    src = np.float32([[110, 120], [265, 120], [265, 280], [110, 280]])
    turned = []
    for k in (0.3, 0.5, 0.65):
        dst = np.float32([[110, 120], [265 - 155 * k, 120 + 25 * k], [265 - 155 * k, 280 - 25 * k], [110, 280]])
        turned.append(cv2.warpPerspective(face, cv2.getPerspectiveTransform(src, dst), (360, 480), borderMode=cv2.BORDER_REPLICATE))
    encode(turned, d / "turned.mp4")
    # Faces appear and disappear: blank frames among face frames.
    grey, black = np.full_like(face, 120), np.zeros_like(face)
    encode([grey, face, face, black, face, grey], d / "appear.mp4")
    hd = np.full((1080, 1920, 3), 90, np.uint8)
    hd[60:1020, 600:1320] = cv2.resize(face, (720, 960), interpolation=cv2.INTER_CUBIC)
    encode([hd, np.roll(hd, 6, axis=1)], d / "hd1080.mp4", codec=x264)
    (d / "bad.mp4").write_text("not a video: the batch must go on past it\n")
    return {p.name: p for p in sorted(d.iterdir())}


#: name → (display width, height, frames, face expected on every frame (True), on none
#: (False) or either (None), what its first frame decodes to: the sample frame (or its
#: gray version, or its top-left crop), to within the coding loss; None: not checked).
UNUSUAL = {
    "one_frame.mp4": (360, 480, 1, True, "face"),
    "tiny_2x2.mp4": (2, 2, 3, False, None),
    "odd_33x47.mkv": (33, 47, 3, False, None),
    "odd_333x447.mkv": (333, 447, 3, True, "crop"),
    "high10.mp4": (360, 480, 3, True, "face"),
    "ffv1_10bit.mkv": (360, 480, 3, True, "face"),
    "yuv444.mp4": (360, 480, 3, True, "face"),
    "vfr.mkv": (360, 480, 6, True, "face"),
    "rot90.mp4": (360, 480, 2, True, "face"),
    "rot180.mp4": (360, 480, 2, True, "face"),
    "rot270.mp4": (360, 480, 2, True, "face"),
    "gray.jpg": (360, 480, 1, True, "gray"),
    "cmyk.jpg": (360, 480, 1, True, "face"),
    "alpha.png": (360, 480, 1, True, "face"),
    "deep16.png": (360, 480, 1, True, "face"),
    "png_named.mp4": (360, 480, 1, True, "face"),
    "border_left.mp4": (200, 300, 3, None, None),
    "border_top.mp4": (200, 300, 3, None, None),
    "turned.mp4": (360, 480, 3, None, None),
    "appear.mp4": (360, 480, 6, None, None),
    "hd1080.mp4": (1920, 1080, 2, True, None),
}
REFERENCE = {
    "face": lambda f: f,
    "gray": lambda f: np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2),
    "crop": lambda f: f[:447, :333],
}


@pytest.fixture(scope="module")
def batch(unusual, styles, cache, tmp_path_factory):
    """ONE batch run over every unusual input with a bad input among them (``--frames 0:50``
    reaches past the end of every clip: "to the end")."""
    out = tmp_path_factory.mktemp("batch-out")
    before = {n: sha(p) for n, p in unusual.items()}
    inputs = [unusual[n] for n in UNUSUAL]
    inputs.insert(len(inputs) // 2, unusual["bad.mp4"])
    r = run_cli("stylize", *inputs, "--style", styles["small"], "--out-dir", out, "--frames", "0:50",
                "--cache-dir", cache, "--json", "-q", timeout=900)
    records = [json.loads(line) for line in r.stdout.splitlines()]  # JSON lines: one per input, failed ones included
    summaries = {Path(s["input"]).name: s for s in records if s["status"] == "written"}
    assert [Path(s["input"]).name for s in records if s["status"] == "failed"] == ["bad.mp4"], r.stderr[-3000:]
    return r, summaries, out, before


def test_batch_goes_past_a_bad_input_and_exits_1(batch, unusual):
    r, summaries, out, before = batch
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    lines = without_small_style_warning(r.stderr)
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("faceblit: error: ") and "bad.mp4" in lines[0] and "not a video or image" in lines[0]
    assert lines[1] == f"faceblit: 1 of {len(UNUSUAL) + 1} input(s) failed"
    assert set(summaries) == set(UNUSUAL)
    expected = {f"{Path(n).stem}-small{Path(n).suffix if Path(n).suffix in ('.jpg', '.png') else '.mp4'}" for n in UNUSUAL}
    assert names(out) == sorted(expected)  # every output, no temporary left, nothing for bad.mp4
    assert {n: sha(p) for n, p in unusual.items()} == before  # inputs untouched


@pytest.mark.parametrize("name", list(UNUSUAL))
def test_unusual_input_gives_a_correct_output(name, batch, unusual, face):
    import torch

    r, summaries, out, _ = batch
    w, h, n, has_face, ref = UNUSUAL[name]
    s = summaries.get(name)
    assert s is not None, r.stderr[-3000:]
    dst = Path(s["output"])
    assert dst.parent == out and dst.is_file()
    assert s["frames"] == n and s["frames_with_face"] + s["frames_without_face"] == n
    if has_face is not None:
        assert s["frames_with_face"] == (n if has_face else 0), s
    assert s["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    info = media.probe(dst)
    # yuv420p needs even sizes: odd ones gain one replicated column/row (VideoWriter).
    even = not info.is_image
    assert (info.width, info.height) == ((w + w % 2, h + h % 2) if even else (w, h))
    assert info.n_frames == n and info.rotation == 0
    assert info.is_image == (Path(name).suffix in (".jpg", ".png"))
    if not info.is_image:
        assert info.fps == media.probe(unusual[name]).fps  # VFR: the average rate, every frame kept
    src_frames = frames_of(unusual[name])
    if ref is not None:  # decoded upright, in the right colours (rotation, CMYK, 16 bits, 10 bits…)
        expected = REFERENCE[ref](face)
        assert np.abs(src_frames[0].astype(np.int16) - expected.astype(np.int16)).mean() < 5, name
    out_frames = [f[:h, :w] for f in frames_of(dst)]
    for a, b in zip(src_frames, out_frames):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)
        # Upright and in place: the bottom eighth (suit, or background) is only re-encoded.
        assert diff[-max(1, h // 8) :].mean() < 12, name
    if has_face:
        first = np.abs(src_frames[0].astype(np.int16) - out_frames[0].astype(np.int16)).mean()
        assert first > 0.5, "the face was found but the frame is unchanged"


def test_appearing_and_disappearing_face(batch, unusual):
    """Frames without a face are written unchanged; every face frame is stylized."""
    _, summaries, out, _ = batch
    s = summaries["appear.mp4"]
    assert (s["frames_with_face"], s["frames_without_face"]) == (3, 3)
    src, dst = frames_of(unusual["appear.mp4"]), frames_of(Path(s["output"]))
    change = [float(np.abs(a.astype(np.int16) - b.astype(np.int16))[130:270, 115:260].mean()) for a, b in zip(src, dst)]
    assert all(change[i] < 1.0 for i in (0, 3, 5)), change
    assert all(change[i] > 2.0 for i in (1, 2, 4)), change


def test_long_path_with_spaces_and_non_ascii(face, styles, cache, tmp_path):
    folder = tmp_path
    for i in range(8):  # ~1200 bytes of path, each name under the 255-byte limit
        folder = folder / (f"dossier très long {i} — ça marche ü 漢字 " * 3).strip()
    folder.mkdir(parents=True)
    assert len(os.fsencode(folder)) > 1000
    clip = encode([face, face], folder / "clip é 漢 x.mp4")
    style = folder / "stïle 漢.png"
    shutil.copy(styles["small"], style)
    shutil.copy(styles["small.lm"], folder / "stïle 漢.lm.txt")
    before = sha(clip)
    r = run_cli("stylize", clip, "--style", style, "--cache-dir", cache, "-q", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    out = folder / "clip é 漢 x-stïle 漢.mp4"
    assert json.loads(r.stdout)["output"] == str(out) and json.loads(r.stdout)["frames_with_face"] == 2
    assert media.probe(out).n_frames == 2 and sha(clip) == before
    assert names(folder) == sorted([clip.name, style.name, "stïle 漢.lm.txt", out.name])


# ----------------------------------------------------------------------- unusual styles
def test_style_png_with_alpha_and_16_bits(face, cache, tmp_path):
    """A 16-bit RGBA exemplar (alpha dropped, colour kept) on a still image input."""
    bgr = cv2.imread(str(STYLE))
    bgra = cv2.cvtColor(cv2.resize(bgr, (240, 320), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2BGRA).astype(np.uint16) * 257
    bgra[..., 3] = 30000
    cv2.imwrite(str(tmp_path / "rgba16.png"), bgra)
    np.savetxt(tmp_path / "rgba16.lm.txt", _points_scaled(np.loadtxt(STYLE_LM), (480, 640), (240, 320)), fmt="%.3f")
    cv2.imwrite(str(tmp_path / "photo.png"), face[:, :, ::-1])
    r = run_cli("stylize", tmp_path / "photo.png", "--style", tmp_path / "rgba16.png", "-o", tmp_path / "out.png", "--cache-dir", cache, "-q", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["frames_with_face"] == 1
    out = media.read_image(tmp_path / "out.png")
    assert out.shape == face.shape and np.abs(out.astype(int) - face.astype(int)).mean() > 0.5
    assert names(tmp_path) == ["out.png", "photo.png", "rgba16.lm.txt", "rgba16.png"]


def test_style_much_larger_than_the_video_is_downscaled(face, cache, tmp_path):
    """A 3000×4000 exemplar (the sample upscaled, landmarks scaled) on a 360×480 clip: it is
    brought down to ``--style-max-side`` (default 1024) with its landmarks, so a frame
    costs what a normal exemplar's does (at 3000×4000: ~100 s per frame on 2 cores)."""
    big = cv2.resize(cv2.imread(str(STYLE)), (3000, 4000), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "huge.png"), big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    lm = np.loadtxt(STYLE_LM)
    np.savetxt(tmp_path / "huge.lm.txt", _points_scaled(lm, (480, 640), (3000, 4000)), fmt="%.3f")
    clip = encode([face], tmp_path / "clip.mp4")
    r = run_cli("prepare-style", tmp_path / "huge.png", "--cache-dir", cache)  # the default --style-max-side
    assert r.returncode == 0 and "downscaled from 3000x4000 to 768x1024" in r.stdout, r.stderr
    r = run_cli("stylize", clip, "--style", tmp_path / "huge.png", "--style-max-side", 512, "-o", tmp_path / "out.mp4", "--cache-dir", cache, "-q", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["frames_with_face"] == 1
    assert media.probe(tmp_path / "out.mp4").n_frames == 1
    # The cached asset is 384x512 and its landmarks are the sample's, scaled.
    from faceblit_core.style import prepare_style

    asset = prepare_style(tmp_path / "huge.png", max_side=512, cache_dir=cache)
    assert (asset.width, asset.height) == (384, 512)
    np.testing.assert_allclose(asset.landmarks, _points_scaled(lm, (480, 640), (384, 512)), atol=0.01)
    assert names(tmp_path) == ["clip.mp4", "huge.lm.txt", "huge.png", "out.mp4"]


# --------------------------------------------------------------------------- interruption
@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """The sample looped 4 times: 300 frames with audio."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    ffmpeg("-stream_loop", 3, "-i", CLIP, "-c", "copy", path)
    return path


@pytest.mark.parametrize(
    "signum, code, name, delay",
    [
        (signal.SIGINT, 130, "SIGINT", 0.0),  # the moment the temporary output appears: threads and ffmpeg starting
        (signal.SIGTERM, 143, "SIGTERM", 0.0),
        (signal.SIGTERM, 143, "SIGTERM", 1.5),  # frames being stylized and encoded
    ],
)
def test_signal_leaves_no_output_and_no_temporary(signum, code, name, delay, long_clip, styles, cache, tmp_path):
    before = sha(long_clip)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen([*FACEBLIT, "stylize", str(long_clip), "--style", str(styles["small"]), "-o", str(out / "o.mp4"),
                             "--cache-dir", str(cache), "-q"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_signals)
    deadline = time.monotonic() + 120
    while not any(".partial" in n for n in names(out)):  # the encoder has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.005)
    time.sleep(delay)
    assert proc.poll() is None, "the run ended before the signal; make the input longer"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    assert_one_line_error(r, code, f"interrupted by {name}", "no output was written")
    assert names(out) == []
    assert _processes_mentioning(str(out)) == []  # no ffmpeg left encoding
    assert sha(long_clip) == before


def _children(pid: int) -> dict[int, tuple[str, str]]:
    """Child processes of ``pid``: {child pid: (start time in clock ticks, command line)}."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found[int(entry)] = (fields[19], Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    return found


def _running(pid: int, start: str) -> bool:
    """That very process (not a reuse of its PID) exists and has not exited (a zombie has)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] not in ("Z", "X")


def test_sigkill_leaves_no_ffmpeg_and_the_next_run_removes_the_partial(long_clip, small_clip, styles, cache, tmp_path):
    """``kill -9`` cannot be handled: the ffmpeg children die with faceblit (PR_SET_PDEATHSIG)
    instead of finishing the partial file on their own, and the next run writing into the
    folder removes the partial file of the dead run (but never one of a live run)."""
    before = sha(long_clip)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen([*FACEBLIT, "stylize", str(long_clip), "--style", str(styles["small"]), "-o", str(out / "o.mp4"),
                             "--cache-dir", str(cache), "-q"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(".partial" in n for n in names(out)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.005)
    time.sleep(2.0)  # frames being decoded, stylized and encoded
    children = _children(proc.pid)
    assert proc.poll() is None, "the run ended before the kill; make the input longer"
    encoders = [pid for pid, (_, cmd) in children.items() if "ffmpeg" in cmd and str(out) in cmd]
    decoders = [pid for pid, (_, cmd) in children.items() if "ffmpeg" in cmd and str(long_clip) in cmd]
    assert encoders and decoders, children
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 5
    while any(_running(pid, start) for pid, (start, _) in children.items()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [cmd for pid, (start, cmd) in children.items() if _running(pid, start)] == []  # no orphaned ffmpeg
    assert _processes_mentioning(str(out)) == []
    (partial,) = [n for n in names(out) if ".partial" in n]  # nothing could remove it at the kill
    with pytest.raises(InputError):  # killed mid-stream: its encoder did not go on to finish it
        media.probe(out / partial)

    r = run_cli("stylize", small_clip, "--style", styles["small"], "-o", out / "next.mp4", "--cache-dir", cache, "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    assert names(out) == ["next.mp4"]
    assert sha(long_clip) == before
