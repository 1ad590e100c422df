"""What a run is set up with: the torch device and threads, the landmark backend, the progress bar.

Shared by the one-process job (:mod:`faceblit_core.pipeline`), the chunked render
(:mod:`faceblit_core.chunks`) and the Ray workers (:mod:`faceblit_core.ray_engine`),
so none of those imports another for them (no import circle).
"""

from __future__ import annotations

import os
import sys

import torch
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


def set_threads() -> None:
    """torch threads for the CPU synthesis: all cores but one, which ffmpeg's decoder and encoder use.

    ``FACEBLIT_THREADS`` overrides. Oversubscribed torch threads stall badly on
    small machines (measured on 2 cores: ms-long waits per op), so the default
    leaves the encoder its core.
    """
    wanted = int(os.environ.get("FACEBLIT_THREADS", "0") or 0)
    torch.set_num_threads(wanted if wanted > 0 else max(1, (os.cpu_count() or 2) - 1))
