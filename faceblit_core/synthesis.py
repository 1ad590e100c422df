"""StyleBlit synthesis and voting as vectorized torch (DESIGN §6), one code path for CPU and CUDA.

Every target pixel is decided independently (the parallel form of StyleBlit), so a
frame is a few dozen tensor operations per seed level on any device:

* :func:`styleblit` — guides → nearest-neighbour field (NNF), style pixel per target pixel;
* :func:`denoise_nnf` — FaceBlit's NNF denoising (most frequent relative offset in a window);
* :func:`vote` — colour = rounded mean of the window's votes ``style[NNF(p + d) − d]``;
* :func:`synthesize` — the three in a row, frame to frame: last frame's matches kept
  while they fit (:func:`keep_previous_nnf`), only what changes recomputed;
* ``*_reference`` — the same definitions as plain per-pixel Python loops, for tests.

Exactness (binding, docs/ARCHITECTURE.md "synthesis")
-----------------------------------------------------
The vectorized functions equal their references bit for bit, and CPU equals CUDA:

* Seeds use integers only: ``seed = h·b + floor(h·j)``, which is exactly
  ``floor(h·(b + j))`` because ``h = 2^l`` makes ``h·j`` exact in float32.
* The error is evaluated in float32, in the documented order::

      e = λ_pos·(|Gx(p) − o.x|·(256/Ws) + |Gy(p) − o.y|·(256/Hs))
          + λ_app·|Ga(p) − Sa(o)| + λ_temp·(|ΔR| + |ΔG| + |ΔB|)/3

  with ``λ``, ``256/W`` and the threshold rounded to float32 once. Only IEEE
  add/sub/mul/abs/compare run on the device; the division of the temporal term
  (``/3``) is tabulated on the host for the 766 possible sums, because CUDA
  divides by a host scalar as a multiplication by its reciprocal.
* Positions are quantised exactly, ``x8 = clip(floor(x·256/W), 0, 255)`` of the
  real quotient (as :func:`faceblit_core.lut.quantize_position`, float64): the
  float64 quotient of a float32 position by the exact ``W/256`` never rounds
  across an integer, and it is divided on the device by a device tensor.
* Voting sums colours in integers and rounds half up.

Speed notes
-----------
* Level 0 is never evaluated for the NNF: its seed is ``p`` itself, so its
  candidate is ``LUT(p)`` — the fallback — whether it is accepted or not.
* Levels are visited fine → coarse and each accepted candidate overwrites the
  previous one with a branch-free select: the coarsest accepted level wins
  without a "done" mask and without host syncs inside the level loop.
* "o inside the style" costs nothing: the style's appearance guide is stored
  (as float16: exact for 0…255, half the bytes to gather) with a NaN border wide
  enough for every candidate (padded linear indices with a power-of-two row
  stride), so an outside candidate has a NaN error and fails ``e < threshold``.
* Bool tensors (comparisons, ``torch.where``) are several times slower than
  same-dtype arithmetic on the CPU; masks are int32 0/1 and selects are
  ``a += (b − a)·m``. Python scalars are passed as 0-dim tensors of the
  operand dtype.
* Nearest-seed maps depend only on frame coordinates and the jitter table. They
  are computed unconstrained over a cached *window* of the frame that grows to
  cover every region asked for, then cropped to the region; only pixels within
  ``(h − 1)·√2`` px of the region border can have an out-of-region nearest
  seed, and only those are re-checked (a moving face box reuses the window;
  results per exact region are cached too).
* On the CPU rows are processed in tiles (per torch thread: 2^16 pixels for
  StyleBlit, 2^17 for denoising and voting, measured best) so temporaries stay
  in the caches; on CUDA the whole region is one tile. Same operations either way.
  The passes are bound by memory traffic, not by arithmetic: narrower dtypes
  (int16 counts in denoising) and fewer passes are what make them faster.
* A whole region (:func:`synthesize` without ``previous``) is chained on packed
  positions: StyleBlit's padded style indices become denoising's packed NNF, and
  the denoised NNF voting's table indices, each written tile by tile while the
  tile is in cache; the (h, w, 2) NNFs of the result are laid out only when asked.
* Frame to frame over a fixed region (face space), :func:`synthesize` evaluates
  only the pixels whose last match no longer fits and what their change reaches
  (the ``pixels`` option of each step): about 0.1 % of a face per frame.

References
----------
Sýkora et al. 2019, "StyleBlit: Fast Example-Based Stylization with Local
Guidance", §3–4 (seeds on jittered grids of spacing 2^l, chunk copy u + (p − q),
acceptance threshold, blending by voting). Texler et al. 2021, "FaceBlit: Instant
Real-time Example-based Style Transfer to Facial Videos", §4 (lookup table,
λ_pos = 10, λ_app = 2, threshold 50, NNF denoising by the most frequent offset).
Fišer et al. 2017, "Example-Based Synthesis of Stylized Facial Animations", §3.3
(temporal guide).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from faceblit_core.checks import check, check_array

__all__ = [
    "JitterTable",
    "make_jitter",
    "quantize_position_torch",
    "styleblit",
    "styleblit_reference",
    "denoise_nnf",
    "denoise_nnf_reference",
    "vote",
    "vote_reference",
    "keep_previous_nnf",
    "Synthesis",
    "synthesize",
    "clear_caches",
]

#: Steps of the quantised guides (each lookup-table axis).
LUT_LEVELS = 256
#: Largest seed level supported (``StylizeConfig.levels`` range).
MAX_LEVELS = 9
#: Largest voting radius supported (``StylizeConfig.blend_radius`` range).
MAX_RADIUS = 8
#: Pixels per CPU tile and torch thread, per step (measured best on the reference machine,
#: 2 threads: StyleBlit 2^16, denoising 2^17 / r, voting 2^17; each way ±1 step is slower
#: except voting, flat above).
CPU_TILE_PIXELS = {"styleblit": 1 << 16, "denoise": 1 << 17, "vote": 1 << 17}


def _cpu_tile_pixels(step: str) -> int:
    return CPU_TILE_PIXELS[step] * max(1, torch.get_num_threads())



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
    _offsets: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
        return _jitter_cached(int(seed), int(levels))

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
        """``floor(2^level · j)`` of every cell, ``(256, 256, 2) int32`` on ``device`` (cached)."""
        k = (level, str(device))
        with self._lock:
            hit = self._offsets.get(k)
        if hit is None:
            h = float(1 << level)
            # h = 2^l: the product is exact, so floor(h·j) is the exact integer part.
            hit = torch.floor(self.table[level] * h).to(torch.int32).to(device)
            with self._lock:
                self._offsets[k] = hit
        return hit


def _jitter_cached(seed: int, levels: int) -> JitterTable:
    key = ("rng", seed, levels)
    with _JITTER_LOCK:
        hit = _JITTERS.get(key)
        if hit is not None:
            _JITTERS.move_to_end(key)
            return hit
    rng = np.random.default_rng(seed)
    arr = rng.random((levels + 1, LUT_LEVELS, LUT_LEVELS, 2), dtype=np.float32)
    jt = JitterTable(seed=seed, levels=levels, table=torch.from_numpy(arr), key=key)
    with _JITTER_LOCK:
        _JITTERS[key] = jt
        while len(_JITTERS) > 16:
            _JITTERS.popitem(last=False)
    return jt


_JITTERS: OrderedDict = OrderedDict()
_JITTER_LOCK = threading.Lock()


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


def _as_jitter(jitter: Any, levels: int) -> JitterTable:
    if isinstance(jitter, JitterTable):
        jt = jitter
    elif isinstance(jitter, (int, np.integer)) and not isinstance(jitter, bool):
        jt = JitterTable.create(int(jitter), levels)
    else:
        jt = JitterTable.from_tensor(jitter)
    check(jt.levels >= levels, "jitter table levels", f">= levels ({levels})", jt.levels)
    return jt


# ====================================================================== small helpers
@functools.lru_cache(maxsize=1024)
def _c(value: int | float, dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """``value`` as a 0-dim host tensor of ``dtype``, for the scalar operand of an elementwise op.

    A Python number costs a conversion (a small tensor copy) on every op; a 0-dim
    tensor of the operand's dtype does not, on any device. Never modified in place.
    """
    return torch.tensor(value, dtype=dtype)


def _f32(v: float) -> float:
    """``v`` rounded to float32, as a Python float (exact as a device scalar)."""
    return float(np.float32(v))


def _device_of(*objs: Any) -> torch.device:
    devs = {o.device for o in objs if isinstance(o, torch.Tensor)}
    check(len(devs) <= 1, "input devices", "all tensors on one device", sorted(map(str, devs)))
    return devs.pop() if devs else torch.device("cpu")


def _check_arr(x: Any, what: str, shape: tuple, dtype: torch.dtype) -> None:
    """Shape and dtype check for a numpy array or tensor (dtype given as a torch dtype)."""
    check(isinstance(x, (torch.Tensor, np.ndarray)), what, "a torch tensor or numpy array", type(x).__name__,
          exc=TypeError)
    check_array(x, what, shape=shape)
    name = str(x.dtype).replace("torch.", "")
    want = str(dtype).replace("torch.", "")
    check(name == want, f"{what} dtype", want, name)


def _to(x: Any, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    a = np.ascontiguousarray(x)
    if not a.flags.writeable:      # torch.from_numpy cannot share read-only memory
        a = a.copy()
    return torch.from_numpy(a).to(device)


def _check_pixels(pixels: Any, n: int, device: torch.device) -> torch.Tensor:
    """``pixels`` as an int64 tensor of region-linear indices in [0, n) on ``device``."""
    _check_arr(pixels, "pixels", (None,), torch.int64)
    t = _to(pixels, device)
    if t.numel():
        lo, hi = torch.aminmax(t)
        check(int(lo) >= 0 and int(hi) < n, "pixels", f"linear region indices in [0, {n})", f"[{int(lo)}, {int(hi)}]")
    return t


def _flatnonzero(x: torch.Tensor, value: int) -> torch.Tensor:
    """int64 indices of the 1-D tensor ``x`` where it equals ``value``.

    On the CPU numpy's ``flatnonzero`` of a bool array is several times faster than
    ``torch.nonzero``; elsewhere torch.
    """
    if x.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(x.numpy() == value))
    return torch.nonzero(x == value).squeeze(1)


def _version(obj: Any) -> int | None:
    """In-place version counter of a tensor; None for a numpy array (treated as immutable)."""
    return obj._version if isinstance(obj, torch.Tensor) else None


class _IdentityCache:
    """Small LRU of values derived from input objects, keyed by their identity.

    A hit needs the same live objects (weak references) and, for tensors, an
    unchanged in-place version counter. numpy arrays have no version counter:
    they are treated as immutable (style assets are).
    """

    def __init__(self, maxsize: int) -> None:
        self._d: OrderedDict = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    @staticmethod
    def _versions(objs: tuple) -> tuple:
        return tuple(_version(o) for o in objs)

    def get(self, objs: tuple, extra: tuple, build: Callable[[], Any]) -> Any:
        key = (tuple(id(o) for o in objs), extra)
        with self._lock:
            hit = self._d.get(key)
            if hit is not None:
                refs, versions, value = hit
                if all(r() is o for r, o in zip(refs, objs)) and versions == self._versions(objs):
                    self._d.move_to_end(key)
                    return value
        value = build()
        try:
            refs = tuple(weakref.ref(o) for o in objs)
        except TypeError:  # not weak-referenceable: do not cache
            return value
        with self._lock:
            self._d[key] = (refs, self._versions(objs), value)
            while len(self._d) > self._maxsize:
                self._d.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_STYLE_CACHE = _IdentityCache(8)


def quantize_position_torch(v: torch.Tensor, size: int) -> torch.Tensor:
    """Exact ``clip(floor(v·256/size), 0, 255)`` of float32 positions, as int32, on any device.

    Parameters
    ----------
    v : (...) float32 tensor
        Style-pixel x (with ``size = W``) or y (with ``size = H``); finite.
    size : int
        Style width or height, px, in [1, 65535].

    Returns
    -------
    (...) int32 tensor in [0, 255]
        Equal to :func:`faceblit_core.lut.quantize_position` (float64) for finite input.

    Notes
    -----
    Computed as ``floor(v / (size/256))`` in float64: ``v`` and ``size/256`` are exact
    there, and the correctly rounded quotient of a float32 numerator cannot cross an
    integer (a non-integer quotient lies at least ``2^-24·q`` from one, far more than
    half a float64 ulp), so the floor is the real quotient's. The divisor is a
    device tensor, never a host scalar: CUDA turns division by a host scalar into
    multiplication by its reciprocal, which is not correctly rounded.

    References
    ----------
    Texler et al. 2021, §4 (8-bit positional guide x·256/W).
    """
    size = int(size)
    check(1 <= size <= 65535, "size", "an integer in [1, 65535]", size)
    return _quantize(v, torch.tensor(size / 256.0, dtype=torch.float64, device=v.device))


def _quantize(v: torch.Tensor, div: torch.Tensor, bufs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """:func:`quantize_position_torch` with ``div = size/256`` as a float64 device tensor broadcastable
    to ``v`` (e.g. ``(2, 1)`` for stacked x and y); ``bufs`` = a float64 and an int32 buffer shaped
    like ``v`` (optional, avoids allocations)."""
    d, q = bufs if bufs is not None else (torch.empty(v.shape, dtype=torch.float64, device=v.device),
                                          torch.empty(v.shape, dtype=torch.int32, device=v.device))
    d.copy_(v)
    torch.div(d, div, out=d).floor_().clamp_(0.0, 255.0)
    return q.copy_(d)


# ============================================================ per-style device tables
@dataclass
class _StyleTables:
    Hs: int
    Ws: int
    P: int          # border of the padded style space, style px (≥ every |p − q|)
    s: int          # log2 of the padded row stride
    Wp: int         # padded row stride (power of two)
    lutpad: torch.Tensor   # (256³,) int32: LUT entries as padded linear indices
    sa: torch.Tensor       # ((Hs + 2P)·Wp,) float16 (exact for 0…255), NaN outside the style
    n_pad: int


def _style_tables(style_app: Any, lut: Any, levels: int, device: torch.device) -> _StyleTables:
    def build() -> _StyleTables:
        app = _to(style_app, device)
        Hs, Ws = app.shape
        P = 1 << (levels + 1)
        s = max(1, (Ws + 2 * P - 1).bit_length())
        Wp = 1 << s
        rows = Hs + 2 * P
        check(rows * Wp < 2**31, "padded style size", "< 2^31 entries", rows * Wp)
        lt = _to(lut, device).reshape(-1)
        lo, hi = torch.aminmax(lt)
        lo, hi = int(lo), int(hi)
        check(lo >= 0 and hi < Hs * Ws, "lookup table values", f"linear style indices in [0, {Hs * Ws})",
              f"[{lo}, {hi}]")
        # linear index y·Ws + x → padded index ((y + P) << s) + x + P, via a small table
        i32 = dict(dtype=torch.int32, device=device)
        padmap = ((torch.arange(Hs, **i32) + P) << s)[:, None] + (torch.arange(Ws, **i32) + P)[None, :]
        lutpad = padmap.reshape(-1).index_select(0, lt)
        sa = torch.full((rows, Wp), float("nan"), dtype=torch.float32, device=device)
        sa[P:P + Hs, P:P + Ws] = app.to(torch.float32)
        return _StyleTables(Hs=Hs, Ws=Ws, P=P, s=s, Wp=Wp, lutpad=lutpad,
                            sa=sa.reshape(-1).half(), n_pad=rows * Wp)

    return _STYLE_CACHE.get((style_app, lut), ("blit", levels, str(device)), build)


def _temp_tables(style_temp: Any, st: _StyleTables, device: torch.device) -> torch.Tensor:
    def build() -> torch.Tensor:
        t = _to(style_temp, device).to(torch.int32)
        rows = st.n_pad // st.Wp
        out = torch.zeros((3, rows, st.Wp), dtype=torch.int32, device=device)
        out[:, st.P:st.P + st.Hs, st.P:st.P + st.Ws] = t.permute(2, 0, 1)
        return out.reshape(3, -1)

    return _STYLE_CACHE.get((style_temp,), ("temp", st.P, st.s, st.Hs, st.Ws, str(device)), build)


def _temp_term_table(lambda_temp: float, device: torch.device) -> torch.Tensor:
    """``(λ_temp·S)/3`` in float32 for every channel-sum S in 0..765, computed on the host."""
    s = np.arange(766, dtype=np.float32)
    tab = (np.float32(lambda_temp) * s) / np.float32(3.0)
    return torch.from_numpy(tab.astype(np.float32)).to(device)


# ================================================================ nearest-seed maps
def _seed_grid(jt: JitterTable, level: int, bx: torch.Tensor, by: torch.Tensor,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeds (frame px, int32) of the cells ``by[:, None] × bx[None, :]`` at ``level``."""
    off = jt.offsets(level, device)
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
                  device: torch.device) -> _WindowLevel:
    """Unconstrained nearest seed (3×3 cells, squared distance, first in raster order) per pixel."""
    h = 1 << level
    c0x, c1x = x0 >> level, (x1 - 1) >> level
    c0y, c1y = y0 >> level, (y1 - 1) >> level
    ncx, ncy = c1x - c0x + 1, c1y - c0y + 1
    i32 = dict(dtype=torch.int32, device=device)
    bx = torch.arange(c0x - 1, c1x + 2, **i32)
    by = torch.arange(c0y - 1, c1y + 2, **i32)
    sx, sy = _seed_grid(jt, level, bx, by, device)
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


_WINDOWS: OrderedDict = OrderedDict()
_REGIONS: OrderedDict = OrderedDict()
_SEED_LOCK = threading.Lock()
_WINDOW_MAX_PIXELS = 1 << 24


def _window_for(jt: JitterTable, levels: int, x0: int, y0: int, x1: int, y1: int,
                device: torch.device) -> _Window:
    key = (jt.key, str(device))
    with _SEED_LOCK:
        win = _WINDOWS.get(key)
        if win is not None:
            _WINDOWS.move_to_end(key)
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
    lv = {l: _window_level(jt, l, nx0, ny0, nx1, ny1, device) for l in range(1, max(levels, 1) + 1)}
    win = _Window(nx0, ny0, nx1, ny1, lv)
    with _SEED_LOCK:
        _WINDOWS[key] = win
        while len(_WINDOWS) > 4:
            _WINDOWS.popitem(last=False)
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


def _region_levels(jt: JitterTable, levels: int, x0: int, y0: int, hh: int, ww: int,
                   device: torch.device) -> list[_RegionLevel]:
    """Per level 1..L the nearest in-region seed of every region pixel (cached per region)."""
    key = (jt.key, levels, str(device), x0, y0, hh, ww)
    with _SEED_LOCK:
        hit = _REGIONS.get(key)
        if hit is not None:
            _REGIONS.move_to_end(key)
            return hit
    x1, y1 = x0 + ww, y0 + hh
    win = _window_for(jt, levels, x0, y0, x1, y1, device)
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
        sx, sy = _seed_grid(jt, level, bx, by, device)
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
    with _SEED_LOCK:
        _REGIONS[key] = out
        while len(_REGIONS) > 4:
            _REGIONS.popitem(last=False)
    return out


def _band_indices(hh: int, ww: int, b: int, device: torch.device) -> torch.Tensor:
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


def clear_caches() -> None:
    """Drop every cached seed map, jitter table and per-style device table (frees memory)."""
    with _SEED_LOCK:
        _WINDOWS.clear()
        _REGIONS.clear()
        _CANVASES.clear()
    with _JITTER_LOCK:
        _JITTERS.clear()
    _STYLE_CACHE.clear()
    _VOTE_CACHE.clear()


# ============================================================================ styleblit
def styleblit(
    g_pos: Any,
    g_app: Any,
    style_app: Any,
    lut: Any,
    *,
    origin: tuple[int, int] = (0, 0),
    jitter: JitterTable | int | Any,
    threshold: float = 50.0,
    lambda_pos: float = 10.0,
    lambda_app: float = 2.0,
    lambda_temp: float = 0.0,
    g_temp: Any = None,
    style_temp: Any = None,
    levels: int = 6,
    return_levels: bool = False,
    tile_pixels: int | None = None,
    pixels: Any = None,
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
        negative weights/threshold, lookup-table values outside the style, or a
        jitter table with too few levels.

    Notes
    -----
    Inputs may be numpy arrays or tensors on any one device (numpy goes to that
    device). Per-style tables (padded lookup table, padded style guides) are
    cached by the identity of ``style_app``/``lut``/``style_temp``: tensors
    modified in place are noticed, numpy arrays must not be modified. Seed maps
    are cached per jitter table and device (see module notes). There is no host
    synchronisation inside the level loop. The result does not depend on the
    device or on ``tile_pixels``; it equals :func:`styleblit_reference`.

    References
    ----------
    Sýkora et al. 2019, §3–4 (StyleBlit); Texler et al. 2021, §4 (FaceBlit,
    λ_pos = 10, λ_app = 2, threshold 50, L = 6); DESIGN §6; Fišer et al. 2017, §3.3.
    """
    blit = _styleblit(g_pos, g_app, style_app, lut, origin=origin, jitter=jitter, threshold=threshold,
                      lambda_pos=lambda_pos, lambda_app=lambda_app, lambda_temp=lambda_temp, g_temp=g_temp,
                      style_temp=style_temp, levels=levels, return_levels=return_levels, tile_pixels=tile_pixels,
                      pixels=pixels)
    nnf = _unpack(blit.res, blit.st.s, blit.st.Wp - 1, blit.st.P)
    if pixels is None:
        nnf = nnf.view(blit.hh, blit.ww, 2)
    if return_levels:
        lvl = blit.levels.to(torch.int8)
        return nnf, (lvl.view(blit.hh, blit.ww) if pixels is None else lvl)
    return nnf


#: styleblit()'s keyword defaults, for callers of _styleblit (one source: the public signature).
_STYLEBLIT_DEFAULTS = {k: p.default for k, p in inspect.signature(styleblit).parameters.items()
                       if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}


@dataclass
class _Blit:
    """:func:`_styleblit`'s result: the matches as padded style indices (see ``_StyleTables``)."""

    res: torch.Tensor            # (h·w,) or (k,) int32: ((y + P) << s) + x + P of each pixel's match
    st: "_StyleTables"
    hh: int
    ww: int
    levels: torch.Tensor | None  # (h·w,) or (k,) int32 accepted level, with ``return_levels``


def _styleblit(g_pos: Any, g_app: Any, style_app: Any, lut: Any, *, origin: tuple[int, int], jitter: Any,
               threshold: float, lambda_pos: float, lambda_app: float, lambda_temp: float, g_temp: Any,
               style_temp: Any, levels: int, return_levels: bool, tile_pixels: int | None, pixels: Any,
               emit: Callable[[int, int, torch.Tensor, _StyleTables], None] | None = None) -> _Blit:
    """:func:`styleblit` (same arguments and checks) up to the matches as padded style indices.

    ``emit(r0, r1, res, st)`` (whole regions only) receives each finished tile, region rows
    [r0, r1) as padded indices (r1 − r0)·w of the tables ``st``, while they are still in cache."""
    device = _device_of(g_pos, g_app, style_app, lut, g_temp, style_temp)
    _check_arr(g_pos, "g_pos", (None, None, 2), torch.float32)
    hh, ww = int(g_pos.shape[0]), int(g_pos.shape[1])
    check(hh >= 1 and ww >= 1, "region size", "at least 1×1", (hh, ww))
    _check_arr(g_app, "g_app", (hh, ww), torch.uint8)
    _check_arr(style_app, "style_app", (None, None), torch.uint8)
    Hs, Ws = int(style_app.shape[0]), int(style_app.shape[1])
    check(1 <= Hs and 1 <= Ws <= 65535 and Hs <= 65535, "style size", "1..65535 px per side", (Hs, Ws))
    _check_arr(lut, "lut", (LUT_LEVELS, LUT_LEVELS, LUT_LEVELS), torch.int32)
    check(isinstance(levels, (int, np.integer)) and 0 <= levels <= MAX_LEVELS, "levels",
          f"an integer in [0, {MAX_LEVELS}]", repr(levels))
    levels = int(levels)
    x0, y0 = (int(v) for v in origin)
    for name, v in (("threshold", threshold), ("lambda_pos", lambda_pos), ("lambda_app", lambda_app),
                    ("lambda_temp", lambda_temp)):
        check(v >= 0 and not math.isnan(v), name, ">= 0", v)
    check((g_temp is None) == (style_temp is None), "temporal guides", "g_temp and style_temp together",
          f"g_temp={'set' if g_temp is not None else None}, style_temp={'set' if style_temp is not None else None}")
    temporal = g_temp is not None and lambda_temp > 0
    if g_temp is not None:
        _check_arr(g_temp, "g_temp", (hh, ww, 3), torch.uint8)
        _check_arr(style_temp, "style_temp", (Hs, Ws, 3), torch.uint8)
    jt = _as_jitter(jitter, levels)

    st = _style_tables(style_app, lut, levels, device)
    gp_flat = _to(g_pos, device).reshape(-1, 2)
    ga_u8 = _to(g_app, device).reshape(-1)
    n = hh * ww
    sel = _check_pixels(pixels, n, device) if pixels is not None else None
    if sel is not None and sel.numel() == 0:
        empty = torch.empty(0, dtype=torch.int32, device=device)
        return _Blit(res=empty, st=st, hh=hh, ww=ww, levels=empty if return_levels else None)

    lam_pos, lam_app, thr = _f32(lambda_pos), _f32(lambda_app), _f32(threshold)
    sxs, sys_ = _f32(256.0 / Ws), _f32(256.0 / Hs)
    mask_x = st.Wp - 1
    i32 = dict(dtype=torch.int32, device=device)
    f32 = dict(dtype=torch.float32, device=device)
    q_div = torch.tensor([[Ws / 256.0], [Hs / 256.0]], dtype=torch.float64, device=device)

    def lut_at(gxy: torch.Tensor, ga: torch.Tensor, out: torch.Tensor | None = None, bufs: tuple | None = None):
        """LUT(p) as padded style indices, from positions ``(2, m)`` float32 and appearance ``(m,)`` uint8."""
        q = _quantize(gxy, q_div, bufs)
        idx = q[1].bitwise_left_shift_(_c(8)).add_(q[0]).bitwise_left_shift_(_c(8)).add_(ga)
        return torch.index_select(st.lutpad, 0, idx, out=out) if out is not None else st.lutpad.index_select(0, idx)

    check(st.n_pad + (hh << st.s) + ww < 2**31, "padded index range", "< 2^31", st.n_pad + (hh << st.s) + ww)
    region = _region_levels(jt, levels, x0, y0, hh, ww, device) if levels >= 1 else []
    if temporal:
        stemp = _temp_tables(style_temp, st, device)
        ttab = _temp_term_table(_f32(lambda_temp), device)

    if sel is None:
        if temporal:
            gt = _to(g_temp, device).to(torch.int32).permute(2, 0, 1).reshape(3, -1)
        if tile_pixels is None:
            tile_pixels = _cpu_tile_pixels("styleblit") if device.type == "cpu" else n
        rows_per_tile = max(1, min(hh, int(tile_pixels) // ww))
        # LUT(p) of every pixel (the fallback, and u(q) at the seeds), tile by tile so
        # the quantisation temporaries stay in cache.
        ulut = torch.empty(n, **i32)
        cap = rows_per_tile * ww
        qbufs = (torch.empty((2, cap), dtype=torch.float64, device=device), torch.empty((2, cap), **i32))
        # G_pos split into x and y planes, one whole-frame copy per plane (a transposing
        # copy, or copies per tile, are several times slower).
        gxy_f = torch.empty((2, n), **f32)
        gxy_f[0] = gp_flat[:, 0]
        gxy_f[1] = gp_flat[:, 1]
        gaf_b = torch.empty(cap, dtype=torch.float16, device=device)   # G_app as float16, a tile at a time
        for r0 in range(0, hh, rows_per_tile):
            a, b = r0 * ww, min(hh, r0 + rows_per_tile) * ww
            lut_at(gxy_f[:, a:b], ga_u8[a:b], ulut[a:b], tuple(x[:, :b - a] for x in qbufs))

        # Per-level seed tables: the candidate of pixel p is o = u(q) + (p − q), i.e. in
        # padded linear style indices bi = bp[c(p)] + ppad(p) with bp = upad(q) − qpad.
        # Pixels without an in-region seed get bp = n_pad, clamped to the last (NaN) cell.
        tables = []
        for level, rl in zip(range(1, levels + 1), region):
            qflat, keep, qneg = rl.seed_terms(st.s, st.n_pad)
            bp_cells = ulut.index_select(0, qflat).mul_(keep).add_(qneg).view(rl.sx.shape)
            bp = torch.empty(rl.n_ids, **i32)
            bp[-1] = st.n_pad
            nwy = (rl.n_ids - 1) // rl.nwx
            bp[:-1].view(nwy, rl.nwx)[rl.gy_off:rl.gy_off + bp_cells.shape[0], rl.gx_off:rl.gx_off + bp_cells.shape[1]] = bp_cells
            tables.append((level, rl, bp))
        res = ulut
        n_out = n
    else:
        # Only the selected pixels: their inputs gathered, one table entry per pixel and
        # level (the seed of the pixel's own cell), then the same level loop as one tile.
        k = cap = int(sel.numel())
        gxy_s = gp_flat.index_select(0, sel).t().contiguous()
        ga_s = ga_u8.index_select(0, sel)
        res = lut_at(gxy_s, ga_s)
        tables = []
        for level, rl in zip(range(1, levels + 1), region):
            ids = rl.c.index_select(0, sel)
            qx, qy = rl.qx.index_select(0, ids), rl.qy.index_select(0, ids)
            q = qy.long() * ww + qx
            u = lut_at(gp_flat.index_select(0, q).t().contiguous(), ga_u8.index_select(0, q))
            bp = u.sub_((qy << st.s).add_(qx)).sub_(st.n_pad).mul_(rl.inr.index_select(0, ids)).add_(st.n_pad)
            tables.append((level, rl, bp))
        n_out = k

    lvl = torch.full((n_out,), -1, **i32) if return_levels else None
    # e < thr is tested on the bit patterns (see accepted()).
    thr_bits = int(np.float32(thr).view(np.int32))
    oxy_b = torch.empty((2, cap), **f32)
    mi_b = torch.empty((2, cap), **i32)
    sa_b = torch.empty(cap, **f32)
    sa16_b = torch.empty(cap, dtype=torch.float16, device=device)
    bi_b, acc_b = torch.empty(cap, **i32), torch.empty(cap, **i32)
    scale = torch.tensor([[sxs], [sys_]], **f32)          # float32 256/Ws, 256/Hs
    if temporal:
        t_b, s_b = torch.empty(cap, **i32), torch.empty(cap, **i32)

    c_mask, c_s, c_pp, c_thr = _c(mask_x), _c(st.s), _c((st.P << st.s) + st.P), _c(thr_bits)
    c_lp, c_la = _c(lam_pos, torch.float32), _c(lam_app, torch.float32)

    def accepted(bi: torch.Tensor, v: dict) -> torch.Tensor:
        """1 where the candidate with padded style index ``bi`` has e < thr, else 0 (int32).

        The error follows the documented float32 order. e ≥ 0, or NaN for a
        candidate outside the style; every NaN passes through abs() so its sign
        bit is clear. Non-negative floats (NaN above +inf) order like their bit
        patterns, so the test is an int32 comparison (bool tensors are slow on the CPU).
        """
        oxy, e, mi = v["oxy"], v["ox"], v["mi"]
        # (o.x, o.y) from the unpadded index (o.y << s) + o.x: exact for a candidate inside the
        # style; one outside decodes to garbage, but its Sa is NaN, and so is its error.
        unpadded = torch.sub(bi, c_pp, out=v["acc"])
        torch.bitwise_and(unpadded, c_mask, out=v["mx"])
        torch.bitwise_right_shift(unpadded, c_s, out=v["my"])
        oxy.copy_(mi)                                              # exact in float32
        torch.sub(v["gxy"], oxy, out=oxy)
        oxy.abs_().mul_(scale)                                     # |Gx − o.x|·256/Ws, |Gy − o.y|·256/Hs
        torch.add(e, v["oy"], out=e).mul_(c_lp)
        # |Ga − Sa| of 8-bit values is exact in float16 (NaN stays NaN): half the bytes.
        d16 = torch.index_select(st.sa, 0, bi, out=v["sa16"])
        torch.sub(v["gaf"], d16, out=d16).abs_()
        e.add_(v["sa"].copy_(d16).mul_(c_la))
        if temporal:
            ssum, d = v["ssum"], v["tmp"]
            for ch in range(3):
                torch.index_select(stemp[ch], 0, bi, out=d if ch else ssum)
                if ch:
                    ssum.add_(torch.sub(v["gt"][ch], d, out=d).abs_())
                else:
                    torch.sub(v["gt"][0], ssum, out=ssum).abs_()
            e.add_(torch.index_select(ttab, 0, ssum, out=v["oy"]))
        return torch.lt(e.view(torch.int32), c_thr, out=v["acc"])

    def run_tile(a: int, b: int, gxy: torch.Tensor, gaf: torch.Tensor, gt_t: torch.Tensor | None,
                 ppad: torch.Tensor, cells: Callable[[_RegionLevel], torch.Tensor]) -> None:
        """Levels fine → coarse over output rows [a, b); the coarsest accepted candidate wins."""
        k = b - a
        res_t = res[a:b]
        oxy, mi = oxy_b[:, :k], mi_b[:, :k]
        v = dict(oxy=oxy, ox=oxy[0], oy=oxy[1], mi=mi, mx=mi[0], my=mi[1], gxy=gxy, sa=sa_b[:k], sa16=sa16_b[:k],
                 acc=acc_b[:k], gaf=gaf)
        if temporal:
            v.update(ssum=s_b[:k], tmp=t_b[:k], gt=gt_t)
        bi, acc = bi_b[:k], v["acc"]
        if return_levels:
            # Level 0 (seed = p, candidate = LUT(p)) only matters for the statistics.
            lvl[a:b] = accepted(res_t, v) - 1
        for level, rl, bp in tables:
            torch.index_select(bp, 0, cells(rl), out=bi).add_(ppad)
            if rl.has_dummy:
                bi.clamp_(max=st.n_pad - 1)
            accepted(bi, v)
            # res ← bi where accepted: res += (bi − res)·acc (branch-free select; faster than an integer addcmul).
            res_t.add_(torch.sub(bi, res_t, out=bi).mul_(acc))
            if return_levels:
                lv = lvl[a:b]
                lv.add_(torch.neg(lv, out=v["mx"]).add_(level).mul_(acc))

    if sel is None:
        px_i = torch.arange(ww, **i32)
        py_s = torch.arange(hh, **i32) << st.s
        for r0 in range(0, hh, rows_per_tile):
            r1 = min(hh, r0 + rows_per_tile)
            a, b = r0 * ww, r1 * ww
            run_tile(a, b, gxy_f[:, a:b], gaf_b[:b - a].copy_(ga_u8[a:b]), gt[:, a:b] if temporal else None,
                     (py_s[r0:r1, None] + px_i[None, :]).reshape(-1), lambda rl: rl.c[a:b])
            if emit is not None:
                emit(r0, r1, res[a:b], st)
    else:
        py = torch.div(sel, ww, rounding_mode="floor")
        ident = torch.arange(k, device=device)
        run_tile(0, k, gxy_s, ga_s.to(torch.float16),
                 _to(g_temp, device).reshape(n, 3).index_select(0, sel).t().to(torch.int32) if temporal else None,
                 ((py << st.s) + (sel - py * ww)).to(torch.int32), lambda rl: ident)
    return _Blit(res=res, st=st, hh=hh, ww=ww, levels=lvl)


# ====================================================================== reference
def _np(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _q_ref(v: np.float32, size: int) -> int:
    return min(max(math.floor(float(v) * 256.0 / size), 0), 255)


def styleblit_reference(
    g_pos: Any,
    g_app: Any,
    style_app: Any,
    lut: Any,
    *,
    origin: tuple[int, int] = (0, 0),
    jitter: JitterTable | int | Any,
    threshold: float = 50.0,
    lambda_pos: float = 10.0,
    lambda_app: float = 2.0,
    lambda_temp: float = 0.0,
    g_temp: Any = None,
    style_temp: Any = None,
    levels: int = 6,
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
    jt = _as_jitter(jitter, levels)
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


# ========================================================================= denoising
def _check_nnf(nnf: Any, what: str = "nnf") -> tuple[int, int]:
    _check_arr(nnf, what, (None, None, 2), torch.int32)
    hh, ww = int(nnf.shape[0]), int(nnf.shape[1])
    check(hh >= 1 and ww >= 1, f"{what} size", "at least 1×1", (hh, ww))
    return hh, ww


def _check_radius(radius: Any) -> int:
    check(isinstance(radius, (int, np.integer)) and not isinstance(radius, bool) and 0 <= radius <= MAX_RADIUS,
          "radius", f"an integer in [0, {MAX_RADIUS}]", repr(radius))
    return int(radius)


def _window(radius: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


def denoise_nnf(nnf: Any, *, style_shape: tuple[int, int], radius: int = 1,
                tile_pixels: int | None = None, pixels: Any = None) -> torch.Tensor:
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
    hh, ww = _check_nnf(nnf)
    r = _check_radius(radius)
    Hs, Ws = (int(v) for v in style_shape)
    _check_denoise_style(Hs, Ws)
    device = nnf.device if isinstance(nnf, torch.Tensor) else torch.device("cpu")
    t = _to(nnf, device)
    sel = _check_pixels(pixels, hh * ww, device) if pixels is not None else None
    if r == 0:
        return t.reshape(-1, 2).index_select(0, sel) if sel is not None else t.clone(memory_format=torch.contiguous_format)
    cv = _denoise_canvas(hh, ww, r, device)
    if sel is not None:
        return _denoise_at(sel, t, cv, Hs, Ws)
    # NNF packed as ((y + r) << 16) + (x + r) (see _denoise_dense).
    pk = torch.zeros(cv.n, dtype=torch.int32, device=device)
    cv.region(pk)[:] = (t[..., 1] << 16).add_(t[..., 0]).add_((r << 16) + r)
    return _unpack(_denoise_dense(pk, cv, Hs, Ws, tile_pixels), 16, 0xFFFF, r).view(hh, ww, 2)


def _check_denoise_style(Hs: int, Ws: int) -> None:
    check(1 <= Hs < 32768 and 1 <= Ws < 32768, "style_shape", "(Hs, Ws) with sides in [1, 32767]", (Hs, Ws))


def _unpack(packed: torch.Tensor, s: int, mask: int, off: int) -> torch.Tensor:
    """(k, 2) int32 (x, y) of positions packed as ``((y + off) << s) + x + off`` (any shape, k elements)."""
    flat = packed.reshape(-1)
    out = torch.empty((flat.numel(), 2), dtype=torch.int32, device=packed.device)
    out[:, 0] = torch.bitwise_and(flat, _c(mask)).sub_(_c(off))
    out[:, 1] = torch.bitwise_right_shift(flat, _c(s)).sub_(_c(off))
    return out


def _repack(packed: torch.Tensor, s: int, mask: int, stride: int, add: int) -> torch.Tensor:
    """``(packed >> s)·stride + (packed & mask) + add``: a packed position re-packed with another row stride."""
    out = torch.bitwise_right_shift(packed, _c(s))
    return out.mul_(_c(stride)).add_(torch.bitwise_and(packed, _c(mask))).add_(_c(add))


def _denoise_dense(pk: torch.Tensor, cv: "_Canvas", Hs: int, Ws: int, tile_pixels: int | None,
                   emit: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """:func:`denoise_nnf` of a whole region as packed positions.

    ``pk``: (cv.n,) int32 canvas holding ``((y + r) << 16) + (x + r)`` of the NNF at the region's
    canvas positions (rows ``row0 …``, columns ``R …``) and 0 elsewhere. Returns (h, w) int32,
    the denoised NNF packed the same way. ``emit(t0, t1, rows)`` receives each finished tile's
    rows [t0, t1) of the result while they are still in cache.
    """
    hh, ww, r, device = cv.hh, cv.ww, cv.r, pk.device
    win, prio, b, foff = cv.win, cv.prio, cv.b, cv.foff
    K = len(win)
    R, wd, row0 = cv.R, cv.wd, cv.row0
    i32 = dict(dtype=torch.int32, device=device)
    # With the NNF packed, NNF(p + d) − d is one subtraction, and pk(q) − ((q_y << 16) + q_x)
    # is q's relative offset as one injective int32 key (|r_x| < w + Ws ≤ 2^16). Off the
    # region the canvas adds unique sentinels instead, which equal nothing and so never win.
    kp = torch.add(pk, cv.key_base)

    # r ≤ 2: the 2r + 1 counts of a row of A images fit as bit fields in one int32
    # ("packed"), for r = 1 even in one int16 with room for a score (count << b) + priority:
    # half the bytes through memory, which bounds these passes. Larger r keeps one image
    # per count.
    fb = K.bit_length()            # bits of one count field (count ≤ K − 1 < 2^fb)
    packed = (2 * r + 1) * fb <= 31
    ct = torch.int16 if (2 * r + 1) * fb <= 15 and fb + b <= 15 else torch.int32
    if packed:
        n_eq, n_b, n_a = 4, 4 * r + 1, 2 * r + 1
        fmask = (1 << fb) - 1
        # E_(dy,dx) enters the fields cx with |dx − cx| ≤ r of the B row dy.
        wts = {dx: sum(1 << (fb * (cx + r)) for cx in range(max(-r, dx - r), min(r, dx + r) + 1))
               for dx in range(-2 * r, 2 * r + 1)}
    else:
        n_eq, n_b, n_a = max(4, 4 * r + 1), (4 * r + 1) * (2 * r + 1), (2 * r + 1) ** 2
    n_img = n_eq + n_b + n_a + 2
    if tile_pixels is None:
        tile_pixels = _cpu_tile_pixels("denoise") // r if device.type == "cpu" else hh * ww
    budget_rows = max(1, (1 << 26) // (n_img * wd * 4) - 2 * r)   # ≤ 64 MiB of images per tile
    rows_t = max(1, min(hh, int(tile_pixels) // wd, budget_rows))
    ld_max = (rows_t + 2 * r) * wd
    eq_buf = torch.empty((n_eq, ld_max), **i32)   # EQ images (unpacked), then the pick's scratch
    imgs = torch.empty((n_b + n_a + 2, ld_max), dtype=ct, device=device)
    b_buf, a_buf, s_buf = imgs[:n_b], imgs[n_b:n_b + n_a], imgs[n_b + n_a:]   # B, A rows and two score rows
    ebuf = torch.empty(ld_max + 2 * r * wd + 2 * r, dtype=ct, device=device) if packed else None
    out = torch.empty((hh, ww), **i32)
    for t0 in range(0, hh, rows_t):
        t1 = min(hh, t0 + rows_t)
        nt = t1 - t0
        base = (row0 + t0 - r) * wd
        ld = (nt + 2 * r) * wd
        dom = kp[base:base + ld]
        # Output positions: from column R of row t0 to column R + w − 1 of row t1 − 1.
        L = (nt - 1) * wd + ww
        s0 = r * wd + R
        best = None
        if packed:
            brow = {}

            def accumulate(dy: int, e: torch.Tensor, w: int) -> None:
                if dy in brow:
                    brow[dy].add_(e, alpha=w)
                else:                      # first term of the row: no zeroing pass
                    brow[dy] = torch.mul(e, _c(w, ct), out=b_buf[dy + 2 * r, :ld])

            # EQ_δ(y) = EQ_−δ(y + δ): one comparison over a domain longer by δ serves both.
            for dy in range(0, 2 * r + 1):
                for dx in range(-2 * r if dy else 1, 2 * r + 1):
                    off = dy * wd + dx
                    e = torch.eq(kp[base - off:base + ld], kp[base:base + ld + off], out=ebuf[:ld + off])
                    accumulate(dy, e[off:off + ld], wts[dx])
                    accumulate(-dy, e[:ld], wts[-dx])
            arow = {cy: _sum_into(a_buf[cy + r, :ld], [brow[dy] for dy in range(cy - r, cy + r + 1)])
                    for cy in range(-r, r + 1)}
            for dy, dx in win:
                o = s0 + dy * wd + dx
                src = arow[-dy][o:o + L]
                sc = s_buf[0 if best is None else 1, :L]
                sh = fb * (r - dx) - b          # field of cx = −dx moved to bits [b, b + fb)
                if sh > 0:
                    torch.bitwise_right_shift(src, _c(sh, ct), out=sc).bitwise_and_(_c(fmask << b, ct))
                elif sh < 0:
                    torch.bitwise_left_shift(src, _c(-sh, ct), out=sc).bitwise_and_(_c(fmask << b, ct))
                else:
                    torch.bitwise_and(src, _c(fmask << b, ct), out=sc)
                sc.add_(_c(prio[(dy, dx)], ct))
                best = sc if best is None else torch.maximum(best, sc, out=best)
            if ct is not torch.int32:
                best = eq_buf[0, :L].copy_(best)
        else:
            bsum = {}
            for dy in range(-2 * r, 2 * r + 1):
                eq = {}
                for j, dx in enumerate(range(-2 * r, 2 * r + 1)):
                    if dy or dx:
                        o = base + dy * wd + dx
                        eq[dx] = torch.eq(dom, kp[o:o + ld], out=eq_buf[j, :ld])
                for cx in range(-r, r + 1):
                    dst = b_buf[len(bsum), :ld]
                    bsum[(dy, cx)] = _sum_into(dst, [eq[dx] for dx in range(cx - r, cx + r + 1) if dx in eq])
            a_img = {}
            for cy in range(-r, r + 1):
                for cx in range(-r, r + 1):
                    dst = a_buf[len(a_img), :ld]
                    a_img[(cy, cx)] = _sum_into(dst, [bsum[(dy, cx)] for dy in range(cy - r, cy + r + 1)])
            for dy, dx in win:
                o = s0 + dy * wd + dx
                src = a_img[(-dy, -dx)][o:o + L]
                if best is None:
                    best = torch.bitwise_left_shift(src, _c(b), out=eq_buf[0, :L]).add_(_c(prio[(dy, dx)]))
                else:
                    sc = torch.bitwise_left_shift(src, _c(b), out=eq_buf[1, :L]).add_(_c(prio[(dy, dx)]))
                    torch.maximum(best, sc, out=best)
        pr = best.bitwise_and_(_c((1 << b) - 1))
        p0 = (row0 + t0) * wd + R
        v = _denoise_pick(kp, cv.arange[p0:p0 + L], cv.key_base[p0:p0 + L], pk[p0:p0 + L], pr, foff, r, Hs, Ws,
                          eq_buf[:4, :L])
        out[t0:t1] = v.as_strided((nt, ww), (wd, 1))   # canvas rows, region columns
        if emit is not None:
            emit(t0, t1, out[t0:t1])
    return out


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
    xq = torch.bitwise_and(v, _c(0xFFFF), out=buf[0]).sub_(_c(r))
    yq = torch.bitwise_right_shift(v, _c(16), out=buf[1]).sub_(_c(r))
    # −1 where the new position leaves the style (one of four differences negative).
    outside = torch.neg(xq, out=buf[3]).add_(_c(Ws - 1)).bitwise_or_(xq).bitwise_or_(yq)
    outside.bitwise_or_(torch.neg(yq, out=buf[0]).add_(_c(Hs - 1))).bitwise_right_shift_(_c(31))
    # v ← v0 where outside: v ^= (v ^ v0) & outside.
    return v.bitwise_xor_(torch.bitwise_xor(v, v0, out=buf[1]).bitwise_and_(outside))


def _window_entries(sel: torch.Tensor, t: torch.Tensor, win: list):
    """The NNF entries in the window of each region-linear pixel of ``sel``.

    Returns ``q`` (K, k, 2) int32 (clamped to the region where the position leaves
    it), ``inside`` (K, k) bool, and the positions ``qy``, ``qx`` (K, k) int64,
    for the K window offsets ``win`` (dy, dx).
    """
    hh, ww = t.shape[:2]
    py = torch.div(sel, ww, rounding_mode="floor")
    px = sel - py * ww
    qy = py[None, :] + torch.tensor([d[0] for d in win], device=sel.device)[:, None]
    qx = px[None, :] + torch.tensor([d[1] for d in win], device=sel.device)[:, None]
    inside = (qy >= 0) & (qy < hh) & (qx >= 0) & (qx < ww)
    q = t.reshape(-1, 2).index_select(0, (qy.clamp(0, hh - 1) * ww + qx.clamp(0, ww - 1)).reshape(-1))
    return q.view(len(win), -1, 2), inside, qy, qx


def _denoise_at(sel: torch.Tensor, t: torch.Tensor, cv: "_Canvas", Hs: int, Ws: int) -> torch.Tensor:
    """:func:`denoise_nnf` at the region-linear pixels ``sel`` only: the window's packed NNF and keys
    gathered per pixel (as the dense path's canvases hold them), then the same count and pick."""
    win, prio, b, r = cv.win, cv.prio, cv.b, cv.r
    i32 = dict(dtype=torch.int32, device=sel.device)
    k = sel.numel()
    q, inside, qy, qx = _window_entries(sel, t, win)
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
    return _unpack(v, 16, 0xFFFF, r)


@dataclass
class _Canvas:
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


_CANVASES: OrderedDict = OrderedDict()


def _denoise_canvas(hh: int, ww: int, r: int, device: torch.device) -> _Canvas:
    key = (hh, ww, r, str(device))
    with _SEED_LOCK:
        hit = _CANVASES.get(key)
        if hit is not None:
            _CANVASES.move_to_end(key)
            return hit
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
    win = _window(r)
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
    cv = _Canvas(hh=hh, ww=ww, r=r, R=R, wd=wd, hd=hd, row0=row0, n=n, key_base=kb, arange=torch.arange(n, **i32),
                 win=win, prio=prio, b=b, foff=foff)
    with _SEED_LOCK:
        _CANVASES[key] = cv
        while len(_CANVASES) > 4:
            _CANVASES.popitem(last=False)
    return cv


def _sum_into(dst: torch.Tensor, terms: list) -> torch.Tensor:
    if len(terms) == 1:
        return dst.copy_(terms[0])
    torch.add(terms[0], terms[1], out=dst)
    for x in terms[2:]:
        dst.add_(x)
    return dst


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
    hh, ww = _check_nnf(nnf)
    r = _check_radius(radius)
    a = _np(nnf)
    Hs, Ws = (int(v) for v in style_shape)
    out = a.copy()
    for y in range(hh):
        for x in range(ww):
            offs = []
            for dy, dx in _window(r):
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


# ============================================================================= voting
_VOTE_CACHE = _IdentityCache(8)


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


def _vote_table(style_image: Any, radius: int, pad: int, device: torch.device) -> torch.Tensor:
    """(Hs + 2·pad)·(Ws + 2·pad) int64 packed votes of the style, zero in the border."""
    pack = _packing(radius)

    def build() -> torch.Tensor:
        img = _to(style_image, device).to(pack.lane)
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

    return _VOTE_CACHE.get((style_image,), ("vote", radius, pad, str(device)), build)


def _division_table(radius: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounded means ``(2s + c) // (2c)`` for every vote count c ≤ K and sum s ≤ 255·c, uint8.

    Returns the table and the int32 start of each count's row, ``base[c]``: ``c·S``
    (``S = 255·K + 1``) for the ``"div"`` packing, which indexes rows by ``c·S``
    directly; rows packed back to back otherwise (less memory for large K).
    """
    key = ("div", radius, str(device))
    with _DIV_LOCK:
        hit = _DIV_TABLES.get(key)
    if hit is None:
        K = (2 * radius + 1) ** 2
        lengths = 255 * np.arange(K + 1) + 1
        if _packing(radius) is _PACKDIV:
            bases = np.arange(K + 1) * _div_stride(radius)
        else:
            bases = np.concatenate(([0], np.cumsum(lengths[:-1])))
        tab = np.zeros(int(bases[-1] + lengths[-1]), dtype=np.uint8)
        for c in range(1, K + 1):
            sums = np.arange(255 * c + 1, dtype=np.int64)
            tab[bases[c]:bases[c] + sums.size] = (2 * sums + c) // (2 * c)
        hit = (torch.from_numpy(tab).to(device), torch.from_numpy(bases.astype(np.int32)).to(device))
        with _DIV_LOCK:
            _DIV_TABLES[key] = hit
    return hit


_DIV_TABLES: dict = {}
_DIV_LOCK = threading.Lock()


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


def _voting(style_image: Any, r: int, device: torch.device) -> _Voting:
    _check_arr(style_image, "style_image", (None, None, 3), torch.uint8)
    Hs, Ws = int(style_image.shape[0]), int(style_image.shape[1])
    pad = 2 * r + 1
    wpad = Ws + 2 * pad
    check((Hs + 2 * pad) * wpad < 2**31, "style size", "< 2^31 padded pixels", (Hs, Ws))
    b0 = r * wpad + r
    divtab, divbase = _division_table(r, device)
    return _Voting(r=r, Hs=Hs, Ws=Ws, pad=pad, wpad=wpad, b0=b0, lin_add=pad * wpad + pad - b0, pack=_packing(r),
                   table=_vote_table(style_image, r, pad, device), divtab=divtab, divbase=divbase)


def vote(nnf: Any, style_image: Any, *, radius: int = 1, tile_pixels: int | None = None,
         pixels: Any = None) -> torch.Tensor:
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

    Returns
    -------
    (h, w, 3) uint8 RGB tensor on the NNF's device (``(k, 3)`` with ``pixels``)

    Raises
    ------
    ValueError
        Wrong shapes/dtypes, radius, or NNF entries outside the style.

    Notes
    -----
    Colours and a vote count are packed into integer fields (see ``_VotePacking``),
    so a window offset costs one gather and one add per packed table; positions
    off the region read a zero entry. The rounded mean comes from a table of
    ``(2s + c) // (2c)`` (exact integers, no division on the device). Equal to
    :func:`vote_reference` and equal on every device. The packed style is cached
    by the identity of ``style_image`` (treat numpy arrays as immutable).

    References
    ----------
    Sýkora et al. 2019, §4 (blending by voting); Texler et al. 2021, §4; DESIGN §6.
    """
    hh, ww = _check_nnf(nnf)
    r = _check_radius(radius)
    device = _device_of(nnf, style_image)
    t = _to(nnf, device)
    vs = _voting(style_image, r, device)
    if pixels is not None:
        return _vote_at(_check_pixels(pixels, hh * ww, device), t, vs)
    _check_inside(t.reshape(-1, 2), vs.Hs, vs.Ws)
    return _vote_dense((t[..., 1] * vs.wpad).add_(t[..., 0]).add_(vs.lin_add), vs, tile_pixels)


def _vote_dense(lin: torch.Tensor, vs: _Voting, tile_pixels: int | None) -> torch.Tensor:
    """:func:`vote` of a whole region from ``lin`` (h, w) int32 = ``y·wpad + x + lin_add`` of the
    NNF (inside the style; not checked). Returns (h, w, 3) uint8."""
    hh, ww = lin.shape
    r, pack, table, b0 = vs.r, vs.pack, vs.table, vs.b0
    device = lin.device
    w2 = ww + 2 * r
    if tile_pixels is None:
        tile_pixels = _cpu_tile_pixels("vote") if device.type == "cpu" else hh * w2
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
        for i, (dy, dx) in enumerate(_window(r)):
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
    win = _window(vs.r)
    q, inside, _, _ = _window_entries(sel, t, win)
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
    hh, ww = _check_nnf(nnf)
    r = _check_radius(radius)
    a, img = _np(nnf), _np(style_image)
    Hs, Ws = img.shape[:2]
    out = np.empty((hh, ww, 3), dtype=np.uint8)
    for y in range(hh):
        for x in range(ww):
            s = [0, 0, 0]
            n = 0
            for dy, dx in _window(r):
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


# ====================================================================== temporal hysteresis
def keep_previous_nnf(
    nnf: torch.Tensor,
    prev_nnf: torch.Tensor,
    g_pos: Any,
    g_app: Any,
    style_app: torch.Tensor,
    *,
    threshold: float,
    lambda_pos: float = 10.0,
    lambda_app: float = 2.0,
) -> torch.Tensor:
    """Keep last frame's NNF wherever it still meets ``threshold``; take ``nnf`` elsewhere.

    The temporal counterpart of StyleBlit's acceptance test: a pixel whose previous
    exemplar pixel ``o = prev_nnf(p)`` still has guide error
    ``λ_pos·(|Gx(p) − o.x|·256/Ws + |Gy(p) − o.y|·256/Hs) + λ_app·|Ga(p) − Sa(o)|``
    below ``threshold`` keeps it, so chunks persist from frame to frame instead of
    flickering between near-equal matches (hysteresis: pass a threshold above the
    synthesis threshold). Meaningful when both NNFs are over the same region in the
    same coordinates — the face-space synthesis of :mod:`faceblit_core.pipeline`.

    Parameters
    ----------
    nnf, prev_nnf : (h, w, 2) int32 tensor
        This frame's and last frame's NNF, style px (x, y), inside the style.
    g_pos : (h, w, 2) float32
        Positional guide of the region, style px (x, y).
    g_app : (h, w) uint8
        Appearance guide of the region.
    style_app : (Hs, Ws) uint8 tensor
        Appearance guide of the exemplar, on ``nnf``'s device.
    threshold : float, keyword-only
        Keep where the error is below this, 8-bit guide units.
    lambda_pos, lambda_app : float, keyword-only
        Error weights (as :func:`styleblit`).

    Returns
    -------
    (h, w, 2) int32 tensor
        On ``nnf``'s device.

    Raises
    ------
    ValueError
        When the NNF shapes differ.

    References
    ----------
    Sýkora et al. 2019, "StyleBlit", §3 (acceptance by guide error); Fišer et al. 2017,
    "Example-Based Synthesis of Stylized Facial Animations", §4 (temporal coherence).
    """
    check(tuple(nnf.shape) == tuple(prev_nnf.shape), "previous NNF shape", tuple(nnf.shape), tuple(prev_nnf.shape))
    keep = _keeps(prev_nnf, g_pos, g_app, style_app, threshold=threshold, lambda_pos=lambda_pos, lambda_app=lambda_app)
    return torch.where(keep[..., None], prev_nnf, nnf)


def _keep_terms(nnf: torch.Tensor, gp: torch.Tensor, style_app: torch.Tensor,
                lambda_pos: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The parts of the keep test that depend on the NNF and G_pos only, float32, shaped ``nnf.shape[:-1]``:
    ``λ_pos·(|Gx − o.x|·256/Ws + |Gy − o.y|·256/Hs)`` and ``Sa(o)`` for ``o = nnf``."""
    hs, ws = style_app.shape
    # On whole (..., 2) planes: strided per-channel ops are several times slower.
    d = torch.sub(gp, nnf.to(torch.float32)).abs_().mul_(
        torch.tensor([256.0 / ws, 256.0 / hs], dtype=torch.float32, device=nnf.device))
    e_pos = torch.add(d[..., 0], d[..., 1]).mul_(lambda_pos)
    idx = nnf[..., 1] * ws + nnf[..., 0]
    sa = style_app.reshape(-1).index_select(0, idx.reshape(-1)).view(idx.shape).to(torch.float32)
    return e_pos, sa


def _keeps(prev_nnf: torch.Tensor, g_pos: Any, g_app: Any, style_app: torch.Tensor, *, threshold: float,
           lambda_pos: float, lambda_app: float, terms: tuple | None = None) -> torch.Tensor:
    """(h, w) bool: where the previous NNF's error is below ``threshold`` (:func:`keep_previous_nnf`).

    e = λ_pos·(|Gx − o.x|·256/Ws + |Gy − o.y|·256/Hs) + λ_app·|Ga − Sa(o)| in float32;
    ``terms`` = :func:`_keep_terms` of ``prev_nnf`` when already known.
    """
    dev = prev_nnf.device
    e_pos, sa = terms if terms is not None else _keep_terms(prev_nnf, torch.as_tensor(g_pos, device=dev), style_app,
                                                           lambda_pos)
    ga = torch.as_tensor(g_app, device=dev).to(torch.float32)
    return torch.add(e_pos, ga.sub_(sa).abs_().mul_(lambda_app)) < threshold


def _grow(pixels: torch.Tensor, r: int, hh: int, ww: int) -> torch.Tensor:
    """The region-linear pixels within Chebyshev distance ``r`` of ``pixels``, sorted, inside the region."""
    if r == 0 or pixels.numel() == 0:
        return pixels
    py = torch.div(pixels, ww, rounding_mode="floor")
    px = pixels - py * ww
    d = torch.arange(-r, r + 1, device=pixels.device)
    ys = (py[:, None, None] + d[None, :, None]).expand(-1, -1, 2 * r + 1)
    xs = (px[:, None, None] + d[None, None, :]).expand(-1, 2 * r + 1, -1)
    inside = (ys >= 0) & (ys < hh) & (xs >= 0) & (xs < ww)
    return torch.unique(ys[inside] * ww + xs[inside])


def _changed(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """(k,) bool: rows of ``new`` that differ from ``old`` (both (k, c))."""
    return (new != old).any(dim=1)


@dataclass(frozen=True)
class _KeepCache:
    """:func:`_keep_terms` of a result's NNF, for the positional guide object ``source``.

    Valid while the next frame passes the same object (tensors: with the same
    in-place version; numpy arrays are treated as immutable, as the style caches do).
    """

    source: Any
    version: int | None
    lambda_pos: float
    e_pos: torch.Tensor
    sa: torch.Tensor

    def fits(self, g_pos: Any, lambda_pos: float) -> bool:
        return self.source is g_pos and self.lambda_pos == lambda_pos and self.version == _version(g_pos)


class _NNFMap:
    """An (h, w, 2) int32 NNF, or the packed positions it is unpacked from on first use.

    A whole-frame synthesis keeps its NNFs packed (``((y + off) << s) + x + off``, as the
    steps computed them): laying them out as (h, w, 2) costs a few ms per megapixel, and
    only the next frame's :func:`synthesize` (or a caller asking) needs them.
    """

    def __init__(self, nnf: torch.Tensor | None = None, *, packed: torch.Tensor | None = None,
                 unpack: tuple[int, int, int] = (0, 0, 0), shape: tuple[int, int] = (0, 0)) -> None:
        self._nnf, self._packed, self._unpack, self._shape = nnf, packed, unpack, shape
        self._lock = threading.Lock()

    def get(self) -> torch.Tensor:
        with self._lock:
            if self._nnf is None:
                self._nnf = _unpack(self._packed, *self._unpack).view(*self._shape, 2)
                self._packed = None
            return self._nnf


@dataclass(frozen=True)
class Synthesis:
    """One region's StyleBlit result, and what the next frame's :func:`synthesize` builds on.

    Attributes
    ----------
    nnf : (h, w, 2) int32 tensor
        StyleBlit NNF (after keeping the previous frame's matches), style px (x, y);
        laid out on first access.
    denoised : (h, w, 2) int32 tensor
        The NNF after denoising (the same tensor as ``nnf`` when denoising is off).
    rgb : (h, w, 3) uint8 tensor
        The voted colours.
    evaluated : int
        Pixels whose StyleBlit match was evaluated for this frame (h·w for a full run).
    voted : int
        Pixels whose colour was voted for this frame.
    step_ms : dict
        Wall time of the steps, ms: ``"styleblit"`` (with the keep test) and
        ``"voting"`` (with denoising). On CUDA the host does not wait for the
        device between steps, so the split there is only indicative.
    """

    rgb: torch.Tensor
    evaluated: int
    voted: int
    _nnf: _NNFMap = field(repr=False)
    _denoised: _NNFMap = field(repr=False)
    step_ms: dict = field(default_factory=dict)
    # The keep test's NNF-only terms for ``nnf``: the next frame, with the same G_pos
    # (face space), updates them only where the NNF changes.
    keep_cache: _KeepCache | None = field(default=None, repr=False)

    @property
    def nnf(self) -> torch.Tensor:
        return self._nnf.get()

    @property
    def denoised(self) -> torch.Tensor:
        return self._denoised.get()


def synthesize(
    g_pos: Any,
    g_app: Any,
    style_app: Any,
    lut: Any,
    style_image: Any,
    *,
    radius: int = 1,
    denoise: bool = True,
    previous: Synthesis | None = None,
    keep_threshold: float = 400.0,
    **styleblit_options: Any,
) -> Synthesis:
    """StyleBlit → (keep the previous frame's matches) → NNF denoising → voting for one region.

    Without ``previous`` this is :func:`styleblit`, :func:`denoise_nnf` (when
    ``denoise``) and :func:`vote`. With ``previous`` (last frame's result over the
    same region, in the same coordinates) the NNF is
    ``keep_previous_nnf(styleblit(...), previous.nnf, threshold=keep_threshold)``,
    and only what can differ from last frame is computed: StyleBlit at the pixels
    whose previous match fails ``keep_threshold``, denoising within ``radius`` of
    the NNF entries that changed, voting within ``radius`` of the denoised entries
    that changed. The result equals the full computation exactly; in face-space
    synthesis a frame typically evaluates well under 1 % of the region.

    Parameters
    ----------
    g_pos, g_app, style_app, lut
        As :func:`styleblit`.
    style_image : (Hs, Ws, 3) uint8
        The style exemplar (as :func:`vote`).
    radius : int, keyword-only
        Denoising and voting window radius r in [0, 8].
    denoise : bool, keyword-only
        Apply :func:`denoise_nnf` before voting.
    previous : Synthesis, optional, keyword-only
        Last frame's result over the same region (same shape); ``None`` for a first
        frame, a cut, or a region that moved in its own coordinates. It is
        *consumed*: the result reuses (and updates in place) its tensors, so do not
        use it, or arrays taken from it, afterwards.
    keep_threshold : float, keyword-only
        Keep a previous match while its error (positional and appearance terms, as
        :func:`keep_previous_nnf`) is below this, 8-bit guide units.
    **styleblit_options
        Keyword options of :func:`styleblit` (``origin``, ``jitter``, ``threshold``,
        ``lambda_pos``, ``lambda_app``, ``lambda_temp``, ``g_temp``, ``style_temp``,
        ``levels``); ``lambda_pos``/``lambda_app`` also weigh the keep test.

    Returns
    -------
    Synthesis
        On the inputs' device.

    Raises
    ------
    ValueError
        As :func:`styleblit`, :func:`denoise_nnf` and :func:`vote`; a ``previous``
        of another shape.

    Notes
    -----
    The positional part of the keep test depends on ``g_pos`` and the NNF only. When
    ``g_pos`` is the same object as last frame's (the face-space identity guide),
    it is carried over and updated where the NNF changed: a tensor changed in
    place is noticed, a numpy array must not be modified in place (as for the
    per-style caches of :func:`styleblit`).

    References
    ----------
    Sýkora et al. 2019, §3–4; Texler et al. 2021, §4; DESIGN §6 and §4.3.
    """
    hh, ww = int(g_pos.shape[0]), int(g_pos.shape[1])
    r = _check_radius(radius)
    device = _device_of(g_pos, g_app, style_app, lut, style_image)
    sapp = _to(style_app, device)
    Hs, Ws = int(sapp.shape[0]), int(sapp.shape[1])
    t0 = time.perf_counter()
    if previous is None:
        return _synthesize_dense(g_pos, g_app, sapp, lut, style_image, r, denoise, styleblit_options, t0)

    check(tuple(previous.nnf.shape) == (hh, ww, 2), "previous synthesis shape", (hh, ww, 2),
          tuple(previous.nnf.shape))
    lam_pos = styleblit_options.get("lambda_pos", 10.0)
    gp = _to(g_pos, device)
    cache = previous.keep_cache
    if cache is None or not cache.fits(g_pos, lam_pos):
        cache = _KeepCache(g_pos, _version(g_pos), lam_pos, *_keep_terms(previous.nnf, gp, sapp, lam_pos))
    keep = _keeps(previous.nnf, gp, g_app, sapp, threshold=keep_threshold, lambda_pos=lam_pos,
                  lambda_app=styleblit_options.get("lambda_app", 2.0), terms=(cache.e_pos, cache.sa))
    redo = _flatnonzero(keep.reshape(-1), False)
    # Updated in place (``previous`` is consumed): copying the maps costs more than the update.
    nnf, den, rgb = previous.nnf, previous.denoised, previous.rgb
    flat = nnf.view(-1, 2)
    changed = redo[:0]
    if redo.numel():
        new = styleblit(gp, g_app, sapp, lut, pixels=redo, **styleblit_options)
        changed = redo[_changed(new, flat.index_select(0, redo))]
        flat.index_copy_(0, redo, new)
    if changed.numel():
        e_c, sa_c = _keep_terms(flat.index_select(0, changed), gp.reshape(-1, 2).index_select(0, changed), sapp, lam_pos)
        cache.e_pos.view(-1).index_copy_(0, changed, e_c)
        cache.sa.view(-1).index_copy_(0, changed, sa_c)
    t1 = time.perf_counter()
    # Denoising at p reads the NNF within r of p; voting reads the denoised NNF within r.
    if denoise and r > 0:
        dflat = den.view(-1, 2)
        redo_d = _grow(changed, r, hh, ww)
        changed = redo_d
        if redo_d.numel():
            new = denoise_nnf(nnf, style_shape=(Hs, Ws), radius=r, pixels=redo_d)
            changed = redo_d[_changed(new, dflat.index_select(0, redo_d))]
            dflat.index_copy_(0, redo_d, new)
    revote = _grow(changed, r, hh, ww)
    if revote.numel():
        rgb.view(-1, 3).index_copy_(0, revote, vote(den, style_image, radius=r, pixels=revote))
    nnf_map = _NNFMap(nnf)
    return Synthesis(rgb=rgb, evaluated=int(redo.numel()), voted=int(revote.numel()),
                     step_ms=_steps(t0, t1, time.perf_counter()), keep_cache=cache, _nnf=nnf_map,
                     _denoised=nnf_map if den is nnf else _NNFMap(den))


def _synthesize_dense(g_pos: Any, g_app: Any, sapp: torch.Tensor, lut: Any, style_image: Any, r: int, denoise: bool,
                      styleblit_options: dict, t0: float) -> Synthesis:
    """:func:`synthesize` without ``previous``: the steps chained on packed positions, each step's
    input written by the previous step tile by tile while it is in cache; the NNFs stay packed."""
    device = sapp.device
    Hs, Ws = int(sapp.shape[0]), int(sapp.shape[1])
    hh, ww = int(g_pos.shape[0]), int(g_pos.shape[1])
    vs = _voting(style_image, r, device)
    lin = torch.empty((hh, ww), dtype=torch.int32, device=device)   # vote input: y·wpad + x + lin_add
    denoise = denoise and r > 0
    if denoise:
        _check_denoise_style(Hs, Ws)
        cv = _denoise_canvas(hh, ww, r, device)
        pk = torch.zeros(cv.n, dtype=torch.int32, device=device)
        pk_rows = cv.region(pk)

    def blit_tile(r0: int, r1: int, res: torch.Tensor, st: _StyleTables) -> None:
        rows = res.view(r1 - r0, ww)
        if denoise:      # ((y + P) << s) + x + P  →  ((y + r) << 16) + x + r
            pk_rows[r0:r1] = _repack(rows, st.s, st.Wp - 1, 1 << 16, (r - st.P) * ((1 << 16) + 1))
        else:
            lin[r0:r1] = _repack(rows, st.s, st.Wp - 1, vs.wpad, vs.lin_add - st.P * (vs.wpad + 1))

    def denoise_tile(t0: int, t1: int, rows: torch.Tensor) -> None:
        lin[t0:t1] = _repack(rows, 16, 0xFFFF, vs.wpad, vs.lin_add - r * (vs.wpad + 1))

    blit = _styleblit(g_pos, g_app, sapp, lut, **{**_STYLEBLIT_DEFAULTS, **styleblit_options}, emit=blit_tile)
    st = blit.st
    nnf = _NNFMap(packed=blit.res, unpack=(st.s, st.Wp - 1, st.P), shape=(hh, ww))
    t1 = time.perf_counter()
    den = nnf
    if denoise:
        den = _NNFMap(packed=_denoise_dense(pk, cv, Hs, Ws, None, emit=denoise_tile), unpack=(16, 0xFFFF, r),
                      shape=(hh, ww))
    rgb = _vote_dense(lin, vs, None)
    return Synthesis(rgb=rgb, evaluated=hh * ww, voted=hh * ww, step_ms=_steps(t0, t1, time.perf_counter()),
                     _nnf=nnf, _denoised=den)


def _steps(t0: float, t1: float, t2: float) -> dict:
    return {"styleblit": (t1 - t0) * 1e3, "voting": (t2 - t1) * 1e3}
