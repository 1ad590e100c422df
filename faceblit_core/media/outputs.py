"""All-or-nothing outputs and ``-`` paths.

:func:`check_output` refuses bad output names before any work, :func:`atomic_output`
writes through a locked ``.NAME.partial-PID-XXXXXXXX`` file renamed on success,
:func:`remove_stale_temporaries` removes those a killed run left behind, and
:func:`spool_stdin` / :func:`spooled_stdin` turn standard input into a temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator, Sequence


from faceblit_core._runtime import hold_signals, release_signals
from faceblit_core.errors import InputError, OutputError
from faceblit_core.media.formats import _check_image_extension, _check_video_extension


# --------------------------------------------------------------------------------------
# atomic outputs, stdin
# --------------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_stdout() -> None:
    """Refuse standard output when it is a terminal (video bytes would fill the screen).

    Raises
    ------
    OutputError
        ``sys.stdout`` is a terminal.
    """
    if sys.stdout is not None and sys.stdout.isatty():
        raise OutputError("-: stdout is a terminal; redirect it to a file or a pipe")


def check_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
    video: bool = False,
    image: bool = False,
) -> Path:
    """Check, without writing anything, that ``path`` can be written as an output.

    The checks :func:`atomic_output` and :class:`VideoWriter` make, for callers that
    want to fail before expensive work (a style build, model loading) rather than
    after it. The writer checks again when it starts (the disk may change meanwhile).

    Parameters
    ----------
    path : str or PathLike
        Output file (``"-"``: standard output, refused only when it is a terminal).
    overwrite : bool, keyword-only
        An existing ``path`` may be replaced.
    inputs : sequence of paths, keyword-only
        Files the output must not be.
    video : bool, keyword-only
        Also require a video container extension (as :class:`VideoWriter` does).
    image : bool, keyword-only
        Also require an image extension (as :func:`write_image` does).

    Returns
    -------
    Path
        The folder the output goes to.

    Raises
    ------
    OutputError
        ``"-"`` and stdout is a terminal; folder missing, not a folder or not writable, ``path`` is a directory, is
        one of ``inputs``, exists without ``overwrite``, or has no video (``video``)
        or image (``image``) extension.
    """
    name = os.fspath(path)
    p = Path(name)
    folder = p.parent if str(p.parent) else Path(".")
    if name == "-":
        check_stdout()
        return folder
    if p.is_dir():
        raise OutputError(f"{name}: is a directory; give a file name")
    if video:
        _check_video_extension(name, p.suffix.lower())
    if image:
        _check_image_extension(name, p.suffix.lower())
    if not folder.exists():
        raise OutputError(f"{name}: folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{name}: {folder} is not a folder")
    for src in inputs:
        if src is not None and os.fspath(src) != "-" and _same_file(p, Path(os.fspath(src))):
            raise OutputError(f"{name}: output is the same file as the input {os.fspath(src)}")
    if p.exists() and not overwrite:
        raise OutputError(f"{name}: exists; use --overwrite to replace it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{name}: folder {folder} is not writable")
    return folder


# Temporary files (partial outputs, spooled stdin) carry their owner's PID in the name
# and are locked (flock) by it while they live. A run killed with SIGKILL cannot remove
# its own, so the next run that writes into the folder removes those whose owner is gone:
# the PID names no live process and nobody holds the lock. Either test alone could remove
# a live run's file: the lock is taken a moment after the file is created, and PIDs are
# reused or belong to another PID namespace (a container sharing the folder).
_PARTIAL_RE = re.compile(r"^\..+\.partial-(?P<pid>\d+)-[a-z0-9_]{8}(?:\.[^.]*)?$")
_STDIN_PREFIX = "faceblit-stdin-"
_STDIN_RE = re.compile(rf"^{_STDIN_PREFIX}(?P<pid>\d+)-[a-z0-9_]{{8}}$")


def _owned_tempfile(folder: str | os.PathLike[str], prefix: str, suffix: str = "") -> tuple[int, Path]:
    """``mkstemp`` named ``PREFIX<pid>-XXXXXXXX SUFFIX``, locked: (descriptor holding the lock, path)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix, dir=folder)
    with contextlib.suppress(OSError):  # a filesystem without locks: the PID alone decides
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, Path(tmp)


def process_gone(pid: int) -> bool:
    """No process ``pid`` runs here (a zombie has exited: its files and locks are released)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: another user's live process
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")


def remove_stale_temporaries(folder: str | os.PathLike[str], pattern: re.Pattern[str] = _PARTIAL_RE) -> list[Path]:
    """Remove the temporary files in ``folder`` left by faceblit runs that are gone.

    Files named like ``pattern`` (default: the ``.NAME.partial-PID-XXXXXXXX.EXT``
    outputs of :func:`atomic_output` and :class:`VideoWriter`) whose PID is not a
    live process and whose lock nobody holds; a live run's file is never touched.
    Called before each new temporary file; errors (no permission…) leave a file alone.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or not process_gone(int(m.group("pid"))):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: its owner lives (a reused PID, another PID namespace)
            except OSError:
                pass  # no locks on this filesystem
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


class _AtomicOutput:
    """Temporary file ``.NAME.partial-PID-XXXXXXXX.EXT`` next to ``path``, locked while
    it lives (:func:`remove_stale_temporaries`); commit renames it."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool, inputs: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.path = Path(os.fspath(path))
        self.overwrite = overwrite
        name = os.fspath(path)
        folder = check_output(path, overwrite=overwrite, inputs=inputs)
        remove_stale_temporaries(folder)
        try:
            self._lock, self.tmp = _owned_tempfile(folder, f".{self.path.name}.partial-", self.path.suffix)
        except OSError as e:
            raise _output_oserror(name, e) from None
        self.done = False

    def commit(self) -> None:
        if self.done:
            return
        try:
            if self.path.exists() and not self.overwrite:  # appeared while we were writing
                raise OutputError(f"{self.path}: exists; use --overwrite to replace it")
            # mkstemp makes the file 0600; give the output the usual umask-based mode.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            raise _output_oserror(str(self.path), e) from None
        except BaseException:
            self.abort()
            raise
        self.done = True
        self._unlock()

    def abort(self) -> None:
        self.done = True
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock)
            self._lock = -1


def _output_oserror(name: str, e: OSError) -> OutputError:
    if e.errno == errno.ENOSPC:
        return OutputError(f"{name}: disk full (No space left on device)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{name}: cannot write here ({e.strerror})")
    return OutputError(f"{name}: cannot write ({e.strerror or e})")


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Write ``path`` all-or-nothing: yield a temporary path in the same folder.

    The temporary file ``.NAME.partial-PID-XXXXXXXX.EXT`` (created empty, same
    extension so ffmpeg/OpenCV pick the format) is renamed onto ``path`` with
    ``os.replace`` when the block succeeds, and removed when it raises anything
    (including ``KeyboardInterrupt``). Same folder ⇒ same filesystem ⇒ the
    rename is atomic. One left by a killed run (``kill -9``) is removed by the
    next one writing into the folder (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : str or PathLike
        Final output file.
    overwrite : bool, keyword-only
        Replace an existing ``path``.
    inputs : sequence of paths, keyword-only
        Files the output must not be (e.g. the input video): writing onto them
        would destroy the source while it is being read.

    Yields
    ------
    Path
        The temporary file to write.

    Raises
    ------
    OutputError
        Folder missing or not writable, ``path`` exists without ``overwrite``,
        ``path`` is one of ``inputs`` or a directory, disk full.
    """
    held = hold_signals()  # a Ctrl-C between creating the file and the try would leave it
    try:
        out = _AtomicOutput(path, overwrite=overwrite, inputs=inputs)
    except BaseException:
        release_signals(held)
        raise
    try:
        release_signals(held)
        yield out.tmp
    except BaseException:
        out.abort()
        raise
    out.commit()


def spool_stdin(tmpdir: str | os.PathLike[str] | None = None, *, stream: IO[bytes] | None = None) -> Path:
    """Copy stdin (or ``stream``) to a temporary file so it can be probed and decoded.

    ffmpeg needs a seekable file to count frames and decode it again; a pipe
    can be read only once. **The caller deletes the file**; prefer
    :func:`spooled_stdin`, which does.

    Parameters
    ----------
    tmpdir : path or None
        Folder of the temporary file (default: the system temp folder).
    stream : binary file object, keyword-only
        Source (default ``sys.stdin.buffer``).

    Returns
    -------
    Path
        ``faceblit-stdin-PID-XXXXXXXX`` (no extension: ffmpeg and OpenCV detect
        the format from the content). Copies left in that folder by killed runs
        are removed first (:func:`remove_stale_temporaries`).

    Raises
    ------
    InputError
        stdin is empty or a terminal.
    OutputError
        The temporary folder is full or not writable.
    """
    src = stream if stream is not None else sys.stdin.buffer
    with contextlib.suppress(AttributeError, ValueError, OSError):
        if os.isatty(src.fileno()):
            raise InputError("stdin is a terminal; pipe a video or image into it, e.g. `cat in.mp4 | faceblit ... -`")
    folder = tmpdir if tmpdir is not None else tempfile.gettempdir()
    remove_stale_temporaries(folder, _STDIN_RE)
    try:
        fd, tmp = _owned_tempfile(folder, _STDIN_PREFIX)
    except OSError as e:
        raise _output_oserror(os.fspath(folder), e) from None
    try:
        # The descriptor keeps the lock until the copy is complete; afterwards only the
        # caller's process keeps the file (its PID is in the name) until it deletes it.
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        if os.path.getsize(tmp) == 0:
            raise InputError("stdin is empty; pipe a video or image into it")
    except OSError as e:
        os.unlink(tmp)
        raise _output_oserror(tmp, e) from None
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


@contextlib.contextmanager
def spooled_stdin(tmpdir: str | os.PathLike[str] | None = None, *, stream: IO[bytes] | None = None) -> Iterator[Path]:
    """Context manager around :func:`spool_stdin` that deletes the file on exit.

    Yields
    ------
    Path
        The spooled copy of stdin.

    Raises
    ------
    InputError, OutputError
        As :func:`spool_stdin`.
    """
    path = spool_stdin(tmpdir, stream=stream)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
