"""faceblit_core.media: probing, decoding, encoding, stills, and every I/O error path.

Real clips from ../shared/data for round trips (first 40 frames, plus one full
d3.mp4); small clips made with ffmpeg's test sources for the rest.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from faceblit_core import media
from faceblit_core.errors import EnvironmentProblem, FaceblitError, InputError, OutputError, ProcessingError
from faceblit_core.quality import psnr

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ helpers


def ffmpeg(*args: str) -> None:
    subprocess.run([media.find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path: Path, *, size: str = "64x48", rate: str = "30", frames: int = 12, audio: bool = False,
              extra: tuple[str, ...] = ()) -> Path:
    """A small H.264 test clip (moving colour pattern, optional 1 kHz sine audio)."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100"]
    args += ["-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, *extra, str(path))
    return path


def packets(path: Path, stream: str) -> list[str]:
    """Size and CRC of every packet of a stream (stream copy): equal lists = identical stream."""
    out = subprocess.run([media.find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-map", stream, "-c", "copy", "-f", "framecrc", "-"], capture_output=True, text=True, check=True)
    return [",".join(ln.split(",")[4:]).strip() for ln in out.stdout.splitlines() if ln and ln[0] != "#"]


def assert_user_error(excinfo: pytest.ExceptionInfo, cls: type, *words: str) -> None:
    """One-line message, no traceback text, right class, naming the cause."""
    err = excinfo.value
    assert type(err) is cls, f"{type(err).__name__}: {err}"
    msg = str(err)
    assert "\n" not in msg and "Traceback" not in msg and msg.strip() == msg and msg
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"


def leftovers(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def smooth_frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Camera-like content (smooth gradients + mild texture) that H.264 codes well."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        base = np.stack([128 + 100 * np.sin(xx / 9 + i / 3), 128 + 100 * np.cos(yy / 7 - i / 4),
                         128 + 80 * np.sin((xx + yy) / 11)], axis=-1)
        out.append(np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8))
    return out


def _drop_file_permission_override() -> None:
    """preexec_fn: as root, drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set, so the exec'd child obeys file modes like an ordinary user."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


def run_child(code: str, *, obey_modes: bool = False, wrap: list[str] | None = None) -> dict:
    """Run Python code in a child (``obey_modes``: file permissions apply even to root;
    ``wrap``: command prefix); the child prints one JSON line, which is returned."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    preexec = _drop_file_permission_override if obey_modes and os.geteuid() == 0 else None
    cmd = [*(wrap or []), sys.executable, "-c", textwrap.dedent(code)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=120)
    except subprocess.SubprocessError as e:  # prctl refused (no CAP_SETPCAP in this container)
        pytest.skip(f"cannot make file permissions apply to the test child: {e}")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


CHILD_ERR = """
import json, sys
from faceblit_core import media
from faceblit_core.errors import FaceblitError
def report(fn):
    try:
        fn()
        print(json.dumps({"cls": None, "msg": ""}))
    except FaceblitError as e:
        print(json.dumps({"cls": type(e).__name__, "msg": str(e)}))
"""


# ------------------------------------------------------------------------------ ffmpeg


def test_find_ffmpeg_default_is_cached_and_runs():
    exe = media.find_ffmpeg()
    assert os.path.isabs(exe) and os.access(exe, os.X_OK)
    assert media.find_ffmpeg() is exe  # cached


def test_find_ffmpeg_env_override(monkeypatch, tmp_path):
    link = tmp_path / "my-ffmpeg"
    link.symlink_to(media.find_ffmpeg())
    monkeypatch.setenv("FACEBLIT_FFMPEG", str(link))
    assert media.find_ffmpeg() == str(link)
    monkeypatch.setenv("FACEBLIT_FFMPEG", str(tmp_path / "nope"))
    with pytest.raises(EnvironmentProblem) as ei:
        media.find_ffmpeg()
    assert_user_error(ei, EnvironmentProblem, "FACEBLIT_FFMPEG", "nope")


def test_find_ffmpeg_prefers_the_bundled_binary_to_path(monkeypatch, tmp_path):
    """The bundled ffmpeg (same build everywhere) wins over one on PATH (e.g. Debian's
    5.1, which lacks options and encodes differently); PATH is the fallback."""
    bundled = media.ffmpeg._bundled_ffmpeg()
    if bundled is None:
        pytest.skip("imageio-ffmpeg has no bundled binary here")
    other = tmp_path / "ffmpeg"
    other.write_text("#!/bin/sh\necho 'ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024 the FFmpeg developers'\n")
    other.chmod(0o755)
    monkeypatch.delenv("FACEBLIT_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    media.ffmpeg._find_ffmpeg_cached.cache_clear()
    try:
        assert media.find_ffmpeg() == os.path.abspath(bundled)
        monkeypatch.setattr(media.ffmpeg, "_bundled_ffmpeg", lambda: None)
        media.ffmpeg._find_ffmpeg_cached.cache_clear()
        assert media.find_ffmpeg() == str(other)
        monkeypatch.setenv("FACEBLIT_FFMPEG", bundled)  # the variable beats both
        assert media.find_ffmpeg() == bundled
    finally:
        media.ffmpeg._find_ffmpeg_cached.cache_clear()


def test_find_ffmpeg_missing_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("FACEBLIT_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent-dir")
    monkeypatch.setattr(media.ffmpeg, "_bundled_ffmpeg", lambda: None)
    media.ffmpeg._find_ffmpeg_cached.cache_clear()
    try:
        with pytest.raises(EnvironmentProblem) as ei:
            media.find_ffmpeg()
        assert_user_error(ei, EnvironmentProblem, "ffmpeg not found", "FACEBLIT_FFMPEG", "install")
        assert ei.value.exit_code == 6
    finally:
        media.ffmpeg._find_ffmpeg_cached.cache_clear()


# ------------------------------------------------------------------------------ probe


def test_probe_shared_clips_and_images(shared_data):
    v = shared_data / "videos"
    d3 = media.probe(v / "d3.mp4")
    assert (d3.width, d3.height, d3.n_frames, d3.fps, d3.rotation) == (512, 512, 354, Fraction(30), 0)
    assert d3.has_audio and d3.audio_codec == "aac" and not d3.is_image and d3.video_codec == "h264"
    assert d3.duration == pytest.approx(354 / 30)
    s18 = media.probe(v / "s18.mp4")
    assert (s18.width, s18.height, s18.n_frames, s18.fps, s18.has_audio) == (1280, 720, 282, Fraction(30), True)
    t2 = media.probe(v / "target2.mp4")
    # ffmpeg prints "29.96 fps"; the timestamps (tbn 29959, 1000 ticks/frame) say exactly 29959/1000.
    assert (t2.width, t2.height, t2.n_frames, t2.fps, t2.has_audio) == (768, 1024, 195, Fraction(29959, 1000), False)
    s1 = media.probe(shared_data / "images" / "s1.jpg")
    assert s1.is_image and s1.n_frames == 1 and (s1.width, s1.height) == (1145, 1145) and s1.duration is None
    png = media.probe(shared_data / "images" / "target2.png")
    assert png.is_image and (png.width, png.height) == (768, 1024)


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_probe_ntsc_rate_is_exact(tmp_path, container):
    # mkv stores ms timestamps (33/34 ms steps), yet the rate must come out as 30000/1001.
    clip = make_clip(tmp_path / f"ntsc.{container}", rate="30000/1001", frames=30)
    info = media.probe(clip)
    assert info.fps == Fraction(30000, 1001)
    assert info.n_frames == 30


def _ms_timestamps(n: int, rate: Fraction) -> tuple[list[int], list[int]]:
    pts = [round(k * 1000 / rate) for k in range(n)]
    return pts, [b - a for a, b in zip(pts, pts[1:])] + [round(1000 / rate)]


@pytest.mark.parametrize("n,rate", [(23, Fraction(24000, 1001)), (30, Fraction(30000, 1001)), (31, Fraction(30)),
                                    (100, Fraction(25)), (7, Fraction(60000, 1001))])
def test_average_rate_snaps_ms_timestamps(n, rate):
    pts, durs = _ms_timestamps(n, rate)
    fps, _ = media.probing._average_rate(n, Fraction(1, 1000), pts, durs)
    assert fps == rate


def test_average_rate_exact_and_vfr():
    # target2.mp4: time base 1/29959, 1000 ticks per frame
    fps, dur = media.probing._average_rate(195, Fraction(1, 29959), [k * 1000 for k in range(195)], [1000] * 195)
    assert fps == Fraction(29959, 1000) and dur == pytest.approx(195 / 29.959)
    pts = [0, 33, 66, 133, 200, 300, 333]  # variable frame rate, ms ticks: no standard rate fits
    fps, dur = media.probing._average_rate(7, Fraction(1, 1000), pts, [33, 33, 67, 67, 100, 33, 33])
    assert fps == Fraction(7000, 366) and dur == pytest.approx(0.366)


def test_printed_rate_fallback():
    assert media.probing._printed_rate("h264, yuv420p, 64x48, 29.97 fps, 29.97 tbr, 90k tbn") == Fraction(30000, 1001)
    assert media.probing._printed_rate("h264, yuv420p, 64x48, 23.98 fps, 23.98 tbr") == Fraction(24000, 1001)
    assert media.probing._printed_rate("h264, yuv420p, 64x48, 25 fps, 25 tbr, 12800 tbn") == Fraction(25)
    assert media.probing._printed_rate("h264, yuv420p, 64x48, 12.5 tbr") == Fraction(25, 2)


def test_probe_missing_directory_empty(tmp_path):
    with pytest.raises(InputError) as ei:
        media.probe(tmp_path / "missing.mp4")
    assert_user_error(ei, InputError, "missing.mp4", "no such file")
    with pytest.raises(InputError) as ei:
        media.probe(tmp_path)
    assert_user_error(ei, InputError, "is a directory")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError) as ei:
        media.probe(tmp_path / "empty.mp4")
    assert_user_error(ei, InputError, "empty.mp4", "empty")


def test_probe_not_media_and_audio_only(tmp_path):
    (tmp_path / "notes.mp4").write_text("hello, I am not a video\n")
    with pytest.raises(InputError) as ei:
        media.probe(tmp_path / "notes.mp4")
    assert_user_error(ei, InputError, "notes.mp4", "not a video or image")
    audio = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "aac", str(audio))
    with pytest.raises(InputError) as ei:
        media.probe(audio)
    assert_user_error(ei, InputError, "tone.m4a", "no video stream", "audio only")


def test_probe_truncated(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", size="128x96", frames=30)  # moov at the end
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as ei:
        media.probe(tmp_path / "cut.mp4")
    assert_user_error(ei, InputError, "cut.mp4", "truncated or corrupt", "moov atom not found")
    # With the index in front (+faststart) ffmpeg opens it, and the packet pass finds the hole.
    fast = make_clip(tmp_path / "f.mp4", size="128x96", frames=30, extra=("-movflags", "+faststart"))
    data = fast.read_bytes()
    (tmp_path / "cutfast.mp4").write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InputError) as ei:
        media.probe(tmp_path / "cutfast.mp4")
    assert_user_error(ei, InputError, "cutfast.mp4", "truncated or corrupt")


def test_probe_unreadable(tmp_path):
    secret = make_clip(tmp_path / "secret.mp4")
    os.chmod(secret, 0)
    res = run_child(CHILD_ERR + f"report(lambda: media.probe({str(secret)!r}))", obey_modes=True)
    assert res["cls"] == "InputError", res
    assert "permission denied" in res["msg"] and "secret.mp4" in res["msg"] and "\n" not in res["msg"]
    code = CHILD_ERR + f"report(lambda: media.read_image({str(secret)!r}))"
    assert run_child(code, obey_modes=True)["cls"] == "InputError"


def test_probe_stdin_dash_is_a_programming_error():
    with pytest.raises(ValueError, match="spool"):
        media.probe("-")


# ------------------------------------------------------------------------------ decode + encode round trips


@pytest.mark.parametrize("name", ["d3.mp4", "s18.mp4", "target2.mp4"])
def test_round_trip_first_40_frames(shared_data, tmp_path, name):
    src = media.probe(shared_data / "videos" / name)
    frames = list(media.iter_frames(src, end=40))
    assert len(frames) == 40 and frames[0].shape == (src.height, src.width, 3) and frames[0].dtype == np.uint8
    out = tmp_path / f"rt-{name}"
    with media.VideoWriter(out, width=src.width, height=src.height, fps=src.fps, audio_from=src, crf=18) as w:
        for f in frames:
            w.write(f)
    assert leftovers(tmp_path) == [out.name]
    got = media.probe(out)
    assert (got.width, got.height, got.n_frames, got.fps) == (src.width, src.height, 40, src.fps)
    assert got.has_audio == src.has_audio
    if src.has_audio:  # copied unchanged, whole length
        assert got.audio_codec == src.audio_codec
        assert packets(out, "0:a:0") == packets(src.path, "0:a:0")
    back = list(media.iter_frames(got))
    scores = [psnr(a, b) for a, b in zip(frames, back)]
    assert min(scores) >= 40.0, scores


def test_round_trip_full_d3(shared_data, tmp_path):
    src = media.probe(shared_data / "videos" / "d3.mp4")
    out = tmp_path / "d3-full.mp4"
    with media.VideoWriter(out, width=src.width, height=src.height, fps=src.fps, audio_from=src) as w:
        for f in media.iter_frames(src):
            w.write(f)
    got = media.probe(out)
    assert (got.n_frames, got.fps, got.width, got.height) == (354, Fraction(30), 512, 512)
    assert got.duration == pytest.approx(src.duration)
    assert packets(out, "0:a:0") == packets(src.path, "0:a:0")
    worst = min(psnr(a, b) for a, b in zip(media.iter_frames(src), media.iter_frames(got)))
    assert worst >= 40.0


def test_start_end_range_matches_full_decode(tmp_path):
    info = media.probe(make_clip(tmp_path / "c.mp4", frames=20))
    full = list(media.iter_frames(info))
    part = list(media.iter_frames(info, start=7, end=12))
    assert len(full) == 20 and len(part) == 5
    assert all(np.array_equal(a, b) for a, b in zip(full[7:12], part))
    assert list(media.iter_frames(info, start=5, end=5)) == []
    with pytest.raises(ValueError):
        media.iter_frames(info, start=3, end=21)


def test_iter_frames_no_prefetch_same_frames(tmp_path):
    info = media.probe(make_clip(tmp_path / "c.mp4", frames=10))
    a = list(media.iter_frames(info, prefetch=0))
    b = list(media.iter_frames(info, prefetch=3))
    assert len(a) == 10 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_iter_frames_close_early_stops_ffmpeg(tmp_path):
    import threading

    info = media.probe(make_clip(tmp_path / "c.mp4", size="320x240", frames=60))
    before = threading.active_count()
    gen = media.iter_frames(info)
    next(gen)
    gen.close()
    assert threading.active_count() == before  # reader thread joined, ffmpeg killed


@pytest.mark.parametrize("rotation,k", [(90, 1), (-90, 3), (180, 2)])
def test_rotated_clip_comes_out_upright(tmp_path, rotation, k, display_rotated):
    plain = make_clip(tmp_path / "plain.mp4", size="96x64", frames=6)
    rotated = display_rotated(plain, tmp_path / "rot.mp4", rotation)
    info = media.probe(rotated)
    assert info.rotation == (rotation % 360)
    assert (info.width, info.height) == ((64, 96) if k % 2 else (96, 64))
    upright = list(media.iter_frames(info))
    coded = list(media.iter_frames(media.probe(plain)))
    assert len(upright) == 6
    for u, c in zip(upright, coded):
        # ffmpeg rotates before the RGB conversion (chroma siting moves), hence
        # "nearly equal"; the display matrix angle is counter-clockwise, like np.rot90.
        scores = {j: psnr(u, np.ascontiguousarray(np.rot90(c, j))) if np.rot90(c, j).shape == u.shape else 0.0
                  for j in range(4)}
        assert scores[k] > 35 and all(scores[k] > v + 10 for j, v in scores.items() if j != k), scores


def test_vfr_input_keeps_every_frame(tmp_path):
    src = smooth_frames(20, 48, 64)
    vfr = tmp_path / "vfr.mkv"
    # frames 10..19 last three times as long as frames 0..9
    subprocess.run([media.find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                    "-pix_fmt", "rgb24", "-s", "64x48", "-r", "30", "-i", "-",
                    "-vf", "setpts='if(lt(N,10),N,10+(N-10)*3)/30/TB'", "-fps_mode", "passthrough",
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(vfr)],
                   input=b"".join(f.tobytes() for f in src), check=True)
    info = media.probe(vfr)
    assert info.n_frames == 20
    # average rate: 20 frames over 37/30 s + the last frame's duration (1/30…3/30 s, container-dependent)
    assert 20 / (40 / 30) - 0.01 <= float(info.fps) <= 20 / (38 / 30) + 0.01
    frames = list(media.iter_frames(info))
    assert len(frames) == 20  # no duplicates for the slow part, no drops
    for i, (a, b) in enumerate(zip(src, frames)):
        assert psnr(a, b) > 35, i
    out = tmp_path / "cfr.mp4"
    with media.VideoWriter(out, width=info.width, height=info.height, fps=info.fps, preset="ultrafast") as w:
        for f in frames:
            w.write(f)
    got = media.probe(out)
    assert got.n_frames == 20 and float(got.fps) == pytest.approx(float(info.fps), rel=1e-3)


def test_corrupt_stream_mid_decode(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", size="160x120", frames=40, extra=("-movflags", "+faststart"))
    info = media.probe(clip)
    with open(clip, "r+b") as f:  # the file shrinks after probing: ffmpeg hits EOF mid-stream
        f.truncate(clip.stat().st_size * 2 // 3)
    with pytest.raises(InputError) as ei:
        for _ in media.iter_frames(info):
            pass
    assert_user_error(ei, InputError, "c.mp4", "truncated or corrupt", "of 40 frames")


def test_strict_decoding_stops_at_damaged_data(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", size="160x120", frames=30, extra=("-movflags", "+faststart"))
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(3)
    for i in range(len(data) // 3, len(data) - 64, 101):  # scramble payload bytes, keep the index
        data[i] = int(rng.integers(256))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    info = media.probe(bad)
    with pytest.raises(InputError) as ei:
        for _ in media.iter_frames(info, strict=True):
            pass
    assert_user_error(ei, InputError, "bad.mp4", "corrupt")


def test_odd_size_is_padded_by_edge_replication(tmp_path):
    frames = smooth_frames(8, 47, 63)
    out = tmp_path / "odd.mp4"
    with media.VideoWriter(out, width=63, height=47, fps=25, preset="ultrafast") as w:
        for f in frames:
            w.write(f)
    info = media.probe(out)
    assert (info.width, info.height, info.n_frames, info.fps) == (64, 48, 8, Fraction(25))
    back = list(media.iter_frames(info))
    for a, b in zip(frames, back):
        assert psnr(a, b[:47, :63]) > 35
        # padded column/row repeat the last ones (up to coding noise)
        assert np.abs(b[:47, 63].astype(int) - a[:, 62]).mean() < 6
        assert np.abs(b[47, :63].astype(int) - a[46, :]).mean() < 6


def test_audio_reencoded_when_container_cannot_copy(tmp_path):
    src = tmp_path / "pcm.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=frequency=500:duration=1",
           "-frames:v", "25", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s16le", str(src))
    info = media.probe(src)
    assert info.audio_codec == "pcm_s16le"
    out = tmp_path / "o.mp4"
    with media.VideoWriter(out, width=64, height=48, fps=info.fps, audio_from=src, preset="ultrafast") as w:
        for f in media.iter_frames(info):
            w.write(f)
    got = media.probe(out)
    assert got.has_audio and got.audio_codec == "aac" and got.n_frames == 25


def decoded_starts(path: Path) -> dict[str, float]:
    """Presentation time (s) of the first decoded video frame and audio sample, as
    players see them (edit lists and AAC priming applied, timestamps not shifted)."""
    starts = {}
    for kind in ("v", "a"):
        out = subprocess.run([media.find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-copyts", "-i", str(path),
                              "-map", f"0:{kind}:0", "-f", "framecrc", "-"], capture_output=True, text=True, check=True).stdout
        tb = next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("#tb 0:"))
        first = next(ln for ln in out.splitlines() if ln and ln[0] != "#")
        starts[kind] = float(int(first.split(",")[2]) * Fraction(tb))
    return starts


def frames_read_from_a_pipe(path: Path, width: int, height: int) -> int:
    """Frames a reader of ``cat path | ffmpeg -i -`` gets at the stream's constant rate
    (where a late video start turns into duplicated first frames)."""
    with open(path, "rb") as f:
        out = subprocess.run([media.find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-i", "-", "-map", "0:v:0",
                              "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdin=f, capture_output=True, check=True).stdout
    assert len(out) % (width * height * 3) == 0
    return len(out) // (width * height * 3)


def test_stdin_and_stdout_dash(tmp_path):
    """``-`` in and out; the streamed MP4 (x264 with B-frames, AAC audio) starts video
    and audio together at 0 like a file does, and holds exactly the frames written."""
    clip = make_clip(tmp_path / "in.mp4", frames=20, rate="25", audio=True)
    out = tmp_path / "piped.mp4"
    code = """
    import json, sys
    from faceblit_core import media
    with media.spooled_stdin() as p:
        info = media.probe(p)
        frames = list(media.iter_frames(info))
        for target in ("-", sys.argv[1]):
            with media.VideoWriter(target, width=info.width, height=info.height, fps=info.fps, audio_from=info) as w:
                for f in frames:
                    w.write(f)
        spooled = str(p)
    import os
    print(json.dumps({"spooled_left": os.path.exists(spooled)}), file=sys.stderr)
    """
    as_file = tmp_path / "file.mp4"
    with open(clip, "rb") as fin, open(out, "wb") as fout:
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(as_file)], stdin=fin, stdout=fout,
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stderr.strip().splitlines()[-1]) == {"spooled_left": False}
    got = media.probe(out)  # fragmented MP4 from a pipe is a valid file
    assert (got.n_frames, got.width, got.height, got.has_audio) == (20, 64, 48, True)
    assert decoded_starts(as_file) == {"v": 0.0, "a": 0.0}
    assert decoded_starts(out) == {"v": 0.0, "a": 0.0}  # was video 0.08 s (2 frames) after the audio
    assert frames_read_from_a_pipe(out, 64, 48) == 20  # was 22
    assert frames_read_from_a_pipe(as_file, 64, 48) == 20


def test_spool_stdin_from_stream(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=5)
    left_by_a_killed_run = tmp_path / f"faceblit-stdin-{_dead_pid()}-a1b2c3d4"
    left_by_a_killed_run.write_bytes(clip.read_bytes())
    with media.spooled_stdin(tmp_path, stream=io.BytesIO(clip.read_bytes())) as p:
        assert p.parent == tmp_path and media.probe(p).n_frames == 5
    assert not p.exists()
    p2 = media.spool_stdin(tmp_path, stream=io.BytesIO(clip.read_bytes()))
    assert p2.read_bytes() == clip.read_bytes()  # the caller deletes it
    p2.unlink()
    with pytest.raises(InputError) as ei:
        media.spool_stdin(tmp_path, stream=io.BytesIO(b""))
    assert_user_error(ei, InputError, "stdin is empty")
    assert leftovers(tmp_path) == ["in.mp4"]


# ------------------------------------------------------------------------------ writer errors


def _write_some(path, n=3, **kw):
    with media.VideoWriter(path, width=32, height=32, fps=10, preset="ultrafast", **kw) as w:
        for f in smooth_frames(n, 32, 32):
            w.write(f)


def test_writer_encodes_webm_with_vp9_when_asked_for_h264(tmp_path):
    # WebM holds VP8/VP9/AV1 only; the default encoder must not make ffmpeg fail.
    out = tmp_path / "o.webm"
    _write_some(out, n=4)
    info = media.probe(out)
    assert info.video_codec == "vp9" and info.n_frames == 4 and (info.width, info.height) == (32, 32)


def test_writer_refuses_existing_missing_folder_images_and_input(tmp_path):
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputError) as ei:
        _write_some(existing)
    assert_user_error(ei, OutputError, "exists", "--overwrite")
    assert existing.read_bytes() == b"keep me"

    with pytest.raises(OutputError) as ei:
        _write_some(tmp_path / "no" / "such" / "dir" / "o.mp4")
    assert_user_error(ei, OutputError, "does not exist")

    with pytest.raises(OutputError) as ei:
        _write_some(tmp_path / "still.png")
    assert_user_error(ei, OutputError, "image file name", ".mp4")

    with pytest.raises(OutputError) as ei:
        _write_some(tmp_path / "noext")
    assert_user_error(ei, OutputError, "extension")

    clip = make_clip(tmp_path / "in.mp4", audio=True)
    link = tmp_path / "alias.mp4"
    link.symlink_to(clip)
    for target in (clip, link):
        with pytest.raises(OutputError) as ei:
            _write_some(target, audio_from=clip, overwrite=True)
        assert_user_error(ei, OutputError, "same file as the input")
    with pytest.raises(OutputError) as ei:
        _write_some(clip, inputs=[clip], overwrite=True)
    assert_user_error(ei, OutputError, "same file")
    assert leftovers(tmp_path) == ["alias.mp4", "in.mp4", "out.mp4"]

    _write_some(existing, overwrite=True)  # --overwrite replaces atomically
    assert media.probe(existing).n_frames == 3
    assert oct(existing.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_writer_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        code = CHILD_ERR + f"""
import numpy as np
def go():
    with media.VideoWriter({str(folder / 'o.mp4')!r}, width=16, height=16, fps=10) as w:
        w.write(np.zeros((16, 16, 3), np.uint8))
report(go)
"""
        res = run_child(code, obey_modes=True)
        assert res["cls"] == "OutputError" and "not writable" in res["msg"] and "\n" not in res["msg"], res
        assert leftovers(folder) == []
    finally:
        os.chmod(folder, 0o755)


def test_writer_keyboard_interrupt_leaves_nothing(tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(KeyboardInterrupt):
        with media.VideoWriter(out, width=32, height=32, fps=10, preset="ultrafast") as w:
            for f in smooth_frames(5, 32, 32):
                w.write(f)
            assert any(".o.mp4.partial-" in n for n in leftovers(tmp_path))
            raise KeyboardInterrupt
    assert w._proc.poll() is not None  # ffmpeg is gone
    assert leftovers(tmp_path) == []


def test_writer_exception_and_bad_frame_leave_nothing(tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(ValueError, match="frame shape"):
        with media.VideoWriter(out, width=32, height=32, fps=10) as w:
            w.write(np.zeros((32, 31, 3), np.uint8))
    assert leftovers(tmp_path) == []
    with pytest.raises(ProcessingError) as ei:
        with media.VideoWriter(out, width=32, height=32, fps=10):
            pass
    assert_user_error(ei, ProcessingError, "no frames")
    assert leftovers(tmp_path) == []


def test_writer_ffmpeg_failure_is_reported(tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(EnvironmentProblem) as ei:
        _write_some(out, n=2, codec="no_such_encoder")
    assert_user_error(ei, EnvironmentProblem, "no_such_encoder")
    assert leftovers(tmp_path) == []


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare + mount (root) to make a tiny full filesystem")
def test_writer_disk_full(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    code = CHILD_ERR + f"""
import os, numpy as np
folder = {str(folder)!r}
rng = np.random.default_rng(0)
try:
    with media.VideoWriter(os.path.join(folder, "o.mp4"), width=128, height=128, fps=10, preset="ultrafast") as w:
        for _ in range(200):  # noise does not compress: far more than 256 KiB
            w.write(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    res = {{"cls": None, "msg": ""}}
except Exception as e:
    res = {{"cls": type(e).__name__, "msg": str(e)}}
res["left"] = sorted(os.listdir(folder))
print(json.dumps(res))
"""
    script = f"mount -t tmpfs -o size=256k tmpfs {folder} && exec \"$0\" \"$@\""
    res = run_child(code, wrap=["unshare", "-m", "--propagation", "private", "sh", "-c", script])
    assert res["cls"] == "OutputError", res
    assert "disk full" in res["msg"] and "\n" not in res["msg"], res
    assert res["left"] == []


# ------------------------------------------------------------------------------ atomic output


def test_atomic_output_commit_and_abort(tmp_path):
    target = tmp_path / "x.bin"
    with media.atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.bin.partial-") and tmp.suffix == ".bin"
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data" and leftovers(tmp_path) == ["x.bin"]
    with pytest.raises(RuntimeError):
        with media.atomic_output(target, overwrite=True) as tmp:
            tmp.write_bytes(b"new")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"data" and leftovers(tmp_path) == ["x.bin"]
    with pytest.raises(OutputError):
        with media.atomic_output(target):
            pass


def _dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_partial_files_are_removed_and_live_ones_kept(tmp_path):
    """A partial file whose owner is gone goes at the next write into the folder; a live
    run's stays, also when its PID looks dead but it holds the lock (PID namespaces)."""
    import fcntl

    code = "import sys, time\nfrom faceblit_core import media\nwith media.atomic_output(sys.argv[1]) as tmp:\n" \
           "    print(tmp, flush=True)\n    time.sleep(120)\n"
    live = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "live.mp4")], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        live_tmp = Path(live.stdout.readline().strip())
        assert live_tmp.name.startswith(f".live.mp4.partial-{live.pid}-") and live_tmp.exists()
        dead = _dead_pid()
        stale = tmp_path / f".old clip.mp4.partial-{dead}-abcd_f12.mp4"
        held = tmp_path / f".held.mp4.partial-{dead}-qwertyui.mp4"
        unrelated = [tmp_path / f"notes.partial-{dead}-abcdefgh.txt", tmp_path / ".x.mp4.partial-abcdefgh.mp4"]
        for f in (stale, held, *unrelated):
            f.write_bytes(b"x")
        fd = os.open(held, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with media.atomic_output(tmp_path / "new.png") as tmp:
                tmp.write_bytes(b"png")
            assert not stale.exists() and live_tmp.exists() and held.exists() and all(f.exists() for f in unrelated)
        finally:
            os.close(fd)
        live.kill()
        live.wait()
        assert sorted(p.name for p in media.remove_stale_temporaries(tmp_path)) == sorted([live_tmp.name, held.name])
        assert leftovers(tmp_path) == sorted(["new.png", *(f.name for f in unrelated)])
    finally:
        live.kill()
        live.wait()


# ------------------------------------------------------------------------------ still images


def test_image_in_image_out(shared_data, tmp_path):
    src = shared_data / "images" / "s1.jpg"
    rgb = media.read_image(src)
    assert rgb.shape == (1145, 1145, 3) and rgb.dtype == np.uint8
    info = media.probe(src)
    (frame,) = list(media.iter_frames(info))
    assert np.array_equal(frame, rgb)
    for ext, min_db in ((".png", np.inf), (".jpg", 35.0), (".webp", 30.0)):
        out = tmp_path / f"o{ext}"
        media.write_image(out, rgb)
        back = media.read_image(out)
        assert back.shape == rgb.shape
        assert psnr(back, rgb) >= min_db
        assert media.probe(out).is_image
    assert leftovers(tmp_path) == ["o.jpg", "o.png", "o.webp"]
    with pytest.raises(OutputError) as ei:
        media.write_image(tmp_path / "o.png", rgb)
    assert_user_error(ei, OutputError, "exists", "--overwrite")
    with pytest.raises(OutputError) as ei:
        media.write_image(tmp_path / "o.mp4", rgb)
    assert_user_error(ei, OutputError, "image extension")
    with pytest.raises(OutputError) as ei:
        media.write_image(tmp_path / "missing" / "o.png", rgb)
    assert_user_error(ei, OutputError, "does not exist")
    assert leftovers(tmp_path) == ["o.jpg", "o.png", "o.webp"]


def test_write_image_writes_every_listed_format(tmp_path):
    """One list of image formats (media.IMAGE_EXTENSIONS): each is written in its format and
    read back; anything else is refused naming the path and the list."""
    rgb = smooth_frames(1, 30, 41)[0]
    lossless = {".png", ".bmp", ".tif", ".tiff"}
    assert lossless < set(media.IMAGE_EXTENSIONS) and {".jpg", ".jpeg", ".webp"} < set(media.IMAGE_EXTENSIONS)
    for ext in media.IMAGE_EXTENSIONS:
        out = tmp_path / f"o{ext.upper() if ext == '.tif' else ext}"
        media.write_image(out, rgb)
        back = media.read_image(out)
        assert np.array_equal(back, rgb) if ext in lossless else psnr(back, rgb) > 30, ext
        info = media.probe(out)
        assert info.is_image and (info.width, info.height) == (41, 30), ext
        assert media.is_image_path(out)
    with pytest.raises(OutputError) as ei:
        media.write_image(tmp_path / "o.gif", rgb)
    assert_user_error(ei, OutputError, "o.gif", "not an image extension", ".bmp", ".tiff")
    with pytest.raises(OutputError) as ei:
        media.check_output(tmp_path / "o.gif", image=True)
    assert_user_error(ei, OutputError, "o.gif", "not an image extension")
    assert len(leftovers(tmp_path)) == len(media.IMAGE_EXTENSIONS)


def test_read_image_conversions(tmp_path):
    import cv2

    rgb = smooth_frames(1, 40, 60)[0]
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "gray.png"), rgb[:, :, 1])
    g = media.read_image(tmp_path / "gray.png")
    assert g.shape == (40, 60, 3) and np.array_equal(g[:, :, 0], rgb[:, :, 1]) and np.array_equal(g[:, :, 2], rgb[:, :, 1])
    bgra = np.dstack([bgr, np.zeros((40, 60), np.uint8)])  # fully transparent: colour must survive
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    assert np.array_equal(media.read_image(tmp_path / "rgba.png"), rgb)
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257 + 3)
    assert np.array_equal(media.read_image(tmp_path / "deep.png"), rgb)


def test_read_image_cmyk_and_exif_orientation(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rgb = smooth_frames(1, 40, 60)[0]
    im = Image.fromarray(rgb)
    im.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    cmyk = media.read_image(tmp_path / "cmyk.jpg")
    assert cmyk.shape == (40, 60, 3) and psnr(cmyk, rgb) > 25
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    im.save(tmp_path / "exif6.jpg", exif=exif, quality=98)
    upright = media.read_image(tmp_path / "exif6.jpg")
    assert upright.shape == (60, 40, 3)
    assert psnr(upright, np.ascontiguousarray(np.rot90(rgb, -1))) > 30
    info = media.probe(tmp_path / "exif6.jpg")
    assert (info.width, info.height) == (40, 60)


def test_read_image_errors(tmp_path):
    with pytest.raises(InputError) as ei:
        media.read_image(tmp_path / "nope.png")
    assert_user_error(ei, InputError, "nope.png", "no such file")
    (tmp_path / "fake.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(InputError) as ei:
        media.read_image(tmp_path / "fake.png")
    assert_user_error(ei, InputError, "fake.png", "not an image")
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(InputError) as ei:
        media.read_image(tmp_path / "zero.jpg")
    assert_user_error(ei, InputError, "empty")
    with pytest.raises(InputError) as ei:
        media.read_image(tmp_path)
    assert_user_error(ei, InputError, "directory")


def test_errors_have_documented_exit_codes():
    assert InputError("x").exit_code == 3 and OutputError("x").exit_code == 5
    assert issubclass(InputError, FaceblitError)
