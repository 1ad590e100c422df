"""Benchmark of the guides (DESIGN §4) on target2-sized data (768×1024).

Prints ``key=value`` lines: median milliseconds per call (cases interleaved run
by run, so load on this shared machine hits them alike) and the positional
guide's grid-interpolation error against per-pixel MLS. Budgets (2-core CPU):
positional guide of a full frame ≤ 10 ms; appearance guide + histogram match
≤ 5 ms; temporal guide ≤ 5 ms; face mask ≤ 5 ms (also timed on a 1080p frame,
and with ``hair_aware=False``, the whole-ellipse mask, for comparison).

Data: ``../shared/data/images/target2.png`` as the frame, its face found by
``faceblit_core.faces.DlibBackend``; when that is unavailable, het's
hand-corrected landmarks (het is also 768×1024, similarly framed) stand in
(``target_landmarks=`` says which). Style: watercolorgirl.

Usage::

    python bench/guides.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _load_lm(path: Path):
    import numpy as np

    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(rows[0]) == 1:
        rows = rows[1:]
    return np.array(rows, dtype=np.float64)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    frame_path = DATA / "images" / "target2.png"
    if not frame_path.exists():
        print(f"# skipped: {frame_path} not found (the team's data set)", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO))
    import cv2
    import numpy as np

    from faceblit_core.config import StylizeConfig
    from faceblit_core.geometry import Region
    from faceblit_core.guides import (
        app_cdf,
        appearance_guide,
        face_mask,
        face_mask_outline,
        match_histogram,
        mls_similarity,
        positional_guide,
        stretch_contrast,
        temporal_guide,
    )

    cfg = StylizeConfig()
    frame = cv2.cvtColor(cv2.imread(str(frame_path)), cv2.COLOR_BGR2RGB)
    H, W = frame.shape[:2]
    target_lm, source = None, "het_placeholder"
    try:  # the real target2 face when the landmark module is there
        from faceblit_core.faces import DlibBackend

        found = DlibBackend().detect(frame)
        if found:
            target_lm, source = np.asarray(found[0].points, dtype=np.float64), "dlib"
    except Exception as exc:  # noqa: BLE001 - a benchmark falls back to the placeholder
        print(f"# dlib landmarks unavailable ({type(exc).__name__}: {exc}); using het's", file=sys.stderr)
    if target_lm is None:
        target_lm = _load_lm(DATA / "styles" / "het.lm.txt")
    style = cv2.cvtColor(cv2.imread(str(DATA / "styles" / "watercolorgirl.png")), cv2.COLOR_BGR2RGB)
    style_lm = _load_lm(DATA / "styles" / "watercolorgirl.lm.txt")
    ref_cdf = app_cdf(stretch_contrast(appearance_guide(style)))
    full = Region.full(W, H)
    face = Region.around(target_lm, cfg.margin, (W, H))
    face_mask_full = face_mask(frame, target_lm, region=full, feather=cfg.mask_feather) > 0.5
    sigma = cfg.temporal_blur
    # A 1080p frame (portrait 1080×1920): target2 scaled ×1.875, centre cropped; the
    # face's mask region as the stylizer sizes it (outline + margin).
    s1080, crop_x = 1920 / H, (round(W * 1920 / H) - 1080) // 2
    frame1080 = np.ascontiguousarray(cv2.resize(frame, (round(W * s1080), 1920), interpolation=cv2.INTER_LINEAR)[:, crop_x : crop_x + 1080])
    lm1080 = target_lm * s1080 - np.array([crop_x, 0.0])
    face1080 = Region.around(face_mask_outline(lm1080), cfg.margin, (1080, 1920))

    cases = {
        "positional_full": lambda: positional_guide(target_lm, style_lm, region=full, alpha=cfg.mls_alpha, grid=cfg.mls_grid),
        "positional_face": lambda: positional_guide(target_lm, style_lm, region=face, alpha=cfg.mls_alpha, grid=cfg.mls_grid),
        "appearance_full": lambda: appearance_guide(frame),
        "appearance_match_full": lambda: match_histogram(appearance_guide(frame), ref_cdf, mask=face_mask_full),
        "temporal_full": lambda: temporal_guide(frame, sigma=sigma),
        "temporal_exact_full": lambda: temporal_guide(frame, sigma=sigma, exact=True),
        "temporal_sigma2_full": lambda: temporal_guide(frame, sigma=2.0),
        "mask_full": lambda: face_mask(frame, target_lm, region=full, feather=cfg.mask_feather),
        "mask_face": lambda: face_mask(frame, target_lm, region=face, feather=cfg.mask_feather),
        # hair_aware=False: the whole forehead ellipse (the exemplar's mask; the mask before issue 14).
        "mask_face_geometric": lambda: face_mask(frame, target_lm, region=face, feather=cfg.mask_feather, hair_aware=False),
        "mask_face_1080p": lambda: face_mask(frame1080, lm1080, region=face1080, feather=cfg.mask_feather),
        "mask_face_1080p_geometric": lambda: face_mask(frame1080, lm1080, region=face1080, feather=cfg.mask_feather, hair_aware=False),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():  # warm-up (first-call allocations, OpenCV dispatch)
        fn()
    for _ in range(max(1, args.runs)):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000.0)

    print(f"frame={W}x{H}")
    print(f"target_landmarks={source}")
    print(f"face_region={face.width}x{face.height}")
    print(f"face_region_1080p={face1080.width}x{face1080.height}")
    print(f"temporal_sigma_px={sigma}")
    for name, ts in times.items():
        print(f"{name}_ms={statistics.median(ts):.2f}")

    # Interpolation error of the grid against per-pixel MLS on the face region.
    g = positional_guide(target_lm, style_lm, region=face, alpha=cfg.mls_alpha, grid=cfg.mls_grid)
    ys, xs = np.mgrid[face.y0 : face.y1, face.x0 : face.x1]
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    exact = mls_similarity(pts, target_lm, style_lm, alpha=cfg.mls_alpha).reshape(face.height, face.width, 2)
    err = np.linalg.norm(g - exact, axis=2)
    print(f"positional_interp_err_mean_px={err.mean():.4f}")
    print(f"positional_interp_err_p99_px={np.percentile(err, 99):.3f}")
    print(f"positional_interp_err_max_px={err.max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
