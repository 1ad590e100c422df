"""The style cache folder: size limit, least-recently-used eviction, safe with concurrent runs.

:mod:`faceblit_core.style` writes one file per style asset (``<key>.fbstyle``,
~66 MiB for a 768×1024 exemplar); this module keeps the folder under a size
limit and answers ``faceblit cache``.

Rules (README "Style cache")
----------------------------
* Limit: ``$FACEBLIT_CACHE_MAX_BYTES`` (bytes, or with a K/M/G/T suffix, powers
  of 1024; ``0`` = no limit), default 2 GiB. Checked after every entry written.
* Last use: an entry's modification time, set when it is written and again every
  time it is loaded (access times are unreliable: ``noatime``/``relatime`` mounts).
* Eviction: the least recently used entries go first until the total fits; the
  entry just written is never evicted by its own writer.
* Concurrency (``fcntl.flock``, advisory, per open file):

  - a run using an entry holds a *shared* lock on it for as long as its arrays
    live (the lock rides on the memory map's file descriptor); eviction takes an
    *exclusive* lock without waiting, so an entry in use is skipped, never deleted
    under a reader (and a reader that opens a file being deleted sees the
    inode change and rebuilds instead of using it);
  - a writer writes a hidden temporary file, holding an exclusive lock on it,
    and renames it into place (:func:`os.replace`): nobody reads half a file; a
    temporary file is removed by a prune only when its writer is gone (lock free)
    and it is older than a minute;
  - prunes and clears of one folder take turns on the folder's ``.lock`` file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from faceblit_core.errors import ConfigError

__all__ = [
    "ENTRY_SUFFIX",
    "DEFAULT_MAX_BYTES",
    "MAX_BYTES_ENV",
    "CacheEntry",
    "PruneResult",
    "max_bytes",
    "list_entries",
    "prune",
    "touch",
    "lock_shared",
    "format_bytes",
    "default_cache_dir",
    "model_file",
]

#: Suffix of a cache entry (the style module's file layout).
ENTRY_SUFFIX = ".fbstyle"
#: Default size limit of the folder, bytes (2 GiB: ~30 entries of a 768×1024 exemplar).
DEFAULT_MAX_BYTES = 2 << 30
#: Environment variable holding the limit.
MAX_BYTES_ENV = "FACEBLIT_CACHE_MAX_BYTES"
#: The folder's lock file (prunes take turns on it).
LOCK_NAME = ".lock"
#: A temporary file whose writer is gone is removed once it is this old, s.
STALE_TEMP_S = 60.0

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class CacheEntry:
    """One entry of the folder.

    Attributes
    ----------
    path : Path
    size : int
        Bytes on disk.
    last_used : float
        Last write or load, seconds since the epoch (the file's mtime).
    in_use : bool
        Another open run holds it (shared lock), so a prune skips it.
    """

    path: Path
    size: int
    last_used: float
    in_use: bool

    @property
    def key(self) -> str:
        return self.path.name[: -len(ENTRY_SUFFIX)]


@dataclass
class PruneResult:
    """What :func:`prune` did: removed entries, kept entries in use, bytes before and after."""

    removed: list = field(default_factory=list)
    busy: list = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0


def max_bytes(value: str | None = None) -> int:
    """The cache size limit in bytes: ``value``, else ``$FACEBLIT_CACHE_MAX_BYTES``, else 2 GiB.

    Parameters
    ----------
    value : str, optional
        ``"2147483648"``, ``"500M"``, ``"2G"``, ``"1.5G"`` (K/M/G/T = powers of 1024,
        an optional trailing ``B`` or ``iB``); ``"0"`` = no limit.

    Returns
    -------
    int
        Bytes, ≥ 0 (0 = no limit).

    Raises
    ------
    ConfigError
        On anything else.
    """
    text = os.environ.get(MAX_BYTES_ENV, "") if value is None else value
    if not text.strip():
        return DEFAULT_MAX_BYTES
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not m:
        raise ConfigError(f"${MAX_BYTES_ENV}: expected a size in bytes such as 2G, 500M or 2147483648 (0 = no limit), got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_bytes(n: int) -> str:
    """``n`` bytes as a short human figure (binary units): ``"66.0 MiB"``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# ------------------------------------------------------------------------------- folder
def default_cache_dir() -> Path:
    """The style cache folder when none is given.

    Returns
    -------
    Path
        ``$FACEBLIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/faceblit``, else
        ``~/.cache/faceblit`` (not created here).
    """
    env = os.environ.get("FACEBLIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "faceblit"
    return Path.home() / ".cache" / "faceblit"


def model_file(name: str) -> Path:
    """Where a derived model file (e.g. dlib's decoded HOG detector) is kept: ``default_cache_dir()/models/NAME``.

    Not counted against the limit nor removed by a prune: a few hundred KB that
    are rebuilt when missing.
    """
    return default_cache_dir() / "models" / name


# ------------------------------------------------------------------------------- locking
@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock of the folder's ``.lock`` file (blocking): one prune at a time."""
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def lock_shared(f) -> None:
    """Take a shared lock on the open entry ``f`` and check it is still the file at its path.

    Waits while a prune holds the exclusive lock (a fraction of a second: it only
    unlinks). The lock is held until every descriptor of this open file is
    closed — a memory map made from ``f`` keeps it (it duplicates the descriptor).

    Raises
    ------
    FileNotFoundError
        The entry was removed or replaced meanwhile (the caller rebuilds).
    """
    fcntl.flock(f.fileno(), fcntl.LOCK_SH)
    try:
        now = os.stat(f.name)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "cache entry removed while opening", f.name) from None
    if now.st_ino != os.fstat(f.fileno()).st_ino:
        raise FileNotFoundError(errno.ENOENT, "cache entry replaced while opening", f.name)


def lock_exclusive_now(fd: int) -> bool:
    """Try an exclusive lock without waiting; False when another process holds any lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def touch(path: Path) -> None:
    """Mark an entry as used now (its mtime); a vanished or read-only entry is left alone."""
    try:
        os.utime(path)
    except OSError:
        pass


# ------------------------------------------------------------------------------- listing
def _is_in_use(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return not lock_exclusive_now(fd)
    finally:
        os.close(fd)


def list_entries(folder: str | os.PathLike, *, probe_use: bool = True) -> list[CacheEntry]:
    """The folder's entries, least recently used first (an absent folder has none).

    Parameters
    ----------
    folder : path
    probe_use : bool, keyword-only
        Find out whether each entry is in use (one non-blocking lock attempt each).
    """
    folder = Path(folder)
    out = []
    try:
        names = [p for p in folder.iterdir() if p.name.endswith(ENTRY_SUFFIX) and not p.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for p in names:
        try:
            st = p.stat()
        except FileNotFoundError:  # removed by another run meanwhile
            continue
        out.append(CacheEntry(p, st.st_size, st.st_mtime, _is_in_use(p) if probe_use else False))
    return sorted(out, key=lambda e: (e.last_used, e.path.name))


# ------------------------------------------------------------------------------- pruning
def prune(folder: str | os.PathLike, limit: int | None = None, *, keep: Iterable[Path] = ()) -> PruneResult:
    """Remove least-recently-used entries until the folder holds at most ``limit`` bytes.

    Entries in use by a run (shared lock held) and those in ``keep`` are never
    removed; temporary files of writers that are gone (no lock, older than a
    minute) are. ``limit=0`` removes every entry not in use (``faceblit cache --clear``).

    Parameters
    ----------
    folder : path
        The cache folder; nothing happens when it does not exist.
    limit : int, optional
        Bytes; default :func:`max_bytes` (where 0 means no limit, so nothing is evicted).
    keep : paths, keyword-only
        Entries not to remove (the one just written).

    Returns
    -------
    PruneResult

    Raises
    ------
    ConfigError
        ``$FACEBLIT_CACHE_MAX_BYTES`` is malformed (only when ``limit`` is None).
    OSError
        The folder cannot be read or its lock file not created.
    """
    folder = Path(folder)
    result = PruneResult()
    if limit is None:
        limit = max_bytes()
        if limit == 0:
            return result
    if not folder.is_dir():
        return result
    keep = {Path(k).name for k in keep}
    with _folder_lock(folder):
        _remove_stale_temporaries(folder)
        entries = list_entries(folder, probe_use=False)
        total = result.bytes_before = sum(e.size for e in entries)
        for e in entries:  # oldest first
            if total <= limit:
                break
            if e.path.name in keep:
                continue
            if _remove_unless_in_use(e.path):
                result.removed.append(e)
                total -= e.size
            else:
                result.busy.append(e)
        result.bytes_after = total
    return result


def _remove_unless_in_use(path: Path) -> bool:
    """Unlink ``path`` while holding its exclusive lock; False when a run uses it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # already gone (another prune, or `rm`): counts as freed
    try:
        if not lock_exclusive_now(fd):
            return False
        try:
            # Unlink only the file we locked: a writer may have renamed a new one into place.
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
        except FileNotFoundError:
            pass
        return True
    finally:
        os.close(fd)


def _remove_stale_temporaries(folder: Path) -> None:
    now = time.time()
    for p in folder.glob(".*.tmp"):
        try:
            if now - p.stat().st_mtime < STALE_TEMP_S:
                continue  # its writer may not have taken its lock yet
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            if lock_exclusive_now(fd):  # its writer is gone (a killed run)
                os.unlink(p)
        except OSError:
            pass
        finally:
            os.close(fd)
