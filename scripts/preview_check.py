"""How close and how fast ``faceblit preview`` is against the full render of the same clip.

Prints ``key=value`` lines:

* ``full_seconds``, ``preview_seconds``, ``time_ratio`` — wall time of the CLI runs
  ``faceblit stylize IN -o OUT.mp4`` and ``faceblit preview IN --frames N`` (same
  options, each a fresh process, so both include start-up);
* ``frames_wW`` — the frames the preview shows with warm-up W;
* ``psnr_wW`` — for each warm-up W of ``--warmups``: the PSNR (dB) of each preview frame
  against the same frame of a one-piece render (the library's FrameStylizer over every
  frame, not encoded, so no encoder loss enters), as a comma-separated list, and
  ``psnr_wW_min``; ``inf`` = identical.

Usage: ``python scripts/preview_check.py IN.mp4 --style S.png [--frames 6]
[--warmups 0,30,90] [--out DIR] [--no-timing]``. Run it with ``nice -n 10`` on a shared machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceblit_core import media  # noqa: E402
from faceblit_core.config import StylizeConfig  # noqa: E402
from faceblit_core.preview import preview, preview_frames  # noqa: E402
from faceblit_core.quality import psnr  # noqa: E402
from faceblit_core.setup import make_backend, resolve_device, set_threads  # noqa: E402
from faceblit_core.style import prepare_style  # noqa: E402
from faceblit_core.stylizer import FrameStylizer  # noqa: E402


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli.main", *cmd], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def one_piece_frames(input: str, asset, config: StylizeConfig, wanted: list[int]) -> dict:
    """Frames ``wanted`` of a one-piece render (every frame from 0 through the last wanted), not encoded."""
    info = media.probe(input)
    device = resolve_device(config.device)
    set_threads()
    stylizer = FrameStylizer(asset, config, fps=float(info.fps), backend=make_backend(config, None, device, video=True), device=device)
    stylizer.start_at(0)
    found = {}
    for index, frame in enumerate(media.iter_frames(info, end=max(wanted) + 1)):
        out, _ = stylizer(frame)
        if index in wanted:
            found[index] = out
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--style", required=True)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--warmups", default="0,30,90", help="comma-separated warm-ups to measure the PSNR at")
    ap.add_argument("--out", default="/tmp/faceblit-preview-check")
    ap.add_argument("--no-timing", action="store_true", help="skip the two timed CLI runs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_timing:
        full = _timed(["stylize", args.input, "--style", args.style, "-o", str(out / "full.mp4"), "-y", "-q"])
        quick = _timed(["preview", args.input, "--style", args.style, "--frames", str(args.frames), "-o", str(out / "preview.png"), "-y", "-q"])
        print(f"full_seconds={full:.2f}")
        print(f"preview_seconds={quick:.2f}")
        print(f"time_ratio={quick / full:.4f}")
    config = StylizeConfig()
    asset = prepare_style(args.style, config=config)
    n = media.probe(args.input).n_frames
    warmups = [int(x) for x in args.warmups.split(",")]
    shown = {w: preview_frames(n, args.frames) for w in warmups}
    reference = one_piece_frames(args.input, asset, config, sorted(set().union(*shown.values())))
    for w in warmups:
        result = preview(args.input, asset, frames=args.frames, warmup=w, config=config)
        assert result.frames == shown[w]
        scores = [psnr(reference[t], o) for t, o in zip(result.frames, result.outputs)]
        print(f"frames_w{w}={','.join(map(str, result.frames))}")
        print(f"psnr_w{w}={','.join(f'{s:.2f}' for s in scores)}")
        print(f"psnr_w{w}_min={min(scores):.2f}")
        print(f"psnr_w{w}_seconds={result.seconds:.2f}")


if __name__ == "__main__":
    main()
