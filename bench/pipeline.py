"""End-to-end benchmark: `faceblit stylize` on a real clip vs a plain ffmpeg transcode.

Prints ``key=value`` lines: end-to-end fps, per-stage ms/frame (summed over faces),
the wall time of a plain ``ffmpeg -i in -c:v libx264 -preset medium -crf 18`` of
the same clip (the floor no stylizer can beat) and the ratio of the two, measured
side by side in one run (runs interleaved, medians). Usage::

    python bench/pipeline.py [CLIP] [STYLE] [--runs N] [--frames N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", nargs="?", default=str(DATA / "videos" / "target2.mp4"))
    ap.add_argument("style", nargs="?", default=str(DATA / "styles" / "watercolorgirl.png"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames")
    args = ap.parse_args()
    if not Path(args.clip).exists():
        print(f"# skipped: {args.clip} not found (the team's data set)", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO))
    from faceblit_core.config import StylizeConfig
    from faceblit_core.media import find_ffmpeg
    from faceblit_core.pipeline import stylize_video
    from faceblit_core.style import prepare_style

    cfg = StylizeConfig()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        asset = prepare_style(args.style, lambda_pos=cfg.lambda_pos, lambda_app=cfg.lambda_app,
                              lut_radius=cfg.lut_radius, temporal_blur=cfg.temporal_blur, cache_dir=tmp / "cache")
        frames = (0, args.frames) if args.frames else None
        ff_cmd = [find_ffmpeg(), "-v", "error", "-y", "-i", args.clip]
        if args.frames:
            ff_cmd += ["-frames:v", str(args.frames)]
        ff_cmd += ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p", str(tmp / "plain.mp4")]
        ours, plain, summaries = [], [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run(ff_cmd, check=True)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            s = stylize_video(args.clip, asset, tmp / "ours.mp4", config=cfg, frames=frames, overwrite=True, progress=False)
            ours.append(time.perf_counter() - t)
            summaries.append(s)
    n = summaries[-1].frames
    med_ours, med_plain = statistics.median(ours), statistics.median(plain)
    print(f"clip={Path(args.clip).name}")
    print(f"style={Path(args.style).name}")
    print(f"frames={n}")
    print(f"runs={args.runs}")
    print(f"stylize_s_median={med_ours:.3f}")
    print(f"stylize_fps_median={n / med_ours:.2f}")
    print(f"plain_transcode_s_median={med_plain:.3f}")
    print(f"plain_transcode_fps_median={n / med_plain:.2f}")
    print(f"ratio_to_plain_transcode={med_ours / med_plain:.2f}")
    last = summaries[-1]
    for stage, ms in sorted(last.stage_ms.items()):
        print(f"stage_{stage}_ms={ms:.2f}")
    print(f"frames_without_face={last.frames_without_face}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
