"""Blending by voting (DESIGN §6): each pixel's colour is the rounded mean of ``style[NNF(p + d) − d]``.

:func:`vote` validates and delegates to :func:`vote_dense` (a whole region, tiles of
rows over a padded index canvas) or :func:`_vote_at` (a few pixels, each window entry
gathered), chosen by whether ``pixels`` is given. The tricks, each in one place:

* colours and a vote count packed into integer fields so that a window offset costs
  one 64-bit gather and one add (:class:`_VotePacking`, :func:`_vote_table`);
* the rounded mean ``(2s + c) // (2c)`` read from a table of exact integers, with no
  division on the device (:func:`_division_table`, :func:`_vote_colours`);
* positions off the region read a zero table entry (the table's zero border).

Equal to :func:`.reference.vote_reference` bit for bit, on every device.

References
----------
Sýkora et al. 2019, "StyleBlit", §4 (blending by voting); Texler et al. 2021, §4; DESIGN §6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faceblit_core.checks import check
from faceblit_core.synthesis._util import (check_arr, check_nnf, check_pixels, check_radius, cpu_tile_pixels,
                                           device_of, to, window, window_entries)
from faceblit_core.synthesis.cache import SynthesisCache, fresh

__all__ = ["vote"]


@dataclass(frozen=True)
class _VotePacking:
    """How votes are packed so that a window offset costs one 64-bit gather and one add.

    Each style pixel is one 64-bit table entry, added as int32 lanes (int32 adds are
    fast on the CPU, int64 adds are not) or as one int64 lane:

    * ``"div"`` (r ≤ 1, K ≤ 9 votes): four 16-bit fields ``S + R``, ``S + G``, ``S + B``
      and 0 with ``S = 255·K + 1``. A sum of c votes is then ``c·S + Σ`` per channel
      (< 2^15), which is directly the index of the rounded mean in a table with
      rows of stride S: no count field, no decoding but a widening copy.
    * ``"16"`` (r ≤ 7): lanes ``(R << 16) + G`` and ``(1 << 16) + B`` (the 1 counts
      the vote); sums ≤ 225·255 < 2^16.
    * ``"18"`` (r = 8): one int64 lane with 18-bit fields (sums ≤ 289·255 < 2^18).

    Every add is exact integer arithmetic: no field ever carries into the next.
    """

    name: str
    lane: torch.dtype


_PACKDIV = _VotePacking("div", torch.int32)
_PACK16 = _VotePacking("16", torch.int32)
_PACK18 = _VotePacking("18", torch.int64)


def _packing(radius: int) -> _VotePacking:
    return _PACKDIV if radius <= 1 else _PACK16 if radius <= 7 else _PACK18


def _div_stride(radius: int) -> int:
    """S of the ``"div"`` packing: one more than the largest channel sum of a window."""
    return 255 * (2 * radius + 1) ** 2 + 1


def _vote_table(style_image: Any, radius: int, pad: int, device: torch.device, cache: SynthesisCache) -> torch.Tensor:
    """(Hs + 2·pad)·(Ws + 2·pad) int64 packed votes of the style, zero in the border."""
    pack = _packing(radius)

    def build() -> torch.Tensor:
        img = to(style_image, device).to(pack.lane)
        Hs, Ws = img.shape[:2]
        R, G, B = img[..., 0], img[..., 1], img[..., 2]
        if pack is _PACKDIV:
            S = _div_stride(radius)
            lanes = torch.stack((((G + S) << 16) + R + S, B + S), dim=-1)
        elif pack is _PACK16:
            lanes = torch.stack(((R << 16) + G, B + (1 << 16)), dim=-1)
        else:
            lanes = ((R << 36) + (G << 18) + B + (1 << 54))[..., None]
        tab = torch.zeros((Hs + 2 * pad, Ws + 2 * pad, lanes.shape[-1]), dtype=pack.lane, device=device)
        tab[pad:pad + Hs, pad:pad + Ws] = lanes
        return tab.view(torch.int64).reshape(-1)

    return cache.get("vote", (radius, pad, str(device)), build)


def _division_table(radius: int, device: torch.device, cache: SynthesisCache) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounded means ``(2s + c) // (2c)`` for every vote count c ≤ K and sum s ≤ 255·c, uint8.

    Returns the table and the int32 start of each count's row, ``base[c]``: ``c·S``
    (``S = 255·K + 1``) for the ``"div"`` packing, which indexes rows by ``c·S``
    directly; rows packed back to back otherwise (less memory for large K). Cached.
    """
    return cache.get("div", (radius, str(device)), lambda: _build_division_table(radius, device))


def _build_division_table(radius: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_division_table` computed on the host (exact integers)."""
    K = (2 * radius + 1) ** 2
    lengths = 255 * np.arange(K + 1) + 1
    if _packing(radius) is _PACKDIV:
        bases = np.arange(K + 1) * _div_stride(radius)
    else:
        bases = np.concatenate(([0], np.cumsum(lengths[:-1])))
    tab = np.zeros(int(bases[-1] + lengths[-1]), dtype=np.uint8)
    for n in range(1, K + 1):
        sums = np.arange(255 * n + 1, dtype=np.int64)
        tab[bases[n]:bases[n] + sums.size] = (2 * sums + n) // (2 * n)
    return torch.from_numpy(tab).to(device), torch.from_numpy(bases.astype(np.int32)).to(device)


@dataclass(frozen=True)
class _Voting:
    """Everything :func:`vote` needs besides the NNF, for one style, radius and device."""

    r: int
    Hs: int
    Ws: int
    pad: int              # zero border of the vote table, style px
    wpad: int             # row stride of the vote table
    b0: int               # table offset of window entry (0, 0) relative to entry (−r, −r)
    lin_add: int          # linear table index of style (x, y) is y·wpad + x + lin_add (see vote())
    pack: _VotePacking
    table: torch.Tensor
    divtab: torch.Tensor
    divbase: torch.Tensor


def voting(style_image: Any, r: int, device: torch.device, cache: SynthesisCache) -> _Voting:
    """Check ``style_image`` and gather what :func:`vote` needs for it, radius ``r`` and ``device`` (cached tables)."""
    check_arr(style_image, "style_image", (None, None, 3), torch.uint8)
    Hs, Ws = int(style_image.shape[0]), int(style_image.shape[1])
    cache.check_style(Hs, Ws)
    pad = 2 * r + 1
    wpad = Ws + 2 * pad
    check((Hs + 2 * pad) * wpad < 2**31, "style size", "< 2^31 padded pixels", (Hs, Ws))
    b0 = r * wpad + r
    divtab, divbase = _division_table(r, device, cache)
    return _Voting(r=r, Hs=Hs, Ws=Ws, pad=pad, wpad=wpad, b0=b0, lin_add=pad * wpad + pad - b0, pack=_packing(r),
                   table=_vote_table(style_image, r, pad, device, cache), divtab=divtab, divbase=divbase)


def vote(nnf: Any, style_image: Any, *, radius: int = 1, tile_pixels: int | None = None,
         pixels: Any = None, cache: SynthesisCache | None = None) -> torch.Tensor:
    """Blend by voting: each pixel's colour is the rounded mean of ``style[NNF(p + d) − d]``.

    Over window offsets ``d`` in ``[−r, r]²`` with ``p + d`` inside the region, the
    votes ``style[NNF(p + d) − d]`` that fall inside the style are averaged per
    channel in integers, rounding half up: ``(2·sum + n) // (2·n)``. The centre's
    own vote ``style[NNF(p)]`` always counts, so ``n ≥ 1``.

    Parameters
    ----------
    nnf : (h, w, 2) int32 tensor or numpy array
        Style (x, y) per region pixel, inside the style.
    style_image : (Hs, Ws, 3) uint8 RGB
        The style exemplar.
    radius : int, keyword-only
        Window radius r in [0, 8] (``StylizeConfig.blend_radius``; StyleBlit demo: 1).
    tile_pixels : int, optional, keyword-only
        Pixels per tile; default 2^17 per torch thread on the CPU, the whole region
        elsewhere. Tuning only: the result does not depend on it.
    pixels : (k,) int64 tensor or numpy array, optional, keyword-only
        Vote only at these pixels (region-linear indices ``y·w + x``); the result is
        then ``(k, 3)``, equal to the full result at those pixels.
    cache : SynthesisCache, optional, keyword-only
        Keeps the packed style and the division table from call to call (one style per
        cache); a fresh one when absent.

    Returns
    -------
    (h, w, 3) uint8 RGB tensor on the NNF's device (``(k, 3)`` with ``pixels``)

    Raises
    ------
    ValueError
        Wrong shapes/dtypes, radius, NNF entries outside the style, or a style of
        another size than the ``cache`` serves.

    Notes
    -----
    Colours and a vote count are packed into integer fields (see ``_VotePacking``),
    so a window offset costs one gather and one add per packed table; positions
    off the region read a zero entry. The rounded mean comes from a table of
    ``(2s + c) // (2c)`` (exact integers, no division on the device). Equal to
    :func:`vote_reference` and equal on every device. The packed style is kept in
    ``cache`` (do not modify ``style_image`` while a cache holds it).

    References
    ----------
    Sýkora et al. 2019, §4 (blending by voting); Texler et al. 2021, §4; DESIGN §6.
    """
    hh, ww = check_nnf(nnf)
    r = check_radius(radius)
    device = device_of(nnf, style_image)
    t = to(nnf, device)
    vs = voting(style_image, r, device, fresh(cache))
    if pixels is not None:
        return _vote_at(check_pixels(pixels, hh * ww, device), t, vs)
    _check_inside(t.reshape(-1, 2), vs.Hs, vs.Ws)
    return vote_dense((t[..., 1] * vs.wpad).add_(t[..., 0]).add_(vs.lin_add), vs, tile_pixels)


def vote_dense(lin: torch.Tensor, vs: _Voting, tile_pixels: int | None) -> torch.Tensor:
    """:func:`vote` of a whole region from ``lin`` (h, w) int32 = ``y·wpad + x + lin_add`` of the
    NNF (inside the style; not checked). Returns (h, w, 3) uint8."""
    hh, ww = lin.shape
    r, pack, table, b0 = vs.r, vs.pack, vs.table, vs.b0
    device = lin.device
    w2 = ww + 2 * r
    if tile_pixels is None:
        tile_pixels = cpu_tile_pixels("vote") if device.type == "cpu" else hh * w2
    rows_t = max(1, min(hh, int(tile_pixels) // w2))
    out = torch.empty((hh, ww, 3), dtype=torch.uint8, device=device)
    # Index tile (rows t0 − r … t1 + r, plus a spare row) over a padded canvas whose
    # rows are contiguous, so each window offset is a plain 1-D slice. Off-region
    # entries are 0 and read table[(r, r) − d], which lies in the zero border.
    idx = torch.empty((rows_t + 2 * r + 1, w2), dtype=torch.int32, device=device)
    cap = rows_t * w2
    acc_b = torch.empty(cap, dtype=torch.int64, device=device)
    g_b = torch.empty(cap, dtype=torch.int64, device=device)
    scratch = _vote_scratch(cap, pack, device)
    for t0 in range(0, hh, rows_t):
        t1 = min(hh, t0 + rows_t)
        nt = t1 - t0
        n = nt * w2
        s0, s1 = max(0, t0 - r), min(hh, t1 + r)
        idx.zero_()
        idx[s0 - t0 + r:s1 - t0 + r, r:r + ww] = lin[s0:s1]
        flat = idx.view(-1)
        acc, g = acc_b[:n], g_b[:n]
        acc_l, g_l = acc.view(pack.lane), g.view(pack.lane)
        for i, (dy, dx) in enumerate(window(r)):
            start = (r + dy) * w2 + (r + dx)
            view = table[b0 - (dy * vs.wpad + dx):]
            torch.index_select(view, 0, flat[start:start + n], out=g if i else acc)
            if i:
                acc_l.add_(g_l)
        if pack is _PACKDIV:
            # Only the region's columns, gathered straight into the output rows.
            fields = acc_l.view(torch.int16).view(nt, w2, 4)[:, :ww, :3]
            _div_colours(fields, vs.divtab, scratch[0], out[t0:t1])
        else:
            out[t0:t1] = _vote_colours(acc_l, n, vs, scratch).unflatten(0, (nt, w2))[:, :ww]
    return out


def _check_inside(nnf: torch.Tensor, Hs: int, Ws: int) -> None:
    """ValueError unless every (x, y) row of ``nnf`` (k, 2) lies inside the style."""
    if nnf.numel() == 0:
        return
    lo, hi = torch.aminmax(nnf, dim=0)
    lo_x, lo_y, hi_x, hi_y = int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])
    check(lo_x >= 0 and hi_x < Ws and lo_y >= 0 and hi_y < Hs, "nnf values", f"inside the style {Ws}×{Hs}",
          f"x in [{lo_x}, {hi_x}], y in [{lo_y}, {hi_y}]")


def _vote_at(sel: torch.Tensor, t: torch.Tensor, vs: _Voting) -> torch.Tensor:
    """:func:`vote` at the region-linear pixels ``sel`` only: each window entry gathered per pixel."""
    win = window(vs.r)
    q, inside, _, _ = window_entries(sel, t, win)
    # Only the entries the windows read are checked (the whole NNF is the caller's).
    _check_inside(q[inside], vs.Hs, vs.Ws)
    dev = sel.device
    dy = torch.tensor([d[0] for d in win], device=dev)[:, None]
    dx = torch.tensor([d[1] for d in win], device=dev)[:, None]
    # Vote of entry d: table[b0 − (dy·wpad + dx) + idx]; off the region idx = 0, the zero
    # border entry table[(r, r) − d] (as the tiles do).
    idx = (q[..., 1] * vs.wpad + q[..., 0] + vs.lin_add) * inside
    g = vs.table.index_select(0, (idx + (vs.b0 - (dy * vs.wpad + dx))).reshape(-1))
    # Summed per lane (two int32 lanes per entry up to r = 7, one int64 beyond).
    acc = g.view(vs.pack.lane).view(len(win), -1).sum(dim=0, dtype=vs.pack.lane)
    n = sel.numel()
    return _vote_colours(acc, n, vs, _vote_scratch(n, vs.pack, dev))


def _vote_scratch(n: int, pack: _VotePacking, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Buffers of :func:`_vote_colours` for up to ``n`` pixels: table indices (int32) and colours (uint8)."""
    return torch.empty(n * 3, dtype=torch.int32, device=device), torch.empty(n * 3, dtype=torch.uint8, device=device)


def _div_colours(fields: torch.Tensor, divtab: torch.Tensor, idx_buf: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Colours of ``"div"``-packed vote sums: ``fields`` (..., 3) int16 are the division-table indices
    ``c·S + Σ`` already; widened into ``idx_buf`` and looked up into ``out`` (contiguous, same shape)."""
    idx = idx_buf[:fields.numel()].view(fields.shape).copy_(fields)
    torch.index_select(divtab, 0, idx.view(-1), out=out.view(-1))
    return out


def _vote_colours(acc_l: torch.Tensor, n: int, vs: _Voting, scratch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rounded mean colours, an ``(n, 3) uint8`` view into ``scratch``, of ``n`` packed vote sums
    (``acc_l``: the lanes of ``vs.pack``; ``scratch``: :func:`_vote_scratch`)."""
    pack = vs.pack
    if pack is _PACKDIV:
        return _div_colours(acc_l.view(torch.int16).view(n, 4)[:, :3], vs.divtab, scratch[0],
                            scratch[1][:3 * n].view(n, 3))
    idx = scratch[0][:3 * n].view(n, 3)
    if pack is _PACK16:
        lanes = acc_l.view(n, 2)
        # [R, count]; the mask undoes the sign extension of a top field ≥ 2^15 (r ≥ 6, bright red)
        hi = torch.bitwise_right_shift(lanes, 16).bitwise_and_(0xFFFF)
        lo = torch.bitwise_and(lanes, 0xFFFF)                  # [G, B]
        torch.cat((hi[:, :1], lo), dim=1, out=idx)
        cnt = hi[:, 1]
    else:
        lane = acc_l.view(n)
        for ch, sh in enumerate((36, 18, 0)):
            idx[:, ch] = torch.bitwise_right_shift(lane, sh).bitwise_and_(0x3FFFF)
        cnt = torch.bitwise_right_shift(lane, 54).to(torch.int32)
    idx.add_(torch.index_select(vs.divbase, 0, cnt)[:, None])
    return torch.index_select(vs.divtab, 0, idx.view(-1), out=scratch[1][:3 * n]).view(n, 3)
