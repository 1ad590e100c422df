"""One explicit cache for the synthesis, owned by whoever runs it (the stylizer of a clip).

Every table the synthesis derives from its slow-changing inputs lives here, under an
explicit key of plain values — never the identity of an input object:

* ``"offsets"``: integer jitter offsets ``floor(2^l·j)`` of a jitter table
  (key: the table's content key, level, device);
* ``"windows"``, ``"regions"``: nearest-seed maps (key: jitter key, device, and the
  region's geometry; see :mod:`.seeds`);
* ``"style"``, ``"temp"``: the padded lookup table and style guides of StyleBlit
  (key: seed levels or padded layout, device);
* ``"vote"``, ``"div"``: voting's packed style and its table of rounded means
  (key: radius, device);
* ``"canvases"``: denoising's key canvases (key: region size, radius, device).

A cache serves ONE style exemplar: the per-style tables are built from the style
inputs of the first call that needs them and reused by every later call, so pass the
same ``style_app``, ``lut``, ``style_temp`` and ``style_image`` (unchanged) with one
cache, and use a new cache (or :meth:`SynthesisCache.clear`) for another style. A
style of another size is refused (ValueError); another style of the same size cannot
be told apart and would reuse stale tables. A cache is not thread-safe: one owner,
one thread at a time (the pipeline's stylizer runs its synthesis on one thread).

The functions of :mod:`faceblit_core.synthesis` take it as the keyword ``cache``; a
call without one uses a fresh cache, so its result is the same, only slower.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, TypeVar

from faceblit_core.checks import check

__all__ = ["SynthesisCache"]

T = TypeVar("T")

#: Most entries per store (least recently used dropped first). Seed maps are large
#: (several MB per level for a full frame); the rest is per style, radius or device.
_LIMITS = {"offsets": 64, "windows": 4, "regions": 4, "style": 8, "temp": 8, "vote": 8, "div": 16, "canvases": 4}


class SynthesisCache:
    """Tables and seed maps the synthesis reuses from call to call, for one style exemplar.

    Examples
    --------
    >>> cache = SynthesisCache()
    >>> # result = synthesize(g_pos, g_app, style_app, lut, style_image, jitter=0, cache=cache)
    """

    def __init__(self) -> None:
        self._stores: dict[str, OrderedDict] = {name: OrderedDict() for name in _LIMITS}
        self._style_shape: tuple[int, int] | None = None

    def get(self, store: str, key: tuple, build: Callable[[], T]) -> T:
        """The entry ``key`` of ``store``, built by ``build()`` on a miss."""
        d = self._stores[store]
        hit = d.get(key)
        if hit is not None:
            d.move_to_end(key)
            return hit
        value = build()
        self.put(store, key, value)
        return value

    def peek(self, store: str, key: tuple) -> Any:
        """The entry ``key`` of ``store``, or None (marked as recently used when present)."""
        d = self._stores[store]
        hit = d.get(key)
        if hit is not None:
            d.move_to_end(key)
        return hit

    def put(self, store: str, key: tuple, value: Any) -> None:
        """Store ``value`` under ``key``, dropping the least recently used entries beyond the limit."""
        d = self._stores[store]
        d[key] = value
        d.move_to_end(key)
        while len(d) > _LIMITS[store]:
            d.popitem(last=False)

    def size(self, store: str) -> int:
        """Number of entries in ``store`` (for tests and statistics)."""
        return len(self._stores[store])

    def check_style(self, height: int, width: int) -> None:
        """Bind the cache to a style of ``height × width`` px on first use; ValueError for another size."""
        shape = (int(height), int(width))
        if self._style_shape is None:
            self._style_shape = shape
        check(shape == self._style_shape, "style size for this synthesis cache",
              f"{self._style_shape[1]}x{self._style_shape[0]} (one cache serves one style: use a new SynthesisCache)",
              f"{shape[1]}x{shape[0]}")

    def clear(self) -> None:
        """Drop every entry (and the style binding): frees memory, or prepares for another style."""
        for d in self._stores.values():
            d.clear()
        self._style_shape = None


def fresh(cache: SynthesisCache | None) -> SynthesisCache:
    """``cache``, or a new empty one when None (the behaviour of a call without a cache)."""
    return cache if cache is not None else SynthesisCache()
