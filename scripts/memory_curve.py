"""How long a render started mid-clip takes to equal the one-piece render: PSNR and landmark gap vs warm-up.

A chunk (``--chunk-warmup``) and each ``faceblit preview`` frame (``--warmup``) start a
fresh :class:`~faceblit_core.stylizer.FrameStylizer` W frames before the frame they
keep, and equal the one-piece render only once every state carried from frame to frame
has forgotten where it started (issue 15, issue 16). This renders, in memory (not
encoded), the clip from frame 0 in one piece and, beside it, a fresh render from each
``--starts`` frame s for ``--span`` frames, and compares them frame by frame: frame
s + W of the render started at s is what a warm-up of W gives.

Prints ``key=value`` lines:

* ``psnr_sS``, ``landmarks_sS`` — for the render started at S, per W = 0 … span: the PSNR
  (dB, whole frame; ``inf`` = identical) against the one-piece render, and the largest
  distance between the two renders' landmarks (px; ``nan`` when they found different
  faces), comma-separated;
* ``psnr_wW_min``, ``psnr_wW_median``, ``landmarks_wW_max`` — the same at each W of
  ``--at``, over the starts (starts at frame 0 are left out: identical by construction).

``--oracle-landmarks`` gives the renders started mid-clip the one-piece render's
landmarks (tracked and smoothed faces, raw fits) instead of their own tracker's: what is
left is the memory of the stylizer's own carried state (flow-carried guide and mask,
kept NNF; :data:`faceblit_core.temporal_state.MEMORY_FRAMES`), and the difference from
a run without it is the tracker's (box carry, One Euro settling).

Usage: ``python scripts/memory_curve.py IN.mp4 --style S.png --starts 207 375 543
[--span 90] [--at 10,20,30,60,90] [--oracle-landmarks]``. Cost: frames 0 … max(starts) +
span once, plus span + 1 per start; run it with ``nice -n 10`` on a shared machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceblit_core import media  # noqa: E402
from faceblit_core.config import StylizeConfig  # noqa: E402
from faceblit_core.quality import psnr  # noqa: E402
from faceblit_core.setup import make_backend, resolve_device, set_threads  # noqa: E402
from faceblit_core.style import prepare_style  # noqa: E402
from faceblit_core.stylizer import FrameStylizer  # noqa: E402


class _Recorder:
    """Wraps a tracker: keeps the faces of its last :meth:`update` for :class:`_Oracle`."""

    def __init__(self, tracker) -> None:
        self.tracker, self.faces = tracker, []

    def __getattr__(self, name):
        return getattr(self.tracker, name)

    def update(self, frame):
        self.faces = self.tracker.update(frame)
        return self.faces


class _Oracle:
    """A tracker that answers with the one-piece render's landmarks of the same frame (``--oracle-landmarks``)."""

    def __init__(self, source: _Recorder) -> None:
        self.source = source

    def start_at(self, index: int) -> None:
        pass

    @property
    def last_raw(self):
        return self.source.tracker.last_raw

    @property
    def scene_cut_detected(self):
        return self.source.tracker.scene_cut_detected

    def update(self, frame):
        return list(self.source.faces)


def _landmark_gap(a: list, b: list) -> float:
    """Largest distance between matching landmarks of two face lists, px; NaN when the faces differ; 0 without faces."""
    if [f.id for f in a] != [f.id for f in b]:
        return math.nan
    gaps = [float(np.abs(np.asarray(x.points, np.float64) - np.asarray(y.points, np.float64)).max()) for x, y in zip(a, b)]
    return max(gaps, default=0.0)


def curves(input: str, asset, config: StylizeConfig, starts: list[int], span: int, *, oracle: bool = False) -> dict[int, tuple[list, list]]:
    """Per start s: (PSNR, landmark gap) of frames s … s + span of a render started at s, against the one-piece render."""
    info = media.probe(input)
    device = resolve_device(config.device)
    set_threads()

    def stylizer(first: int) -> FrameStylizer:
        made = FrameStylizer(asset, config, fps=float(info.fps), backend=make_backend(config, None, device, video=True), device=device)
        made.start_at(first)
        return made

    whole = stylizer(0)
    whole.tracker = _Recorder(whole.tracker)
    active: dict[int, FrameStylizer] = {}
    found: dict[int, tuple[list, list]] = {s: ([], []) for s in starts}
    for index, frame in enumerate(media.iter_frames(info, end=max(starts) + span + 1)):
        reference, faces = whole(frame)
        for s in starts:
            if index == s:
                active[s] = stylizer(s)
                if oracle:
                    active[s].tracker = _Oracle(whole.tracker)
        for s in list(active):
            out, own = active[s](frame)
            found[s][0].append(psnr(reference, out))
            found[s][1].append(_landmark_gap(faces, own))
            if index == s + span:
                del active[s]
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--style", required=True)
    ap.add_argument("--starts", type=int, nargs="+", required=True, help="absolute frames the renders start on")
    ap.add_argument("--span", type=int, default=90, help="frames compared after each start (W = 0 … span)")
    ap.add_argument("--at", default="10,20,30,60,90", help="comma-separated warm-ups summarised over the starts")
    ap.add_argument("--oracle-landmarks", action="store_true", help="renders started mid-clip use the one-piece render's landmarks")
    args = ap.parse_args()
    if args.span < 0 or min(args.starts) < 0:
        ap.error("--span and --starts must be >= 0")
    config = StylizeConfig()
    asset = prepare_style(args.style, config=config)
    found = curves(args.input, asset, config, sorted(set(args.starts)), args.span, oracle=args.oracle_landmarks)
    for s, (scores, gaps) in found.items():
        print(f"psnr_s{s}={','.join(f'{v:.2f}' for v in scores)}")
        print(f"landmarks_s{s}={','.join(f'{v:.3f}' for v in gaps)}")
    for w in (int(x) for x in args.at.split(",")):
        at = [(scores[w], gaps[w]) for s, (scores, gaps) in found.items() if s > 0 and w < len(scores)]
        if at:
            print(f"psnr_w{w}_min={min(v for v, _ in at):.2f}")
            print(f"psnr_w{w}_median={statistics.median(v for v, _ in at):.2f}")
            print(f"landmarks_w{w}_max={max(g for _, g in at):.3f}")


if __name__ == "__main__":
    main()
