"""Benchmark of the style lookup table and its cache (DESIGN §5, §2 "Per style").

Prints ``key=value`` lines:

* ``lut_build_s_median`` / ``lut_build_480x640_s_median``: building the 256³ table
  for watercolorgirl.png (768×1024) and watercolorgirl_480x640.png, default
  parameters (λ_pos 10, λ_app 2, radius 30), all cores; the two sizes run
  interleaved, run by run, so load on this shared machine hits them alike.
  ``..._1worker_s_median``: the same on one thread, for scale. Budget: ≤ 5 s.
* ``cache_hit_load_s_median``: ``prepare_style_report`` of watercolorgirl.png when
  its entry is in the cache (hash + load + checks). Budget: ≤ 0.5 s.
* ``lut_build_peak_mib``: peak of the build's allocations (tracemalloc: numpy
  buffers, the 64 MiB table included) and ``lut_build_rss_delta_mib`` (peak
  resident memory sampled every 2 ms during the build, minus before), measured
  in a fresh process.
* ``loadavg_start``/``loadavg_end``, ``cpus``, ``torch_threads``: the conditions.

Usage::

    python bench/lut.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))

_PEAK = """
import json, resource, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
from faceblit_core.guides.appearance import appearance_guide, stretch_contrast
from faceblit_core.lut import build_lookup_table
from faceblit_core.media import read_image
app = stretch_contrast(appearance_guide(read_image(sys.argv[2])))
build_lookup_table(app[:64, :64], radius=4)  # warm up imports and thread pool code paths
import threading
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
rss0, top, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        top[0] = max(top[0], rss()); time.sleep(0.002)
th = threading.Thread(target=sample); th.start()
tracemalloc.start()
t = time.perf_counter()
build_lookup_table(app)
dt = time.perf_counter() - t
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
done.set(); th.join()
print(json.dumps({"peak": peak / 2**20, "rss": (top[0] - rss0) / 2**20, "s": dt}))
"""


def _loadavg() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    big = DATA / "styles" / "watercolorgirl.png"
    small = DATA / "styles" / "watercolorgirl_480x640.png"
    if not big.exists() or not small.exists():
        print(f"# skipped: {big.parent} not found (the team's data set)", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO))
    import torch

    from faceblit_core.guides.appearance import appearance_guide, stretch_contrast
    from faceblit_core.lut import build_lookup_table
    from faceblit_core.media import read_image
    from faceblit_core.style import prepare_style_report

    print(f"loadavg_start={_loadavg()}")
    print(f"cpus={os.cpu_count()}")
    print(f"torch_threads={torch.get_num_threads()}")
    apps = {name: stretch_contrast(appearance_guide(read_image(p))) for name, p in (("big", big), ("small", small))}
    build_lookup_table(apps["small"][:64, :64], radius=4)  # warm-up: imports, code paths
    times: dict[str, list[float]] = {"big": [], "small": [], "big1": []}
    for _ in range(args.runs):
        for name, workers in (("big", None), ("small", None), ("big1", 1)):
            app = apps["big" if name.startswith("big") else "small"]
            t = time.perf_counter()
            build_lookup_table(app, workers=workers)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"lut_build_s_median={med['big']:.3f}")
    print(f"lut_build_s_min={min(times['big']):.3f}")
    print(f"lut_build_480x640_s_median={med['small']:.3f}")
    print(f"lut_build_1worker_s_median={med['big1']:.3f}")

    with tempfile.TemporaryDirectory(prefix="faceblit-bench-cache-") as cache:
        t = time.perf_counter()
        first = prepare_style_report(big, cache_dir=cache)
        miss = time.perf_counter() - t
        hits = []
        for _ in range(max(3, args.runs)):
            t = time.perf_counter()
            r = prepare_style_report(big, cache_dir=cache)
            hits.append(time.perf_counter() - t)
            assert r.cache_hit
        size = first.cache_file.stat().st_size / 2**20 if first.cache_file else float("nan")
    print(f"prepare_style_miss_s={miss:.3f}")
    print(f"cache_hit_load_s_median={statistics.median(hits):.3f}")
    print(f"cache_entry_mib={size:.1f}")

    out = subprocess.run([sys.executable, "-c", _PEAK, str(REPO), str(big)], capture_output=True, text=True, check=True)
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"lut_build_peak_mib={peak['peak']:.1f}")
    print(f"lut_build_rss_delta_mib={peak['rss']:.1f}")
    print(f"loadavg_end={_loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
