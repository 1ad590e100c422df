"""StyleBlit's seeds: the jitter table and the nearest-seed maps of a region (DESIGN §6 step 1).

Seeds at level ``l`` (spacing ``h = 2^l``) of the cell ``b = floor(p / h)`` (frame px)
lie at ``floor(h·(b + j_l(b mod 256)))``, computed in integers as
``h·b + floor(h·j)`` (exact: ``h·j`` is exact in float32). Every region pixel takes
the nearest seed of its 3×3 cells (squared distance, ties to the first in raster
order), seeds outside the region ignored.

Speed: nearest-seed maps depend only on frame coordinates and the jitter table. They
are computed unconstrained over a cached *window* of the frame that grows to cover
every region asked for, then cropped to the region; only pixels within
``(h − 1)·√2`` px of the region border can have an out-of-region nearest seed, and
only those are re-checked (a moving face box reuses the window; results per exact
region are cached too). Both live in the caller's :class:`~.cache.SynthesisCache`.

References
----------
Sýkora et al. 2019, "StyleBlit", §3 (seeds on jittered grids of spacing 2^l).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from faceblit_core.checks import check, check_array
from faceblit_core.synthesis._util import LUT_LEVELS, MAX_LEVELS
from faceblit_core.synthesis.cache import SynthesisCache

__all__ = ["JitterTable", "make_jitter", "clear_caches"]


# =============================================================================== jitter
@dataclass(frozen=True, eq=False)
class JitterTable:
    """Fixed random sub-cell jitter of the StyleBlit seeds, one table per seed level.

    Attributes
    ----------
    seed : int
        Seed of ``numpy.random.default_rng`` (``StylizeConfig.seed``); −1 for a
        table given as a tensor (:meth:`from_tensor`).
    levels : int
        Coarsest level L; the table has rows for levels 0..L.
    table : (L + 1, 256, 256, 2) float32 CPU tensor in [0, 1)
        ``table[l, b_y mod 256, b_x mod 256] = (j_x, j_y)``; do not modify it.
    key : tuple
        Identity of the table's content, used by the seed-map caches.

    Notes
    -----
    The table is generated on the host (``default_rng(seed).random(..., float32)``)
    so every device sees the same values. Seeds at level ``l`` (spacing
    ``h = 2^l``) of the cell ``b = floor(p / h)`` (frame px) lie at
    ``floor(h·(b + j_l(b mod 256)))``.

    References
    ----------
    Sýkora et al. 2019, §3 (jittered seed grids); DESIGN §6 step 1.
    """

    seed: int
    levels: int
    table: torch.Tensor
    key: tuple

    @classmethod
    def create(cls, seed: int, levels: int) -> "JitterTable":
        """The (cached) table for ``seed`` and ``levels``.

        Parameters
        ----------
        seed : int
            Seed in [0, 2^63).
        levels : int
            Coarsest level L in [0, 9].

        Returns
        -------
        JitterTable
            The same object for the same arguments while it is in the cache.

        Raises
        ------
        ValueError
            Negative seed or levels outside [0, 9].
        """
        check(isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0,
              "jitter seed", "an integer >= 0", repr(seed))
        check(isinstance(levels, (int, np.integer)) and 0 <= levels <= MAX_LEVELS,
              "levels", f"an integer in [0, {MAX_LEVELS}]", repr(levels))
        return _jitter_table(int(seed), int(levels))

    @classmethod
    def from_tensor(cls, table: Any) -> "JitterTable":
        """Wrap a caller-made table (content-hashed, so equal tables share caches).

        Parameters
        ----------
        table : (L + 1, 256, 256, 2) float32 tensor or numpy array in [0, 1)

        Returns
        -------
        JitterTable

        Raises
        ------
        ValueError
            Wrong shape/dtype or values outside [0, 1).
        """
        t = torch.as_tensor(table).detach().to("cpu").contiguous()
        check_array(t, "jitter table", shape=(None, LUT_LEVELS, LUT_LEVELS, 2), dtype=torch.float32)
        check(1 <= t.shape[0] <= MAX_LEVELS + 1, "jitter table levels", f"1..{MAX_LEVELS + 1} rows", t.shape[0])
        check(bool(((t >= 0) & (t < 1)).all()), "jitter table values", "in [0, 1)", "values outside")
        digest = hashlib.sha1(t.numpy().tobytes()).hexdigest()
        return cls(seed=-1, levels=t.shape[0] - 1, table=t, key=("sha1", digest))

    def offsets(self, level: int, device: torch.device) -> torch.Tensor:
        """``floor(2^level · j)`` of every cell, ``(256, 256, 2) int32`` on ``device``."""
        h = float(1 << level)
        # h = 2^l: the product is exact, so floor(h·j) is the exact integer part.
        return torch.floor(self.table[level] * h).to(torch.int32).to(device)


@functools.lru_cache(maxsize=16)
def _jitter_table(seed: int, levels: int) -> JitterTable:
    """The table of ``(seed, levels)``; a process-wide pool keyed by those two values (the
    table is immutable), so equal arguments give the same object and share seed maps."""
    rng = np.random.default_rng(seed)
    arr = rng.random((levels + 1, LUT_LEVELS, LUT_LEVELS, 2), dtype=np.float32)
    return JitterTable(seed=seed, levels=levels, table=torch.from_numpy(arr), key=("rng", seed, levels))


def clear_caches() -> None:
    """Drop the process-wide pool of jitter tables (:meth:`JitterTable.create`).

    Every other table and seed map lives in a :class:`~.cache.SynthesisCache` owned by
    the caller (drop those with :meth:`~.cache.SynthesisCache.clear`).
    """
    _jitter_table.cache_clear()


def make_jitter(seed: int, levels: int) -> torch.Tensor:
    """Jitter table of the StyleBlit seeds: ``(levels + 1, 256, 256, 2) float32`` in [0, 1).

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng`` (``StylizeConfig.seed``), ≥ 0.
    levels : int
        Coarsest level L in [0, 9].

    Returns
    -------
    (levels + 1, 256, 256, 2) float32 CPU tensor
        A copy of the cached table of :meth:`JitterTable.create` (``[l, b_y mod 256,
        b_x mod 256] = (j_x, j_y)``); generated on the host so all devices agree.

    Raises
    ------
    ValueError
        Negative seed or levels outside [0, 9].

    References
    ----------
    Sýkora et al. 2019, §3; DESIGN §6 step 1.
    """
    return JitterTable.create(seed, levels).table.clone()


def as_jitter(jitter: Any, levels: int) -> JitterTable:
    """``jitter`` (a table, a seed for :meth:`JitterTable.create`, or a tensor) as a
    :class:`JitterTable` with at least ``levels`` levels; ValueError otherwise."""
    if isinstance(jitter, JitterTable):
        jt = jitter
    elif isinstance(jitter, (int, np.integer)) and not isinstance(jitter, bool):
        jt = JitterTable.create(int(jitter), levels)
    else:
        jt = JitterTable.from_tensor(jitter)
    check(jt.levels >= levels, "jitter table levels", f">= levels ({levels})", jt.levels)
    return jt


def _seed_grid(jt: JitterTable, level: int, bx: torch.Tensor, by: torch.Tensor,
               device: torch.device, cache: SynthesisCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeds (frame px, int32) of the cells ``by[:, None] × bx[None, :]`` at ``level``."""
    if cache is None:
        off = jt.offsets(level, device)
    else:
        off = cache.get("offsets", (jt.key, level, str(device)), lambda: jt.offsets(level, device))
    iy = (by & 255).long()[:, None]
    ix = (bx & 255).long()[None, :]
    sx = (bx << level)[None, :] + off[iy, ix, 0]
    sy = (by << level)[:, None] + off[iy, ix, 1]
    return sx, sy


@dataclass
class _WindowLevel:
    ids: torch.Tensor   # (canvas h, canvas w) int32: ring-grid id of the nearest seed
    cx0: int            # canvas origin, frame px (cell aligned)
    cy0: int
    bx0: int            # ring grid: first cell column / row (= first window cell − 1)
    by0: int
    nwx: int            # ring grid width / height in cells
    nwy: int


@dataclass
class _Window:
    x0: int
    y0: int
    x1: int
    y1: int
    levels: dict        # level → _WindowLevel


def _window_level(jt: JitterTable, level: int, x0: int, y0: int, x1: int, y1: int,
                  device: torch.device, cache: SynthesisCache) -> _WindowLevel:
    """Unconstrained nearest seed (3×3 cells, squared distance, first in raster order) per pixel."""
    h = 1 << level
    c0x, c1x = x0 >> level, (x1 - 1) >> level
    c0y, c1y = y0 >> level, (y1 - 1) >> level
    ncx, ncy = c1x - c0x + 1, c1y - c0y + 1
    i32 = dict(dtype=torch.int32, device=device)
    bx = torch.arange(c0x - 1, c1x + 2, **i32)
    by = torch.arange(c0y - 1, c1y + 2, **i32)
    sx, sy = _seed_grid(jt, level, bx, by, device, cache)
    nwx, nwy = ncx + 2, ncy + 2
    ii = torch.arange(h, **i32)
    cellx = (bx[1:-1] << level)          # left pixel of each window cell
    celly = (by[1:-1] << level)
    # Rank candidate k of the 3×3 cells by (d² << 4) + k: one integer minimum picks the
    # nearest, ties to the first in raster order (d² ≤ 2·(2h − 1)² < 2^21 for h ≤ 2^9).
    # The x part (with k) and the y part are small broadcast arrays; only their sum
    # and the running minimum are image-sized.
    best = None
    k = 0
    for ky in (-1, 0, 1):
        for kx in (-1, 0, 1):
            skx = sx[1 + ky:1 + ky + ncy, 1 + kx:1 + kx + ncx]
            sky = sy[1 + ky:1 + ky + ncy, 1 + kx:1 + kx + ncx]
            dx = (cellx[None, :] - skx)[:, None, :, None] + ii[None, None, None, :]   # (ncy,1,ncx,h)
            dy = (celly[:, None] - sky)[:, None, :, None] + ii[None, :, None, None]   # (ncy,h,ncx,1)
            kxp = ((dx * dx) << 4) + k
            kyp = (dy * dy) << 4
            if best is None:
                best = kxp + kyp
            else:
                torch.minimum(best, kxp + kyp, out=best)
            k += 1
    koff = torch.tensor([ky * nwx + kx for ky in (-1, 0, 1) for kx in (-1, 0, 1)], **i32)
    base = (torch.arange(1, ncy + 1, **i32)[:, None] * nwx + torch.arange(1, ncx + 1, **i32)[None, :])
    ids = koff.index_select(0, best.bitwise_and_(15).reshape(-1)).view(ncy, h, ncx, h)
    ids += base[:, None, :, None]
    return _WindowLevel(ids=ids.reshape(ncy * h, ncx * h), cx0=c0x << level, cy0=c0y << level,
                        bx0=c0x - 1, by0=c0y - 1, nwx=nwx, nwy=nwy)


#: Largest window (frame px) a moving region may grow the cached window to.
_WINDOW_MAX_PIXELS = 1 << 24


def _window_for(jt: JitterTable, levels: int, x0: int, y0: int, x1: int, y1: int,
                device: torch.device, cache: SynthesisCache) -> _Window:
    """The cached window of ``jt`` on ``device`` covering the box [x0, x1) × [y0, y1), grown when needed."""
    key = (jt.key, str(device))
    win = cache.peek("windows", key)
    if (win is not None and win.x0 <= x0 and win.y0 <= y0 and x1 <= win.x1 and y1 <= win.y1
            and all(l in win.levels for l in range(1, levels + 1))):
        return win
    # Grow to the union with some slack, so a face box moving around a frame
    # settles on one window after a few frames instead of recomputing each time.
    w, h = x1 - x0, y1 - y0
    mx, my = max(64, w // 4), max(64, h // 4)
    nx0, ny0, nx1, ny1 = x0 - mx, y0 - my, x1 + mx, y1 + my
    if win is not None:
        ux0, uy0 = min(nx0, win.x0), min(ny0, win.y0)
        ux1, uy1 = max(nx1, win.x1), max(ny1, win.y1)
        if (ux1 - ux0) * (uy1 - uy0) <= _WINDOW_MAX_PIXELS:
            nx0, ny0, nx1, ny1 = ux0, uy0, ux1, uy1
    lv = {l: _window_level(jt, l, nx0, ny0, nx1, ny1, device, cache) for l in range(1, max(levels, 1) + 1)}
    win = _Window(nx0, ny0, nx1, ny1, lv)
    cache.put("windows", key, win)
    return win


@dataclass
class _RegionLevel:
    c: torch.Tensor      # (h·w,) int32 window ring id of the nearest in-region seed; dummy = n_ids − 1
    n_ids: int           # window ring cells + 1 dummy
    has_dummy: bool      # some pixel has no in-region seed in its 3×3 cells
    sx: torch.Tensor     # (rny, rnx) int32 frame px, seeds of the region's ring cells
    sy: torch.Tensor
    inreg: torch.Tensor  # (rny, rnx) bool
    gx_off: int          # region ring block offset inside the window ring grid
    gy_off: int
    nwx: int
    qx: torch.Tensor     # (n_ids,) int32 region px of each ring id's seed (0 where none), for
    qy: torch.Tensor     #   styleblit at selected pixels
    inr: torch.Tensor    # (n_ids,) int32 1 where the ring id's seed lies in the region
    x0: int              # region origin, frame px
    y0: int
    hh: int
    ww: int
    _terms: dict = field(default_factory=dict, repr=False)

    def seed_terms(self, s: int, n_pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the region's seed cells (rny·rnx,): the region-linear index of each seed (int32,
        clamped into the region), 1 where it lies in the region (int32), and ``−((qy << s) + qx)``
        there, ``n_pad`` elsewhere: ``bp = LUT(q)·keep + qneg`` (cached per padded layout)."""
        terms = self._terms.get((s, n_pad))
        if terms is None:
            qx, qy = self.sx - self.x0, self.sy - self.y0
            qflat = (qy.clamp(0, self.hh - 1) * self.ww + qx.clamp(0, self.ww - 1)).reshape(-1)
            keep = self.inreg.reshape(-1).to(torch.int32)
            qneg = torch.where(self.inreg, -((qy << s) + qx), n_pad).reshape(-1).to(torch.int32)
            terms = self._terms[(s, n_pad)] = (qflat.to(torch.int32), keep, qneg)
        return terms


def region_levels(jt: JitterTable, levels: int, x0: int, y0: int, hh: int, ww: int,
                  device: torch.device, cache: SynthesisCache) -> list[_RegionLevel]:
    """Per level 1..L the nearest in-region seed of every pixel of the region ``hh × ww`` at
    frame position ``(x0, y0)``, cached in ``cache`` per exact region."""
    key = (jt.key, levels, str(device), x0, y0, hh, ww)
    return cache.get("regions", key, lambda: _region_levels(jt, levels, x0, y0, hh, ww, device, cache))


def _region_levels(jt: JitterTable, levels: int, x0: int, y0: int, hh: int, ww: int,
                   device: torch.device, cache: SynthesisCache) -> list[_RegionLevel]:
    """:func:`region_levels` computed: the window's unconstrained map cropped, the border band re-checked."""
    x1, y1 = x0 + ww, y0 + hh
    win = _window_for(jt, levels, x0, y0, x1, y1, device, cache)
    out = []
    i32 = dict(dtype=torch.int32, device=device)
    for level in range(1, levels + 1):
        wl = win.levels[level]
        crop = wl.ids[y0 - wl.cy0:y1 - wl.cy0, x0 - wl.cx0:x1 - wl.cx0]
        c = crop.clone(memory_format=torch.contiguous_format).reshape(-1)
        rcx0, rcx1 = x0 >> level, (x1 - 1) >> level
        rcy0, rcy1 = y0 >> level, (y1 - 1) >> level
        bx = torch.arange(rcx0 - 1, rcx1 + 2, **i32)
        by = torch.arange(rcy0 - 1, rcy1 + 2, **i32)
        sx, sy = _seed_grid(jt, level, bx, by, device, cache)
        inreg = (sx >= x0) & (sx < x1) & (sy >= y0) & (sy < y1)
        gx_off, gy_off = (rcx0 - 1) - wl.bx0, (rcy0 - 1) - wl.by0
        n_win = wl.nwx * wl.nwy
        dummy = n_win
        inreg_w = torch.zeros(n_win + 1, dtype=torch.bool, device=device)
        inreg_w[:n_win].view(wl.nwy, wl.nwx)[gy_off:gy_off + inreg.shape[0], gx_off:gx_off + inreg.shape[1]] = inreg
        # The unconstrained nearest seed is at most (h − 1)·√2 px away (p's own cell's
        # seed is), so only pixels that close to the region border can have it outside.
        band = _band_indices(hh, ww, math.isqrt(2 * ((1 << level) - 1) ** 2) + 1, device)
        bad = band[~inreg_w.index_select(0, c.index_select(0, band))]
        has_dummy = False
        if bad.numel():
            newc = _constrained_nearest(bad, ww, x0, y0, level, sx, sy, inreg, rcx0 - 1, rcy0 - 1,
                                        gx_off, gy_off, wl.nwx, dummy)
            c[bad] = newc
            has_dummy = bool((newc == dummy).any())
        qxy = torch.zeros((2, n_win + 1), **i32)
        qxy[:, :n_win].view(2, wl.nwy, wl.nwx)[:, gy_off:gy_off + inreg.shape[0], gx_off:gx_off + inreg.shape[1]] = (
            torch.stack(((sx - x0).clamp(0, ww - 1), (sy - y0).clamp(0, hh - 1))))
        out.append(_RegionLevel(c=c, n_ids=n_win + 1, has_dummy=has_dummy, sx=sx, sy=sy, inreg=inreg,
                                gx_off=gx_off, gy_off=gy_off, nwx=wl.nwx, qx=qxy[0], qy=qxy[1],
                                inr=inreg_w.to(torch.int32), x0=x0, y0=y0, hh=hh, ww=ww))
    return out


def _band_indices(hh: int, ww: int, b: int, device: torch.device) -> torch.Tensor:
    """int64 region-linear indices of the pixels within ``b`` px of the region border."""
    if 2 * b >= hh or 2 * b >= ww:
        return torch.arange(hh * ww, dtype=torch.int64, device=device)
    m = torch.zeros((hh, ww), dtype=torch.bool, device=device)
    m[:b] = True
    m[hh - b:] = True
    m[:, :b] = True
    m[:, ww - b:] = True
    return m.reshape(-1).nonzero().squeeze(1)


def _constrained_nearest(idx: torch.Tensor, ww: int, x0: int, y0: int, level: int,
                         sx: torch.Tensor, sy: torch.Tensor, inreg: torch.Tensor,
                         rbx0: int, rby0: int, gx_off: int, gy_off: int, nwx: int,
                         dummy: int) -> torch.Tensor:
    """Nearest IN-REGION seed among the 3×3 cells for the pixels ``idx`` (flat local).

    Candidates are ranked by ``(d² << 4) + k`` (k = raster position in the 3×3
    cells), so one integer minimum applies the tie rule (first in raster order);
    a seed outside the region gets ``d² + 2^26``, above every real distance
    (d² < 2·(2·2^9)² = 2^21).
    """
    i32 = dict(dtype=torch.int32, device=idx.device)
    idx = idx.to(torch.int32)
    py = torch.div(idx, ww, rounding_mode="floor")
    px = idx - py * ww
    fx, fy = px + x0, py + y0
    cx = (fx >> level) - rbx0
    cy = (fy >> level) - rby0
    rnx = sx.shape[1]
    base = cy * rnx + cx
    sxf, syf = sx.reshape(-1), sy.reshape(-1)
    outf = (1 - inreg.reshape(-1).to(torch.int32)) << 26
    best = None
    k = 0
    for ky in (-1, 0, 1):
        for kx in (-1, 0, 1):
            rid = base + (ky * rnx + kx)
            d = fx - sxf.index_select(0, rid)
            d.mul_(d)
            e = fy - syf.index_select(0, rid)
            d.add_(e.mul_(e)).add_(outf.index_select(0, rid)).bitwise_left_shift_(4).add_(k)
            best = d if best is None else torch.minimum(best, d, out=best)
            k += 1
    ks = best & 15
    koff = torch.tensor([ky * nwx + kx for ky in (-1, 0, 1) for kx in (-1, 0, 1)], **i32)
    wid = (cy + gy_off) * nwx + (cx + gx_off) + koff.index_select(0, ks)
    # No in-region seed among the nine: the level does not apply to this pixel.
    none = (best >> 30).clamp_(0, 1)          # 1 where the minimum carries the 2^26 (<< 4) mark
    return wid + (dummy - wid) * none

