"""Signals, threads and interruption: how a run stops cleanly.

A run owns temporary files (the ``.partial`` output, style cache entries) and
child processes (ffmpeg). Ctrl-C and SIGTERM must end it with exit 130 / 143 and
leave none of them behind, so:

* SIGTERM becomes an exception like Ctrl-C's (:class:`SignalInterrupt`,
  :func:`raise_signal_interrupt`), raised in the main thread wherever it runs, and
  every ``with`` block on the way removes what it made;
  :func:`signals_as_exceptions` (or the CLI) turns it into
  :class:`~faceblit_core.errors.Interrupted` once that cleanup has run;
* for the few statements where such an exception would leave something behind
  (between creating a temporary file and the block that removes it, while a thread
  starts) the signals are held back and handled right after
  (:func:`hold_signals` / :func:`release_signals`, :func:`signals_held`,
  :func:`start_thread`, :func:`entered_with_signals_held`);
* work overlapping the main thread runs in signal-safe threads whose exceptions
  reach the caller (:class:`Background`, :class:`Sink`).

Used by :mod:`faceblit_core.media`, :mod:`faceblit_core.lut`,
:mod:`faceblit_core.stylizer`, :mod:`faceblit_core.pipeline` and the CLI. Light
to import (standard library only): the CLI loads it at start-up.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from typing import Any, Callable, ContextManager, Iterator, TypeVar

from faceblit_core.errors import Interrupted

__all__ = [
    "SignalInterrupt",
    "raise_signal_interrupt",
    "signals_as_exceptions",
    "hold_signals",
    "release_signals",
    "signals_held",
    "entered_with_signals_held",
    "start_thread",
    "Background",
    "Sink",
]

T = TypeVar("T")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# -------------------------------------------------------------------- signals as exceptions
class SignalInterrupt(KeyboardInterrupt):
    """Raised by the SIGTERM handler: like Ctrl-C's KeyboardInterrupt it is no ``Exception``,
    so no ``except Exception`` on the way (cache reader, ffmpeg waits) can swallow it;
    :func:`signals_as_exceptions` (or the CLI) turns it into :class:`Interrupted` once
    the cleanup has run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_signal_interrupt(signum, _frame):
    """Signal handler raising :class:`SignalInterrupt`."""
    raise SignalInterrupt(signum)


@contextlib.contextmanager
def signals_as_exceptions(*, to_stdout: bool = False) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (exit 130 / 143), after the cleanup of the block ran."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    old = signal.signal(signal.SIGTERM, raise_signal_interrupt)
    try:
        yield
    except KeyboardInterrupt as exc:
        raise Interrupted(getattr(exc, "signum", signal.SIGINT), to_stdout=to_stdout) from None
    finally:
        signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------- held signals
class _HeldSignals:
    """State of one :func:`hold_signals`: the handlers it replaced and what arrived meanwhile."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.pending: list[int] = []

    def defer(self, signum: int, _frame: Any) -> None:
        self.pending.append(signum)


def hold_signals() -> _HeldSignals | None:
    """Hold back SIGINT and SIGTERM; :func:`release_signals` handles what arrived meanwhile.

    For the few statements where an exception raised by a signal handler would
    leave something behind, e.g. between creating a :class:`VideoWriter`
    (temporary file, ffmpeg process) and entering its ``with`` block, which removes
    both on any exception. The Python-level handlers are swapped for one that
    only records the signal (blocking the signal in this thread would not do:
    native threads of BLAS/OpenMP receive it, and Python runs the handler in the
    main thread anyway). Signals ignored by the parent stay ignored. Holds nest.
    Outside the main thread (where handlers cannot be changed) nothing is held.

    Returns
    -------
    state or None
        For :func:`release_signals`.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    held = _HeldSignals()
    for signum in _STOP_SIGNALS:
        previous = signal.getsignal(signum)
        if previous is not signal.SIG_IGN:
            held.previous[signum] = signal.signal(signum, held.defer)
    return held


def release_signals(held: _HeldSignals | None) -> None:
    """Put back the handlers :func:`hold_signals` replaced; run the first held signal's handler.

    Its exception (``KeyboardInterrupt``…) is raised by this call; a held signal
    whose disposition was the default (e.g. SIGTERM outside the CLI) is re-sent, so
    the process ends as it would have.
    """
    if held is None:
        return
    for signum, previous in held.previous.items():
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    if not held.pending:
        return
    signum = held.pending[0]
    handler = held.previous.get(signum)
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back for the block (:func:`hold_signals`), handled at its end.

    A held signal's exception is raised when the block ends, also when the block
    raised (it then replaces that exception, as a signal would have).
    """
    held = hold_signals()
    try:
        yield
    finally:
        release_signals(held)


@contextlib.contextmanager
def entered_with_signals_held(make: Callable[[], ContextManager[T]]) -> Iterator[T]:
    """``with make() as value``, with no signal handled between making and entering.

    For a context manager that owns something from its creation on (e.g.
    :class:`faceblit_core.media.VideoWriter`: its temporary file and ffmpeg) and
    removes it only on leaving its block: Ctrl-C/SIGTERM are held from the start of
    ``make()`` until the block is entered, then handled inside it (which removes
    what it made).

    Yields
    ------
    value
        What the context manager's ``__enter__`` returned.
    """
    held = hold_signals()
    try:
        manager = make()
    except BaseException:
        release_signals(held)
        raise
    with manager as value:
        release_signals(held)
        yield value


# -------------------------------------------------------------------------------- threads
def start_thread(target: Any, *, args: tuple = (), name: str | None = None, daemon: bool = True) -> threading.Thread:
    """Start ``target(*args)`` in a new thread, with SIGINT and SIGTERM held back meanwhile.

    An exception raised by a signal handler while :meth:`threading.Thread.start`
    runs (Ctrl-C, or SIGTERM turned into an exception by the CLI) breaks CPython's
    thread bookkeeping: the new thread then dies printing a ``KeyError`` traceback
    on stderr, next to the one-line message. Held (:func:`hold_signals`), the
    signal is handled right after the thread has started.

    Parameters
    ----------
    target : callable
        Run in the thread.
    args : tuple, keyword-only
        Its positional arguments.
    name : str, keyword-only
        Thread name.
    daemon : bool, keyword-only
        Daemon thread (does not keep the process alive).

    Returns
    -------
    threading.Thread
        The started thread.
    """
    thread = threading.Thread(target=target, args=args, name=name, daemon=daemon)
    with signals_held():
        thread.start()
    return thread


class Background:
    """``fn(*args)`` running in a thread; :meth:`result` waits for it and returns its value or raises its exception."""

    def __init__(self, fn: Callable, *args, name: str = "faceblit-flow") -> None:
        self._value = self._error = None
        self._thread = start_thread(self._run, args=(fn, args), name=name)

    def _run(self, fn: Callable, args: tuple) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class Sink:
    """Feed items (frames) to ``write`` from a thread (the encoder then overlaps the synthesis).

    At most ``depth`` items wait in the queue (memory stays bounded). The first
    exception of ``write`` is raised by the next :meth:`put` or by :meth:`finish`.
    """

    def __init__(self, write: Callable[[Any], None], *, depth: int = 4) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._write = write
        self._error: BaseException | None = None
        self._thread = start_thread(self._run)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._write(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the producer
                    self._error = exc

    def put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(item)

    def finish(self) -> None:
        """Wait until everything put was written; raise the writer's exception if any."""
        self._q.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
