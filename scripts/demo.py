"""`make demo`: stylize the team-made sample clip with the team-made exemplar.

Writes ``out/demo/clip-exemplar.mp4`` (the stylized clip, same length, rate and
audio as ``samples/clip.mp4``) and ``out/demo/before_after.png`` (one frame, input
left, output right), then prints where they are.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    from faceblit_core import media
    from faceblit_core.errors import FaceblitError
    from faceblit_core.pipeline import stylize_video

    clip = REPO / "samples" / "clip.mp4"
    style = REPO / "samples" / "exemplar.png"
    out_dir = REPO / "out" / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "clip-exemplar.mp4"
    try:
        summary = stylize_video(clip, style, video, overwrite=True, cache_dir=REPO / "out" / "cache")
        info = media.probe(video)
        middle = info.n_frames // 2
        before = next(iter(media.iter_frames(media.probe(clip), start=middle, end=middle + 1)))
        after = next(iter(media.iter_frames(info, start=middle, end=middle + 1)))
        import numpy as np

        picture = out_dir / "before_after.png"
        media.write_image(picture, np.concatenate([before, after], axis=1), overwrite=True)
    except FaceblitError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summary.describe())
    print(f"stylized video: {video}")
    print(f"before/after:   {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
