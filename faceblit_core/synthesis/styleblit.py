"""StyleBlit in parallel form (DESIGN §6): guides → nearest-neighbour field, one style pixel per target pixel.

For levels ``l = L … 1`` each pixel ``p`` takes its nearest seed ``q`` (:mod:`.seeds`),
the seed's match ``u = LUT(q)`` and the candidate ``o = u + (p − q)``; the coarsest
level whose candidate lies in the style and has error ``e < threshold`` wins,
otherwise ``o = LUT(p)``. :func:`styleblit` validates and delegates to
:func:`styleblit_packed`, which runs the named steps below. The tricks, each in one place:

* Level 0 is never evaluated for the NNF: its seed is ``p`` itself, so its candidate
  is ``LUT(p)`` — the fallback — whether it is accepted or not (:func:`_fallback_matches`).
* Levels are visited fine → coarse and each accepted candidate overwrites the previous
  one with a branch-free select: the coarsest accepted level wins without a "done"
  mask and without host syncs inside the level loop (:func:`_run_levels`).
* "o inside the style" costs nothing: the style's appearance guide is stored (as
  float16: exact for 0…255, half the bytes to gather) with a NaN border wide enough
  for every candidate (:mod:`.tables`), so an outside candidate has a NaN error and
  fails ``e < threshold`` (:func:`_accepted`).
* Bool tensors are several times slower than same-dtype arithmetic on the CPU: masks
  are int32 0/1, selects are ``a += (b − a)·m``, and ``e < thr`` is an int32
  comparison of the float bit patterns (:func:`_accepted`).
* On the CPU rows are processed in tiles (2^16 pixels per torch thread) so the
  temporaries stay in the caches (:class:`_Scratch` holds them once per call); on
  CUDA the whole region is one tile. Same operations either way.

Exactness: the error is evaluated in float32 in the documented order
``e = λ_pos·(|Gx − o.x|·(256/Ws) + |Gy − o.y|·(256/Hs)) + λ_app·|Ga − Sa(o)| +
λ_temp·(|ΔR| + |ΔG| + |ΔB|)/3`` with ``λ``, ``256/W`` and the threshold rounded to
float32 once; only IEEE add/sub/mul/abs/compare run on the device. Equal to
:func:`.reference.styleblit_reference` bit for bit, on every device.

References
----------
Sýkora et al. 2019, "StyleBlit: Fast Example-Based Stylization with Local Guidance",
§3–4; Texler et al. 2021, "FaceBlit", §4 (λ_pos = 10, λ_app = 2, threshold 50, L = 6);
Fišer et al. 2017, §3.3 (temporal guide).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from faceblit_core.checks import check
from faceblit_core.synthesis._util import (LUT_LEVELS, MAX_LEVELS, c, check_arr, check_pixels, cpu_tile_pixels,
                                           device_of, f32, to, unpack)
from faceblit_core.synthesis.cache import SynthesisCache, fresh
from faceblit_core.synthesis.seeds import JitterTable, as_jitter, region_levels
from faceblit_core.synthesis.tables import StyleTables, quantize, style_tables, temp_tables, temp_term_table

__all__ = ["BlitOptions", "styleblit"]


@dataclass(frozen=True)
class BlitOptions:
    """The keyword options of :func:`styleblit` with their defaults (the one place they are written)."""

    jitter: Any
    origin: tuple[int, int] = (0, 0)
    threshold: float = 50.0
    lambda_pos: float = 10.0
    lambda_app: float = 2.0
    lambda_temp: float = 0.0
    g_temp: Any = None
    style_temp: Any = None
    levels: int = 6
    return_levels: bool = False
    tile_pixels: int | None = None
    pixels: Any = None


def styleblit(
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
    tile_pixels: int | None = None,
    pixels: Any = None,
    cache: SynthesisCache | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """StyleBlit in parallel form: the style pixel copied by every pixel of a region.

    For levels ``l = L … 1`` each pixel ``p`` takes its nearest seed ``q`` (jittered
    grid of spacing ``2^l`` in frame coordinates, 3×3 cells, seeds outside the
    region ignored), the seed's match ``u = LUT(q)`` and the candidate
    ``o = u + (p − q)``; the coarsest level whose candidate lies in the style and
    has error ``e < threshold`` wins, otherwise ``o = LUT(p)``.

    Parameters
    ----------
    g_pos : (h, w, 2) float32 tensor or numpy array
        Positional guide of the region, style px (x, y); finite.
    g_app : (h, w) uint8
        Appearance guide of the region (histogram-matched to the style's).
    style_app : (Hs, Ws) uint8
        Appearance guide of the style exemplar.
    lut : (256, 256, 256) int32
        Lookup table ``[y8, x8, a]`` → linear style index ``y·Ws + x``
        (:func:`faceblit_core.lut.build_lookup_table`).
    origin : (int, int), keyword-only
        Frame position ``(x0, y0)`` of the region's top-left pixel, frame px. Seeds
        live in frame coordinates, so chunks stay put when the region moves.
    jitter : JitterTable, int or (L', 256, 256, 2) float32 tensor, keyword-only
        Seed jitter (:class:`JitterTable`); an int is a seed for
        :meth:`JitterTable.create`. Needs ``L' ≥ levels``.
    threshold : float, keyword-only
        Acceptance threshold on ``e``, 8-bit guide units, ≥ 0 (FaceBlit: 50); rounded
        to float32. 0 accepts nothing (every pixel gets ``LUT(p)``).
    lambda_pos, lambda_app, lambda_temp : float, keyword-only
        Weights of the error terms (≥ 0; rounded to float32). ``lambda_temp`` is
        used only with a temporal guide.
    g_temp : (h, w, 3) uint8, optional, keyword-only
        Temporal guide of the region (blurred previous output); with ``style_temp``.
    style_temp : (Hs, Ws, 3) uint8, optional, keyword-only
        Temporal guide of the style (blurred exemplar).
    levels : int, keyword-only
        Coarsest seed level L in [0, 9] (FaceBlit: 6).
    return_levels : bool, keyword-only
        Also return the accepted level of each pixel (for statistics; evaluates
        level 0 as well).
    tile_pixels : int, optional, keyword-only
        Pixels per tile of the level loop; default 2^16 per torch thread on the CPU, the whole
        region on other devices. Tuning only: the result does not depend on it.
    pixels : (k,) int64 tensor or numpy array, optional, keyword-only
        Evaluate only these pixels, given as region-linear indices ``y·w + x`` in
        [0, h·w); the result is then ``(k, 2)`` (and ``(k,)`` levels) and equals the
        full result at those pixels: seeds still come from the whole region. For
        updating a few pixels of a frame (:func:`synthesize`).
    cache : SynthesisCache, optional, keyword-only
        Per-style tables and seed maps kept from call to call (one style per cache);
        a fresh one when absent (same result, slower).

    Returns
    -------
    nnf : (h, w, 2) int32 tensor on the inputs' device (``(k, 2)`` with ``pixels``)
        Style pixel (x, y) copied by each region pixel, inside the style.
    level : (h, w) int8 tensor (``(k,)`` with ``pixels``), only with ``return_levels``
        Accepted level in [0, L], −1 where ``LUT(p)`` was the fallback.

    Raises
    ------
    ValueError
        Wrong shapes/dtypes, inputs on different devices, an empty region,
        negative weights/threshold, lookup-table values outside the style, a
        jitter table with too few levels, or a style of another size than the
        ``cache`` serves.

    Notes
    -----
    Inputs may be numpy arrays or tensors on any one device (numpy goes to that
    device). Per-style tables (padded lookup table, padded style guides) and seed maps
    live in ``cache`` (see :mod:`.cache`): do not modify the style inputs while a cache
    holds their tables. There is no host synchronisation inside the level loop. The
    result does not depend on the device, on ``tile_pixels`` or on the cache; it
    equals :func:`styleblit_reference`.

    References
    ----------
    Sýkora et al. 2019, §3–4 (StyleBlit); Texler et al. 2021, §4 (FaceBlit,
    λ_pos = 10, λ_app = 2, threshold 50, L = 6); DESIGN §6; Fišer et al. 2017, §3.3.
    """
    opts = BlitOptions(jitter=jitter, origin=origin, threshold=threshold, lambda_pos=lambda_pos,
                       lambda_app=lambda_app, lambda_temp=lambda_temp, g_temp=g_temp, style_temp=style_temp,
                       levels=levels, return_levels=return_levels, tile_pixels=tile_pixels, pixels=pixels)
    blit = styleblit_packed(g_pos, g_app, style_app, lut, opts, fresh(cache))
    nnf = unpack(blit.res, blit.st.s, blit.st.Wp - 1, blit.st.P)
    if pixels is None:
        nnf = nnf.view(blit.hh, blit.ww, 2)
    if return_levels:
        lvl = blit.levels.to(torch.int8)
        return nnf, (lvl.view(blit.hh, blit.ww) if pixels is None else lvl)
    return nnf


@dataclass
class Blit:
    """:func:`styleblit_packed`'s result: the matches as padded style indices (see :class:`.tables.StyleTables`)."""

    res: torch.Tensor            # (h·w,) or (k,) int32: ((y + P) << s) + x + P of each pixel's match
    st: StyleTables
    hh: int
    ww: int
    levels: torch.Tensor | None  # (h·w,) or (k,) int32 accepted level, with ``return_levels``


@dataclass
class _Call:
    """A validated :func:`styleblit` call: inputs on one device, sizes, the style tables."""

    device: torch.device
    hh: int
    ww: int
    levels: int
    x0: int
    y0: int
    jt: JitterTable
    temporal: bool               # a temporal guide with λ_temp > 0
    st: StyleTables
    gp_flat: torch.Tensor        # (h·w, 2) float32
    ga_u8: torch.Tensor          # (h·w,) uint8
    sel: torch.Tensor | None     # (k,) int64 selected pixels
    q_div: torch.Tensor          # (2, 1) float64 [Ws/256, Hs/256], the quantisation divisors


def _validate(g_pos: Any, g_app: Any, style_app: Any, lut: Any, o: BlitOptions, cache: SynthesisCache) -> _Call:
    """Check every argument of :func:`styleblit` (ValueError / TypeError) and bring the inputs to one device."""
    device = device_of(g_pos, g_app, style_app, lut, o.g_temp, o.style_temp)
    check_arr(g_pos, "g_pos", (None, None, 2), torch.float32)
    hh, ww = int(g_pos.shape[0]), int(g_pos.shape[1])
    check(hh >= 1 and ww >= 1, "region size", "at least 1×1", (hh, ww))
    check_arr(g_app, "g_app", (hh, ww), torch.uint8)
    check_arr(style_app, "style_app", (None, None), torch.uint8)
    Hs, Ws = int(style_app.shape[0]), int(style_app.shape[1])
    check(1 <= Hs and 1 <= Ws <= 65535 and Hs <= 65535, "style size", "1..65535 px per side", (Hs, Ws))
    check_arr(lut, "lut", (LUT_LEVELS, LUT_LEVELS, LUT_LEVELS), torch.int32)
    levels = o.levels
    check(isinstance(levels, (int, np.integer)) and 0 <= levels <= MAX_LEVELS, "levels",
          f"an integer in [0, {MAX_LEVELS}]", repr(levels))
    levels = int(levels)
    x0, y0 = (int(v) for v in o.origin)
    for name, v in (("threshold", o.threshold), ("lambda_pos", o.lambda_pos), ("lambda_app", o.lambda_app),
                    ("lambda_temp", o.lambda_temp)):
        check(v >= 0 and not math.isnan(v), name, ">= 0", v)
    g_temp, style_temp = o.g_temp, o.style_temp
    check((g_temp is None) == (style_temp is None), "temporal guides", "g_temp and style_temp together",
          f"g_temp={'set' if g_temp is not None else None}, style_temp={'set' if style_temp is not None else None}")
    if g_temp is not None:
        check_arr(g_temp, "g_temp", (hh, ww, 3), torch.uint8)
        check_arr(style_temp, "style_temp", (Hs, Ws, 3), torch.uint8)
    jt = as_jitter(o.jitter, levels)
    cache.check_style(Hs, Ws)
    st = style_tables(style_app, lut, levels, device, cache)
    gp_flat = to(g_pos, device).reshape(-1, 2)
    ga_u8 = to(g_app, device).reshape(-1)
    sel = check_pixels(o.pixels, hh * ww, device) if o.pixels is not None else None
    q_div = torch.tensor([[Ws / 256.0], [Hs / 256.0]], dtype=torch.float64, device=device)
    return _Call(device=device, hh=hh, ww=ww, levels=levels, x0=x0, y0=y0, jt=jt,
                 temporal=g_temp is not None and o.lambda_temp > 0, st=st, gp_flat=gp_flat, ga_u8=ga_u8,
                 sel=sel, q_div=q_div)


@dataclass
class _ErrorTest:
    """What the acceptance test needs besides the candidates: the style tables and the float32
    constants of the error, each a 0-dim tensor of the operand's dtype (see :func:`faceblit_core.synthesis._util.c`)."""

    st: StyleTables
    scale: torch.Tensor           # (2, 1) float32 [256/Ws, 256/Hs]
    c_mask: torch.Tensor          # Wp − 1: x of a padded index
    c_s: torch.Tensor             # s: y of a padded index
    c_pp: torch.Tensor            # (P << s) + P: padded → unpadded index
    c_thr: torch.Tensor           # bit pattern of the float32 threshold
    c_lp: torch.Tensor            # λ_pos, float32
    c_la: torch.Tensor            # λ_app, float32
    stemp: torch.Tensor | None    # (3, n_pad) int32 style temporal guide, when temporal
    ttab: torch.Tensor | None     # (766,) float32 temporal term per channel sum, when temporal

    @classmethod
    def build(cls, call: _Call, o: BlitOptions, cache: SynthesisCache) -> "_ErrorTest":
        st, device = call.st, call.device
        Hs, Ws = st.Hs, st.Ws
        thr_bits = int(np.float32(f32(o.threshold)).view(np.int32))
        scale = torch.tensor([[f32(256.0 / Ws)], [f32(256.0 / Hs)]], dtype=torch.float32, device=device)
        stemp = temp_tables(o.style_temp, st, device, cache) if call.temporal else None
        ttab = temp_term_table(f32(o.lambda_temp), device) if call.temporal else None
        return cls(st=st, scale=scale, c_mask=c(st.Wp - 1), c_s=c(st.s), c_pp=c((st.P << st.s) + st.P),
                   c_thr=c(thr_bits), c_lp=c(f32(o.lambda_pos), torch.float32),
                   c_la=c(f32(o.lambda_app), torch.float32), stemp=stemp, ttab=ttab)


@dataclass
class _TileBufs:
    """One tile's views of the :class:`_Scratch` buffers, and its inputs (k pixels)."""

    oxy: torch.Tensor      # (2, k) float32: |G − o| terms; ox doubles as the error e
    ox: torch.Tensor
    oy: torch.Tensor
    mi: torch.Tensor       # (2, k) int32: candidate (x, y) in style px (unpadded)
    mx: torch.Tensor
    my: torch.Tensor
    sa: torch.Tensor       # (k,) float32 λ_app term
    sa16: torch.Tensor     # (k,) float16 |Ga − Sa(o)|
    acc: torch.Tensor      # (k,) int32 accepted 0/1 (and scratch before)
    bi: torch.Tensor       # (k,) int32 candidate padded index
    gxy: torch.Tensor      # (2, k) float32 positional guide
    gaf: torch.Tensor      # (k,) float16 appearance guide
    gt: torch.Tensor | None    # (3, k) int32 temporal guide
    ssum: torch.Tensor | None  # (k,) int32 temporal channel sum
    tmp: torch.Tensor | None


@dataclass
class _Scratch:
    """The level loop's temporaries for up to ``cap`` pixels, allocated once per call and sliced per tile."""

    oxy: torch.Tensor
    mi: torch.Tensor
    sa: torch.Tensor
    sa16: torch.Tensor
    bi: torch.Tensor
    acc: torch.Tensor
    t: torch.Tensor | None
    s: torch.Tensor | None

    @classmethod
    def allocate(cls, cap: int, temporal: bool, device: torch.device) -> "_Scratch":
        i32 = dict(dtype=torch.int32, device=device)
        f32_ = dict(dtype=torch.float32, device=device)
        return cls(oxy=torch.empty((2, cap), **f32_), mi=torch.empty((2, cap), **i32), sa=torch.empty(cap, **f32_),
                   sa16=torch.empty(cap, dtype=torch.float16, device=device), bi=torch.empty(cap, **i32),
                   acc=torch.empty(cap, **i32), t=torch.empty(cap, **i32) if temporal else None,
                   s=torch.empty(cap, **i32) if temporal else None)

    def tile(self, k: int, gxy: torch.Tensor, gaf: torch.Tensor, gt: torch.Tensor | None) -> _TileBufs:
        oxy, mi = self.oxy[:, :k], self.mi[:, :k]
        temporal = self.t is not None
        return _TileBufs(oxy=oxy, ox=oxy[0], oy=oxy[1], mi=mi, mx=mi[0], my=mi[1], sa=self.sa[:k], sa16=self.sa16[:k],
                         acc=self.acc[:k], bi=self.bi[:k], gxy=gxy, gaf=gaf, gt=gt,
                         ssum=self.s[:k] if temporal else None, tmp=self.t[:k] if temporal else None)


def _lut_at(call: _Call, gxy: torch.Tensor, ga: torch.Tensor, out: torch.Tensor | None = None,
            bufs: tuple | None = None) -> torch.Tensor:
    """LUT(p) as padded style indices, from positions ``(2, m)`` float32 and appearance ``(m,)`` uint8."""
    q = quantize(gxy, call.q_div, bufs)
    idx = q[1].bitwise_left_shift_(c(8)).add_(q[0]).bitwise_left_shift_(c(8)).add_(ga)
    lutpad = call.st.lutpad
    return torch.index_select(lutpad, 0, idx, out=out) if out is not None else lutpad.index_select(0, idx)


def _accepted(ev: _ErrorTest, bi: torch.Tensor, v: _TileBufs) -> torch.Tensor:
    """1 where the candidate with padded style index ``bi`` has e < thr, else 0 (int32, in ``v.acc``).

    The error follows the documented float32 order. e ≥ 0, or NaN for a candidate
    outside the style; every NaN passes through abs() so its sign bit is clear.
    Non-negative floats (NaN above +inf) order like their bit patterns, so the test
    is an int32 comparison (bool tensors are slow on the CPU).
    """
    oxy, e = v.oxy, v.ox
    # (o.x, o.y) from the unpadded index (o.y << s) + o.x: exact for a candidate inside the
    # style; one outside decodes to garbage, but its Sa is NaN, and so is its error.
    unpadded = torch.sub(bi, ev.c_pp, out=v.acc)
    torch.bitwise_and(unpadded, ev.c_mask, out=v.mx)
    torch.bitwise_right_shift(unpadded, ev.c_s, out=v.my)
    oxy.copy_(v.mi)                                            # exact in float32
    torch.sub(v.gxy, oxy, out=oxy)
    oxy.abs_().mul_(ev.scale)                                  # |Gx − o.x|·256/Ws, |Gy − o.y|·256/Hs
    torch.add(e, v.oy, out=e).mul_(ev.c_lp)
    # |Ga − Sa| of 8-bit values is exact in float16 (NaN stays NaN): half the bytes.
    d16 = torch.index_select(ev.st.sa, 0, bi, out=v.sa16)
    torch.sub(v.gaf, d16, out=d16).abs_()
    e.add_(v.sa.copy_(d16).mul_(ev.c_la))
    if ev.stemp is not None:
        e.add_(_temporal_term(ev, bi, v))
    return torch.lt(e.view(torch.int32), ev.c_thr, out=v.acc)


def _temporal_term(ev: _ErrorTest, bi: torch.Tensor, v: _TileBufs) -> torch.Tensor:
    """``(λ_temp·(|ΔR| + |ΔG| + |ΔB|))/3`` of the candidates ``bi``, float32 (in ``v.oy``): the
    channel sum in int32, its term read from the host-computed table (no division on the device)."""
    ssum, d = v.ssum, v.tmp
    for ch in range(3):
        torch.index_select(ev.stemp[ch], 0, bi, out=d if ch else ssum)
        if ch:
            ssum.add_(torch.sub(v.gt[ch], d, out=d).abs_())
        else:
            torch.sub(v.gt[0], ssum, out=ssum).abs_()
    return torch.index_select(ev.ttab, 0, ssum, out=v.oy)


def _run_levels(ev: _ErrorTest, tables: list, res: torch.Tensor, lvl: torch.Tensor | None, v: _TileBufs,
                ppad: torch.Tensor, cells: Callable[[Any], torch.Tensor]) -> None:
    """Levels fine → coarse over one tile; the coarsest accepted candidate wins.

    ``res`` (k,) holds LUT(p) (the fallback) and receives the matches; ``lvl`` (k,) the
    accepted levels (with ``return_levels``); ``ppad`` (k,) the pixels' own padded
    offsets ``(y << s) + x``; ``cells(rl)`` the index of each pixel's seed in a level's table.
    """
    bi, acc = v.bi, v.acc
    if lvl is not None:
        # Level 0 (seed = p, candidate = LUT(p)) only matters for the statistics.
        lvl[:] = _accepted(ev, res, v) - 1
    for level, rl, bp in tables:
        torch.index_select(bp, 0, cells(rl), out=bi).add_(ppad)
        if rl.has_dummy:
            bi.clamp_(max=ev.st.n_pad - 1)
        _accepted(ev, bi, v)
        # res ← bi where accepted: res += (bi − res)·acc (branch-free select; faster than an integer addcmul).
        res.add_(torch.sub(bi, res, out=bi).mul_(acc))
        if lvl is not None:
            lvl.add_(torch.neg(lvl, out=v.mx).add_(level).mul_(acc))


def styleblit_packed(g_pos: Any, g_app: Any, style_app: Any, lut: Any, o: BlitOptions, cache: SynthesisCache,
               emit: Callable[[int, int, torch.Tensor, StyleTables], None] | None = None) -> Blit:
    """:func:`styleblit` (same checks) up to the matches as padded style indices.

    ``emit(r0, r1, res, st)`` (whole regions only) receives each finished tile, region rows
    [r0, r1) as padded indices (r1 − r0)·w of the tables ``st``, while they are still in cache.
    """
    call = _validate(g_pos, g_app, style_app, lut, o, cache)
    st, hh, ww, sel = call.st, call.hh, call.ww, call.sel
    if sel is not None and sel.numel() == 0:
        empty = torch.empty(0, dtype=torch.int32, device=call.device)
        return Blit(res=empty, st=st, hh=hh, ww=ww, levels=empty if o.return_levels else None)
    check(st.n_pad + (hh << st.s) + ww < 2**31, "padded index range", "< 2^31", st.n_pad + (hh << st.s) + ww)
    region = (region_levels(call.jt, call.levels, call.x0, call.y0, hh, ww, call.device, cache)
              if call.levels >= 1 else [])
    ev = _ErrorTest.build(call, o, cache)
    if sel is None:
        res, lvl = _blit_region(call, o, ev, region, emit)
    else:
        res, lvl = _blit_pixels(call, o, ev, region)
    return Blit(res=res, st=st, hh=hh, ww=ww, levels=lvl)


def _fallback_matches(call: _Call, rows_per_tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LUT(p) of every pixel (the fallback, and u(q) at the seeds) as padded indices, and G_pos as
    (2, h·w) x and y planes: tile by tile, so the quantisation temporaries stay in cache."""
    hh, ww, device = call.hh, call.ww, call.device
    n = hh * ww
    ulut = torch.empty(n, dtype=torch.int32, device=device)
    cap = rows_per_tile * ww
    qbufs = (torch.empty((2, cap), dtype=torch.float64, device=device),
             torch.empty((2, cap), dtype=torch.int32, device=device))
    # G_pos split into x and y planes, one whole-frame copy per plane (a transposing
    # copy, or copies per tile, are several times slower).
    gxy_f = torch.empty((2, n), dtype=torch.float32, device=device)
    gxy_f[0] = call.gp_flat[:, 0]
    gxy_f[1] = call.gp_flat[:, 1]
    for r0 in range(0, hh, rows_per_tile):
        a, b = r0 * ww, min(hh, r0 + rows_per_tile) * ww
        _lut_at(call, gxy_f[:, a:b], call.ga_u8[a:b], ulut[a:b], tuple(x[:, :b - a] for x in qbufs))
    return ulut, gxy_f


def _region_seed_tables(st: StyleTables, region: list, ulut: torch.Tensor) -> list:
    """Per level ``(level, region level, bp)``: the candidate of pixel p is ``o = u(q) + (p − q)``, i.e.
    in padded indices ``bi = bp[c(p)] + ppad(p)`` with ``bp = upad(q) − qpad`` per seed cell of the
    window's ring grid. Pixels without an in-region seed get ``bp = n_pad``, clamped to the last (NaN) cell."""
    tables = []
    for level, rl in enumerate(region, start=1):
        qflat, keep, qneg = rl.seed_terms(st.s, st.n_pad)
        bp_cells = ulut.index_select(0, qflat).mul_(keep).add_(qneg).view(rl.sx.shape)
        bp = torch.empty(rl.n_ids, dtype=torch.int32, device=ulut.device)
        bp[-1] = st.n_pad
        nwy = (rl.n_ids - 1) // rl.nwx
        bp[:-1].view(nwy, rl.nwx)[rl.gy_off:rl.gy_off + bp_cells.shape[0], rl.gx_off:rl.gx_off + bp_cells.shape[1]] = bp_cells
        tables.append((level, rl, bp))
    return tables


def _blit_region(call: _Call, o: BlitOptions, ev: _ErrorTest, region: list,
                 emit: Callable | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """StyleBlit of every region pixel, in tiles of rows (see the module notes); ``emit`` as :func:`styleblit_packed`."""
    hh, ww, device, st = call.hh, call.ww, call.device, call.st
    n = hh * ww
    gt = to(o.g_temp, device).to(torch.int32).permute(2, 0, 1).reshape(3, -1) if call.temporal else None
    tile_pixels = o.tile_pixels
    if tile_pixels is None:
        tile_pixels = cpu_tile_pixels("styleblit") if device.type == "cpu" else n
    rows_per_tile = max(1, min(hh, int(tile_pixels) // ww))
    cap = rows_per_tile * ww
    gaf_b = torch.empty(cap, dtype=torch.float16, device=device)   # G_app as float16, a tile at a time
    res, gxy_f = _fallback_matches(call, rows_per_tile)
    tables = _region_seed_tables(st, region, res)
    lvl = torch.full((n,), -1, dtype=torch.int32, device=device) if o.return_levels else None
    scratch = _Scratch.allocate(cap, call.temporal, device)
    px_i = torch.arange(ww, dtype=torch.int32, device=device)
    py_s = torch.arange(hh, dtype=torch.int32, device=device) << st.s
    for r0 in range(0, hh, rows_per_tile):
        r1 = min(hh, r0 + rows_per_tile)
        a, b = r0 * ww, r1 * ww
        v = scratch.tile(b - a, gxy_f[:, a:b], gaf_b[:b - a].copy_(call.ga_u8[a:b]),
                         gt[:, a:b] if gt is not None else None)
        _run_levels(ev, tables, res[a:b], lvl[a:b] if lvl is not None else None, v,
                    (py_s[r0:r1, None] + px_i[None, :]).reshape(-1), lambda rl: rl.c[a:b])
        if emit is not None:
            emit(r0, r1, res[a:b], st)
    return res, lvl


def _blit_pixels(call: _Call, o: BlitOptions, ev: _ErrorTest, region: list) -> tuple[torch.Tensor, torch.Tensor | None]:
    """StyleBlit at the selected pixels only: their inputs gathered, one table entry per pixel and
    level (the seed of the pixel's own cell), then the same level loop as one tile."""
    sel, ww, st, device = call.sel, call.ww, call.st, call.device
    k = int(sel.numel())
    gxy_s = call.gp_flat.index_select(0, sel).t().contiguous()
    ga_s = call.ga_u8.index_select(0, sel)
    res = _lut_at(call, gxy_s, ga_s)
    tables = []
    for level, rl in enumerate(region, start=1):
        ids = rl.c.index_select(0, sel)
        qx, qy = rl.qx.index_select(0, ids), rl.qy.index_select(0, ids)
        q = qy.long() * ww + qx
        u = _lut_at(call, call.gp_flat.index_select(0, q).t().contiguous(), call.ga_u8.index_select(0, q))
        bp = u.sub_((qy << st.s).add_(qx)).sub_(st.n_pad).mul_(rl.inr.index_select(0, ids)).add_(st.n_pad)
        tables.append((level, rl, bp))
    lvl = torch.full((k,), -1, dtype=torch.int32, device=device) if o.return_levels else None
    n = call.hh * ww
    gt = (to(o.g_temp, device).reshape(n, 3).index_select(0, sel).t().to(torch.int32) if call.temporal else None)
    v = _Scratch.allocate(k, call.temporal, device).tile(k, gxy_s, ga_s.to(torch.float16), gt)
    py = torch.div(sel, ww, rounding_mode="floor")
    ident = torch.arange(k, device=device)
    _run_levels(ev, tables, res, lvl, v, ((py << st.s) + (sel - py * ww)).to(torch.int32), lambda rl: ident)
    return res, lvl
