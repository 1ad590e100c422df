"""Peak memory of a 1920×1080 render at two clip lengths (issue: memory stays bounded).

Makes a synthetic 1080p clip with a real face (../shared/data/images/target2.png,
moving slowly) of N frames, stylizes it in a fresh Python process and reports
that process's peak RSS (``ru_maxrss``) and the largest ffmpeg child's, as
``key=value`` lines. Peak RSS must not grow with the clip's length.

With Ray installed it also renders each clip with ``engine="ray"`` (2-s chunks on a
local instance of 2 CPUs) and reports the largest RSS a worker reached while it
rendered a chunk (sampled every 0.1 s from /proc: the workers are named
``ray::_render_chunk_task`` while they do), against the 1.5 GB of issue 15.

    python bench/memory.py [--lengths 150 600]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))

CHILD = r"""
import resource, sys
sys.path.insert(0, {repo!r})
from faceblit_core.pipeline import stylize_video
s = stylize_video({clip!r}, {style!r}, {out!r}, overwrite=True, progress=False, cache_dir={cache!r})
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{{s.frames}} {{me}} {{kids}} {{s.fps:.2f}}")
"""


RAY_CHILD = r"""
import sys
sys.path.insert(0, {repo!r})
import ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
from faceblit_core.pipeline import stylize_video
s = stylize_video({clip!r}, {style!r}, {out!r}, overwrite=True, progress=False, cache_dir={cache!r}, engine="ray",
                  chunk_seconds=2.0, chunk_warmup=30)
print(s.chunks)
"""


def worker_peak_mb(run: subprocess.Popen) -> tuple[float, str]:
    """Largest RSS (MiB) of a process titled ``ray::_render_chunk_task`` while ``run`` lives; its stdout."""
    import threading
    import time

    peak = [0]

    def sample() -> None:
        while run.poll() is None:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if not (entry / "cmdline").read_bytes().startswith(b"ray::_render_chunk_task"):
                        continue
                    for line in (entry / "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
                except OSError:
                    continue
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = run.communicate()
    sampler.join()
    return peak[0] / 1024, out


def make_clip(path: Path, frames: int) -> None:
    import cv2
    import numpy as np

    from faceblit_core.media import VideoWriter, read_image

    face = read_image(DATA / "images" / "target2.png")
    face = cv2.resize(face, (face.shape[1] * 3 // 4, face.shape[0] * 3 // 4))
    h, w = face.shape[:2]
    with VideoWriter(str(path), width=1920, height=1080, fps=30, preset="ultrafast", crf=23, overwrite=True) as writer:
        for i in range(frames):
            canvas = np.full((1080, 1920, 3), 90, np.uint8)
            x = 600 + int(200 * np.sin(i / 40))
            y = max(0, min(1080 - h, 140))
            canvas[y : y + min(h, 1080 - y), x : x + w] = face[: min(h, 1080 - y)]
            writer.write(canvas)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[150, 600])
    args = ap.parse_args()
    if not (DATA / "images" / "target2.png").exists():
        print(f"# skipped: {DATA} not found (the team's data set)", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO))
    style = str(DATA / "styles" / "watercolorgirl.png")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.lengths:
            clip = tmp / f"clip{n}.mp4"
            make_clip(clip, n)
            code = CHILD.format(repo=str(REPO), clip=str(clip), style=style, out=str(tmp / "out.mp4"), cache=str(tmp / "cache"))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
            frames, me_kb, kids_kb, fps = int(out[0]), int(out[1]), int(out[2]), out[3]
            print(f"frames_{n}={frames}")
            print(f"peak_rss_mb_{n}={me_kb / 1024:.0f}")
            print(f"peak_rss_ffmpeg_child_mb_{n}={kids_kb / 1024:.0f}")
            # Both peaks at once: an upper bound of the job's total (target: <= 1.5 GB).
            print(f"peak_rss_total_upper_mb_{n}={(me_kb + kids_kb) / 1024:.0f}")
            print(f"fps_1080p_{n}={fps}")
            if _has_ray():
                code = RAY_CHILD.format(repo=str(REPO), clip=str(clip), style=style, out=str(tmp / "ray.mp4"), cache=str(tmp / "cache"))
                run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                peak, out = worker_peak_mb(run)
                if run.returncode != 0:
                    print(f"# ray render of {n} frames failed", file=sys.stderr)
                    return 1
                print(f"ray_chunks_{n}={out.split()[-1]}")
                print(f"ray_worker_peak_rss_mb_{n}={peak:.0f}")
    return 0


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


if __name__ == "__main__":
    sys.exit(main())
