"""Local engine vs Ray for a batch: wall times and the cost of one Ray task.

A batch of ``FILES`` copies of the sample clip (frames 0:``FRAMES``; one chunk each,
so one Ray task each) is rendered with ``--engine local`` (one process, one file
after the other) and with ``--engine ray`` on a local Ray instance with ``CPUS``
worker CPUs (one task per CPU). Printed (``key=value``):

* ``local_batch_s``, ``ray_batch_s`` — wall time of each batch (style cached);
* ``ray_init_s`` — starting the local Ray instance (paid once per run);
* ``speedup`` — ``local_batch_s / ray_batch_s``;
* ``task_overhead_s`` — what a task costs beyond its frames:
  ``(ray_batch_s · CPUS − local_batch_s) / FILES`` CPU-seconds (worker start,
  imports, landmark model, input and result through the object store). On a
  shared machine with fewer free cores than ``CPUS`` this also counts the waiting.

Environment: ``FILES`` (default 4), ``FRAMES`` (25), ``CPUS`` (2).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceblit_core.batch import stylize_batch  # noqa: E402
from faceblit_core.style import prepare_style  # noqa: E402


def main() -> None:
    import ray

    files, frames, cpus = int(os.environ.get("FILES", 4)), int(os.environ.get("FRAMES", 25)), int(os.environ.get("CPUS", 2))
    with tempfile.TemporaryDirectory(prefix="faceblit-scale-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        prepare_style(REPO / "samples" / "exemplar.png", cache_dir=cache)
        inputs = []
        for i in range(files):
            path = tmp / f"clip{i}.mp4"
            shutil.copyfile(REPO / "samples" / "clip.mp4", path)
            inputs.append(str(path))
        times = {}
        for engine in ("local", "ray"):
            out = tmp / engine
            out.mkdir()
            if engine == "ray":
                t = time.perf_counter()
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
                print(f"ray_init_s={time.perf_counter() - t:.2f}", flush=True)
            t = time.perf_counter()
            summaries, failures = stylize_batch(inputs, str(REPO / "samples" / "exemplar.png"), out_dir=out, cache_dir=cache,
                                                progress=False, frames=(0, frames), engine=engine)
            times[engine] = time.perf_counter() - t
            assert not failures and len(summaries) == files
        ray.shutdown()
    print(f"files={files} frames_per_file={frames} ray_cpus={cpus} cores={os.cpu_count()}")
    print(f"local_batch_s={times['local']:.2f} ray_batch_s={times['ray']:.2f} speedup={times['local'] / times['ray']:.2f}")
    print(f"task_overhead_s={(times['ray'] * cpus - times['local']) / files:.2f}")


if __name__ == "__main__":
    main()
