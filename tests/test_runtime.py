"""Signals and threads (faceblit_core._runtime): held signals arrive late but arrive, and in the right block."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from faceblit_core._runtime import (
    Background,
    Sink,
    entered_with_signals_held,
    hold_signals,
    release_signals,
    signals_as_exceptions,
    signals_held,
    start_thread,
)
from faceblit_core.errors import Interrupted


@pytest.fixture(autouse=True)
def _python_sigint_handler():
    """SIGINT as Python sets it up in a foreground process: Python installs its
    KeyboardInterrupt handler only when SIGINT is not ignored at start-up, and a job
    started with ``&`` from a non-interactive shell (``make test &``) inherits it ignored."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _ctrl_c() -> None:
    """Send SIGINT to this process; Python runs its handler before the next bytecode."""
    os.kill(os.getpid(), signal.SIGINT)


class _Recorder:
    """A context manager that records how its block ended (like VideoWriter, which aborts on an exception)."""

    def __init__(self) -> None:
        self.exit_type = "not exited"

    def __enter__(self) -> "_Recorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.exit_type = exc_type
        return False


def test_a_held_ctrl_c_is_raised_at_the_end_of_the_block_and_the_handler_put_back():
    before = signal.getsignal(signal.SIGINT)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            _ctrl_c()
            reached.append("after the signal")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is before


def test_nothing_is_raised_when_no_signal_came():
    held = hold_signals()
    release_signals(held)
    with signals_held():
        pass


def test_a_signal_while_the_manager_is_made_reaches_its_block():
    # It must be handled inside the block, so that __exit__ removes what the manager made.
    recorder = _Recorder()
    body = []

    def make() -> _Recorder:
        _ctrl_c()
        return recorder

    with pytest.raises(KeyboardInterrupt):
        with entered_with_signals_held(make) as value:
            body.append(value)
    assert recorder.exit_type is KeyboardInterrupt
    assert body == []


def test_a_failing_make_releases_the_signals():
    before = signal.getsignal(signal.SIGINT)

    def make():
        raise OSError("disk full")

    with pytest.raises(OSError):
        with entered_with_signals_held(make):
            pass
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_becomes_interrupted_with_exit_143():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        with signals_as_exceptions():
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(1.0)  # the handler raises before this returns
    assert info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_thread_started_during_ctrl_c_runs_and_the_signal_follows():
    ran = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            _ctrl_c()
            start_thread(ran.set).join()
    assert ran.is_set()


def test_background_returns_the_value_or_raises_the_error_of_its_thread():
    assert Background(lambda a, b: a + b, 2, 3).result() == 5

    def fail():
        raise ValueError("in the thread")

    with pytest.raises(ValueError, match="in the thread"):
        Background(fail).result()


def test_sink_writes_in_order_and_hands_the_writers_error_to_the_producer():
    got = []
    sink = Sink(got.append, depth=2)
    for i in range(10):
        sink.put(i)
    sink.finish()
    assert got == list(range(10))

    def write(item):
        raise OSError("no space left")

    sink = Sink(write)
    sink.put(1)
    with pytest.raises(OSError, match="no space left"):
        sink.finish()
