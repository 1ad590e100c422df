"""Chunked, resumable rendering (faceblit_core.chunks): plan, manifest, resume, corrupt chunks, the lock, SIGKILL."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faceblit_core import chunks, media, temporal_state
from faceblit_core.config import StylizeConfig
from faceblit_core.errors import OutputError
from faceblit_core.pipeline import stylize_video
from faceblit_core.quality import psnr
from faceblit_core.setup import FrameProgress, make_backend
from faceblit_core.style import prepare_style
from faceblit_core.summary import RunSummary
from faceblit_core.stylizer import FrameStylizer

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "clip.mp4"  # 75 frames, 25 fps: chunk_seconds=1 gives 3 chunks of 25
STYLE = REPO / "samples" / "exemplar.png"
CHUNKED = {"chunk_seconds": 1.0, "chunk_warmup": 10}


@pytest.fixture(scope="module")
def cache(style_cache) -> Path:
    return style_cache  # the session's (conftest): the exemplar is prepared once for every module


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cache) -> tuple[Path, RunSummary]:
    """An uninterrupted chunked render of the sample clip (3 chunks) and its run summary."""
    out = tmp_path_factory.mktemp("ref") / "ref.mp4"
    summary = stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, **CHUNKED)
    assert (summary.chunks, summary.resumed_chunks, summary.frames) == (3, 0, 75)
    return out, summary


@pytest.fixture(scope="module")
def reference(reference_run) -> Path:
    """The output of :func:`reference_run`."""
    return reference_run[0]


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(media.iter_frames(media.probe(path))))


def _key_frames(path: Path) -> list[int]:
    """Indices of the key frames of a video (decoded by the product's ffmpeg, ``showinfo``)."""
    log = subprocess.run([media.find_ffmpeg(), "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    flags = [int(key) for key in re.findall(r"\bn:\s*\d+\s.*?\biskey:(\d)", log)]
    assert flags, log[-500:]
    return [i for i, key in enumerate(flags) if key]


def _crash_in_concat(monkeypatch) -> None:
    """Make the join fail: the render stops with every chunk finished in the work folder."""

    def fail(*args, **kwargs):
        raise RuntimeError("simulated crash before the join")

    monkeypatch.setattr(chunks, "concat_chunks", fail)


def test_plan_cuts_only_on_the_key_frame_grid():
    # d6: 1008 frames at 30 fps, 10-s chunks: the grid is every 300 frames; the last 108 join the third chunk.
    assert chunks.key_interval(30, 10) == 300 and chunks.key_interval(29.97, 0) == 300  # 0 (one piece): the default grid
    assert chunks.plan_chunks(0, 1008, fps=30, chunk_seconds=10) == [(0, 300), (300, 600), (600, 1008)]
    assert chunks.plan_chunks(0, 1050, fps=30, chunk_seconds=10) == [(0, 300), (300, 600), (600, 900), (900, 1050)]
    # A range (--frames) is cut on the same absolute grid; a head shorter than half a chunk joins the next one.
    assert chunks.plan_chunks(290, 1008, fps=30, chunk_seconds=10) == [(290, 600), (600, 1008)]
    assert chunks.plan_chunks(140, 460, fps=30, chunk_seconds=10) == [(140, 300), (300, 460)]
    for start, end, seconds in [(0, 75, 1), (10, 75, 1), (0, 449, 10), (7, 1000, 2.5), (123, 9999, 3)]:
        plan = chunks.plan_chunks(start, end, fps=25, chunk_seconds=seconds)
        grid = chunks.key_interval(25, seconds)
        assert plan[0][0] == start and plan[-1][1] == end and all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
        assert all(s % grid == 0 for s, _ in plan[1:])
        assert len(plan) == 1 or all(grid / 2 <= e - s < 1.5 * grid for s, e in plan)
    assert chunks.plan_chunks(5, 30, fps=25, chunk_seconds=10) == [(5, 30)]
    assert chunks.plan_chunks(0, 100, fps=25, chunk_seconds=0) == [(0, 100)]
    # Every schedule counts absolute frames: the warm-up needs no rounding to a detection frame.
    assert chunks.warmup_start(336, 30) == 306 and chunks.warmup_start(20, 30) == 0
    assert chunks.warmup_start(0, 30) == 0 and chunks.warmup_start(50, 0) == 50
    assert chunks.DEFAULT_WARMUP >= temporal_state.MEMORY_FRAMES


def test_the_writer_puts_key_frames_on_the_absolute_grid(tmp_path):
    # 60 frames that start at frame 10 of a clip, grid 25: key frames at clip frames 25 and 50
    # (and the first one), whatever the content; at most 25 frames apart.
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = tmp_path / "grid.mp4"
    with media.open_video_writer(out, width=64, height=48, fps=25, key_frames=(25, 10)) as writer:
        for i in range(60):
            writer.write(np.roll(base, i, axis=1))
    assert _key_frames(out) == [0, 15, 40]


def test_chunked_and_one_piece_renders_have_the_same_key_frames(reference, tmp_path, cache, capfdbinary):
    # The sample clip, 1-s chunks (25 frames): every chunk starts on a key frame of the one-piece
    # render of the same options (here written to stdout, which renders in one piece).
    assert _key_frames(reference) == [0, 25, 50]
    stylize_video(CLIP, STYLE, "-", cache_dir=cache, progress=False, chunk_seconds=1.0)
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(capfdbinary.readouterr().out)
    assert _key_frames(whole) == [0, 25, 50]
    # A range starting off the grid: the grid stays on the clip's frame indices (frames 25 and 50).
    part = tmp_path / "part.mp4"
    summary = stylize_video(CLIP, STYLE, part, cache_dir=cache, progress=False, frames=(10, 75), **CHUNKED)
    assert summary.chunks == 3 and _key_frames(part) == [0, 15, 40]


def test_chunked_render_joins_frames_and_audio_and_leaves_no_work_folder(reference_run, tmp_path, cache):
    reference, chunked = reference_run
    src, out = media.probe(CLIP), media.probe(reference)
    assert (out.n_frames, out.fps, out.width, out.height, out.has_audio) == (75, src.fps, src.width, src.height, True)
    assert out.duration == pytest.approx(src.duration, abs=0.1)
    assert not chunks.work_dir_for(reference).exists()
    # Each chunk starts from a warm state: near a one-piece render everywhere, also at the seams (frames 25, 50).
    whole = tmp_path / "whole.mp4"
    one_piece = stylize_video(CLIP, STYLE, whole, cache_dir=cache, progress=False, chunk_seconds=0)
    a, b = _frames(reference), _frames(whole)
    values = [psnr(x, y) for x, y in zip(a, b)]
    assert min(values) > 30, values  # keep_previous and the temporal guide remember more than the warm-up (README)
    # The run summary counts the chunks' own frames, as the one-piece render counts them
    # (the summaries of the two renders above: rendering them again gave the same counts).
    counts = lambda s: (s.frames_stylized, s.frames_faded, s.frames_unchanged, s.fade_reasons)  # noqa: E731
    assert chunked.chunks == 3 and sum(counts(chunked)[:3]) == 75
    assert counts(chunked) == counts(one_piece)


def test_resume_reuses_finished_chunks_and_gives_the_same_frames(reference, tmp_path, cache, monkeypatch):
    out = tmp_path / "out.mp4"
    with monkeypatch.context() as m:
        _crash_in_concat(m)
        with pytest.raises(RuntimeError):
            stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, **CHUNKED)
    work = chunks.work_dir_for(out)
    assert not out.exists() and len(json.loads((work / "manifest.json").read_text())["chunks"]) == 3
    # A truncated chunk is rendered again, the others are reused.
    chunk = work / "chunk-0001.mp4"
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    summary = stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, **CHUNKED)
    assert (summary.chunks, summary.resumed_chunks, summary.frames) == (3, 2, 75)
    assert np.array_equal(_frames(out), _frames(reference))
    assert not work.exists()


def test_a_one_piece_render_removes_an_earlier_runs_work_folder(tmp_path, cache, monkeypatch):
    # A chunked render crashes before the join (its chunks stay in the work folder); the
    # same output is then rendered in one piece: the stale folder goes with it.
    out = tmp_path / "o.mp4"
    _crash_in_concat(monkeypatch)
    with pytest.raises(RuntimeError):
        stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, **CHUNKED)
    monkeypatch.undo()
    work = chunks.work_dir_for(out)
    assert any(work.glob("chunk-*"))
    stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, frames=(0, 5), chunk_seconds=0)
    assert out.exists() and not work.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
    # A folder another run holds (locked) is left alone.
    work.mkdir()
    fd = os.open(work / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert not chunks.discard_work_folder(out) and work.is_dir()
    finally:
        os.close(fd)
    assert chunks.discard_work_folder(out) and not work.exists()


@pytest.mark.parametrize("change", ["option", "style", "input"])
def test_a_stale_work_folder_is_never_reused(change, tmp_path, cache, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(CLIP.read_bytes())
    out = tmp_path / "out.mp4"
    with monkeypatch.context() as m:
        _crash_in_concat(m)
        with pytest.raises(RuntimeError):
            stylize_video(clip, STYLE, out, cache_dir=cache, progress=False, frames=(0, 50), **CHUNKED)
    config, style = StylizeConfig(), STYLE
    if change == "option":
        config = StylizeConfig(seed=3)
    elif change == "style":
        style = tmp_path / "style.png"
        style.write_bytes(STYLE.read_bytes())
        (tmp_path / "style.lm.txt").write_text((REPO / "samples" / "exemplar.lm.txt").read_text())
        config = StylizeConfig(style_max_side=400)  # another asset key
    else:
        data = bytearray(clip.read_bytes())
        clip.write_bytes(bytes(data))  # same bytes, but written again: another mtime
        os.utime(clip, ns=(time.time_ns(), time.time_ns() + 10**9))
    summary = stylize_video(clip, style, out, config=config, cache_dir=cache, progress=False, frames=(0, 50), **CHUNKED)
    assert (summary.chunks, summary.resumed_chunks, summary.frames) == (2, 0, 50)
    assert not chunks.work_dir_for(out).exists()


def test_no_resume_starts_afresh_and_resume_without_work_folder_is_a_normal_render(tmp_path, cache, monkeypatch):
    out = tmp_path / "out.mp4"
    with monkeypatch.context() as m:
        _crash_in_concat(m)
        with pytest.raises(RuntimeError):
            stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, frames=(0, 50), **CHUNKED)
    summary = stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, frames=(0, 50), resume=False, **CHUNKED)
    assert summary.resumed_chunks == 0 and media.probe(out).n_frames == 50
    summary = stylize_video(CLIP, STYLE, tmp_path / "b.mp4", cache_dir=cache, progress=False, frames=(0, 50), resume=True, **CHUNKED)
    assert summary.resumed_chunks == 0 and media.probe(tmp_path / "b.mp4").n_frames == 50


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_the_lock(tmp_path, cache):
    out = tmp_path / "out.mp4"
    with chunks.WorkFolder.open(out, {"held": "by another run"}):
        with pytest.raises(OutputError, match="another faceblit run is rendering this output"):
            stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, frames=(0, 50), **CHUNKED)
        assert not out.exists()
    # The other run's folder (another key) is then reset, not reused.
    summary = stylize_video(CLIP, STYLE, out, cache_dir=cache, progress=False, frames=(0, 50), **CHUNKED)
    assert summary.resumed_chunks == 0 and not chunks.work_dir_for(out).exists()


def test_sigkill_then_rerun_renders_only_the_missing_chunks(reference, tmp_path, cache):
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "cli.main", "stylize", str(CLIP), "--style", str(STYLE), "-o", str(out), "--cache-dir", str(cache),
           "--chunk-seconds", "1", "--chunk-warmup", "10", "-q", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    manifest = chunks.work_dir_for(out) / "manifest.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # kill once 2 of 3 chunks are recorded (~70 %)
            try:
                if len(json.loads(manifest.read_text())["chunks"]) >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not out.exists()
    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    record = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert record["chunks"] == 3 and record["resumed_chunks"] == 2
    assert np.array_equal(_frames(out), _frames(reference))
    assert not chunks.work_dir_for(out).exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "out.mp4"]  # no partial files left


def test_a_render_started_mid_clip_with_the_default_warmup_equals_the_one_piece_render(shared_data, cache):
    # Issue 15, no seams: frame t of a render started DEFAULT_WARMUP frames before a chunk's
    # first frame s equals frame t of a render from frame 0 (default options: tracking,
    # smoothing, flow-carried guide, kept NNF and temporal guide all on). In memory,
    # so the encoder's losses do not enter the comparison.
    config = StylizeConfig()
    asset = prepare_style(shared_data / "styles" / "het_480x640.png", config=config, cache_dir=cache)
    info = media.probe(shared_data / "videos" / "d18.mp4")
    start, end = chunks.DEFAULT_WARMUP + 20, chunks.DEFAULT_WARMUP + 50
    frames = list(media.iter_frames(info, start=0, end=end))
    backend = make_backend(config, None, "cpu", video=True)

    def render(first: int, last: int = end) -> dict[int, np.ndarray]:
        stylizer = FrameStylizer(asset, config, fps=float(info.fps), backend=backend, device="cpu")
        stylizer.start_at(first)
        return {t: stylizer(frames[t])[0] for t in range(first, last)}

    whole = render(0)
    chunk = render(chunks.warmup_start(start, chunks.DEFAULT_WARMUP))
    values = [psnr(chunk[t], whole[t]) for t in range(start, end)]
    assert min(values) >= 40.0, values
    # ... which the warm-up achieves: without it the first frame is far off.
    cold = render(start, start + 1)  # only its first frame is compared
    assert psnr(cold[start], whole[start]) < 35.0


def test_frame_progress_is_one_bar_that_several_renders_feed(monkeypatch):
    """FrameProgress (the bar of a render, shared by the renders of a batch on Ray): the total is
    the sum of what each render adds, frames done before count at once, lines printed inside
    printing() do not tear it; no bar with -q (enabled=False) or when stderr is no terminal."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    bar = FrameProgress("2 inputs")
    assert bar.shown
    bar.add(10)
    bar.add(5, done=2)  # a resumed render: 2 of its frames were finished before
    for _ in range(13):
        bar.update()
    assert (bar._bar.n, bar._bar.total) == (15, 15)
    with bar.printing():
        sys.stderr.write("a.mp4: 10 frame(s)\n")
    bar.close()
    text = err.getvalue()
    bar.add(7)  # a render of a stopped batch, still starting: no new bar after close()
    bar.update(7)
    assert err.getvalue() == text
    assert "| 0/15 [" in text and "| 15/15 [" in text  # one bar, its total the sum of both renders'
    # the bar's line is blanked before the summary line is printed, then drawn again below it
    assert re.search(r"\r +\ra\.mp4: 10 frame\(s\)\n\r2 inputs", text), repr(text)

    quiet = FrameProgress("q", enabled=False)
    quiet.add(5)
    quiet.update(5)
    assert not quiet.shown and "q:" not in err.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file or a pipe
    piped = FrameProgress("p")
    assert not piped.shown
    piped.add(3)
    piped.update(3)
    assert not piped.shown and sys.stderr.getvalue() == ""
