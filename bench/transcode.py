"""Cost of our decode → RGB → encode round trip against a plain ffmpeg transcode.

Prints ``key=value`` lines. For one clip (default ../shared/data/videos/target2.mp4)
it times, interleaved, ``runs`` times each:

* plain:     ``ffmpeg -i in -c:v libx264 -preset medium -crf 18 -c:a copy out.mp4``
  (one process, no RGB conversion — the floor no stylizer can beat, DESIGN §9);
* roundtrip: ``probe`` + ``iter_frames`` → ``VideoWriter`` with the same encoder
  settings (what ``faceblit stylize`` costs besides the stylization itself);

and reports the wall-time medians, their ratio ``roundtrip_ratio`` (target ≤ 1.25),
the same for CPU seconds of all processes involved (``roundtrip_cpu_ratio``,
steadier when other jobs share the cores) and the round trip's PSNR against the
decoded input. Usage::

    .venv/bin/python bench/transcode.py [CLIP] [--runs 3] [--frames N]
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
sys.path.insert(0, str(REPO))

from faceblit_core import media, quality  # noqa: E402

DEFAULT_CLIP = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "videos" / "target2.mp4"


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children, s."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def plain_transcode(src: Path, dst: Path, *, crf: int, preset: str, frames: int | None) -> float:
    args = [media.find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src)]
    if frames:
        args += ["-frames:v", str(frames)]
    args += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-c:a", "copy", str(dst)]
    t = time.perf_counter()
    subprocess.run(args, check=True)
    return time.perf_counter() - t


def roundtrip(src: Path, dst: Path, *, crf: int, preset: str, frames: int | None, prefetch: int) -> float:
    t = time.perf_counter()
    info = media.probe(src)
    end = min(frames, info.n_frames) if frames else None
    with media.VideoWriter(dst, width=info.width, height=info.height, fps=info.fps, audio_from=info,
                           crf=crf, preset=preset, overwrite=True) as w:
        for frame in media.iter_frames(info, end=end, prefetch=prefetch):
            w.write(frame)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames")
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--prefetch", type=int, default=4, help="iter_frames read-ahead (0 = no reader thread)")
    args = ap.parse_args()
    if not args.clip.is_file():
        sys.exit(f"clip not found: {args.clip}")

    info = media.probe(args.clip)
    print(f"clip={args.clip.name}")
    print(f"size={info.width}x{info.height}")
    print(f"frames={min(args.frames or info.n_frames, info.n_frames)}")
    print(f"fps_in={info.fps}")
    print(f"encoder=libx264 preset={args.preset} crf={args.crf}")
    print(f"runs={args.runs}")
    plain, ours, plain_cpu, ours_cpu = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="faceblit-bench-") as tmp:
        out_plain, out_rt = Path(tmp) / "plain.mp4", Path(tmp) / "roundtrip.mp4"
        for _ in range(args.runs):  # interleaved so load changes hit both alike
            c = cpu_seconds()
            plain.append(plain_transcode(args.clip, out_plain, crf=args.crf, preset=args.preset, frames=args.frames))
            c2 = cpu_seconds()
            ours.append(roundtrip(args.clip, out_rt, crf=args.crf, preset=args.preset, frames=args.frames, prefetch=args.prefetch))
            plain_cpu.append(c2 - c)
            ours_cpu.append(cpu_seconds() - c2)
        n = min(args.frames or info.n_frames, info.n_frames)
        scores = quality.compare_media(args.clip, out_rt, with_ssim=False) if not args.frames else None
        p_plain, p_ours = statistics.median(plain), statistics.median(ours)
        print(f"plain_s={p_plain:.3f}")
        print(f"roundtrip_s={p_ours:.3f}")
        print(f"plain_runs_s={','.join(f'{t:.3f}' for t in plain)}")
        print(f"roundtrip_runs_s={','.join(f'{t:.3f}' for t in ours)}")
        print(f"plain_fps={n / p_plain:.1f}")
        print(f"roundtrip_fps={n / p_ours:.1f}")
        print(f"roundtrip_ratio={p_ours / p_plain:.3f}")
        # CPU seconds (all processes) are steadier than wall time on a shared machine.
        print(f"plain_cpu_s={statistics.median(plain_cpu):.3f}")
        print(f"roundtrip_cpu_s={statistics.median(ours_cpu):.3f}")
        print(f"roundtrip_cpu_ratio={statistics.median(ours_cpu) / statistics.median(plain_cpu):.3f}")
        if scores:
            ps = [s.psnr for s in scores]
            print(f"roundtrip_psnr_min_db={min(ps):.2f}")
            print(f"roundtrip_psnr_mean_db={statistics.fmean(ps):.2f}")


if __name__ == "__main__":
    main()
