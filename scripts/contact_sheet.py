#!/usr/bin/env python
"""Contact sheet of a clip and its renders, for looking at what the metrics say (DESIGN §9).

Usage::

    python scripts/contact_sheet.py IN RENDER [RENDER ...] -o sheet.png
        [--frames 4] [--last 2] [--at 24,31] [--labels before,after] [--height 256]

One row per chosen frame, one column per file: ``input | render A | render B …``.
Frames: ``--frames N`` spread evenly over the clip (the middles of N equal parts),
plus the last ``--last K`` frames (where drift shows), plus any ``--at`` frames
(e.g. ``warp_spike_frame`` from ``scripts/evaluate.py``). Each tile is scaled to
``--height`` px and carries its frame number; column headers name the files.
Stills work too (one frame). Writes a PNG (or any image type OpenCV writes).

Exit codes are faceblit's (2 usage, 3 input, 5 output, …).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

HEADER_PX = 28  # column-header strip height, px
FONT = cv2.FONT_HERSHEY_SIMPLEX


def pick_frames(n_frames: int, spread: int, last: int, at: list[int]) -> list[int]:
    """Sorted distinct frame indices: ``spread`` middles of equal parts, the ``last`` final frames, ``at``.

    Parameters
    ----------
    n_frames : int
        Frames in the clip, ≥ 1.
    spread, last : int
        Counts, ≥ 0.
    at : list of int
        Extra indices; negative ones count from the end, out-of-range ones are dropped.

    Returns
    -------
    list of int
        Indices in [0, n_frames).
    """
    chosen = {int((i + 0.5) * n_frames / spread) for i in range(spread)}
    chosen |= set(range(max(0, n_frames - last), n_frames))
    chosen |= {a + n_frames if a < 0 else a for a in at}
    return sorted(i for i in chosen if 0 <= i < n_frames)


def _label(tile: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.6) -> None:
    """White text with a dark outline (readable on any content), in place."""
    cv2.putText(tile, text, org, FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, org, FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _tile(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    width = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interp)


def build_sheet(columns: list[list[np.ndarray]], labels: list[str], indices: list[int], height: int) -> np.ndarray:
    """The sheet as an RGB uint8 image: a header strip, then one row per frame index.

    Parameters
    ----------
    columns : list of list of ndarray (H, W, 3) uint8
        Per file, its frames at ``indices`` (RGB; sizes may differ between files).
    labels : list of str
        Column headers, one per file.
    indices : list of int
        The frame numbers drawn on the first tile of each row.
    height : int
        Tile height, px.

    Returns
    -------
    ndarray, shape (HEADER_PX + len(indices)·height, Σ tile widths, 3), dtype uint8
    """
    rows = []
    for r, index in enumerate(indices):
        tiles = [_tile(col[r], height) for col in columns]
        _label(tiles[0], f"frame {index}", (6, height - 8))
        rows.append(np.concatenate(tiles, axis=1))
    widths = [_tile(col[0], height).shape[1] for col in columns]
    header = np.full((HEADER_PX, sum(widths), 3), 32, np.uint8)
    x = 0
    for label, width in zip(labels, widths):
        _label(header, label[: max(4, width // 9)], (x + 6, HEADER_PX - 9), 0.5)
        x += width
    return np.concatenate([header] + rows, axis=0)


def _frames_at(path: Path, indices: list[int]) -> list[np.ndarray]:
    from faceblit_core.media import iter_frames, probe

    wanted = set(indices)
    got: dict[int, np.ndarray] = {}
    info = probe(path)
    for i, frame in enumerate(iter_frames(info, end=min(info.n_frames, max(indices) + 1))):
        if i in wanted:
            got[i] = frame
    return [got[i] for i in indices]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Contact sheet: input | renders, a few frames per row, as a PNG.")
    parser.add_argument("input", type=Path, help="the source clip (first column)")
    parser.add_argument("renders", type=Path, nargs="+", help="its renders (same frame count)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="image to write (PNG)")
    parser.add_argument("--frames", type=int, default=4, help="frames spread over the clip (default 4)")
    parser.add_argument("--last", type=int, default=0, help="also the last K frames (default 0)")
    parser.add_argument("--at", default="", help="also these frames, comma-separated (negative: from the end)")
    parser.add_argument("--labels", default="", help="column headers of the renders, comma-separated (default: file names)")
    parser.add_argument("--height", type=int, default=256, help="tile height, px (default 256)")
    args = parser.parse_args(argv)
    if args.frames < 0 or args.last < 0 or args.height < 16:
        parser.error("--frames and --last must be >= 0 and --height >= 16")
    try:
        at = [int(a) for a in args.at.split(",") if a.strip()]
    except ValueError:
        parser.error(f"--at: not a list of integers: {args.at!r}")
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else [p.name for p in args.renders]
    if len(labels) != len(args.renders):
        parser.error(f"--labels: {len(labels)} labels for {len(args.renders)} renders")

    from faceblit_core.errors import FaceblitError, OutputError
    from faceblit_core.media import probe

    try:
        n_frames = probe(args.input).n_frames
        indices = pick_frames(n_frames, args.frames, args.last, at)
        if not indices:
            parser.error("no frame chosen (--frames 0, --last 0 and no --at inside the clip)")
        for render in args.renders:
            if probe(render).n_frames < indices[-1] + 1:
                print(f"contact_sheet: error: {render}: fewer frames than frame {indices[-1]} of the input", file=sys.stderr)
                return 3
        columns = [_frames_at(p, indices) for p in [args.input, *args.renders]]
        sheet = build_sheet(columns, ["input"] + labels, indices, args.height)
        if not cv2.imwrite(str(args.output), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OutputError(f"{args.output}: cannot write the image (missing folder or unknown extension?)")
    except FaceblitError as exc:
        print(f"contact_sheet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{args.output}: {len(indices)} frames {indices}, {len(columns)} columns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
