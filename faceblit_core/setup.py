"""What a run is set up with: the torch device, the landmark backend, the progress bar.

Shared by the one-process job (:mod:`faceblit_core.pipeline`), the chunked render
(:mod:`faceblit_core.chunks`) and the Ray workers (:mod:`faceblit_core.ray_engine`),
so none of those imports another for them (no import circle).
"""

from __future__ import annotations

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
