"""Whole-process time of one still with a cached style (what CI regression renders and shell loops pay).

Runs ``faceblit stylize STILL --style STYLE -o OUT --overwrite -q`` as a fresh
process several times after one warm-up (the warm-up fills the style cache, a
temporary folder, and the dlib detector file) and prints medians as key=value
lines: wall seconds and CPU seconds (user + sys of the child). With
``--baseline 'COMMAND'`` (e.g. another checkout's ``.venv/bin/faceblit``) the two
run in turn, A B A B …, on the same cache folder layout, and the ratio of the
medians is printed too (the machines here are shared: compare only what ran
side by side).

Data: ../shared/data/images/target2.png (768×1024) and styles/watercolorgirl.png.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _once(cmd: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="counted runs of each command")
    ap.add_argument("--baseline", help="a second faceblit command to compare with (quoted)")
    args = ap.parse_args(argv)
    still, style = DATA / "images" / "target2.png", DATA / "styles" / "watercolorgirl.png"
    if not still.is_file() or not style.is_file():
        print(f"# startup: shared data not found at {DATA}; skipped", file=sys.stderr)
        return 0
    commands = {"this": [sys.executable, "-m", "cli.main"]}
    if args.baseline:
        commands["baseline"] = shlex.split(args.baseline)
    with tempfile.TemporaryDirectory(prefix="faceblit-bench-") as tmp:
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        envs = {}
        for name in commands:
            envs[name] = {**os.environ, "FACEBLIT_CACHE_DIR": str(Path(tmp) / name)}
        runs = {name: [*cmd, "stylize", str(still), "--style", str(style), "-o", str(Path(tmp) / f"{name}.png"), "--overwrite", "-q"]
                for name, cmd in commands.items()}
        for name in commands:  # warm-up: builds the style cache entry
            _once(runs[name], envs[name])
        for _ in range(args.n):
            for name in commands:
                times[name].append(_once(runs[name], envs[name]))
    for name, ts in times.items():
        print(f"startup_{name}_wall_s={statistics.median(t[0] for t in ts):.2f}")
        print(f"startup_{name}_cpu_s={statistics.median(t[1] for t in ts):.2f}")
    if "baseline" in times:
        ratios = [a[0] / b[0] for a, b in zip(times["this"], times["baseline"])]
        print(f"startup_wall_ratio_this_over_baseline={statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
