"""The plain per-pixel specification every fast path of the synthesis is tested against.

Each function is the definition written as Python loops over pixels, with numpy
float32 scalars evaluated in the documented order: slow (about 10 µs per pixel and
level), for small images in tests only. The vectorized functions
(:func:`.styleblit.styleblit`, :func:`.denoise.denoise_nnf`, :func:`.vote.vote`) equal
them bit for bit.

References
----------
Sýkora et al. 2019, "StyleBlit", §3–4; Texler et al. 2021, "FaceBlit", §4; DESIGN §6.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from faceblit_core.synthesis._util import check_nnf, check_radius, window
from faceblit_core.synthesis.seeds import JitterTable, as_jitter
from faceblit_core.synthesis.styleblit import BlitOptions

__all__ = ["styleblit_reference", "denoise_nnf_reference", "vote_reference"]


def _np(x: Any) -> np.ndarray | None:
    """A tensor or array as a numpy array (None stays None)."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _q_ref(v: np.float32, size: int) -> int:
    """``clip(floor(v·256/size), 0, 255)`` in Python float64 arithmetic."""
    return min(max(math.floor(float(v) * 256.0 / size), 0), 255)


def styleblit_reference(
    g_pos: Any,
    g_app: Any,
    style_app: Any,
    lut: Any,
    *,
    origin: tuple[int, int] = BlitOptions.origin,
    jitter: JitterTable | int | Any,
    threshold: float = BlitOptions.threshold,
    lambda_pos: float = BlitOptions.lambda_pos,
    lambda_app: float = BlitOptions.lambda_app,
    lambda_temp: float = BlitOptions.lambda_temp,
    g_temp: Any = None,
    style_temp: Any = None,
    levels: int = BlitOptions.levels,
    return_levels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per-pixel Python loop version of :func:`styleblit` (the definition; small images only).

    Parameters
    ----------
    g_pos, g_app, style_app, lut, origin, jitter, threshold, lambda_pos, lambda_app, lambda_temp, g_temp, style_temp, levels, return_levels
        As :func:`styleblit` (numpy arrays or tensors).

    Returns
    -------
    nnf : (h, w, 2) int32 numpy array
        Style (x, y) per pixel.
    level : (h, w) int8 numpy array, only with ``return_levels``
        Accepted level, −1 for the fallback.

    Raises
    ------
    ValueError
        As :func:`styleblit`.

    Notes
    -----
    Seeds are evaluated literally, ``floor(h·(b + j))`` in float64 (exact); the
    error with numpy float32 scalars in the documented order. About 10 µs per
    pixel per level: use it on images of a few thousand pixels.

    References
    ----------
    Sýkora et al. 2019, §3–4; Texler et al. 2021, §4; DESIGN §6.
    """
    gp, ga, sa, lt = _np(g_pos), _np(g_app), _np(style_app), _np(lut)
    gt, stt = _np(g_temp), _np(style_temp)
    hh, ww = ga.shape
    Hs, Ws = sa.shape
    x0, y0 = (int(v) for v in origin)
    jt = as_jitter(jitter, levels)
    jit = jt.table.numpy()
    f32 = np.float32
    lam_pos, lam_app, lam_temp = f32(lambda_pos), f32(lambda_app), f32(lambda_temp)
    thr = f32(threshold)
    sxs, sys_ = f32(256.0 / Ws), f32(256.0 / Hs)
    temporal = gt is not None and lambda_temp > 0
    flat_lut = lt.reshape(-1)

    def lut_at(x: int, y: int) -> tuple[int, int]:
        v = int(flat_lut[(_q_ref(gp[y, x, 1], Hs) * 256 + _q_ref(gp[y, x, 0], Ws)) * 256 + int(ga[y, x])])
        return v % Ws, v // Ws

    def err(x: int, y: int, ox: int, oy: int) -> np.float32:
        dx = np.abs(gp[y, x, 0] - f32(ox)) * sxs
        dy = np.abs(gp[y, x, 1] - f32(oy)) * sys_
        e = lam_pos * (dx + dy)
        e = e + lam_app * f32(abs(int(ga[y, x]) - int(sa[oy, ox])))
        if temporal:
            s = sum(abs(int(gt[y, x, c]) - int(stt[oy, ox, c])) for c in range(3))
            e = e + (lam_temp * f32(s)) / f32(3.0)
        return e

    nnf = np.empty((hh, ww, 2), dtype=np.int32)
    lv = np.full((hh, ww), -1, dtype=np.int8)
    for y in range(hh):
        for x in range(ww):
            fx, fy = x + x0, y + y0
            chosen = None
            for level in range(levels, -1, -1):
                h = 1 << level
                bx, by = fx // h, fy // h
                best = None
                for ky in (-1, 0, 1):
                    for kx in (-1, 0, 1):
                        cx, cy = bx + kx, by + ky
                        jx, jy = jit[level, cy % 256, cx % 256]
                        sx = math.floor(h * (cx + float(jx)))
                        sy = math.floor(h * (cy + float(jy)))
                        if not (x0 <= sx < x0 + ww and y0 <= sy < y0 + hh):
                            continue
                        d = (fx - sx) ** 2 + (fy - sy) ** 2
                        if best is None or d < best[0]:
                            best = (d, sx - x0, sy - y0)
                if best is None:
                    continue
                _, qx, qy = best
                ux, uy = lut_at(qx, qy)
                ox, oy = ux + x - qx, uy + y - qy
                if not (0 <= ox < Ws and 0 <= oy < Hs):
                    continue
                if err(x, y, ox, oy) < thr:
                    chosen = (ox, oy, level)
                    break
            if chosen is None:
                ox, oy = lut_at(x, y)
                chosen = (ox, oy, -1)
            nnf[y, x] = chosen[:2]
            lv[y, x] = chosen[2]
    if return_levels:
        return nnf, lv
    return nnf


def denoise_nnf_reference(nnf: Any, *, style_shape: tuple[int, int], radius: int = 1) -> np.ndarray:
    """Per-pixel loop version of :func:`denoise_nnf` (the definition; small images only).

    Parameters
    ----------
    nnf : (h, w, 2) int32
    style_shape : (int, int), keyword-only
        ``(Hs, Ws)``.
    radius : int, keyword-only

    Returns
    -------
    (h, w, 2) int32 numpy array

    Raises
    ------
    ValueError
        Wrong shape/dtype or radius.

    References
    ----------
    Texler et al. 2021, §4; DESIGN §6.
    """
    hh, ww = check_nnf(nnf)
    r = check_radius(radius)
    a = _np(nnf)
    Hs, Ws = (int(v) for v in style_shape)
    out = a.copy()
    for y in range(hh):
        for x in range(ww):
            offs = []
            for dy, dx in window(r):
                qy, qx = y + dy, x + dx
                if 0 <= qy < hh and 0 <= qx < ww:
                    offs.append((int(a[qy, qx, 0]) - qx, int(a[qy, qx, 1]) - qy))
            counts: dict = {}
            for o in offs:
                counts[o] = counts.get(o, 0) + 1
            best = max(counts.values())
            own = (int(a[y, x, 0]) - x, int(a[y, x, 1]) - y)
            pick = own if counts[own] == best else next(o for o in offs if counts[o] == best)
            nx_, ny_ = x + pick[0], y + pick[1]
            if 0 <= nx_ < Ws and 0 <= ny_ < Hs:
                out[y, x] = (nx_, ny_)
    return out


def vote_reference(nnf: Any, style_image: Any, *, radius: int = 1) -> np.ndarray:
    """Per-pixel loop version of :func:`vote` (the definition; small images only).

    Parameters
    ----------
    nnf : (h, w, 2) int32
    style_image : (Hs, Ws, 3) uint8
    radius : int, keyword-only

    Returns
    -------
    (h, w, 3) uint8 numpy array

    Raises
    ------
    ValueError
        Wrong shapes/dtypes or radius.

    References
    ----------
    Sýkora et al. 2019, §4; DESIGN §6.
    """
    hh, ww = check_nnf(nnf)
    r = check_radius(radius)
    a, img = _np(nnf), _np(style_image)
    Hs, Ws = img.shape[:2]
    out = np.empty((hh, ww, 3), dtype=np.uint8)
    for y in range(hh):
        for x in range(ww):
            s = [0, 0, 0]
            n = 0
            for dy, dx in window(r):
                qy, qx = y + dy, x + dx
                if not (0 <= qy < hh and 0 <= qx < ww):
                    continue
                ox, oy = int(a[qy, qx, 0]) - dx, int(a[qy, qx, 1]) - dy
                if 0 <= ox < Ws and 0 <= oy < Hs:
                    n += 1
                    for ch in range(3):
                        s[ch] += int(img[oy, ox, ch])
            out[y, x] = [(2 * v + n) // (2 * n) for v in s]
    return out

