"""FaceBlit's NNF denoising: each pixel takes the most frequent relative offset of its window.

:func:`denoise_nnf` validates and delegates to one of two solvers, chosen by whether
``pixels`` is given: :func:`denoise_dense` (a whole region, tiles of rows, no
data-dependent branches) or :func:`_denoise_at` (a few pixels, the window gathered
per pixel). Both build on the *canvas* (:class:`Canvas`): the region padded by
``3r`` with unique sentinel keys, so that window positions off the region count for
nothing and never win. The tricks of the dense solver, each in one function:

* counting as box sums of equality images (:func:`_scores_unpacked`);
* for r ≤ 2 the 2r + 1 counts of a row packed as bit fields of one int32 (int16 for
  r = 1), and one comparison serving a pair of shifts (:func:`_scores_packed`);
* the winner's NNF read back without a table of offsets (:func:`_denoise_pick`).

Equal to :func:`.reference.denoise_nnf_reference` bit for bit, on every device.

References
----------
Texler et al. 2021, "FaceBlit", §4 (NNF denoising before blending); DESIGN §6 "Blending / voting".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from faceblit_core.checks import check
from faceblit_core.synthesis._util import (c, check_nnf, check_pixels, check_radius, cpu_tile_pixels, to, unpack,
                                           window, window_entries)
from faceblit_core.synthesis.cache import SynthesisCache, fresh

__all__ = ["denoise_nnf"]


def denoise_nnf(nnf: Any, *, style_shape: tuple[int, int], radius: int = 1,
                tile_pixels: int | None = None, pixels: Any = None, cache: SynthesisCache | None = None) -> torch.Tensor:
    """FaceBlit's NNF denoising: each pixel takes the most frequent relative offset of its window.

    The relative offset of pixel q is ``NNF(q) − q``. Within the ``(2r+1)²`` window
    around p (positions inside the region only) the most frequent offset ``r*``
    wins; ties go to p's own offset when it is among the most frequent, else to
    the first in window raster order (dy, then dx, from (−r, −r)). The result
    ``p + r*`` replaces ``NNF(p)`` unless it falls outside the style.

    Parameters
    ----------
    nnf : (h, w, 2) int32 tensor or numpy array
        Style (x, y) per region pixel.
    style_shape : (int, int), keyword-only
        ``(Hs, Ws)`` of the style exemplar, px, each < 32768.
    radius : int, keyword-only
        Window radius r in [0, 8] (``StylizeConfig.blend_radius``); 0 returns a copy.
    tile_pixels : int, optional, keyword-only
        Pixels per tile; default 2^17 / r per torch thread on the CPU, the whole region
        elsewhere. Tuning only: the result does not depend on it.
    pixels : (k,) int64 tensor or numpy array, optional, keyword-only
        Denoise only these pixels (region-linear indices ``y·w + x``); the result is
        then ``(k, 2)``, equal to the full result at those pixels.
    cache : SynthesisCache, optional, keyword-only
        Keeps the key canvas of the region size from call to call; a fresh one when absent.

    Returns
    -------
    (h, w, 2) int32 tensor on the input's device (``(k, 2)`` with ``pixels``)
        Denoised NNF, inside the style.

    Raises
    ------
    ValueError
        Wrong shape/dtype, radius, or a style side ≥ 32768 px.

    Notes
    -----
    Counting is done for all pixels at once, with no data-dependent branches:
    with ``EQ_δ(y) = [key(y) = key(y + δ)]`` for the ``(4r+1)² − 1`` shifts δ, the
    count of window entry ``d`` of pixel p is ``A_{−d}(p + d)`` where ``A_c`` is
    the sum of ``EQ_δ`` over the ``(2r+1)²`` shifts around ``c`` (a separable box
    sum over δ). For r ≤ 2 the 2r + 1 counts of a row of ``A_c`` are packed as
    bit fields of one int32 (int16 for r = 1), so a row costs one add, and
    ``EQ_−δ(y) = EQ_δ(y − δ)`` lets one comparison serve both shifts of a pair.
    Positions outside the region carry unique sentinel keys, so they count for
    nothing and never win. The winner is the maximum of ``(count << b) + priority``
    (centre first, then raster order). r = 1 costs ~90 elementwise operations per
    pixel, on int16 images (the passes are bound by memory traffic); the work
    grows as r³ beyond r = 2. With ``pixels`` the window's keys are gathered per
    pixel and compared pairwise instead. Equal to :func:`denoise_nnf_reference`,
    and equal on every device.

    References
    ----------
    Texler et al. 2021, §4 (NNF denoising before blending); DESIGN §6 "Blending / voting".
    """
    hh, ww = check_nnf(nnf)
    r = check_radius(radius)
    Hs, Ws = (int(v) for v in style_shape)
    check_denoise_style(Hs, Ws)
    device = nnf.device if isinstance(nnf, torch.Tensor) else torch.device("cpu")
    t = to(nnf, device)
    sel = check_pixels(pixels, hh * ww, device) if pixels is not None else None
    if r == 0:
        return t.reshape(-1, 2).index_select(0, sel) if sel is not None else t.clone(memory_format=torch.contiguous_format)
    cv = denoise_canvas(hh, ww, r, device, fresh(cache))
    if sel is not None:
        return _denoise_at(sel, t, cv, Hs, Ws)
    # NNF packed as ((y + r) << 16) + (x + r) (see denoise_dense).
    pk = torch.zeros(cv.n, dtype=torch.int32, device=device)
    cv.region(pk)[:] = (t[..., 1] << 16).add_(t[..., 0]).add_((r << 16) + r)
    return unpack(denoise_dense(pk, cv, Hs, Ws, tile_pixels), 16, 0xFFFF, r).view(hh, ww, 2)


def check_denoise_style(Hs: int, Ws: int) -> None:
    """ValueError unless both style sides fit the 16-bit fields of the packed NNF."""
    check(1 <= Hs < 32768 and 1 <= Ws < 32768, "style_shape", "(Hs, Ws) with sides in [1, 32767]", (Hs, Ws))


@dataclass
class _Counting:
    """How :func:`denoise_dense` counts window entries, and its buffers (allocated once per call).

    r ≤ 2: the 2r + 1 counts of a row of A images fit as bit fields in one int32
    ("packed"), for r = 1 even in one int16 with room for a score (count << b) +
    priority: half the bytes through memory, which bounds these passes. Larger r
    keeps one image per count.
    """

    packed: bool
    ct: torch.dtype            # dtype of the B, A and score images
    fb: int                    # bits of one count field (count ≤ K − 1 < 2^fb)
    wts: dict | None           # packed: dx → sum of the field units E_(dy,dx) enters
    rows_t: int                # output rows per tile
    eq_buf: torch.Tensor       # (n_eq, ·) int32: EQ images (unpacked), then the pick's scratch
    b_buf: torch.Tensor        # B rows
    a_buf: torch.Tensor        # A rows
    s_buf: torch.Tensor        # two score rows
    ebuf: torch.Tensor | None  # packed: one EQ image over a domain longer by the shift


def _counting(cv: "Canvas", tile_pixels: int | None, device: torch.device) -> _Counting:
    """The counting layout for ``cv`` and the tile size (≤ 64 MiB of images per tile)."""
    hh, ww, r, wd = cv.hh, cv.ww, cv.r, cv.wd
    K = len(cv.win)
    fb = K.bit_length()
    packed = (2 * r + 1) * fb <= 31
    ct = torch.int16 if (2 * r + 1) * fb <= 15 and fb + cv.b <= 15 else torch.int32
    wts = None
    if packed:
        n_eq, n_b, n_a = 4, 4 * r + 1, 2 * r + 1
        # E_(dy,dx) enters the fields cx with |dx − cx| ≤ r of the B row dy.
        wts = {dx: sum(1 << (fb * (cx + r)) for cx in range(max(-r, dx - r), min(r, dx + r) + 1))
               for dx in range(-2 * r, 2 * r + 1)}
    else:
        n_eq, n_b, n_a = max(4, 4 * r + 1), (4 * r + 1) * (2 * r + 1), (2 * r + 1) ** 2
    n_img = n_eq + n_b + n_a + 2
    if tile_pixels is None:
        tile_pixels = cpu_tile_pixels("denoise") // r if device.type == "cpu" else hh * ww
    budget_rows = max(1, (1 << 26) // (n_img * wd * 4) - 2 * r)   # ≤ 64 MiB of images per tile
    rows_t = max(1, min(hh, int(tile_pixels) // wd, budget_rows))
    ld_max = (rows_t + 2 * r) * wd
    eq_buf = torch.empty((n_eq, ld_max), dtype=torch.int32, device=device)
    imgs = torch.empty((n_b + n_a + 2, ld_max), dtype=ct, device=device)
    ebuf = torch.empty(ld_max + 2 * r * wd + 2 * r, dtype=ct, device=device) if packed else None
    return _Counting(packed=packed, ct=ct, fb=fb, wts=wts, rows_t=rows_t, eq_buf=eq_buf, b_buf=imgs[:n_b],
                     a_buf=imgs[n_b:n_b + n_a], s_buf=imgs[n_b + n_a:], ebuf=ebuf)


def denoise_dense(pk: torch.Tensor, cv: "Canvas", Hs: int, Ws: int, tile_pixels: int | None,
                  emit: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """:func:`denoise_nnf` of a whole region as packed positions.

    ``pk``: (cv.n,) int32 canvas holding ``((y + r) << 16) + (x + r)`` of the NNF at the region's
    canvas positions (rows ``row0 …``, columns ``R …``) and 0 elsewhere. Returns (h, w) int32,
    the denoised NNF packed the same way. ``emit(t0, t1, rows)`` receives each finished tile's
    rows [t0, t1) of the result while they are still in cache.

    Counting is done for all pixels at once, with no data-dependent branches: with
    ``EQ_δ(y) = [key(y) = key(y + δ)]`` for the ``(4r+1)² − 1`` shifts δ, the count of
    window entry ``d`` of pixel p is ``A_{−d}(p + d)`` where ``A_c`` is the sum of
    ``EQ_δ`` over the ``(2r+1)²`` shifts around ``c`` (a separable box sum over δ). The
    winner is the maximum of ``(count << b) + priority`` (centre first, then raster order).
    """
    hh, ww, r, device = cv.hh, cv.ww, cv.r, pk.device
    R, wd, row0 = cv.R, cv.wd, cv.row0
    # With the NNF packed, NNF(p + d) − d is one subtraction, and pk(q) − ((q_y << 16) + q_x)
    # is q's relative offset as one injective int32 key (|r_x| < w + Ws ≤ 2^16). Off the
    # region the canvas adds unique sentinels instead, which equal nothing and so never win.
    kp = torch.add(pk, cv.key_base)
    cn = _counting(cv, tile_pixels, device)
    out = torch.empty((hh, ww), dtype=torch.int32, device=device)
    for t0 in range(0, hh, cn.rows_t):
        t1 = min(hh, t0 + cn.rows_t)
        nt = t1 - t0
        base = (row0 + t0 - r) * wd
        ld = (nt + 2 * r) * wd
        # Output positions: from column R of row t0 to column R + w − 1 of row t1 − 1.
        L = (nt - 1) * wd + ww
        s0 = r * wd + R
        scores = _scores_packed if cn.packed else _scores_unpacked
        best = scores(kp, cv, cn, base, ld, L, s0)
        pr = best.bitwise_and_(c((1 << cv.b) - 1))
        p0 = (row0 + t0) * wd + R
        v = _denoise_pick(kp, cv.arange[p0:p0 + L], cv.key_base[p0:p0 + L], pk[p0:p0 + L], pr, cv.foff, r, Hs, Ws,
                          cn.eq_buf[:4, :L])
        out[t0:t1] = v.as_strided((nt, ww), (wd, 1))   # canvas rows, region columns
        if emit is not None:
            emit(t0, t1, out[t0:t1])
    return out


def _scores_packed(kp: torch.Tensor, cv: "Canvas", cn: _Counting, base: int, ld: int, L: int,
                   s0: int) -> torch.Tensor:
    """Best ``(count << b) + priority`` of the L output positions of a tile, counts packed as bit fields.

    A row of B images (dy) holds, per field cx, the sum of ``EQ_(dy, dx)`` over |dx − cx| ≤ r;
    ``EQ_δ(y) = EQ_−δ(y + δ)`` lets one comparison over a domain longer by δ serve both
    shifts of a pair. r = 1 costs ~90 elementwise operations per pixel, on int16 images.
    Returns an int32 (L,) view (the int16 scores widened into ``cn.eq_buf[0]``).
    """
    r, wd, b, ct = cv.r, cv.wd, cv.b, cn.ct
    fmask = (1 << cn.fb) - 1
    brow = {}

    def accumulate(dy: int, e: torch.Tensor, w: int) -> None:
        if dy in brow:
            brow[dy].add_(e, alpha=w)
        else:                      # first term of the row: no zeroing pass
            brow[dy] = torch.mul(e, c(w, ct), out=cn.b_buf[dy + 2 * r, :ld])

    for dy in range(0, 2 * r + 1):
        for dx in range(-2 * r if dy else 1, 2 * r + 1):
            off = dy * wd + dx
            e = torch.eq(kp[base - off:base + ld], kp[base:base + ld + off], out=cn.ebuf[:ld + off])
            accumulate(dy, e[off:off + ld], cn.wts[dx])
            accumulate(-dy, e[:ld], cn.wts[-dx])
    arow = {cy: _sum_into(cn.a_buf[cy + r, :ld], [brow[dy] for dy in range(cy - r, cy + r + 1)])
            for cy in range(-r, r + 1)}
    best = None
    for dy, dx in cv.win:
        o = s0 + dy * wd + dx
        src = arow[-dy][o:o + L]
        sc = cn.s_buf[0 if best is None else 1, :L]
        sh = cn.fb * (r - dx) - b          # field of cx = −dx moved to bits [b, b + fb)
        if sh > 0:
            torch.bitwise_right_shift(src, c(sh, ct), out=sc).bitwise_and_(c(fmask << b, ct))
        elif sh < 0:
            torch.bitwise_left_shift(src, c(-sh, ct), out=sc).bitwise_and_(c(fmask << b, ct))
        else:
            torch.bitwise_and(src, c(fmask << b, ct), out=sc)
        sc.add_(c(cv.prio[(dy, dx)], ct))
        best = sc if best is None else torch.maximum(best, sc, out=best)
    if ct is not torch.int32:
        best = cn.eq_buf[0, :L].copy_(best)
    return best


def _scores_unpacked(kp: torch.Tensor, cv: "Canvas", cn: _Counting, base: int, ld: int, L: int,
                     s0: int) -> torch.Tensor:
    """As :func:`_scores_packed` with one int32 image per count (r ≥ 3: the work grows as r³)."""
    r, wd, b = cv.r, cv.wd, cv.b
    dom = kp[base:base + ld]
    bsum = {}
    for dy in range(-2 * r, 2 * r + 1):
        eq = {}
        for j, dx in enumerate(range(-2 * r, 2 * r + 1)):
            if dy or dx:
                o = base + dy * wd + dx
                eq[dx] = torch.eq(dom, kp[o:o + ld], out=cn.eq_buf[j, :ld])
        for cx in range(-r, r + 1):
            dst = cn.b_buf[len(bsum), :ld]
            bsum[(dy, cx)] = _sum_into(dst, [eq[dx] for dx in range(cx - r, cx + r + 1) if dx in eq])
    a_img = {}
    for cy in range(-r, r + 1):
        for cx in range(-r, r + 1):
            dst = cn.a_buf[len(a_img), :ld]
            a_img[(cy, cx)] = _sum_into(dst, [bsum[(dy, cx)] for dy in range(cy - r, cy + r + 1)])
    best = None
    for dy, dx in cv.win:
        o = s0 + dy * wd + dx
        src = a_img[(-dy, -dx)][o:o + L]
        if best is None:
            best = torch.bitwise_left_shift(src, c(b), out=cn.eq_buf[0, :L]).add_(c(cv.prio[(dy, dx)]))
        else:
            sc = torch.bitwise_left_shift(src, c(b), out=cn.eq_buf[1, :L]).add_(c(cv.prio[(dy, dx)]))
            torch.maximum(best, sc, out=best)
    return best


def _denoise_pick(keys: torch.Tensor, pos: torch.Tensor, kb: torch.Tensor, v0: torch.Tensor, pr: torch.Tensor,
                  foff: torch.Tensor, r: int, Hs: int, Ws: int, buf: torch.Tensor) -> torch.Tensor:
    """Packed denoised NNF of the canvas positions ``pos`` whose winning window entry has priority ``pr``.

    ``keys`` holds each position's key ``pk(q) + key_base(q)`` and ``kb = key_base[pos]``: the
    winner's packed NNF moved back by its offset d, ``pk(p + d) − ((dy << 16) + dx)``, is
    ``keys(p + d) − key_base(p)`` (the winner lies in the region), with no table of offsets.
    ``v0 = pk[pos]`` (the pixel's own packed NNF) is kept where the winner's position
    leaves the style. ``buf``: (4, len(pos)) int32 scratch; the result lives in ``buf[2]``.
    """
    fidx = torch.index_select(foff, 0, pr, out=buf[1]).add_(pos)
    v = torch.index_select(keys, 0, fidx, out=buf[2]).sub_(kb)
    xq = torch.bitwise_and(v, c(0xFFFF), out=buf[0]).sub_(c(r))
    yq = torch.bitwise_right_shift(v, c(16), out=buf[1]).sub_(c(r))
    # −1 where the new position leaves the style (one of four differences negative).
    outside = torch.neg(xq, out=buf[3]).add_(c(Ws - 1)).bitwise_or_(xq).bitwise_or_(yq)
    outside.bitwise_or_(torch.neg(yq, out=buf[0]).add_(c(Hs - 1))).bitwise_right_shift_(c(31))
    # v ← v0 where outside: v ^= (v ^ v0) & outside.
    return v.bitwise_xor_(torch.bitwise_xor(v, v0, out=buf[1]).bitwise_and_(outside))


def _denoise_at(sel: torch.Tensor, t: torch.Tensor, cv: "Canvas", Hs: int, Ws: int) -> torch.Tensor:
    """:func:`denoise_nnf` at the region-linear pixels ``sel`` only: the window's packed NNF and keys
    gathered per pixel (as the dense path's canvases hold them), then the same count and pick."""
    win, prio, b, r = cv.win, cv.prio, cv.b, cv.r
    i32 = dict(dtype=torch.int32, device=sel.device)
    k = sel.numel()
    q, inside, qy, qx = window_entries(sel, t, win)
    pk = ((q[..., 1] << 16) + q[..., 0] + ((r << 16) + r)) * inside           # 0 off the region
    keys = pk + cv.key_base.index_select(0, ((qy + cv.row0) * cv.wd + cv.R + qx).reshape(-1)).view(len(win), k)
    # count of entry d = entries equal to it, itself excluded (−1)
    count = torch.eq(keys[:, None, :], keys[None, :, :]).sum(dim=1, dtype=torch.int32).sub_(1)
    score = count.bitwise_left_shift_(b).add_(torch.tensor([prio[d] for d in win], **i32)[:, None])
    pr = score.amax(dim=0).bitwise_and_((1 << b) - 1)
    # The pick reads the winner's entry from the gathered rows: "canvas offset" = entry row · k.
    rows = torch.zeros_like(cv.foff)
    for i, d in enumerate(win):
        rows[prio[d]] = i * k
    c = len(win) // 2
    v = _denoise_pick(keys.reshape(-1), torch.arange(k, **i32), keys[c] - pk[c], pk[c], pr, rows, r, Hs, Ws,
                      torch.empty((4, k), **i32))
    return unpack(v, 16, 0xFFFF, r)


@dataclass
class Canvas:
    """The region padded by ``R = 3r`` (plus a spare row above and below), flattened: the
    domain of denoising's shifted comparisons as plain 1-D slices."""

    hh: int
    ww: int
    r: int
    R: int
    wd: int
    hd: int
    row0: int
    n: int
    key_base: torch.Tensor   # −((y << 16) + x) inside the region, unique sentinels outside
    arange: torch.Tensor
    win: list                # window offsets (dy, dx), raster order
    prio: dict               # offset → tie priority (centre K, then K − 1 … in raster order)
    b: int                   # 2^b > every priority
    foff: torch.Tensor       # (2^b,) int32 priority → canvas offset dy·wd + dx

    def region(self, canvas: torch.Tensor) -> torch.Tensor:
        """The (h, w) view of a (n,) canvas at the region's positions."""
        return canvas.view(self.hd, self.wd)[self.row0:self.row0 + self.hh, self.R:self.R + self.ww]


def denoise_canvas(hh: int, ww: int, r: int, device: torch.device, cache: SynthesisCache) -> Canvas:
    """The :class:`Canvas` of an ``hh × ww`` region and radius ``r`` (cached)."""
    return cache.get("canvases", (hh, ww, r, str(device)), lambda: _denoise_canvas(hh, ww, r, device))


def _denoise_canvas(hh: int, ww: int, r: int, device: torch.device) -> Canvas:
    """:func:`denoise_canvas` built: sentinel keys, window priorities, priority → offset table."""
    R = 3 * r                      # EQ_δ over A's domain (region ± r) reaches ±3r
    wd, hd = ww + 2 * R, hh + 2 * R + 2
    row0 = R + 1                   # one spare row above and below for flat-index slack
    n = hd * wd
    # Keys of the region lie in (−h·2^16 − w, 2^31); sentinels below them.
    check(hh < 32000 and n + (hh << 16) + ww < 2**31 - 1, "region size for denoising", "h < 32000 px",
          (hh, ww))
    i32 = dict(dtype=torch.int32, device=device)
    kb = torch.arange(n, **i32).add_(-(2**31))
    kb.view(hd, wd)[row0:row0 + hh, R:R + ww] = -(
        (torch.arange(hh, **i32) << 16)[:, None] + torch.arange(ww, **i32)[None, :])
    win = window(r)
    K = len(win)
    b = K.bit_length()
    prio, rank = {}, K - 1
    for i, d in enumerate(win):
        if i == K // 2:
            prio[d] = K            # the centre wins every tie it is part of
        else:
            prio[d] = rank
            rank -= 1
    foff = torch.zeros(1 << b, **i32)
    for (dy, dx), pv in prio.items():
        foff[pv] = dy * wd + dx
    return Canvas(hh=hh, ww=ww, r=r, R=R, wd=wd, hd=hd, row0=row0, n=n, key_base=kb, arange=torch.arange(n, **i32),
                  win=win, prio=prio, b=b, foff=foff)


def _sum_into(dst: torch.Tensor, terms: list) -> torch.Tensor:
    """``dst`` ← the sum of ``terms`` (one term: a copy), without a zeroing pass."""
    if len(terms) == 1:
        return dst.copy_(terms[0])
    torch.add(terms[0], terms[1], out=dst)
    for x in terms[2:]:
        dst.add_(x)
    return dst

