"""--engine ray on a real local Ray instance (2 CPUs): same frames as the local engine, a batch, a worker killed
mid-chunk, bad input; one progress bar fed by the frames the tasks report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from faceblit_core import batch, chunks, media, ray_engine
from faceblit_core.config import StylizeConfig
from faceblit_core.errors import EnvironmentProblem
from faceblit_core.batch import stylize_batch
from faceblit_core.pipeline import stylize_video
from faceblit_core.setup import FrameProgress

ray = pytest.importorskip("ray", reason="Ray is installed by the dev extra (make test); pip install 'faceblit[ray]'")

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "clip.mp4"
STYLE = REPO / "samples" / "exemplar.png"
CHUNKED = {"chunk_seconds": 1.0, "chunk_warmup": 10, "frames": (0, 50)}  # 2 chunks of 25 frames


@pytest.fixture(scope="module")
def cache(style_cache) -> Path:
    return style_cache  # the session's (conftest): the exemplar is prepared once for every module


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (its start-up costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(media.iter_frames(media.probe(path))))


class Recorder(FrameProgress):
    """A progress bar that is always "shown" and records what it is told (stderr is no terminal under pytest)."""

    made: list["Recorder"] = []

    def __init__(self, label: str = "test", enabled: bool = True) -> None:
        super().__init__(label, enabled=False)
        self.total, self.updates, self.lock = 0, [], threading.Lock()
        Recorder.made.append(self)

    shown = property(lambda self: True)

    def add(self, frames, done=0):
        with self.lock:
            self.total += frames
            if done:
                self.updates.append(done)

    def update(self, frames=1):
        with self.lock:
            self.updates.append(frames)


def test_ray_chunks_give_the_frames_of_the_local_engine(local_ray, tmp_path, cache):
    local, remote = tmp_path / "local.mp4", tmp_path / "ray.mp4"
    stylize_video(CLIP, STYLE, local, cache_dir=cache, progress=False, **CHUNKED)
    summary = stylize_video(CLIP, STYLE, remote, cache_dir=cache, progress=False, engine="ray", **CHUNKED)
    assert (summary.chunks, summary.frames) == (2, 50)
    assert np.array_equal(_frames(remote), _frames(local))
    info = media.probe(remote)
    assert info.has_audio and info.duration == pytest.approx(2.0, abs=0.1)
    assert not chunks.work_dir_for(remote).exists()


def test_a_batch_spreads_its_files_over_the_workers(local_ray, tmp_path, cache, monkeypatch):
    inputs = []
    for name in "abcd":
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(CLIP.read_bytes())
        inputs.append(str(path))
    out = tmp_path / "out"
    out.mkdir()
    Recorder.made.clear()
    monkeypatch.setattr(batch, "FrameProgress", Recorder)
    summaries, failures = stylize_batch(inputs, str(STYLE), out_dir=out, cache_dir=cache, progress=True, engine="ray",
                                        frames=(0, 8), chunk_seconds=10)
    assert not failures and len(summaries) == 4
    # ONE bar over the frames of all four files, fed by every file's tasks
    [bar] = Recorder.made
    assert bar.label == "4 inputs" and bar.total == 32 and sum(bar.updates) == 32 and min(bar.updates) > 0
    expected = _frames_of_local_render(tmp_path, cache)
    for name in "abcd":
        assert np.array_equal(_frames(out / f"{name}-exemplar.mp4"), expected)
    assert sorted(p.name for p in out.iterdir()) == [f"{n}-exemplar.mp4" for n in "abcd"]  # no work folders left


def _frames_of_local_render(tmp_path: Path, cache: Path) -> np.ndarray:
    ref = tmp_path / "ref.mp4"
    stylize_video(CLIP, STYLE, ref, cache_dir=cache, progress=False, frames=(0, 8))
    return _frames(ref)


def test_cuda_on_a_cluster_without_gpu_fails_before_writing(local_ray, tmp_path, cache):
    out = tmp_path / "out.mp4"
    with pytest.raises(EnvironmentProblem, match="the Ray cluster has no GPU") as err:
        stylize_video(CLIP, STYLE, out, config=StylizeConfig(device="cuda"), cache_dir=cache, progress=False, engine="ray", **CHUNKED)
    assert err.value.exit_code == 6
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("case", ["unreachable", "not installed"])
def test_ray_problems_are_one_line_exit_6_and_nothing_written(case, tmp_path):
    out = tmp_path / "out.mp4"
    argv = ["faceblit", "stylize", str(CLIP), "--style", str(STYLE), "-o", str(out), "--engine", "ray", "--frames", "0:5"]
    if case == "unreachable":
        argv += ["--ray-address", "127.0.0.1:1"]  # nothing listens on port 1
    hide = "sys.modules['ray'] = None; " if case == "not installed" else ""
    code = f"import sys; {hide}from cli.main import main; sys.argv = {argv!r}; main()"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 6, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceblit: error: ")
    assert ("cannot reach a Ray cluster" if case == "unreachable" else "Ray is not installed") in lines[0]
    assert not list(tmp_path.iterdir())


def _running_chunk_tasks() -> list[int]:
    """PIDs of Ray workers running a chunk now (Ray names a busy worker's process ``ray::TASK``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::_render_chunk_task"):
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc (Linux)")
def test_a_worker_killed_mid_chunk_is_retried_and_the_output_is_complete(local_ray, tmp_path, cache):
    local, remote = tmp_path / "local.mp4", tmp_path / "ray.mp4"
    stylize_video(CLIP, STYLE, local, cache_dir=cache, progress=False, **CHUNKED)
    result: dict = {}
    bar = Recorder()

    def render() -> None:
        try:
            result["summary"] = stylize_video(CLIP, STYLE, remote, cache_dir=cache, progress=bar, engine="ray", **CHUNKED)
        except BaseException as exc:  # reported by the assertions below
            result["error"] = exc

    thread = threading.Thread(target=render)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        pids = _running_chunk_tasks()
        if pids:
            time.sleep(1.0)  # well into the chunk: the kill loses work that must be redone
            if pids[0] in _running_chunk_tasks():  # still on that chunk
                try:
                    os.kill(pids[0], signal.SIGKILL)
                    killed = pids[0]
                except ProcessLookupError:
                    pass
        time.sleep(0.05)
    thread.join(timeout=600)
    assert killed is not None, "no chunk task was seen running"
    assert "error" not in result, result.get("error")
    assert result["summary"].chunks == 2
    assert np.array_equal(_frames(remote), _frames(local))  # the retried chunk is the same chunk
    # The retried chunk counts its frames from 0 again: the bar waits for it, never goes back, ends exact.
    assert bar.total == 50 and sum(bar.updates) == 50 and min(bar.updates) > 0
    assert not chunks.work_dir_for(remote).exists()
    # The killed worker's temporary folder (a copy of the input) was swept by the task that ran next.
    left = [p for p in Path(tempfile.gettempdir()).glob(f"{ray_engine.CHUNK_FOLDER_PREFIX}{killed}-*")]
    assert not left, left


def test_stale_chunk_folders_of_dead_workers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    gone = tmp_path / f"{ray_engine.CHUNK_FOLDER_PREFIX}{dead.stdout.strip()}-abc"
    live = tmp_path / f"{ray_engine.CHUNK_FOLDER_PREFIX}{os.getpid()}-def"
    other = tmp_path / "faceblit-chunky"
    for folder in (gone, live, other):
        folder.mkdir()
        (folder / "input.mp4").write_bytes(b"x")
    assert ray_engine.remove_stale_chunk_folders(str(tmp_path)) == [str(gone)]
    assert not gone.exists() and live.exists() and other.exists()


def test_one_bar_moves_with_the_frames_the_tasks_report(local_ray, tmp_path, cache, monkeypatch):
    """The tasks report their frames while they render (not only when a chunk is done), and
    only while a bar is shown: with -q, --json on a pipe or no terminal no actor is made."""
    monkeypatch.setattr(ray_engine, "PROGRESS_INTERVAL", 0.05)  # reports well within a chunk's frames
    quiet = FrameProgress("quiet", enabled=True)
    assert not quiet.shown  # stderr is no terminal under pytest: no bar, as tqdm(disable=None) decides
    stylize_video(CLIP, STYLE, tmp_path / "quiet.mp4", cache_dir=cache, progress=quiet, engine="ray", frames=(0, 3))
    assert quiet not in ray_engine._counters  # no actor for a bar nobody sees

    bar = Recorder()
    summary = stylize_video(CLIP, STYLE, tmp_path / "shown.mp4", cache_dir=cache, progress=bar, engine="ray",
                            frames=(0, 20), chunk_seconds=0.4, chunk_warmup=2)  # 2 chunks of 10 frames
    assert (summary.chunks, summary.frames) == (2, 20)
    print(f"bar updates (2 chunks of 10 frames): {bar.updates}")
    assert bar.total == 20 and sum(bar.updates) == 20 and min(bar.updates) > 0
    # per chunk, the bar would move twice by 10; the tasks' reports move it by parts of a chunk
    assert len(bar.updates) > 2 and min(bar.updates) < 10, bar.updates
    assert bar in ray_engine._counters  # the actor the tasks reported to
