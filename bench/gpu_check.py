"""Prepared check for a machine with CUDA: CPU == CUDA bit for bit, and CUDA throughput.

1. Builds guides for target2 (real guides and lookup table from faceblit_core
   when the shared data set is there, else synthetic ones, and says which).
2. Runs StyleBlit → NNF denoising → voting on the CPU and on the device for the
   whole target2 frame (and a moved crop with a temporal guide) and compares
   the NNFs, the denoised NNFs and the colours exactly; then three frames of
   frame-to-frame synthesis (``synthesize`` with the previous result).
3. Times StyleBlit + denoise + vote on a 3840×2160 region on the device
   (synchronised, warm-up, median of ``--repeat``).

Prints ``key=value`` lines; exits 1 when the outputs differ, 2 when the device
is not available (CUDA missing), 0 otherwise. Runs in well under 3 minutes on a
GPU machine. ``--device cpu`` exercises everything on the CPU (for testing the
script itself; the equality check is then trivially CPU vs CPU).

Usage::

    .venv/bin/python bench/gpu_check.py [--device cuda] [--size 3840x2160] [--repeat 10]
        [--check-size 768x1024] [--levels 6] [--threshold 50] [--radius 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from faceblit_core import synthesis as syn  # noqa: E402


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_synthesis", REPO / "bench" / "synthesis.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _synthetic_guides(log) -> dict:
    """Stand-in guides when the shared data set is absent: smooth warp, textured style."""
    import cv2

    log("note=shared_data_missing_synthetic_guides")
    rng = np.random.default_rng(0)
    Hs, Ws, H, W = 1024, 768, 1024, 768
    style = cv2.GaussianBlur(rng.integers(0, 256, (Hs, Ws, 3), dtype=np.uint8), (0, 0), 2)
    gray = cv2.cvtColor(style, cv2.COLOR_RGB2GRAY).astype(np.float32)
    s_app = np.clip((gray - cv2.GaussianBlur(gray, (0, 0), 8)) * 2 + 128, 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    gx = xx * 0.95 + 20 + 6 * np.sin(yy / 90.0)
    gy = yy * 0.97 + 10 + 6 * np.cos(xx / 80.0)
    g_pos = np.stack([gx, gy], -1).astype(np.float32)
    ix = np.clip(gx.round(), 0, Ws - 1).astype(int)
    iy = np.clip(gy.round(), 0, Hs - 1).astype(int)
    g_app = np.clip(s_app[iy, ix].astype(int) + rng.integers(-8, 9, (H, W)), 0, 255).astype(np.uint8)
    lut = _bench_module()._crude_lut(s_app)
    return dict(g_pos=g_pos, g_app=g_app, style_app=s_app, style_image=style, lut=lut,
                target=style[iy, ix], notes=["synthetic guides"])


def _pipeline(g: dict, device: torch.device, *, origin, levels, threshold, radius, temporal):
    """styleblit → denoise_nnf → vote on ``device``, each with a fresh SynthesisCache (no ``cache``)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    kw = dict(origin=origin, jitter=syn.JitterTable.create(0, levels), levels=levels, threshold=threshold)
    if temporal:
        kw.update(g_temp=t(g["g_temp"]), style_temp=t(g["style_temp"]), lambda_temp=1.0)
    nnf = syn.styleblit(t(g["g_pos"]), t(g["g_app"]), t(g["style_app"]), t(g["lut"]), **kw)
    den = syn.denoise_nnf(nnf, style_shape=g["style_app"].shape, radius=radius)
    col = syn.vote(den, t(g["style_image"]), radius=radius)
    return nnf.cpu().numpy(), den.cpu().numpy(), col.cpu().numpy()


def _frame_to_frame(g: dict, device: torch.device, *, size, levels, threshold, radius, frames: int = 3):
    """``synthesize`` over a few frames (appearance drifting, previous result reused) → [(nnf, rgb)]."""
    cw, ch = size
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    gp, sa, lut, img = t(g["g_pos"][:ch, :cw]), t(g["style_app"]), t(g["lut"]), t(g["style_image"])
    rng = np.random.default_rng(1)
    app = np.ascontiguousarray(g["g_app"][:ch, :cw])
    prev, out = None, []
    cache = syn.SynthesisCache()
    for i in range(frames):
        if i:
            app = np.clip(app.astype(int) + rng.integers(-3, 4, app.shape), 0, 255).astype(np.uint8)
        prev = syn.synthesize(gp, t(app), sa, lut, img, radius=radius, previous=prev, keep_threshold=8 * threshold,
                              jitter=syn.JitterTable.create(0, levels), levels=levels, threshold=threshold,
                              same_g_pos=True, cache=cache)
        out.append((prev.nnf.cpu().numpy().copy(), prev.rgb.cpu().numpy().copy()))
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", default="3840x2160", help="WxH of the timed region")
    ap.add_argument("--check-size", default="768x1024", help="WxH of the CPU/device comparison (≤ target2)")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--threshold", type=float, default=50.0)
    ap.add_argument("--radius", type=int, default=1)
    args = ap.parse_args()
    log = lambda s: print(s, flush=True)  # noqa: E731
    t_start = time.perf_counter()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log(f"error=CUDA not available (torch {torch.__version__}, built with CUDA {torch.version.cuda})")
        return 2
    log(f"device={device}")
    if device.type == "cuda":
        log(f"device_name={torch.cuda.get_device_name(device).replace(' ', '_')}")
    log(f"torch={torch.__version__}")

    bench = _bench_module()
    try:
        g = bench.build_guides(log=log) if (bench.DATA / "images" / "target2.png").is_file() else _synthetic_guides(log)
    except Exception as e:  # a missing optional module must not hide the device check
        log(f"note=real_guides_failed_{type(e).__name__}")
        g = _synthetic_guides(log)
    for n in g.get("notes", []):
        log(f"note={n.replace(' ', '_')}")
    import cv2

    blur = lambda a: cv2.GaussianBlur(a, (0, 0), 6)  # noqa: E731
    cw, ch = (int(v) for v in args.check_size.lower().split("x"))
    H, W = g["g_app"].shape
    cw, ch = min(cw, W), min(ch, H)
    ok = True
    equal = {"nnf": True, "denoised": True, "vote": True}

    # --- 1. equality: whole frame (origin 0) and a moved crop with a temporal guide
    checks = [("frame", (0, 0), (0, 0, cw, ch), False),
              ("crop_temporal", (37, 53), (37, 53, min(W, 37 + cw // 2 + 11), min(H, 53 + ch // 2 + 7)), True)]
    for name, origin, (x0, y0, x1, y1), temporal in checks:
        sub = dict(g_pos=g["g_pos"][y0:y1, x0:x1], g_app=g["g_app"][y0:y1, x0:x1], style_app=g["style_app"],
                   lut=g["lut"], style_image=g["style_image"])
        if temporal:
            sub.update(g_temp=blur(g["target"])[y0:y1, x0:x1], style_temp=blur(g["style_image"]))
        kw = dict(origin=origin, levels=args.levels, threshold=args.threshold, radius=args.radius, temporal=temporal)
        cpu = _pipeline(sub, torch.device("cpu"), **kw)
        dev = _pipeline(sub, device, **kw)
        for what, a, b in zip(("nnf", "denoised", "vote"), cpu, dev):
            same = bool(np.array_equal(a, b))
            ok &= same
            equal[what] &= same
            log(f"{name}_{what}_equal={int(same)}")
            if not same:
                bad = np.argwhere((a != b).reshape(a.shape[0], a.shape[1], -1).any(-1))
                log(f"{name}_{what}_mismatches={len(bad)} first={bad[0].tolist()}")
    # Frame to frame (the pipeline's face-space path): StyleBlit, denoising and voting
    # at selected pixels only, on top of last frame's result.
    kw = dict(size=(cw, ch), levels=args.levels, threshold=args.threshold, radius=args.radius)
    same = all(np.array_equal(a, b) for fa, fb in zip(_frame_to_frame(g, torch.device("cpu"), **kw),
                                                        _frame_to_frame(g, device, **kw)) for a, b in zip(fa, fb))
    ok &= same
    log(f"frame_to_frame_equal={int(same)}")
    log(f"nnf_equal={int(equal['nnf'])}")
    log(f"denoised_equal={int(equal['denoised'])}")
    log(f"vote_equal={int(equal['vote'])}")

    # --- 2. throughput on a big region
    w, h = (int(v) for v in args.size.lower().split("x"))
    gp, ga = bench.resize_guides(g, w, h)
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    gp_t, ga_t, sa_t, lut_t, img_t = to(gp), to(ga), to(g["style_app"]), to(g["lut"]), to(g["style_image"])
    jt = syn.JitterTable.create(0, args.levels)
    cache = syn.SynthesisCache()
    kw = dict(jitter=jt, levels=args.levels, threshold=args.threshold, cache=cache)
    hs_ws = tuple(g["style_app"].shape)
    _sync(device)
    t0 = time.perf_counter()
    syn.styleblit(gp_t, ga_t, sa_t, lut_t, **kw)          # first call: seed window + style tables
    _sync(device)
    log(f"first_call_s={time.perf_counter() - t0:.3f}")
    steps = {"styleblit": [], "denoise": [], "vote": [], "total": []}
    for i in range(args.repeat + 2):
        _sync(device)
        a = time.perf_counter()
        nnf = syn.styleblit(gp_t, ga_t, sa_t, lut_t, **kw)
        _sync(device)
        b = time.perf_counter()
        den = syn.denoise_nnf(nnf, style_shape=hs_ws, radius=args.radius, cache=cache)
        _sync(device)
        c = time.perf_counter()
        syn.vote(den, img_t, radius=args.radius, cache=cache)
        _sync(device)
        d = time.perf_counter()
        if i >= 2:  # two warm-up rounds
            for k, v in (("styleblit", b - a), ("denoise", c - b), ("vote", d - c), ("total", d - a)):
                steps[k].append(v)
    med = {k: statistics.median(v) for k, v in steps.items()}
    log(f"size={w}x{h}")
    log(f"mpx_per_s={w * h / med['total'] / 1e6:.1f}")
    log(f"mpx_per_s_styleblit_vote={w * h / (med['styleblit'] + med['vote']) / 1e6:.1f}")
    for k in ("styleblit", "denoise", "vote", "total"):
        log(f"{k}_ms={med[k] * 1e3:.2f}")
    if device.type == "cuda":
        log(f"max_memory_mib={torch.cuda.max_memory_allocated(device) / 2**20:.0f}")
    log(f"elapsed_s={time.perf_counter() - t_start:.1f}")
    log(f"result={'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
