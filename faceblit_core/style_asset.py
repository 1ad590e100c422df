"""A prepared style exemplar (:class:`StyleAsset`) and its file in the style cache.

Layout: the table as a ``.npy`` record first (its data 64-byte aligned, so a
hit memory-maps it instead of copying 64 MiB into memory),
then ``format_version``, ``key``, ``image``, ``landmarks``, ``app``,
``app_cdf``, ``temp`` as further ``.npy`` records. An entry is written to a
temporary file in the same folder and renamed with :func:`os.replace`, so
concurrent runs never see half a file (the last writer wins; both wrote the
same content). An unreadable, truncated or inconsistent entry is rebuilt.

:mod:`faceblit_core.style` builds assets and finds them in the cache;
:mod:`faceblit_core.cache` keeps the folder (size limit, locks).

References
----------
Texler et al. 2021, "FaceBlit: Instant Real-time Example-based Style Transfer to
Facial Videos", §3–4 (guides and lookup table of the exemplar).
"""

from __future__ import annotations

import mmap
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from faceblit_core import cache as _cache
from faceblit_core.checks import check, check_array

__all__ = ["StyleAsset", "FORMAT_VERSION", "save_entry", "load_entry"]

#: Version of the cached file's layout and of the recipe; bump it when either changes.
FORMAT_VERSION = 2
# Records after the table, in file order.
_SMALL = ("image", "landmarks", "app", "app_cdf", "temp")


@dataclass(frozen=True, eq=False)
class StyleAsset:
    """Everything the synthesis needs from one style exemplar (treat the arrays as read-only).

    Attributes
    ----------
    image : (Hs, Ws, 3) uint8 RGB
        The exemplar.
    landmarks : (68, 2) float32
        Its 68 iBUG/dlib points (x, y), style px.
    app : (Hs, Ws) uint8
        Appearance guide, contrast-stretched about 128.
    app_cdf : (256,) float64
        CDF of ``app`` (reference for histogram-matching a target's guide).
    temp : (Hs, Ws, 3) uint8 RGB
        Temporal guide: ``image`` blurred with sigma ``temporal_blur`` style px.
    lut : (256, 256, 256) int32
        Lookup table ``[y8, x8, a]`` → linear style index ``y·Ws + x``.
    key : str
        SHA-256 (hex) of everything the asset was built from (the cache key).
    path : str or None
        The style file, or None for an asset made in memory.
    params : dict
        The parameters it was built with (``lambda_pos``, ``lambda_app``,
        ``lut_radius``, ``temporal_blur``).

    Raises
    ------
    ValueError
        On construction with inconsistent shapes or dtypes.

    References
    ----------
    Texler et al. 2021, §3–4.
    """

    image: np.ndarray
    landmarks: np.ndarray
    app: np.ndarray
    app_cdf: np.ndarray
    temp: np.ndarray
    lut: np.ndarray
    key: str
    path: str | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_array(self.image, "style image", shape=(None, None, 3), dtype=np.uint8)
        h, w = self.image.shape[:2]
        check_array(self.landmarks, "style landmarks", shape=(68, 2), dtype=np.float32)
        check_array(self.app, "style app", shape=(h, w), dtype=np.uint8)
        check_array(self.app_cdf, "style app_cdf", shape=(256,), dtype=np.float64)
        check_array(self.temp, "style temp", shape=(h, w, 3), dtype=np.uint8)
        check_array(self.lut, "style lut", shape=(256, 256, 256), dtype=np.int32)

    @property
    def width(self) -> int:
        """Style width ``Ws`` in px."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Style height ``Hs`` in px."""
        return int(self.image.shape[0])


def save_entry(entry: Path, asset: StyleAsset) -> None:
    """Write an entry atomically: temporary file in the same folder (locked while written), then ``os.replace``."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{asset.key}.", suffix=".tmp", dir=entry.parent)
    try:
        # Held until closed: a prune removes a temporary file only when its writer is gone.
        _cache.lock_exclusive_now(fd)
        with os.fdopen(fd, "wb") as f:
            npy.write_array(f, np.ascontiguousarray(asset.lut), version=(1, 0), allow_pickle=False)
            npy.write_array(f, np.array(FORMAT_VERSION, dtype=np.int64), version=(1, 0), allow_pickle=False)
            npy.write_array(f, np.array(asset.key), version=(1, 0), allow_pickle=False)
            for name in _SMALL:
                npy.write_array(f, np.ascontiguousarray(getattr(asset, name)), version=(1, 0), allow_pickle=False)
            os.replace(tmp, entry)
        _cache.touch(entry)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_entry(entry: Path, key: str, *, path: str, params: dict) -> StyleAsset:
    """Read and verify an entry, the table memory-mapped; raises on anything missing, truncated or inconsistent.

    The small arrays are read; the 64 MiB table is mapped read-only (a hit then
    costs milliseconds, and the pages a still never looks up are never read).
    The map carries a shared lock on the entry for as long as the table lives, so
    a prune by another run skips it (:mod:`faceblit_core.cache`). The entry's
    last use is set to now.
    """
    with open(entry, "rb") as f:
        _cache.lock_shared(f)
        if npy.read_magic(f) != (1, 0):
            raise ValueError("not a table record")
        shape, fortran, dtype = npy.read_array_header_1_0(f)
        check(shape == (256, 256, 256) and not fortran and dtype == np.dtype(np.int32), "cached lut", "(256, 256, 256) int32", (shape, dtype))
        offset = f.tell()
        f.seek(offset + int(np.prod(shape)) * dtype.itemsize)
        if int(npy.read_array(f, allow_pickle=False)) != FORMAT_VERSION or str(npy.read_array(f, allow_pickle=False)) != key:
            raise ValueError("entry of another key or format")
        arrays = {name: npy.read_array(f, allow_pickle=False) for name in _SMALL}
        # The map duplicates the descriptor: the shared lock lives as long as the table.
        # Copy-on-write (never written back): torch warns about read-only arrays.
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    arrays["lut"] = np.frombuffer(mapped, dtype=np.int32, count=256**3, offset=offset).reshape(shape)
    asset = StyleAsset(key=key, path=path, params=dict(params), **arrays)  # checks shapes and dtypes
    # Every value checked: a damaged table would otherwise fail later, in the synthesis, on
    # every run. This reads all of the table, but the synthesis's first frame does anyway
    # (synthesis.tables.style_tables); the map still spares the copy (~15 ms here).
    lo, hi = int(asset.lut.min()), int(asset.lut.max())
    check(0 <= lo and hi < asset.width * asset.height, "cached lut values", f"in [0, {asset.width * asset.height})", (lo, hi))
    _cache.touch(entry)
    return asset
