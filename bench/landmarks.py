"""Landmark benchmark: accuracy on the exemplars, coverage and jitter on the clips, speed.

Prints ``key=value`` lines (one figure each). Needs ../shared/data (or
``FACEBLIT_SHARED_DATA``). Sections (``--only a,b``):

``styles``  the 10 FaceBlit exemplars at both sizes: found, NME against the
            hand-corrected ``NAME.lm.txt`` (mean point error / inter-ocular distance
            of the reference), median per size; :func:`detect_style_landmarks`.
``videos``  every clip: fraction of frames with a face, full detections run,
            per-frame landmark time (median of tracked frames, mean of all; the
            decoder runs alongside, so these include its share of the 2 cores).
``speed``   the first 120 frames of target2.mp4 (768x1024) decoded first, then
            tracked: median ms of tracked frames, of detection frames, the mean,
            and the predictor fit, the optical-flow motion prediction and the
            scene-cut thumbnail alone.
``jitter``  target2.mp4 tracked twice, smoothing off (``min_cutoff=0``) and on
            (config defaults): :func:`landmark_jitter` of both, their ratio, and the
            mean NME between the smoothed points and that run's raw fits (lag).
``cnn``     dlib CNN (MMOD) detector time on a 512 px exemplar (the painting fallback).

``--calibrate`` instead measures the two constants of faceblit_core.faces —
``types.MEAN_SHAPE`` (predictor output relative to the HOG box) and
``backends.dlib.CNN_TO_HOG`` — from every 7th frame of the clips and all stills, and prints them.

Timings share the 2 CPU cores with whatever else runs; compare medians, not single runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceblit_core import faces as F  # noqa: E402
from faceblit_core.config import StylizeConfig  # noqa: E402
from faceblit_core.evaluation import landmark_jitter, nme  # noqa: E402
from faceblit_core.faces.backends.dlib import _dlib_model, _from_rect  # noqa: E402
from faceblit_core.faces.tracking import _predict_points, _thumbnail  # noqa: E402
from faceblit_core.faces.types import MEAN_SHAPE  # noqa: E402

DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))
STYLES = ("watercolorgirl", "laurinbust", "het", "frank", "girl", "expressive", "malevich", "woodenmask", "prisma", "oldman")


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def video_frames(path: Path, limit: int | None = None):
    """RGB frames through the project's decoder (faceblit_core.media), OpenCV if that is unavailable."""
    try:
        from faceblit_core import media

        info = media.probe(path)
        end = info.n_frames if limit is None else min(limit, info.n_frames)
        yield from media.iter_frames(info, end=end)
        return
    except ImportError:
        pass
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while limit is None or n < limit:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def out(key: str, value) -> None:
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"{key}={value}", flush=True)


def bench_styles() -> None:
    F.DlibBackend()  # load the models outside the timings
    for suffix, label in (("", "768x1024"), ("_480x640", "480x640")):
        errors, found, times = [], 0, []
        for name in STYLES:
            image = read_rgb(DATA / "styles" / f"{name}{suffix}.png")
            ref = F.load_landmarks(DATA / "styles" / f"{name}{suffix}.lm.txt")
            t = time.perf_counter()
            try:
                pts = F.detect_style_landmarks(image)
            except Exception as exc:  # report, keep measuring the others
                out(f"style_{label}_{name}", f"not found ({exc})")
                continue
            times.append(time.perf_counter() - t)
            found += 1
            errors.append(nme(pts, ref))
            out(f"style_nme_{label}_{name}", errors[-1])
        out(f"style_found_{label}", f"{found}/{len(STYLES)}")
        out(f"style_nme_median_{label}", float(np.median(errors)))
        out(f"style_nme_mean_{label}", float(np.mean(errors)))
        out(f"style_seconds_median_{label}", float(np.median(times)))


def track_clip(path: Path, *, min_cutoff: float, beta: float, limit: int | None = None):
    cfg = StylizeConfig()
    tracker = F.FaceTracker(
        F.DlibBackend(),
        detect_every=cfg.detect_every,
        max_faces=cfg.max_faces,
        min_cutoff=min_cutoff,
        beta=beta,
        scene_cut=cfg.scene_cut,
        fps=30.0,
    )
    smoothed, raw, ms, detected = [], [], [], []
    for frame in video_frames(path, limit):
        before = tracker.detections
        t = time.perf_counter()
        faces = tracker.update(frame)
        ms.append((time.perf_counter() - t) * 1000)
        detected.append(tracker.detections > before)
        smoothed.append(faces[0].points if faces else None)
        raw.append(tracker.last_raw[0].points if tracker.last_raw else None)
    return smoothed, raw, ms, detected, tracker, frame.shape


def bench_videos() -> None:
    cfg = StylizeConfig()
    for path in sorted((DATA / "videos").glob("*.mp4")):
        sm, _, ms, detected, tracker, shape = track_clip(path, min_cutoff=cfg.smooth_min_cutoff, beta=cfg.smooth_beta)
        clip = path.stem
        n = len(sm)
        out(f"coverage_{clip}", sum(p is not None for p in sm) / n)
        out(f"frames_{clip}", n)
        out(f"size_{clip}", f"{shape[1]}x{shape[0]}")
        out(f"detections_{clip}", tracker.detections)
        tracked = [m for m, d in zip(ms, detected) if not d]
        out(f"track_ms_median_{clip}", statistics.median(tracked) if tracked else float("nan"))
        out(f"frame_ms_mean_{clip}", float(np.mean(ms)))
        det = [m for m, d in zip(ms, detected) if d]
        if det:
            out(f"detect_frame_ms_median_{clip}", statistics.median(det))


def bench_jitter() -> None:
    cfg = StylizeConfig()
    clip = DATA / "videos" / "target2.mp4"
    _, raw_off, _, _, _, _ = track_clip(clip, min_cutoff=0.0, beta=0.0)
    sm_on, raw_on, _, _, _, _ = track_clip(clip, min_cutoff=cfg.smooth_min_cutoff, beta=cfg.smooth_beta)
    if any(p is None for p in raw_off + sm_on):
        out("jitter_note", "face lost on some frame; jitter over frames with a face only")
    off = np.stack([p for p in raw_off if p is not None])
    on = np.stack([p for p in sm_on if p is not None])
    j_off, j_on = landmark_jitter(off), landmark_jitter(on)
    lag = [nme(s, r) for s, r in zip(sm_on, raw_on) if s is not None]
    out("jitter_min_cutoff", cfg.smooth_min_cutoff)
    out("jitter_beta", cfg.smooth_beta)
    out("jitter_unsmoothed", j_off)
    out("jitter_smoothed", j_on)
    out("jitter_ratio", j_off / j_on)
    out("smooth_lag_nme_mean", float(np.mean(lag)))
    out("smooth_lag_nme_p95", float(np.percentile(lag, 95)))


def bench_speed() -> None:
    """Per-frame landmark time while tracking, frames decoded beforehand (no decoder competing)."""
    cfg = StylizeConfig()
    frames = list(video_frames(DATA / "videos" / "target2.mp4", 120))
    backend = F.DlibBackend()
    tracker = F.FaceTracker(
        backend, detect_every=cfg.detect_every, min_cutoff=cfg.smooth_min_cutoff, beta=cfg.smooth_beta, fps=30.0
    )
    tracked, detected = [], []
    for frame in frames:
        before = tracker.detections
        t = time.perf_counter()
        tracker.update(frame)
        ms = (time.perf_counter() - t) * 1000
        (detected if tracker.detections > before else tracked).append(ms)
    h, w = frames[0].shape[:2]
    out("speed_size", f"{w}x{h}")
    out("track_ms_median", statistics.median(tracked))
    out("track_ms_p90", float(np.percentile(tracked, 90)))
    out("detect_frame_ms_median", statistics.median(detected))
    out("frame_ms_mean", float(np.mean(tracked + detected)))
    # the parts of a tracked frame
    box = tracker.last_raw[0].box
    fit = [0.0] * len(frames)
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        backend.fit(frame, box)
        fit[i] = (time.perf_counter() - t) * 1000
    out("predictor_fit_ms_median", statistics.median(fit))
    # the box carried forward by optical flow (gray conversion included: it runs once a frame)
    points = tracker.last_raw[0].points
    predict = []
    for before, frame in zip(frames, frames[1:]):
        t = time.perf_counter()
        _predict_points(cv2.cvtColor(before, cv2.COLOR_RGB2GRAY), cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), points)
        predict.append((time.perf_counter() - t) * 1000)
    out("motion_predict_ms_median", statistics.median(predict))
    thumb = []
    for frame in frames:
        t = time.perf_counter()
        _thumbnail(frame)
        thumb.append((time.perf_counter() - t) * 1000)
    out("scene_cut_thumbnail_ms_median", statistics.median(thumb))


def bench_cnn() -> None:
    image = read_rgb(DATA / "styles" / "malevich.png")
    small = cv2.resize(image, (384, 512), interpolation=cv2.INTER_AREA)
    cnn = _dlib_model("cnn")
    times = []
    for _ in range(3):
        t = time.perf_counter()
        cnn(small, 0)
        times.append((time.perf_counter() - t) * 1000)
    out("cnn_detect_ms_median_384x512", statistics.median(times))


def calibrate() -> None:
    """Measure MEAN_SHAPE and CNN_TO_HOG from HOG/CNN detections on the shared data."""
    backend = F.DlibBackend(upsample_fallback=False, cnn_fallback=False)
    cnn = _dlib_model("cnn")
    shapes, ratios, offsets = [], [], []

    def images():
        for path in sorted((DATA / "videos").glob("*.mp4")):
            for i, frame in enumerate(video_frames(path)):
                if i % 7 == 0:
                    yield path.name, frame
        for path in sorted((DATA / "styles").glob("*.png")) + sorted((DATA / "images").glob("*")):
            yield path.name, read_rgb(path)

    for k, (name, img) in enumerate(images()):
        boxes, _, _ = backend.detect_boxes(img)
        for box in boxes:
            pts = backend.fit(img, box).points.astype(np.float64)
            side = float(box[2] - box[0])
            centre = (box[:2] + box[2:]) / 2.0
            shapes.append((pts - centre) / side)
        # CNN pairs on the stills and on a few video frames (the CNN is slow on 2 cores)
        if boxes and (not name.endswith(".mp4") or k % 5 == 0):
            small, sx, sy = backend._downscale(img)
            for d in cnn(small, 0):
                cb = _from_rect(d.rect, sx, sy)
                hb = max(boxes, key=lambda b: F.box_iou(b, cb))
                if F.box_iou(hb, cb) < 0.3:
                    continue
                cs = float(cb[2] - cb[0])
                ratios.append(float(hb[2] - hb[0]) / cs)
                offsets.append(((hb[:2] + hb[2:]) / 2 - (cb[:2] + cb[2:]) / 2) / cs)
    mean_shape = np.median(np.stack(shapes), axis=0)
    out("calibration_faces", len(shapes))
    out("calibration_cnn_pairs", len(ratios))
    print("box_mean_shape=" + json.dumps(np.round(mean_shape, 4).reshape(-1).tolist()))
    off = np.median(np.stack(offsets), axis=0)
    out("cnn_to_hog", f"({np.median(ratios):.3f}, {off[0]:.3f}, {off[1]:.3f})")
    current = MEAN_SHAPE
    out("box_mean_shape_max_change", float(np.abs(mean_shape - current).max()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="styles,videos,jitter,speed,cnn", help="comma-separated sections")
    ap.add_argument("--calibrate", action="store_true", help="measure the calibration constants instead")
    args = ap.parse_args()
    if not (DATA / "styles").is_dir():
        raise SystemExit(f"shared data not found at {DATA} (set FACEBLIT_SHARED_DATA)")
    if args.calibrate:
        calibrate()
        return
    sections = {
        "styles": bench_styles,
        "videos": bench_videos,
        "jitter": bench_jitter,
        "speed": bench_speed,
        "cnn": bench_cnn,
    }
    for name in args.only.split(","):
        sections[name.strip()]()


if __name__ == "__main__":
    main()
