#!/usr/bin/env python
"""Measure a stylized clip against its input and the style exemplar (DESIGN §9).

Usage::

    python scripts/evaluate.py IN OUT --style S [--style-landmarks F] [--max-frames N] [--step K] [--json]
    python scripts/evaluate.py IN OUT_A OUT_B OUT_C --style S_A S_B S_C   # one pass for several renders

Prints ``key=value`` lines (or, with ``--json``, one JSON object, ``nan`` and
``inf`` as ``null``), the figures first::

    warp_ratio=…      temporal stability, 1.0 = as stable as the input (FaceBlit: 6.8–8.0)
    struct_nme=…      landmark error on the output / eye distance (FaceBlit: 0.031–0.053)
    style_nn=…        distance to the nearest style face patch, RGB [0, 1], RMS per pixel
    expr_err=…        mouth + eye opening error / eye distance, 0 = same expression (FaceBlit target1: 0.038)
    drift=…           struct_nme of the last third / of the first third, 1.0 = no drift
    sharp_ratio=…     mean |Laplacian| of the output face / the exemplar's, at 60 px eye distance
    warp_spike=…      worst frame pair's warping-error ratio / the median pair's, 1 = even
    redetect_rate=…   fraction of input-face frames whose face is re-found on the output
    …                 raw figures (see faceblit_core.evaluation.evaluate_pair)

Several outputs of the same input (one per exemplar, before/after) are measured in
one pass that decodes, detects and computes the flow of the input once; each then
gets a block headed ``output=PATH`` (with ``--json``: a list of objects with an
``output`` key). The figures are the same as one output at a time.

Exit codes are faceblit's (3 input, 4 style, 6 environment, …).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _format(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _clean(figures: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Quality metrics of a stylized clip (DESIGN §9), as key=value lines or JSON.")
    parser.add_argument("input", type=Path, help="source video or image")
    parser.add_argument("outputs", type=Path, nargs="+", metavar="output", help="its stylization(s) (same size and frame count); several share the input's work")
    parser.add_argument("--style", type=Path, nargs="+", required=True, help="style exemplar image(s): one for all outputs, or one per output")
    parser.add_argument("--style-landmarks", type=Path, default=None, help="68 landmarks of the exemplar, with one --style (default: NAME.lm.txt beside it, else detected)")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--step", type=int, default=1, help="evaluate every K-th frame (default 1)")
    parser.add_argument("--patches", type=int, default=None, help="patches sampled for style_nn (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patch sampling (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (a list of them for several outputs) instead of key=value lines")
    args = parser.parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    if args.step < 1:
        parser.error("--step must be >= 1")
    if args.patches is not None and args.patches < 1:
        parser.error("--patches must be >= 1")
    if len(args.style) not in (1, len(args.outputs)):
        parser.error(f"{len(args.style)} --style images for {len(args.outputs)} outputs: give one, or one per output")
    if args.style_landmarks is not None and len(args.style) > 1:
        parser.error("--style-landmarks goes with a single --style")
    styles = args.style * len(args.outputs) if len(args.style) == 1 else args.style

    from faceblit_core.errors import FaceblitError
    from faceblit_core.evaluation import NN_SAMPLES, evaluate_outputs

    try:
        results = evaluate_outputs(
            args.input,
            [(out, style, args.style_landmarks) for out, style in zip(args.outputs, styles)],
            max_frames=args.max_frames,
            step=args.step,
            n_patches=args.patches or NN_SAMPLES,
            seed=args.seed,
        )
    except FaceblitError as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        if args.json and len(results) == 1:
            print(json.dumps(_clean(results[0])), flush=True)
        elif args.json:
            print(json.dumps([{"output": str(out), **_clean(r)} for out, r in zip(args.outputs, results)]), flush=True)
        else:
            for i, (out, figures) in enumerate(zip(args.outputs, results)):
                if len(results) > 1:  # blocks, each headed by its file
                    print(("\n" if i else "") + f"output={out}", flush=True)
                for key, value in figures.items():
                    print(f"{key}={_format(value)}", flush=True)
    except BrokenPipeError:  # e.g. `| head -3`: the reader has what it wanted
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
