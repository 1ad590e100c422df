"""The per-style lookup table of FaceBlit: quantised guide value → best style pixel.

StyleBlit needs, for a target pixel whose guides read (x8, y8, a), the style
pixel whose own guides are closest. FaceBlit precomputes that answer for every
one of the 256³ quantised guide values (Texler et al. 2021, §4; DESIGN §5), which
makes the per-pixel search of the synthesis a single table read.

Definition (binding, docs/ARCHITECTURE.md "style + lut")
--------------------------------------------------------
For the cell (x8, y8) the centre is
``c = ((x8 + 0.5)·W/256 − 0.5, (y8 + 0.5)·H/256 − 0.5)`` in style pixels. The
candidates are the style pixels ``s`` (integer coordinates inside the image) with
Euclidean ``|s − c| ≤ radius``. The table holds, for every appearance value ``a``,
the candidate minimising::

    λ_pos·(|x8(s) − x8| + |y8(s) − y8|) + λ_app·|a(s) − a|

where ``x8(s), y8(s) = quantize_position(s)`` and ``a(s)`` is the style's
appearance guide; ties go to the smallest linear index ``y·W + x``. A cell with
no candidate (only possible for a radius below ~0.71 px) gets the pixel nearest
to ``c`` (ties → smaller coordinate, then clipped into the image).

Exactness: the weights are quantised to 1/256 (``round(λ·256)``), so every cost
is an integer and ties are decided exactly, the same way on every machine. The
disc test is done in integers too: ``(512·sx − 512·cx)² + (512·sy − 512·cy)² ≤
floor((512·radius)²)`` (``512·c`` is an integer). :func:`build_lookup_table` and
:func:`build_lookup_table_reference` share these helpers and give equal tables.

Fast method
-----------
For each block of cells, every candidate pixel of every cell's disc is gathered
(one precomputed offset pattern, masked by the exact disc), its key
``(k << b) | index`` with ``k = |Δx8| + |Δy8|`` is scatter-minimised into the slot
of its own appearance value ``a(s)`` (torch ``scatter_reduce(amin)`` on a flat
int32 table; numpy for the rest, which releases the GIL, so one thread per core
runs blocks of rows), and a 1-D L1 distance transform along ``a`` (two prefix minima) adds
``λ_app·|a − a(s)|``. Keys keep the cost in the high bits and the index in the
low bits, so one integer minimum orders by cost, then index — the definition's
tie rule, preserved exactly by the transform because it only adds multiples of
``2^24`` (the cost part).

References
----------
Texler et al. 2021, "FaceBlit: Instant Real-time Example-based Style Transfer to
Facial Videos", §4 (lookup table). Sýkora et al. 2019, "StyleBlit: Fast
Example-Based Stylization with Local Guidance", §3 (guided patch search).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import threading
from typing import Any

import numpy as np

from faceblit_core._runtime import signals_held
from faceblit_core.checks import check, check_array

#: Quantisation steps of the positional guide (and size of each table axis).
LEVELS = 256
#: Bits of the linear style index inside a table key; also the largest style (2^24 px).
INDEX_BITS = 24
#: Largest style image the table can address, in pixels (``W·H``).
MAX_STYLE_PIXELS = 1 << INDEX_BITS
#: Weights are fixed point with this many steps per unit (``round(λ·256)``).
WEIGHT_SCALE = 256
#: Largest weight accepted (keeps ``cost << 24`` inside int64).
MAX_WEIGHT = 1.0e6

_INDEX_MASK = (1 << INDEX_BITS) - 1
# Use int32 keys in the scatter when they fit (faster); tests switch it off to cover int64.
_INT32_KEYS = True
_EMPTY32 = np.iinfo(np.int32).max
# "No candidate with this a": above every real key — (λ_pos·510 + λ_app·255)·2^24 <
# 3.3e18 for weights ≤ 1e6 (256e6 in 1/256) — with room for the transform's additions.
_INF64 = 1 << 62


# --------------------------------------------------------------------------- helpers
def quantize_position(*args: Any, style_w: int | None = None, style_h: int | None = None):
    """Quantise style-pixel positions to the table's 256 steps per axis.

    ``x8 = clip(floor(x·256/W), 0, 255)`` and the same for ``y`` with ``H``,
    evaluated in float64 (``x·256`` first, then ``/W``), so integer pixel
    coordinates give exactly ``(x·256) // W``.

    Two call forms, both returning ``(x8, y8)``:

    * ``quantize_position(g_pos, style_w, style_h)`` with ``g_pos (..., 2)`` (x, y)
      — the positional guide (docs/ARCHITECTURE.md);
    * ``quantize_position(x, y, style_w, style_h)`` with ``x``, ``y`` of equal shape.

    Parameters
    ----------
    g_pos : (..., 2) float32/float64/int numpy array or torch tensor
        Style-pixel positions (x, y); finite values (NaN has no defined result).
    x, y : (...) numpy arrays or torch tensors (or scalars)
        Style-pixel x and y separately.
    style_w, style_h : int
        Style image width ``W`` and height ``H`` in pixels (≥ 1).

    Returns
    -------
    x8, y8 : (...) int64 numpy arrays, or int64 (``torch.long``) tensors on the
        input's device when the input is a torch tensor. Values in [0, 255].

    Raises
    ------
    TypeError
        Wrong number of positional arguments.
    ValueError
        ``g_pos`` whose last axis is not 2, or a non-positive style size.

    References
    ----------
    Texler et al. 2021, §4 (8-bit positional guide R = x·256/W, G = y·256/H).
    """
    if len(args) == 1 and style_w is not None and style_h is not None:
        args = (args[0], style_w, style_h)
    elif len(args) == 2 and style_w is not None and style_h is not None:
        args = (args[0], args[1], style_w, style_h)
    if len(args) == 3:
        g_pos, w, h = args
        check(g_pos.shape[-1:] == (2,), "g_pos shape", "(..., 2)", tuple(g_pos.shape))
        x, y = g_pos[..., 0], g_pos[..., 1]
    elif len(args) == 4:
        x, y, w, h = args
    else:
        raise TypeError("quantize_position expects (g_pos, style_w, style_h) or (x, y, style_w, style_h)")
    w, h = int(w), int(h)
    check(w >= 1 and h >= 1, "style size", "W ≥ 1 and H ≥ 1", (w, h))
    return _quantize_axis(x, w), _quantize_axis(y, h)


def _quantize_axis(v: Any, size: int):
    if _is_torch(v):
        import torch

        q = torch.floor(v.to(torch.float64) * LEVELS / size)
        return q.clamp_(0, LEVELS - 1).to(torch.long)
    q = np.floor(np.asarray(v, dtype=np.float64) * LEVELS / size)
    return np.clip(q, 0, LEVELS - 1).astype(np.int64)


def _is_torch(v: Any) -> bool:
    return type(v).__module__.startswith("torch")


def quantize_weight(weight: float) -> int:
    """Fixed-point weight ``round(weight·256)`` (half up) used for exact, tie-stable costs.

    Parameters
    ----------
    weight : float
        λ_pos or λ_app, finite, in [0, 1e6].

    Returns
    -------
    int
        The weight in 1/256 units.

    Raises
    ------
    ValueError
        Negative, non-finite or too large weight.
    """
    w = float(weight)
    check(math.isfinite(w) and 0.0 <= w <= MAX_WEIGHT, "lookup-table weight", f"a finite value in [0, {MAX_WEIGHT:g}]", weight)
    return int(math.floor(w * WEIGHT_SCALE + 0.5))


def disc_limit(radius: float) -> int:
    """Squared radius in (1/512 px)² units, ``floor((512·radius)²)``, for the exact disc test.

    Parameters
    ----------
    radius : float
        Search radius in style pixels, finite, in [0, 1e5].

    Returns
    -------
    int
        ``R2`` such that pixel s is a candidate of cell centre c iff
        ``(512·s.x − 512·c.x)² + (512·s.y − 512·c.y)² ≤ R2``.

    Raises
    ------
    ValueError
        Negative or non-finite radius.
    """
    r = float(radius)
    check(math.isfinite(r) and 0.0 <= r <= 1e5, "lookup-table radius", "a finite value in [0, 100000] style px", radius)
    return int(math.floor((512.0 * r) ** 2))


def cell_centres_512(size: int) -> np.ndarray:
    """Cell centres along one axis in 1/512 px: ``512·c = (2·i + 1)·size − 256``, i = 0…255.

    Returns
    -------
    (256,) int64 array
    """
    i = np.arange(LEVELS, dtype=np.int64)
    return (2 * i + 1) * int(size) - 256


def nearest_pixel(c512: np.ndarray, size: int) -> np.ndarray:
    """Pixel nearest to centres given in 1/512 px, ties → smaller coordinate, clipped to [0, size − 1].

    Returns
    -------
    int64 array, shape of ``c512``
    """
    # ceil(c − 0.5) rounds half down, which is the smaller-index tie rule.
    return np.clip(-((256 - c512) // 512), 0, size - 1)


def _check_app(style_app: Any) -> np.ndarray:
    check(isinstance(style_app, np.ndarray), "style_app type", "numpy.ndarray", type(style_app).__name__, exc=TypeError)
    check_array(style_app, "style_app", shape=(None, None), dtype=np.uint8)
    h, w = style_app.shape
    check(h >= 1 and w >= 1, "style_app size", "at least 1×1", (h, w))
    check(h * w <= MAX_STYLE_PIXELS, "style_app pixels", f"at most {MAX_STYLE_PIXELS} (2^24)", h * w)
    return style_app


# ------------------------------------------------------------------------ fast table
def build_lookup_table(
    style_app: np.ndarray,
    *,
    lambda_pos: float = 10.0,
    lambda_app: float = 2.0,
    radius: float = 30.0,
    block_elements: int = 1 << 20,
    workers: int | None = None,
) -> np.ndarray:
    """Build the 256³ lookup table of a style exemplar (exact; see the module docstring).

    Parameters
    ----------
    style_app : (H, W) uint8 numpy array
        The style's appearance guide ``a(s)`` (contrast-stretched, 128 = no detail).
        Any size with ``H·W ≤ 2^24``.
    lambda_pos : float, keyword-only
        Weight of ``|Δx8| + |Δy8|`` (8-bit positional units), in [0, 1e6]; FaceBlit: 10.
        Quantised to 1/256.
    lambda_app : float, keyword-only
        Weight of ``|Δa|`` (8-bit appearance units), in [0, 1e6]; FaceBlit: 2.
        Quantised to 1/256.
    radius : float, keyword-only
        Search radius around the cell centre, style px, ≥ 0; FaceBlit: 30.
        The work grows with ``radius²`` (~185 M candidate visits at 30 px).
    block_elements : int, keyword-only
        Candidate visits per vectorised block and thread (≈ 20 bytes of buffers
        each); tuning only, the result does not depend on it.
    workers : int, optional, keyword-only
        Threads; default ``torch.get_num_threads()`` (all cores). The result does
        not depend on it.

    Returns
    -------
    (256, 256, 256) int32 numpy array
        Indexed ``[y8, x8, a]``; value = linear style index ``y·W + x`` in [0, H·W).

    Raises
    ------
    ValueError
        Wrong dtype/shape, a style over 2^24 pixels, a negative/non-finite weight or radius.
    TypeError
        ``style_app`` not a numpy array.

    References
    ----------
    Texler et al. 2021, §4 (lookup table, λ_pos = 10, λ_app = 2, radius 30 px);
    Sýkora et al. 2019, §3.
    """
    app = _check_app(style_app)
    lp, la = quantize_weight(lambda_pos), quantize_weight(lambda_app)
    r2 = disc_limit(radius)
    check(block_elements >= LEVELS, "block_elements", f">= {LEVELS}", block_elements)
    plan = _Plan(app, lp, la, r2, radius, block_elements)
    out = np.empty((LEVELS, LEVELS, LEVELS), dtype=np.int32)
    jobs = plan.jobs()
    n_workers = max(1, min(workers if workers is not None else _default_workers(), len(jobs)))
    if n_workers == 1:
        worker = _Worker(plan)
        for ys in jobs:
            out[ys] = worker.rows(ys)
    else:
        # numpy's take/add and torch's scatter release the GIL, so threads scale;
        # each has its own buffers (no allocation, hence no page faults, per block).
        local = threading.local()

        def run(ys: np.ndarray) -> None:
            if not hasattr(local, "worker"):
                local.worker = _Worker(plan)
            out[ys] = local.worker.rows(ys)

        with cf.ThreadPoolExecutor(n_workers, thread_name_prefix="faceblit-lut") as pool:
            # submit() starts the workers; a Ctrl-C during a thread's start would kill
            # it with a traceback, so signals wait until they run.
            with signals_held():
                futures = [pool.submit(run, ys) for ys in jobs]
            for fut in futures:
                fut.result()
    return out


def _default_workers() -> int:
    import os

    try:
        import torch

        n = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        n = os.cpu_count() or 1
    return max(1, min(n, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else n))


class _Plan:
    """Everything the blocks share: keys and gather indices split into x and y parts."""

    def __init__(self, app: np.ndarray, lp: int, la: int, r2: int, radius: float, block_elements: int) -> None:
        h, w = app.shape
        g = _Geometry(w, h, radius, r2)
        self.g, self.lp, self.la, self.r2 = g, lp, la, r2
        # Key = (k << b) | index with k = |Δx8| + |Δy8| unweighted: λ_pos is the same
        # for every candidate, so (k, index) order is (λ_pos·k, index) order, and with
        # λ_pos = 0 only the index counts. int32 keeps the scatter fast; int64 when k
        # and the index do not fit in 31 bits together.
        self.b = b = max(1, (h * w - 1).bit_length())
        kx = g.kx if lp else np.zeros_like(g.kx)
        ky = g.ky if lp else np.zeros_like(g.ky)
        use32 = _INT32_KEYS and int(kx.max()) + int(ky.max()) <= (1 << (31 - b)) - 2
        self.kdtype = np.int32 if use32 else np.int64
        self.empty = int(np.iinfo(self.kdtype).max)
        ox, oy = g.off_dx, g.off_dy  # (O,) offsets from each cell's base pixel
        # Per-cell offset patterns split into a part depending on x8 only and one on
        # y8 only, so a block of cells is one broadcast add.
        # (Fancy indexing yields Fortran order here; C order keeps the adds streaming.)
        c = np.ascontiguousarray
        self.xpart = c(((kx[:, g.off_dxi] << b) + g.bx[:, None] + ox[None, :] + oy[None, :] * w).astype(self.kdtype))
        self.ypart = c(((ky[:, g.off_dyi] << b) + (g.by * w)[:, None]).astype(self.kdtype))
        pad = g.pad
        wp = w + 2 * pad
        # Outside the image the appearance reads 256: a dump slot past the 256 real ones.
        app_pad = np.full((h + 2 * pad, wp), LEVELS, dtype=np.int64)
        app_pad[pad : pad + h, pad : pad + w] = app
        self.app_flat = app_pad.reshape(-1)
        self.px = c(g.bx[:, None] + pad + ox[None, :] + oy[None, :] * wp)  # (256, O) int64
        self.py = (g.by + pad) * wp  # (256,)
        self.mx = c(g.tx[:, g.off_dxi])  # (256, O) squared x distance to the centre, (1/512 px)²
        self.my = c(g.ty[:, g.off_dyi])
        n_off = self.px.shape[1]
        self.off_chunk = max(1, min(n_off, block_elements // LEVELS))
        # At most 8 rows (2048 cells) per block keeps the distance transform's
        # temporaries small (a few MiB) whatever the radius.
        self.rows_per_block = max(1, min(8, block_elements // (LEVELS * max(n_off, 1))))
        self.steps = np.arange(LEVELS, dtype=np.int64) * (la << INDEX_BITS)

    def jobs(self) -> list[np.ndarray]:
        """Blocks of rows y8; rows whose centres share a fractional y share a disc mask."""
        order = np.argsort(self.g.ry, kind="stable")
        out = []
        for cls in np.unique(self.g.ry):
            rows = order[self.g.ry[order] == cls]
            out += [rows[i : i + self.rows_per_block] for i in range(0, len(rows), self.rows_per_block)]
        return out


class _Worker:
    """Buffers of one thread and the block computation (allocated once: no page faults per block)."""

    def __init__(self, plan: _Plan) -> None:
        import torch

        self.p = plan
        n = plan.rows_per_block * LEVELS * plan.off_chunk
        self.idx = np.empty(n, dtype=np.int64)
        self.app = np.empty(n, dtype=np.int64)
        self.key = np.empty(n, dtype=plan.kdtype)
        cells = plan.rows_per_block * LEVELS
        self.table_np = np.empty((cells, LEVELS + 1), dtype=plan.kdtype)
        self.table = torch.from_numpy(self.table_np.reshape(-1))
        # Start of each cell's slots in the flat table.
        self.cell_base = (np.arange(cells, dtype=np.int64) * (LEVELS + 1)).reshape(plan.rows_per_block, LEVELS, 1)
        self.fwd = np.empty((cells, LEVELS), dtype=np.int64)
        self.bwd = np.empty((cells, LEVELS), dtype=np.int64)
        self.tmp = np.empty((cells, LEVELS), dtype=np.int64)
        self.mask_cache: tuple | None = None

    def _masked_px(self, y0: int, o0: int, o1: int) -> np.ndarray:
        # The disc mask of a row depends only on its centre's fractional y: fold it into
        # the gather index once per class (masked → very negative → clipped to the
        # padded corner, whose value is the dump slot).
        p = self.p
        tag = (int(p.g.ry[y0]), o0, o1)
        if self.mask_cache is None or self.mask_cache[0] != tag:
            inside = p.mx[:, o0:o1] <= (p.r2 - p.my[y0, o0:o1])[None, :]
            self.mask_cache = (tag, np.where(inside, p.px[:, o0:o1], -(1 << 40)))
        return self.mask_cache[1]

    def rows(self, ys: np.ndarray) -> np.ndarray:
        """Table rows ``[ys, :, :]`` as a (len(ys), 256, 256) int32 array."""
        import torch

        p = self.p
        g_rows = len(ys)
        n_cells = g_rows * LEVELS
        # numpy's fill, not torch's: torch would wake its thread pool for this small
        # array, which costs milliseconds when the cores are busy with our own workers.
        self.table_np[:n_cells].fill(p.empty)
        table = self.table[: n_cells * (LEVELS + 1)]
        # Offsets are sorted by dy: keep the contiguous range whose rows can lie
        # inside the image for these cells (saves the work of edge rows and tiny styles).
        by = p.g.by[ys]
        lo = np.searchsorted(p.g.off_dy, -int(by.max()), side="left")
        hi = np.searchsorted(p.g.off_dy, p.g.h - 1 - int(by.min()), side="right")
        for o0 in range(lo, hi, p.off_chunk):
            o1 = min(hi, o0 + p.off_chunk)
            m = n_cells * (o1 - o0)
            shape = (g_rows, LEVELS, o1 - o0)
            idx = self.idx[:m].reshape(shape)
            np.add(self._masked_px(int(ys[0]), o0, o1)[None, :, :], p.py[ys][:, None, None], out=idx)
            slot = self.app[:m].reshape(shape)
            np.take(p.app_flat, idx, out=slot, mode="clip")
            slot += self.cell_base[:g_rows]
            np.add(p.xpart[None, :, o0:o1], p.ypart[ys, o0:o1][:, None, :], out=self.key[:m].reshape(shape))
            # A 1-D scatter runs serially in the calling thread; torch parallelises the
            # 2-D form over rows, ~10× slower here when our own workers fill the cores.
            table.scatter_reduce_(0, torch.from_numpy(self.app[:m]), torch.from_numpy(self.key[:m]), "amin")
        return self._finish(self.table_np[:n_cells, :LEVELS], ys).reshape(g_rows, LEVELS, LEVELS)

    def _finish(self, t: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """(cells, 256) min keys ``k << b | index`` → table rows after the λ_app transform."""
        p = self.p
        n = t.shape[0]
        key, fwd, bwd = self.tmp[:n], self.fwd[:n], self.bwd[:n]
        missing = t == p.empty
        # (k << b) | index → (λ_pos·k << 24) | index, i.e. key + k·((λ_pos << 24) − 2^b).
        key[...] = t
        if p.lp:
            np.right_shift(key, p.b, out=fwd)
            fwd *= (p.lp << INDEX_BITS) - (1 << p.b)
            key += fwd
        np.putmask(key, missing, _INF64)
        # L1 distance transform along a with slope λ_app in the cost bits:
        # T[a] = min_a' key[a'] + step·|a − a'|, as a prefix minimum of key − step·a and a
        # suffix minimum of key + step·a. Only multiples of 2^24 are added, so the
        # order (cost, index) and the index bits stay exact.
        steps = p.steps[None, :]
        np.subtract(key, steps, out=bwd)
        np.minimum.accumulate(bwd, axis=1, out=fwd)
        fwd += steps
        np.add(key, steps, out=key)
        np.minimum.accumulate(key[:, ::-1], axis=1, out=bwd[:, ::-1])
        bwd -= steps
        np.minimum(fwd, bwd, out=fwd)
        fwd &= _INDEX_MASK
        res = fwd.astype(np.int32)
        none = np.flatnonzero(missing.all(axis=1))
        if none.size:
            g = p.g
            fx = nearest_pixel(cell_centres_512(g.w)[none % LEVELS], g.w)
            fy = nearest_pixel(cell_centres_512(g.h)[np.asarray(ys)[none // LEVELS]], g.h)
            res[none] = (fy * g.w + fx).astype(np.int32)[:, None]
        return res


class _Geometry:
    """Cell centres, integer bases and the union offset pattern of all cells' discs."""

    def __init__(self, w: int, h: int, radius: float, r2: int) -> None:
        self.w, self.h = w, h
        cx, cy = cell_centres_512(w), cell_centres_512(h)
        self.bx, self.by = cx // 512, cy // 512  # base pixel (floor of the centre)
        rx, self.ry = cx - 512 * self.bx, cy - 512 * self.by  # fractional part, [0, 512)
        reach = int(math.floor(radius)) + 2
        d = np.arange(-reach, reach + 1, dtype=np.int64)
        self.tx = (512 * d[None, :] - rx[:, None]) ** 2  # (256, D) per x8 and dx
        self.ty = (512 * d[None, :] - self.ry[:, None]) ** 2
        # Quantised position of each candidate pixel (clipped: outside pixels are dumped anyway).
        sx = np.clip(self.bx[:, None] + d[None, :], 0, w - 1)
        sy = np.clip(self.by[:, None] + d[None, :], 0, h - 1)
        cell = np.arange(LEVELS)[:, None]  # x8 for kx, y8 for ky
        self.kx = np.abs(sx * LEVELS // w - cell)  # (256, D) |Δx8| per x8 and dx
        self.ky = np.abs(sy * LEVELS // h - cell)
        # Offsets used by at least one cell: the disc test is separable in its two
        # minima, so the union over all (x8, y8) is exact.
        used = self.ty.min(axis=0)[:, None] + self.tx.min(axis=0)[None, :] <= r2  # (Dy, Dx)
        # ... and that land inside the image for at least one cell.
        used &= ((d >= -self.by.max()) & (d <= h - 1 - self.by.min()))[:, None]
        used &= ((d >= -self.bx.max()) & (d <= w - 1 - self.bx.min()))[None, :]
        self.off_dyi, self.off_dxi = np.nonzero(used)
        self.off_dx, self.off_dy = d[self.off_dxi], d[self.off_dyi]
        self.pad = reach + 2


# ------------------------------------------------------------------- reference table
def build_lookup_table_reference(
    style_app: np.ndarray,
    *,
    lambda_pos: float = 10.0,
    lambda_app: float = 2.0,
    radius: float = 30.0,
    cells: np.ndarray | None = None,
) -> np.ndarray:
    """Direct evaluation of the table's definition, cell by cell — slow, for tests.

    Each cell enumerates the pixels of its disc in raster order, evaluates the
    integer cost for all 256 appearance values and takes the first minimum
    (``argmin`` returns the first, i.e. the smallest linear index).

    Parameters
    ----------
    style_app : (H, W) uint8 numpy array
        Appearance guide of the style; keep it small (≲ 200×200) when ``cells`` is None.
    lambda_pos, lambda_app, radius : float, keyword-only
        As :func:`build_lookup_table`.
    cells : (N, 2) int array of (y8, x8), optional, keyword-only
        Evaluate only these cells. Default: all 65 536.

    Returns
    -------
    int32 numpy array
        ``(N, 256)`` rows ``table[y8, x8, :]`` for ``cells``, else ``(256, 256, 256)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`build_lookup_table`.

    References
    ----------
    Texler et al. 2021, §4.
    """
    app = _check_app(style_app)
    lp, la = quantize_weight(lambda_pos), quantize_weight(lambda_app)
    r2 = disc_limit(radius)
    h, w = app.shape
    full = cells is None
    if full:
        yy, xx = np.meshgrid(np.arange(LEVELS), np.arange(LEVELS), indexing="ij")
        cells = np.stack([yy.ravel(), xx.ravel()], axis=1)
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    cx512, cy512 = cell_centres_512(w), cell_centres_512(h)
    a_values = np.arange(LEVELS, dtype=np.int64)
    out = np.empty((len(cells), LEVELS), dtype=np.int32)
    reach = int(math.floor(radius)) + 2
    for n, (y8, x8) in enumerate(cells):
        cx, cy = int(cx512[x8]), int(cy512[y8])
        xs = np.arange(max(0, cx // 512 - reach), min(w, cx // 512 + reach + 1), dtype=np.int64)
        ys = np.arange(max(0, cy // 512 - reach), min(h, cy // 512 + reach + 1), dtype=np.int64)
        syy, sxx = np.meshgrid(ys, xs, indexing="ij")  # raster order: index ascending
        sx, sy = sxx.ravel(), syy.ravel()
        inside = (512 * sx - cx) ** 2 + (512 * sy - cy) ** 2 <= r2
        sx, sy = sx[inside], sy[inside]
        if sx.size == 0:
            px, py = nearest_pixel(np.int64(cx), w), nearest_pixel(np.int64(cy), h)
            out[n] = py * w + px
            continue
        k = np.abs(sx * LEVELS // w - x8) + np.abs(sy * LEVELS // h - y8)
        a_s = app[sy, sx].astype(np.int64)
        cost = lp * k[:, None] + la * np.abs(a_s[:, None] - a_values[None, :])  # (candidates, 256)
        out[n] = (sy * w + sx)[np.argmin(cost, axis=0)]
    return out.reshape(LEVELS, LEVELS, LEVELS) if full else out
