"""What a run is set up with: the torch device and threads, the landmark backend, the progress bar.

Shared by the one-process job (:mod:`faceblit_core.pipeline`), the chunked render
(:mod:`faceblit_core.chunks`) and the Ray workers (:mod:`faceblit_core.ray_engine`),
so none of those imports another for them (no import circle).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from tqdm import tqdm

from faceblit_core.config import StylizeConfig
from faceblit_core.errors import EnvironmentProblem
from faceblit_core.faces.backends import backend_for


def resolve_device(name: str) -> str:
    """Map ``auto | cpu | cuda | cuda:N`` to a torch device string.

    Raises
    ------
    EnvironmentProblem
        ``cuda`` was asked for and torch sees no CUDA device (``auto`` falls back to the CPU).
    """
    # torch is imported here and in set_threads, not at the top: it takes ~2 s of CPU to load, and a
    # run refused for a bad option, input or output answers before either is called (CLI start-up).
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EnvironmentProblem(f"--device {name}: torch sees no CUDA device on this machine; use --device cpu or --device auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise EnvironmentProblem(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return name


def make_backend(config: StylizeConfig, fan_weights, device: str, *, video: bool):
    """The landmark backend named by ``config.landmarks`` (:func:`faceblit_core.faces.backends.backend_for`,
    the rule ``faceblit faces`` shares, so both see the same faces under the same ids)."""
    return backend_for(config, fan_weights, device, video=video)


def progress_bar(total: int | None, enabled: bool, label: str):
    """A tqdm bar of ``total`` frames on stderr, or None when ``enabled`` is false."""
    if not enabled:
        return None
    # disable=None: no bar when stderr is not a terminal (a log file would fill with \r updates).
    return tqdm(total=total, desc=label, unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr, disable=None)


class FrameProgress:
    """One progress bar over the frames of a run, fed by the renders of the run (thread-safe).

    A render makes its own (``FrameProgress(label, enabled)``); a batch on Ray makes one
    for all its inputs and passes it as ``progress`` to each input's render (one driver
    thread each), so the user sees ONE bar over every frame of the batch. Each render
    adds its frames to the total when it knows them (:meth:`add`: the total grows while
    the inputs start) and counts frames as they are written (:meth:`update`). The bar is
    :func:`progress_bar`'s: none when ``enabled`` is false (``-q``) or stderr is not a
    terminal; then every method does nothing and :attr:`shown` is false.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self._bar = None  # made on the first add(), when a total is known
        self._closed = False  # a render still running after close() (a batch stopped) draws nothing
        self._lock = threading.Lock()

    @property
    def shown(self) -> bool:
        """Whether a bar is drawn (work done only for the bar, e.g. Ray tasks reporting frames, is skipped otherwise)."""
        if self._bar is None:
            return self.enabled and sys.stderr.isatty()  # what progress_bar's tqdm(disable=None) will decide
        return not self._bar.disable

    def add(self, frames: int | None, done: int = 0) -> None:
        """Add ``frames`` (None: unknown) to the total, ``done`` of them finished already (a resumed render)."""
        if not self.enabled:
            return
        with self._lock:
            if self._closed:
                return
            if self._bar is None:
                self._bar = progress_bar(frames, True, self.label)
            elif frames is not None and self._bar.total is not None:
                self._bar.total += frames
                self._bar.refresh()
            else:
                self._bar.total = None  # one render of unknown length: the total is unknown
            if done:
                self._bar.update(done)

    def update(self, frames: int = 1) -> None:
        """Count ``frames`` more frames written."""
        if self._bar is not None and frames:
            with self._lock:
                if self._bar is not None:
                    self._bar.update(frames)

    @contextlib.contextmanager
    def printing(self):
        """Print lines on stderr inside this block without tearing the bar (tqdm's external write mode)."""
        if self._bar is None or self._bar.disable:
            yield
            return
        with self._lock, tqdm.external_write_mode(file=sys.stderr):
            yield

    def close(self) -> None:
        """Remove the bar (it leaves no line behind)."""
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.close()
                self._bar = None


def set_threads() -> None:
    """torch threads for the CPU synthesis: all cores but one, which ffmpeg's decoder and encoder use.

    ``FACEBLIT_THREADS`` overrides. Oversubscribed torch threads stall badly on
    small machines (measured on 2 cores: ms-long waits per op), so the default
    leaves the encoder its core.
    """
    import torch  # lazy: see resolve_device

    wanted = int(os.environ.get("FACEBLIT_THREADS", "0") or 0)
    torch.set_num_threads(wanted if wanted > 0 else max(1, (os.cpu_count() or 2) - 1))
