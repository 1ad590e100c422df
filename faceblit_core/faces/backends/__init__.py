"""Landmark backends, one module each, and the registry that names them.

``dlib`` (default, offline, CPU)
    :mod:`.dlib`: HOG detector + 68-point shape predictor, with fallbacks for paintings.
``fan``
    :mod:`.fan`: FAN heatmap regression (face_alignment, torch, CPU or CUDA) on dlib boxes.
a per-frame JSON file
    :mod:`.file`: replays landmarks saved earlier, ``get_backend("clip.landmarks.json")``.

All implement :class:`~faceblit_core.faces.types.LandmarkBackend`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from faceblit_core.errors import ConfigError, InputError
from faceblit_core.faces.backends.dlib import CNN_TO_HOG, DlibBackend, detect_style_landmarks
from faceblit_core.faces.backends.fan import FanBackend
from faceblit_core.faces.backends.file import FrameLandmarksBackend
from faceblit_core.faces.types import LandmarkBackend

__all__ = [
    "BACKENDS",
    "get_backend",
    "backend_for",
    "backend_names",
    "DlibBackend",
    "FanBackend",
    "FrameLandmarksBackend",
    "detect_style_landmarks",
    "CNN_TO_HOG",
]

#: Landmark backends by name (the CLI's ``--landmarks`` choices); each factory takes
#: keyword options (see the classes). A per-frame ``.json`` file path is also
#: accepted by :func:`get_backend`.
BACKENDS: dict[str, Callable[..., LandmarkBackend]] = {
    "dlib": DlibBackend,
    "fan": FanBackend,
}


def backend_names() -> tuple[str, ...]:
    """Names in :data:`BACKENDS`, default first."""
    return tuple(BACKENDS)


def get_backend(name: str, **options: Any) -> LandmarkBackend:
    """Create a landmark backend by registry name, or a replay backend for a per-frame JSON file.

    Parameters
    ----------
    name : str
        A key of :data:`BACKENDS` (``dlib``, ``fan``) or the path of an existing
        ``*.json`` per-frame landmark file.
    **options
        Keyword options of the backend class (e.g. ``weights=``, ``device=`` for
        ``fan``). A file backend takes none.

    Returns
    -------
    LandmarkBackend

    Raises
    ------
    ConfigError
        Unknown name (the message lists the choices), or options given to a file backend.
    InputError
        A ``.json`` path that does not exist.
    StyleError
        A malformed per-frame file.
    EnvironmentProblem
        The backend's libraries or weights are missing.
    """
    if name in BACKENDS:
        return BACKENDS[name](**options)
    if name.lower().endswith(".json"):
        if not Path(name).is_file():
            raise InputError(f"landmark file not found: {name}")
        if options:
            raise ConfigError(f"landmarks: a per-frame file takes no options, got {sorted(options)}")
        return FrameLandmarksBackend(name)
    raise ConfigError(f"landmarks: expected one of {', '.join(BACKENDS)} or a per-frame .json file, got {name!r}")


def backend_for(config, fan_weights=None, device: str = "cpu", *, video: bool) -> LandmarkBackend:
    """The landmark backend named by ``config.landmarks`` (a :class:`~faceblit_core.config.StylizeConfig`),
    with the options a run uses: the one rule shared by stylizing and listing faces.

    For video, dlib's CNN fallback detector is off: it costs ~1 s per re-detection
    on frames without a face (seconds of a clip), while paintings — where it helps —
    come as stills or exemplars (:func:`faceblit_core.faces.detect_style_landmarks`).

    Raises
    ------
    As :func:`get_backend`.
    """
    options: dict = {}
    if config.landmarks == "fan":
        options = {"weights": fan_weights, "device": device}
    elif config.landmarks == "dlib" and video:
        options = {"cnn_fallback": False}
    return get_backend(config.landmarks, **options)
