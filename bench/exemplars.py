"""Memory of one exemplar per face (issue 16): what each extra exemplar costs.

Makes the two-face clip of ``tests/test_face_styles.py`` (d10 | d3, ffmpeg ``hstack``,
256×256 each, 36 frames), prepares the exemplars in a temporary cache, then renders it
in a fresh Python process per case:

* ``one``: one exemplar for both faces (``--style A``);
* ``two``: one each (``--style 0=A --style 1=B``).

Each child reports its peak RSS (``ru_maxrss``), its RSS after the render, and for each
of the stylizer's exemplars the bytes of its tensors (the lookup table apart: 256³ int32,
a copy-on-write memory map of the cache entry on the CPU, read only as touched), its
face-space arrays and its synthesis cache's tables by store, as ``key=value`` lines.

    python bench/exemplars.py [--styles watercolorgirl_480x640 het_480x640]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))

CHILD = r"""
import json, resource, sys
sys.path.insert(0, {repo!r})
import numpy as np, torch
from faceblit_core import media
from faceblit_core.config import StylizeConfig
from faceblit_core import pipeline

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

def nbytes(value):
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return sum(nbytes(v) for v in vars(value).values()) if hasattr(value, "__dict__") else 0

made = []
real = pipeline._make_stylizer
def spy(*a, **k):
    made.append(real(*a, **k))
    return made[-1]
pipeline._make_stylizer = spy
before = rss()
s = pipeline.stylize_video({clip!r}, {style!r}, {out!r}, overwrite=True, progress=False, cache_dir={cache!r})
fs = made[0]
exemplars = {{id(e): e for e in [fs.default, *fs.face_exemplars.values()] if e is not None}}
per = []
for e in exemplars.values():
    per.append({{
        "tensors_without_lut": sum(nbytes(t) for t in (e.app_t, e.temp_t, e.image_t)),
        "lut": nbytes(e.lut_t),
        "face_space": nbytes(e.identity) + nbytes(e.face) + nbytes(e.interior_source),
        **{{"cache_" + name: nbytes(d) for name, d in e.synthesis_cache._stores.items() if nbytes(d)}},
    }})
print(json.dumps({{"frames": s.frames, "fps": round(s.fps, 2), "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "rss_after": rss(), "rss_before": before, "exemplars": per}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--styles", nargs=2, default=["watercolorgirl_480x640", "het_480x640"])
    args = ap.parse_args()
    if not (DATA / "videos" / "d3.mp4").exists():
        print(f"# skipped: {DATA} not found (the team's data set)", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO))
    from faceblit_core.media import find_ffmpeg
    from faceblit_core.style import prepare_style

    a, b = (str(DATA / "styles" / f"{name}.png") for name in args.styles)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "two.mp4"
        graph = "[0:v]scale=256:256,setsar=1[a];[1:v]scale=256:256,setsar=1[b];[a][b]hstack=inputs=2[v]"
        subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-i", str(DATA / "videos" / "d10.mp4"), "-i", str(DATA / "videos" / "d3.mp4"),
                        "-filter_complex", graph, "-map", "[v]", "-frames:v", "36", "-an", "-c:v", "libx264", "-crf", "12",
                        "-preset", "veryfast", "-pix_fmt", "yuv420p", str(clip)], check=True)
        cache = str(Path(tmp) / "cache")
        for style in (a, b):
            prepare_style(style, cache_dir=cache)  # built here, loaded (memory-mapped) by the children
        for case, style in (("one", a), ("two", {0: a, 1: b})):
            code = CHILD.format(repo=str(REPO), clip=str(clip), style=style, out=str(Path(tmp) / f"out-{case}.mp4"), cache=cache)
            res = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            print(f"case={case} frames={res['frames']} fps={res['fps']} peak_rss_mib={res['peak_rss'] / 2**20:.1f} "
                  f"rss_after_mib={res['rss_after'] / 2**20:.1f} exemplars={len(res['exemplars'])}")
            for k, e in enumerate(res["exemplars"]):
                print(f"case={case} exemplar={k} " + " ".join(f"{name}_mib={v / 2**20:.2f}" for name, v in e.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
