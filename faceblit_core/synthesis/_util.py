"""Small helpers shared by the synthesis modules: constants, argument checks, tensor plumbing.

Nothing here knows StyleBlit; each helper is one trick with its reason beside it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from faceblit_core.checks import check, check_array

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


def cpu_tile_pixels(step: str) -> int:
    """Default pixels per CPU tile of ``step`` ("styleblit", "denoise", "vote") for the torch threads."""
    return CPU_TILE_PIXELS[step] * max(1, torch.get_num_threads())


@functools.lru_cache(maxsize=1024)
def c(value: int | float, dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """``value`` as a 0-dim host tensor of ``dtype``, for the scalar operand of an elementwise op.

    A Python number costs a conversion (a small tensor copy) on every op; a 0-dim
    tensor of the operand's dtype does not, on any device. A constant pool keyed by
    the value itself (never by an object): the tensors are never modified in place.
    """
    return torch.tensor(value, dtype=dtype)


def f32(v: float) -> float:
    """``v`` rounded to float32, as a Python float (exact as a device scalar)."""
    return float(np.float32(v))


def device_of(*objs: Any) -> torch.device:
    """The one device of the tensors among ``objs`` (CPU when there are none); ValueError for several."""
    devs = {o.device for o in objs if isinstance(o, torch.Tensor)}
    check(len(devs) <= 1, "input devices", "all tensors on one device", sorted(map(str, devs)))
    return devs.pop() if devs else torch.device("cpu")


def check_arr(x: Any, what: str, shape: tuple, dtype: torch.dtype) -> None:
    """Shape and dtype check for a numpy array or tensor (dtype given as a torch dtype)."""
    check(isinstance(x, (torch.Tensor, np.ndarray)), what, "a torch tensor or numpy array", type(x).__name__,
          exc=TypeError)
    check_array(x, what, shape=shape)
    name = str(x.dtype).replace("torch.", "")
    want = str(dtype).replace("torch.", "")
    check(name == want, f"{what} dtype", want, name)


def check_nnf(nnf: Any, what: str = "nnf") -> tuple[int, int]:
    """``(h, w)`` of an ``(h, w, 2) int32`` NNF of at least 1×1; ValueError otherwise."""
    check_arr(nnf, what, (None, None, 2), torch.int32)
    hh, ww = int(nnf.shape[0]), int(nnf.shape[1])
    check(hh >= 1 and ww >= 1, f"{what} size", "at least 1×1", (hh, ww))
    return hh, ww


def check_radius(radius: Any) -> int:
    """The window radius as an int in [0, MAX_RADIUS]; ValueError otherwise."""
    check(isinstance(radius, (int, np.integer)) and not isinstance(radius, bool) and 0 <= radius <= MAX_RADIUS,
          "radius", f"an integer in [0, {MAX_RADIUS}]", repr(radius))
    return int(radius)


def window(radius: int) -> list[tuple[int, int]]:
    """The ``(2r+1)²`` window offsets ``(dy, dx)`` in raster order from ``(−r, −r)``."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


def to(x: Any, device: torch.device) -> torch.Tensor:
    """A tensor or numpy array as a tensor on ``device`` (numpy shared where it can be)."""
    if isinstance(x, torch.Tensor):
        return x.to(device)
    a = np.ascontiguousarray(x)
    if not a.flags.writeable:      # torch.from_numpy cannot share read-only memory
        a = a.copy()
    return torch.from_numpy(a).to(device)


def check_pixels(pixels: Any, n: int, device: torch.device) -> torch.Tensor:
    """``pixels`` as an int64 tensor of region-linear indices in [0, n) on ``device``."""
    check_arr(pixels, "pixels", (None,), torch.int64)
    t = to(pixels, device)
    if t.numel():
        lo, hi = torch.aminmax(t)
        check(int(lo) >= 0 and int(hi) < n, "pixels", f"linear region indices in [0, {n})", f"[{int(lo)}, {int(hi)}]")
    return t


def flatnonzero(x: torch.Tensor, value: int) -> torch.Tensor:
    """int64 indices of the 1-D tensor ``x`` where it equals ``value``.

    On the CPU numpy's ``flatnonzero`` of a bool array is several times faster than
    ``torch.nonzero``; elsewhere torch.
    """
    if x.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(x.numpy() == value))
    return torch.nonzero(x == value).squeeze(1)


def unpack(packed: torch.Tensor, s: int, mask: int, off: int) -> torch.Tensor:
    """(k, 2) int32 (x, y) of positions packed as ``((y + off) << s) + x + off`` (any shape, k elements)."""
    flat = packed.reshape(-1)
    out = torch.empty((flat.numel(), 2), dtype=torch.int32, device=packed.device)
    out[:, 0] = torch.bitwise_and(flat, c(mask)).sub_(c(off))
    out[:, 1] = torch.bitwise_right_shift(flat, c(s)).sub_(c(off))
    return out


def repack(packed: torch.Tensor, s: int, mask: int, stride: int, add: int) -> torch.Tensor:
    """``(packed >> s)·stride + (packed & mask) + add``: a packed position re-packed with another row stride."""
    out = torch.bitwise_right_shift(packed, c(s))
    return out.mul_(c(stride)).add_(torch.bitwise_and(packed, c(mask))).add_(c(add))


def window_entries(sel: torch.Tensor, t: torch.Tensor, win: list):
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
