"""Benchmark of StyleBlit + NNF denoising + voting (faceblit_core.synthesis) on real guides.

Prints ``key=value`` lines: the median megapixels per second of the whole
synthesis step on one region (``synthesis.synthesize``: StyleBlit + NNF denoising +
voting, as the pipeline runs a first frame; also without the optional denoising),
each public step alone (``*_alone_ms``: styleblit, denoise_nnf, vote with their
(h, w, 2) inputs and outputs), the acceptance rate of each seed level, and
(``video_*``) the same step frame to frame as the pipeline runs it on target2.mp4
(face space, incremental). Timings are medians of ``--repeat`` runs, the jobs
interleaved so that a noisy machine weighs on all of them alike.

Guides are the real thing: target2.png with dlib landmarks, the watercolorgirl
exemplar with its hand-corrected landmarks, MLS positional guide (with
FaceBlit's background anchors, so the whole frame is a sensible warp),
histogram-matched appearance guide and the exemplar's exact lookup table. When a
project module or the shared data is missing, it falls back to crude guides
(affine warp, high-pass of the image, a nearest-cell table) and says so.

Usage::

    .venv/bin/python bench/synthesis.py [--size 1024x768] [--repeat 7] [--threads N]
        [--device cpu] [--levels 6] [--threshold 50] [--radius 1] [--style watercolorgirl]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceblit_core import synthesis as syn  # noqa: E402
from faceblit_core.synthesis.seeds import region_levels  # noqa: E402

DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))


# ------------------------------------------------------------------------------ guides
def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _crude_lut(style_app: np.ndarray, *, lambda_pos: float = 10.0, lambda_app: float = 2.0,
               radius: int = 6) -> np.ndarray:
    """Stand-in lookup table: best pixel within a small square around each cell centre.

    Same cost as the real table (λ_pos on 8-bit positions, λ_app on appearance),
    smaller search square, solved per cell as a 1-D L1 distance transform over a.
    """
    Hs, Ws = style_app.shape
    cx = np.clip(np.round((np.arange(256) + 0.5) * Ws / 256 - 0.5).astype(np.int64), 0, Ws - 1)
    cy = np.clip(np.round((np.arange(256) + 0.5) * Hs / 256 - 0.5).astype(np.int64), 0, Hs - 1)
    out = np.empty((256, 256, 256), dtype=np.int32)
    a = np.arange(256)
    big = np.float32(1e30)
    for y8 in range(256):
        cost = np.full((256, 256), big, dtype=np.float32)   # [x8, a(s)] best cost
        arg = np.zeros((256, 256), dtype=np.int64)
        for dy in range(-radius, radius + 1):
            sy = np.clip(cy[y8] + dy, 0, Hs - 1)
            qy = (sy * 256) // Hs
            for dx in range(-radius, radius + 1):
                sx = np.clip(cx + dx, 0, Ws - 1)
                qx = (sx * 256) // Ws
                c = lambda_pos * (np.abs(qx - np.arange(256)) + abs(int(qy) - y8)).astype(np.float32)
                av = style_app[sy, sx].astype(np.int64)
                cur = cost[np.arange(256), av]
                better = c < cur
                cost[np.arange(256)[better], av[better]] = c[better]
                arg[np.arange(256)[better], av[better]] = (sy * Ws + sx[better])
        # L1 distance transform along a (forward and backward passes).
        for i in range(1, 256):
            cand = cost[:, i - 1] + lambda_app
            m = cand < cost[:, i]
            cost[m, i] = cand[m]
            arg[m, i] = arg[m, i - 1]
        for i in range(254, -1, -1):
            cand = cost[:, i + 1] + lambda_app
            m = cand < cost[:, i]
            cost[m, i] = cand[m]
            arg[m, i] = arg[m, i + 1]
        out[y8] = arg[:, a]
    return out


def build_guides(style: str = "watercolorgirl", *, log=print) -> dict:
    """Guides of target2.png for ``style``: dict with g_pos, g_app, style_app, style_image, lut, notes."""
    import cv2

    notes = []
    target = _read_rgb(DATA / "images" / "target2.png")
    simg = _read_rgb(DATA / "styles" / f"{style}.png")
    H, W = target.shape[:2]
    Hs, Ws = simg.shape[:2]
    try:
        from faceblit_core.guides.appearance import app_cdf, appearance_guide, match_histogram, stretch_contrast

        s_app = stretch_contrast(appearance_guide(simg))
        t_app = match_histogram(appearance_guide(target), app_cdf(s_app))
    except ImportError:
        notes.append("crude appearance guides")
        def hp(rgb):
            g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
            low = cv2.GaussianBlur(g, (0, 0), 8)
            return np.clip((g - low) / 2 + 128, 0, 255).astype(np.uint8)
        s_app, t_app = hp(simg), hp(target)
    g_pos = None
    try:
        from faceblit_core.faces import DlibBackend
        from faceblit_core.geometry import Region
        from faceblit_core.guides.positional import background_anchors, positional_guide
        from faceblit_core.faces.io import load_landmarks

        s_lm = load_landmarks(DATA / "styles" / f"{style}.lm.txt")
        faces = DlibBackend().detect(target)
        if faces:
            t_lm = faces[0].points
            anchors = background_anchors(W, H, t_lm, s_lm, Ws, Hs)
            g_pos = positional_guide(t_lm, s_lm, region=Region(0, 0, W, H), anchors=anchors)
        else:
            notes.append("no face found in target2: affine positional guide")
    except ImportError as e:
        notes.append(f"crude positional guide ({e})")
    if g_pos is None:
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        g_pos = np.stack([xx * Ws / W + 4 * np.sin(yy / 60), yy * Hs / H + 4 * np.cos(xx / 70)], -1).astype(np.float32)
    t0 = time.perf_counter()
    try:
        from faceblit_core.lut import build_lookup_table

        lut = build_lookup_table(s_app)
    except ImportError:
        notes.append("crude lookup table")
        lut = _crude_lut(s_app)
    log(f"lut_build_s={time.perf_counter() - t0:.2f}")
    return dict(g_pos=g_pos.astype(np.float32), g_app=t_app, style_app=s_app, style_image=simg, lut=lut,
                target=target, notes=notes)


def resize_guides(g: dict, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Positional and appearance guides resampled to ``w × h`` (for other frame sizes)."""
    import cv2

    H, W = g["g_app"].shape
    if (w, h) == (W, H):
        return g["g_pos"], g["g_app"]
    gp = cv2.resize(g["g_pos"], (w, h), interpolation=cv2.INTER_LINEAR)
    ga = cv2.resize(g["g_app"], (w, h), interpolation=cv2.INTER_LINEAR)
    return gp.astype(np.float32), ga


# ------------------------------------------------------------------------------- bench
def _reference_op_us() -> float:
    """Median time of one float32 add of 786k elements: how busy the shared CPU is right now."""
    a, b = torch.rand(768 * 1024), torch.rand(768 * 1024)
    out = torch.empty_like(a)
    ts = []
    for _ in range(50):
        t0 = time.perf_counter()
        torch.add(a, b, out=out)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"device={device} threads={torch.get_num_threads()} size={w}x{h} levels={args.levels} "
          f"threshold={args.threshold} radius={args.radius} style={args.style}")
    print(f"load_avg_1min={os.getloadavg()[0]:.2f}")
    print(f"ref_add_786k_us={_reference_op_us():.0f}")
    g = build_guides(args.style)
    for n in g["notes"]:
        print(f"note={n.replace(' ', '_')}")
    gp, ga = resize_guides(g, w, h)
    gp_t = torch.from_numpy(gp).to(device)
    ga_t = torch.from_numpy(ga).to(device)
    sapp = torch.from_numpy(g["style_app"]).to(device)
    simg = torch.from_numpy(g["style_image"]).to(device)
    lut = torch.from_numpy(g["lut"]).to(device)
    jt = syn.JitterTable.create(0, args.levels)
    # One cache for the run, as the pipeline's stylizer holds one per clip.
    cache = syn.SynthesisCache()
    kw = dict(jitter=jt, threshold=args.threshold, levels=args.levels, origin=(0, 0), cache=cache)
    hs, ws = sapp.shape

    # Cold seed maps: a region never seen (new window), then a moved box (window reused).
    _sync(device)
    t0 = time.perf_counter()
    region_levels(jt, args.levels, 0, 0, h, w, device, cache)
    _sync(device)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    region_levels(jt, args.levels, 5, 3, h - 8, w - 10, device, cache)
    _sync(device)
    moved = time.perf_counter() - t0
    print(f"seed_maps_cold_ms={cold * 1e3:.1f}")
    print(f"seed_maps_moved_box_ms={moved * 1e3:.1f}")

    # The headline: synthesis.synthesize of a whole frame (StyleBlit → NNF denoising →
    # voting, as the pipeline runs a first frame), with and without the optional
    # denoising, interleaved; then each public step alone, also interleaved.
    def timed(f) -> float:
        _sync(device)
        t0 = time.perf_counter()
        f()
        _sync(device)
        return time.perf_counter() - t0

    def synth(denoise: bool):
        return lambda: syn.synthesize(gp_t, ga_t, sapp, lut, simg, radius=args.radius, denoise=denoise, **kw)

    synth(True)()                                 # warm caches (style tables, seed maps)
    nnf = syn.styleblit(gp_t, ga_t, sapp, lut, **kw)
    den = syn.denoise_nnf(nnf, style_shape=(hs, ws), radius=args.radius, cache=cache)
    jobs = {"total": synth(True), "no_denoise": synth(False),
            "styleblit": lambda: syn.styleblit(gp_t, ga_t, sapp, lut, **kw),
            "denoise": lambda: syn.denoise_nnf(nnf, style_shape=(hs, ws), radius=args.radius, cache=cache),
            "vote": lambda: syn.vote(den, simg, radius=args.radius, cache=cache)}
    times = {k: [] for k in jobs}
    for i in range(args.repeat):
        for k in (list(jobs) if i % 2 == 0 else list(jobs)[::-1]):
            times[k].append(timed(jobs[k]))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"mpx_per_s={w * h / med['total'] / 1e6:.2f}")
    print(f"total_ms={med['total'] * 1e3:.1f}")
    print(f"mpx_per_s_no_denoise={w * h / med['no_denoise'] / 1e6:.2f}")
    print(f"total_no_denoise_ms={med['no_denoise'] * 1e3:.1f}")
    for k in ("styleblit", "denoise", "vote"):
        print(f"{k}_alone_ms={med[k] * 1e3:.1f}")
    _split(gp_t, ga_t, sapp, lut, kw, device, args)
    _moving_face(gp_t, ga_t, sapp, simg, lut, jt, device, args, cache)
    nnf, lv = syn.styleblit(gp_t, ga_t, sapp, lut, return_levels=True, **kw)
    counts = torch.bincount((lv.reshape(-1).long() + 1), minlength=args.levels + 2).cpu().numpy()
    total = counts.sum()
    print(f"accept_fallback={counts[0] / total:.4f}")
    for level in range(args.levels, -1, -1):
        print(f"accept_level{level}={counts[level + 1] / total:.4f}")
    den = syn.denoise_nnf(nnf, style_shape=(hs, ws), radius=args.radius, cache=cache)
    changed = (den != nnf).any(-1).float().mean().item()
    print(f"denoise_changed_fraction={changed:.4f}")
    if device.type == "cpu":
        _video_face_space(args)


def _video_face_space(args: argparse.Namespace, frames: int = 40) -> None:
    """Frame to frame, as the pipeline runs it: face-space synthesis of target2.mp4.

    The pipeline's calls of ``synthesis.synthesize`` on the first ``frames`` frames are
    recorded (with the stylizer's ``SynthesisCache``), then replayed and timed alone: the first frame is a full synthesis, each
    later one updates last frame's result (StyleBlit only where the previous match
    fails the keep test, denoising and voting only around what changed).
    """
    clip = DATA / "videos" / "target2.mp4"
    if not clip.exists():
        print(f"# video part skipped: {clip} not found", file=sys.stderr)
        return
    from faceblit_core import media
    from faceblit_core import stylizer as stylizer_module
    from faceblit_core.config import StylizeConfig
    from faceblit_core.faces import get_backend
    from faceblit_core.pipeline import load_style

    cfg = StylizeConfig(threshold=args.threshold, levels=args.levels, blend_radius=args.radius)
    info = media.probe(clip)
    with tempfile.TemporaryDirectory() as tmp:
        asset = load_style(DATA / "styles" / f"{args.style}.png", config=cfg, style_landmarks=None, cache_dir=tmp)
    stylizer = stylizer_module.FrameStylizer(asset, cfg, fps=float(info.fps), backend=get_backend("dlib", cnn_fallback=False), device="cpu")
    calls = []
    real = syn.synthesize

    def record(*a, **k):
        calls.append((a, k))
        return real(*a, **k)

    stylizer_module.synthesize = record  # where FrameStylizer looks it up
    try:
        for frame in media.iter_frames(info, start=0, end=frames):
            stylizer(frame)
    finally:
        stylizer_module.synthesize = real
    if not calls:
        print("# video part skipped: no face found", file=sys.stderr)
        return
    times, evaluated = [], []
    for _ in range(2):             # the first pass warms the caches
        times, evaluated, prev = [], [], None
        for a, k in calls:
            t0 = time.perf_counter()
            prev = real(*a, **{**k, "previous": prev})
            times.append(time.perf_counter() - t0)
            evaluated.append(prev.evaluated)
    h, w = prev.nnf.shape[:2]
    later = statistics.median(times[1:]) if len(times) > 1 else float("nan")
    print(f"video_region={w}x{h}")
    print(f"video_frames={len(times)}")
    print(f"video_first_frame_ms={times[0] * 1e3:.1f}")
    print(f"video_frame_ms_median={later * 1e3:.2f}")
    print(f"video_mpx_per_s={w * h / later / 1e6:.1f}")
    print(f"video_evaluated_fraction_median={statistics.median(evaluated[1:]) / (w * h):.5f}")


def _split(gp_t, ga_t, sapp, lut, kw, device, args) -> None:
    """Per-step split of styleblit itself (seed-map lookup, prep, levels) by timing partial runs."""
    reps = max(3, args.repeat)

    def med(f) -> float:
        ts = []
        for _ in range(reps):
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    h, w = ga_t.shape
    jt = kw["jitter"]
    t_maps = med(lambda: region_levels(jt, args.levels, 0, 0, h, w, device, kw["cache"]))
    t_l0 = med(lambda: syn.styleblit(gp_t, ga_t, sapp, lut, **{**kw, "levels": 0}))
    t_all = med(lambda: syn.styleblit(gp_t, ga_t, sapp, lut, **kw))
    print(f"split_seed_maps_cached_ms={t_maps:.2f}")
    # Both runs whole, not their difference: with no levels every pixel takes the
    # fallback search, which can cost more than the levels would (a negative difference).
    print(f"split_levels0_ms={t_l0:.1f}")
    print(f"split_all_levels_ms={t_all:.1f}")


def _moving_face(gp_t, ga_t, sapp, simg, lut, jt, device, args, cache) -> None:
    """A 400×500 face box drifting 3 px right and 2 px down per frame: per-frame cost
    including the seed-map fix-up of the moved region (the window cache is warm)."""
    fw, fh = 400, 500
    h, w = ga_t.shape
    if fw + 60 > w or fh + 40 > h:
        return
    times = []
    for i in range(args.repeat + 1):
        x0, y0 = 150 + 3 * i, 200 + 2 * i
        g, a = gp_t[y0:y0 + fh, x0:x0 + fw].contiguous(), ga_t[y0:y0 + fh, x0:x0 + fw].contiguous()
        _sync(device)
        t0 = time.perf_counter()
        syn.synthesize(g, a, sapp, lut, simg, radius=args.radius, jitter=jt, levels=args.levels,
                       threshold=args.threshold, origin=(x0, y0), cache=cache)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"moving_face_{fw}x{fh}_ms={med * 1e3:.1f}")
    print(f"moving_face_mpx_per_s={fw * fh / med / 1e6:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="768x1024", help="region WxH (guides of target2 resampled)")
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--threshold", type=float, default=50.0)
    ap.add_argument("--radius", type=int, default=1)
    ap.add_argument("--style", default="watercolorgirl")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
