"""StyleBlit's per-style device tables and the exact position quantisation.

* :func:`style_tables`: the lookup table rewritten as *padded* style indices and the
  style's appearance guide on a NaN-bordered padded canvas, so that "the candidate lies
  in the style" costs nothing (an outside candidate reads NaN, whose error fails
  ``e < threshold``);
* :func:`temp_tables`: the style's temporal guide on the same padded canvas;
* :func:`temp_term_table`: the temporal term's division by 3, tabulated on the host;
* :func:`quantize_position_torch`: ``clip(floor(x·256/W), 0, 255)``, exact on any device.

Tables are cached in the caller's :class:`~.cache.SynthesisCache` (one style per cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faceblit_core.checks import check
from faceblit_core.synthesis._util import to
from faceblit_core.synthesis.cache import SynthesisCache

__all__ = ["quantize_position_torch"]


@dataclass
class StyleTables:
    """The style in StyleBlit's padded layout: style (x, y) is padded index ``((y + P) << s) + x + P``."""

    Hs: int
    Ws: int
    P: int          # border of the padded style space, style px (≥ every |p − q|)
    s: int          # log2 of the padded row stride
    Wp: int         # padded row stride (power of two)
    lutpad: torch.Tensor   # (256³,) int32: LUT entries as padded linear indices
    sa: torch.Tensor       # ((Hs + 2P)·Wp,) float16 (exact for 0…255), NaN outside the style
    n_pad: int


def style_tables(style_app: Any, lut: Any, levels: int, device: torch.device, cache: SynthesisCache) -> StyleTables:
    """The padded lookup table and appearance guide for seed levels up to ``levels`` (cached).

    The border ``P = 2^(levels + 1)`` exceeds every chunk offset ``|p − q|``, and the row
    stride is a power of two, so a padded index splits into (x, y) with a mask and a shift.
    Raises ValueError for lookup-table values outside the style.
    """
    def build() -> StyleTables:
        app = to(style_app, device)
        Hs, Ws = app.shape
        P = 1 << (levels + 1)
        s = max(1, (Ws + 2 * P - 1).bit_length())
        Wp = 1 << s
        rows = Hs + 2 * P
        check(rows * Wp < 2**31, "padded style size", "< 2^31 entries", rows * Wp)
        lt = to(lut, device).reshape(-1)
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
        return StyleTables(Hs=Hs, Ws=Ws, P=P, s=s, Wp=Wp, lutpad=lutpad,
                           sa=sa.reshape(-1).half(), n_pad=rows * Wp)

    return cache.get("style", (levels, str(device)), build)


def temp_tables(style_temp: Any, st: StyleTables, device: torch.device, cache: SynthesisCache) -> torch.Tensor:
    """(3, n_pad) int32: the style's temporal guide per channel in the padded layout of ``st``, 0 outside (cached)."""
    def build() -> torch.Tensor:
        t = to(style_temp, device).to(torch.int32)
        rows = st.n_pad // st.Wp
        out = torch.zeros((3, rows, st.Wp), dtype=torch.int32, device=device)
        out[:, st.P:st.P + st.Hs, st.P:st.P + st.Ws] = t.permute(2, 0, 1)
        return out.reshape(3, -1)

    return cache.get("temp", (st.P, st.s, st.Hs, st.Ws, str(device)), build)


def temp_term_table(lambda_temp: float, device: torch.device) -> torch.Tensor:
    """``(λ_temp·S)/3`` in float32 for every channel-sum S in 0..765, computed on the host.

    CUDA divides by a host scalar as a multiplication by its reciprocal (not correctly
    rounded); a table computed by numpy gives the same float32 on every device.
    """
    s = np.arange(766, dtype=np.float32)
    tab = (np.float32(lambda_temp) * s) / np.float32(3.0)
    return torch.from_numpy(tab.astype(np.float32)).to(device)


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
    return quantize(v, torch.tensor(size / 256.0, dtype=torch.float64, device=v.device))


def quantize(v: torch.Tensor, div: torch.Tensor, bufs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """:func:`quantize_position_torch` with ``div = size/256`` as a float64 device tensor broadcastable
    to ``v`` (e.g. ``(2, 1)`` for stacked x and y); ``bufs`` = a float64 and an int32 buffer shaped
    like ``v`` (optional, avoids allocations)."""
    d, q = bufs if bufs is not None else (torch.empty(v.shape, dtype=torch.float64, device=v.device),
                                          torch.empty(v.shape, dtype=torch.int32, device=v.device))
    d.copy_(v)
    torch.div(d, div, out=d).floor_().clamp_(0.0, 255.0)
    return q.copy_(d)
