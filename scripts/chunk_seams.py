"""Seams of chunked rendering: a chunked render against a one-piece render of the same clip.

Prints ``key=value`` lines:

* ``psnr_min``, ``psnr_median``, ``psnr_boundary_min`` — per-frame PSNR (dB) of the
  chunked render against the one-piece render (decoded frames, so both encodes'
  losses are included; ``inf`` = identical); ``boundary`` = the first frame of each
  chunk but the first and the frame before it;
* with ``--reference LOSSLESS.mp4`` (a one-piece render with ``--crf 0``): each render's
  per-frame PSNR against it (``ref_one_piece_*``, ``ref_chunked_*``: what the encoder
  lost, for scale);
* ``warp_boundary``, ``warp_median``, ``warp_boundary_ratio`` — the chunked output's
  warping error (faceblit_core.evaluation.warp_errors, RGB in [0, 1], over the face)
  of each frame pair (t−1, t): at the chunk boundaries vs the median of all other pairs;
* with ``--kill-at F``: the time of a CLI run SIGKILLed 5 s after a fraction F of its
  chunks (rounded down, at least one) was recorded in the work folder, the time of its rerun (``--resume``, the default),
  the chunks the rerun rendered, and whether its decoded frames equal the uninterrupted
  chunked render's.

The one-piece render is written to standard output with the same ``--chunk-seconds``
(a render to stdout is never chunked), so both have the same key-frame grid.

Usage: ``python scripts/chunk_seams.py IN.mp4 --style S.png [--chunk-seconds 10]
[--chunk-warmup 120] [--frames A:B] [--reference LOSSLESS.mp4] [--kill-at 0.7] [--out DIR]
[stylize options…]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceblit_core import chunks, media  # noqa: E402
from faceblit_core.evaluation import warp_errors  # noqa: E402
from faceblit_core.faces import get_backend  # noqa: E402
from faceblit_core.geometry import Region  # noqa: E402
from faceblit_core.guides.mask import face_mask  # noqa: E402
from faceblit_core.pipeline import parse_frame_range  # noqa: E402
from faceblit_core.quality import psnr  # noqa: E402


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "cli.main", "stylize", *args]


def _frames(path: Path) -> list[np.ndarray]:
    return list(media.iter_frames(media.probe(path)))


def _run(cmd: list[str], stdout_to: Path | None = None) -> float:
    t = time.perf_counter()
    with open(stdout_to, "wb") if stdout_to is not None else open(os.devnull, "wb") as sink:
        subprocess.run(cmd, cwd=REPO, check=True, stdout=sink)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--style", required=True)
    ap.add_argument("--chunk-seconds", type=float, default=10.0)
    ap.add_argument("--chunk-warmup", type=int, default=chunks.DEFAULT_WARMUP)
    ap.add_argument("--frames", default=None)
    ap.add_argument("--kill-at", type=float, default=None)
    ap.add_argument("--reference", default=None, help="a lossless (--crf 0) one-piece render of the same options")
    ap.add_argument("--out", default="out/chunk_seams")
    a, extra = ap.parse_known_args()  # the rest goes to faceblit stylize (tunables)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [a.input, "--style", a.style, "-q", "-y", *extra] + (["--frames", a.frames] if a.frames else [])
    chunking = ["--chunk-seconds", str(a.chunk_seconds), "--chunk-warmup", str(a.chunk_warmup)]
    whole, chunked = out / "whole.mp4", out / "chunked.mp4"
    one_piece = common + ["-o", "-", "--chunk-seconds", str(a.chunk_seconds)]
    print(f"time_one_piece_s={_run(_cli(one_piece), stdout_to=whole):.1f}", flush=True)
    print(f"time_chunked_s={_run(_cli(common + ['-o', str(chunked)] + chunking)):.1f}", flush=True)

    info = media.probe(a.input)
    start, end = parse_frame_range(a.frames) if a.frames else (0, None)
    end = info.n_frames if end is None else min(end, info.n_frames)
    plan = chunks.plan_chunks(start, end, fps=float(info.fps), chunk_seconds=a.chunk_seconds)
    seams = [s - start for s, _ in plan[1:]]
    print(f"frames={end - start} chunks={len(plan)} boundaries={','.join(map(str, seams))}")
    src = list(media.iter_frames(info, start=start, end=end))
    one, two = _frames(whole), _frames(chunked)
    assert len(one) == len(two) == len(src), (len(one), len(two), len(src))
    values = np.array([psnr(x, y) for x, y in zip(one, two)])
    at_seams = [values[i] for s in seams for i in (s - 1, s)]
    print(f"psnr_min={values.min():.2f} psnr_median={np.median(values):.2f} psnr_boundary_min={min(at_seams) if at_seams else float('inf'):.2f}")
    per_seam = " ".join(f"{s}:{values[s - 1]:.2f}/{values[s]:.2f}" for s in seams)
    print(f"psnr_at_boundaries={per_seam.replace(' ', ',')}")
    if a.reference:
        ref = _frames(Path(a.reference))
        assert len(ref) == len(src), (len(ref), len(src))
        for name, frames in (("one_piece", one), ("chunked", two)):
            v = np.array([psnr(x, y) for x, y in zip(frames, ref)])
            print(f"ref_{name}_min={v.min():.2f} ref_{name}_median={np.median(v):.2f} "
                  f"ref_{name}_at_boundaries={','.join(f'{s}:{v[s - 1]:.2f}/{v[s]:.2f}' for s in seams)}")

    backend = get_backend("dlib", cnn_fallback=False)
    masks = []
    for frame in src:
        mask = np.zeros(frame.shape[:2], np.float32)
        full = Region(0, 0, frame.shape[1], frame.shape[0])
        for face in backend.detect(frame):
            np.maximum(mask, face_mask(frame, face.points, region=full, feather=20), out=mask)
        masks.append(mask)
    pair = np.array([warp_errors(src[t - 1 : t + 1], two[t - 1 : t + 1], masks[t - 1 : t + 1]).output for t in range(1, len(src))])
    boundary = [pair[s - 1] for s in seams]
    others = np.delete(pair, [s - 1 for s in seams])
    others = others[np.isfinite(others)]
    med = float(np.median(others))
    worst = max(boundary) if boundary else float("nan")
    print(f"warp_boundary={','.join(f'{b:.5f}' for b in boundary)} warp_median={med:.5f} warp_boundary_ratio={worst / med:.3f}")
    # The one-piece render's own error at the same pairs, for scale.
    pair1 = [warp_errors(src[s - 1 : s + 1], one[s - 1 : s + 1], masks[s - 1 : s + 1]).output for s in seams]
    print(f"warp_one_piece_at_boundaries={','.join(f'{b:.5f}' for b in pair1)}")

    if a.kill_at is not None:
        killed = out / "killed.mp4"
        cmd = _cli(common + ["-o", str(killed)] + chunking)
        manifest = chunks.work_dir_for(killed) / "manifest.json"
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, start_new_session=True)
        # Killed KILL_AT of the chunks in (rounded down, at least one), a few seconds into the next one.
        wanted = max(1, int(a.kill_at * len(plan)))
        done = 0
        while proc.poll() is None:
            try:
                recorded = json.loads(manifest.read_text())["chunks"]
            except (OSError, ValueError, KeyError):
                recorded = {}
            done = sum(r["frames"] for r in recorded.values())
            if len(recorded) >= wanted:
                time.sleep(5.0)
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"time_killed_run_s={time.perf_counter() - t:.1f} recorded_frames_at_kill={done}")
        t = time.perf_counter()
        res = subprocess.run(cmd + ["--json"], cwd=REPO, check=True, capture_output=True, text=True)
        record = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"time_resumed_run_s={time.perf_counter() - t:.1f} chunks={record['chunks']} resumed_chunks={record['resumed_chunks']} "
              f"rendered_chunks={record['chunks'] - record['resumed_chunks']}")
        same = all(np.array_equal(x, y) for x, y in zip(_frames(killed), two))
        print(f"resumed_equals_uninterrupted={int(same)}")


if __name__ == "__main__":
    main()
