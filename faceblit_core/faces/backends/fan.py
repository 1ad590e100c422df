"""The ``fan`` landmark backend: FAN heatmap regression (``face_alignment``, torch, CPU or CUDA).

Landmarks from FAN on face boxes from dlib (:class:`~faceblit_core.faces.backends.dlib.DlibBackend`).
Weights come from a local file (never downloaded); a network model can be injected
(the documented seam of :class:`FanBackend`).

torch and face_alignment are imported inside the functions that need them, never
with this module: they take seconds to import, and the CLI (``--version``,
``--help``) and the default dlib backend must not pay for them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from faceblit_core.checks import check_array
from faceblit_core.errors import EnvironmentProblem
from faceblit_core.faces.backends.dlib import DlibBackend
from faceblit_core.faces.types import N_POINTS, Face, check_frame

__all__ = ["FanBackend", "load_fan_model", "default_fan_weights", "FAN_WEIGHTS_FILE", "FAN_WEIGHTS_URL"]

#: File name of face_alignment's 2D FAN weights in torch's hub cache.
FAN_WEIGHTS_FILE = "2DFAN4-11f355bf06.pth.tar"
FAN_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/" + FAN_WEIGHTS_FILE


def default_fan_weights() -> Path:
    """Where face_alignment keeps its weights: ``torch.hub.get_dir()/checkpoints/2DFAN4-11f355bf06.pth.tar``."""
    import torch  # lazy: see the module docstring

    return Path(torch.hub.get_dir()) / "checkpoints" / FAN_WEIGHTS_FILE


def _resolve_device(device: str) -> str:
    import torch  # lazy: see the module docstring

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EnvironmentProblem(f"device {device!r} asked for, but torch sees no CUDA device")
    return device


def load_fan_model(path: str | os.PathLike, *, device: str = "cpu") -> Any:
    """Build face_alignment's FAN and load a local weights file (never downloads).

    The number of stacked hourglass modules is read from the state dict
    (``m0.``, ``m1.``, … prefixes; 4 for 2DFAN4), so any FAN checkpoint loads.

    Parameters
    ----------
    path : str or path-like
        ``2DFAN4-11f355bf06.pth.tar`` or another FAN state dict (optionally under a
        ``"state_dict"`` key).
    device : str, keyword-only
        torch device.

    Returns
    -------
    torch.nn.Module
        In eval mode on ``device``; maps (N, 3, 256, 256) float in [0, 1] to a list
        of (N, 68, 64, 64) heatmaps (one per stack).

    Raises
    ------
    EnvironmentProblem
        The file is missing, unreadable or not FAN weights; the message names the
        file and where it comes from.

    References
    ----------
    Bulat & Tzimiropoulos 2017, "How far are we from solving the 2D & 3D Face
    Alignment problem?", Sec. 3 (FAN).
    """
    import torch  # lazy: see the module docstring

    p = Path(path)
    if not p.is_file():
        raise EnvironmentProblem(
            f"FAN weights not found: {p} (download {FAN_WEIGHTS_URL} on a machine with network access, "
            f"then pass --fan-weights PATH or copy it to {default_fan_weights()})"
        )
    try:
        from face_alignment.models import FAN  # lazy: see the module docstring
    except ImportError as exc:
        raise EnvironmentProblem(f"the fan landmark backend needs the 'face-alignment' package ({exc})") from None
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise EnvironmentProblem(f"cannot read FAN weights {p}: {str(exc).splitlines()[0][:200]}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EnvironmentProblem(f"cannot read FAN weights {p}: not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    stacks = {int(m.group(1)) for k in state for m in [re.match(r"m(\d+)\.", k)] if m}
    if not stacks:
        raise EnvironmentProblem(f"cannot read FAN weights {p}: no hourglass modules (not a FAN checkpoint)")
    net = FAN(max(stacks) + 1)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise EnvironmentProblem(f"cannot load FAN weights {p}: {str(exc).splitlines()[0][:200]}") from None
    return net.to(device).eval()


def _min_side(box: np.ndarray, side: float) -> np.ndarray:
    # A degenerate box (e.g. from a failed fit) would make face_alignment's crop empty.
    c = (box[:2] + box[2:]) / 2.0
    half = np.maximum((box[2:] - box[:2]) / 2.0, side / 2.0)
    return np.r_[c - half, c + half]


class FanBackend:
    """FAN landmarks (face_alignment) on boxes from dlib, CPU or CUDA.

    The seam: any ``torch.nn.Module`` mapping a ``(N, 3, 256, 256)`` float tensor
    (RGB crops in [0, 1]) to ``(N, 68, 64, 64)`` heatmaps (or a list of such, the
    last used) can be injected with ``model=``; everything around it is
    face_alignment's own pre/post-processing, as in
    ``FaceAlignment.get_landmarks_from_image`` (1.5.0): box → centre/scale
    (``CENTER_Y_OFFSET``, ``REFERENCE_SCALE``), ``utils.crop`` to 256², optional
    left-right flip averaging (``utils.flip``), ``utils.get_preds_fromhm`` back to
    frame px. Without ``model``, the weights are loaded from ``weights`` or
    :func:`default_fan_weights` (never downloaded).

    Parameters
    ----------
    weights : str or path-like, optional, keyword-only
        FAN weights file (CLI ``--fan-weights PATH``).
    model : torch.nn.Module, optional, keyword-only
        Injected network (tests, other checkpoints); ``weights`` is then ignored.
    device : str, keyword-only
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    flip_input : bool, keyword-only
        Average with the prediction on the mirrored crop (face_alignment's default;
        2x the network time).
    boxes : DlibBackend, optional, keyword-only
        Where face boxes come from (default: a :class:`DlibBackend`), so no detector
        weights need downloading.

    Raises
    ------
    EnvironmentProblem
        face_alignment/torch missing, weights file missing or invalid, CUDA asked for
        but absent.

    References
    ----------
    Bulat & Tzimiropoulos 2017, "How far are we from solving the 2D & 3D Face
    Alignment problem?", Sec. 3–4.
    """

    name = "fan"

    def __init__(
        self,
        *,
        weights: str | os.PathLike | None = None,
        model: Any = None,
        device: str = "auto",
        flip_input: bool = True,
        boxes: DlibBackend | None = None,
    ) -> None:
        try:  # lazy: see the module docstring
            import torch
            from face_alignment import utils as fa_utils
        except ImportError as exc:
            raise EnvironmentProblem(f"the fan landmark backend needs torch and face-alignment ({exc})") from None
        self._torch = torch
        self._fa = fa_utils
        self.device = _resolve_device(device)
        self.flip_input = flip_input
        if model is None:
            model = load_fan_model(weights if weights is not None else default_fan_weights(), device=self.device)
        else:
            model = model.to(self.device).eval()
        self.model = model
        self._dtype = next((p.dtype for p in model.parameters()), torch.float32)
        self._boxes = boxes if boxes is not None else DlibBackend()
        # Constants of face_alignment 1.5 (utils); older releases hard-coded the same values.
        self._ref_scale = float(getattr(fa_utils, "REFERENCE_SCALE", 195.0))
        self._y_offset = float(getattr(fa_utils, "CENTER_Y_OFFSET", 0.12))

    def _centre_scale(self, box: np.ndarray) -> tuple[np.ndarray, float]:
        # Our box edges → face_alignment's [left, top, right, bottom] pixel indices (dlib rect).
        l, t, r, b = float(box[0]) + 0.5, float(box[1]) + 0.5, float(box[2]) - 0.5, float(box[3]) - 0.5
        centre = np.array([r - (r - l) / 2.0, b - (b - t) / 2.0])
        centre[1] -= (b - t) * self._y_offset
        return centre, (r - l + b - t) / self._ref_scale

    def fit_many(self, frame: np.ndarray, boxes: list[np.ndarray]) -> list[Face]:
        """Fit 68 points in each box with one batched network call.

        Parameters
        ----------
        frame : ndarray, shape (H, W, 3), uint8
            RGB frame.
        boxes : list of ndarray, shape (4,), float
            ``(x0, y0, x1, y1)`` frame px.

        Returns
        -------
        faces : list of Face
            One per box; ``score`` = mean of the 68 heatmap maxima.

        Raises
        ------
        ValueError
            The model's output is not (N, 68, 64, 64).

        References
        ----------
        Bulat & Tzimiropoulos 2017, Sec. 3 (heatmap regression, 4x sub-sampled output).
        """
        frame = check_frame(frame)
        if not boxes:
            return []
        torch, fa = self._torch, self._fa
        cs = [self._centre_scale(_min_side(np.asarray(b, dtype=np.float64), 16.0)) for b in boxes]
        crops = np.stack([fa.crop(frame, c, s).transpose(2, 0, 1) for c, s in cs]).astype(np.float32) / 255.0
        with torch.no_grad():
            inp = torch.from_numpy(crops).to(self.device, dtype=self._dtype)
            out = self._last(self.model(inp))
            if self.flip_input:
                out = out + fa.flip(self._last(self.model(fa.flip(inp))), is_label=True)
            heat = out.to(device="cpu", dtype=torch.float32).numpy()
        check_array(heat, "FAN heatmaps", shape=(len(boxes), N_POINTS, None, None))
        faces = []
        for i, (box, (centre, scale)) in enumerate(zip(boxes, cs)):
            res = fa.get_preds_fromhm(np.ascontiguousarray(heat[i : i + 1]), centre, scale)
            pts_img = np.asarray(res[1]).reshape(N_POINTS, 2)
            peaks = np.asarray(res[2]).reshape(-1) if len(res) > 2 else heat[i].reshape(N_POINTS, -1).max(axis=1)
            if self.flip_input:
                peaks = peaks / 2.0  # two summed heatmaps
            faces.append(Face(points=pts_img, box=np.asarray(box, dtype=np.float32), score=float(np.mean(peaks))))
        return faces

    @staticmethod
    def _last(out: Any) -> Any:
        return out[-1] if isinstance(out, (list, tuple)) else out

    def fit(self, frame: np.ndarray, box: np.ndarray) -> Face:
        """Fit 68 points in one box (see :meth:`fit_many`)."""
        return self.fit_many(frame, [np.asarray(box, dtype=np.float32)])[0]

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Boxes from dlib (:meth:`DlibBackend.detect_boxes`, with its fallbacks), landmarks from FAN; largest first."""
        frame = check_frame(frame)
        boxes, scores, _ = self._boxes.detect_boxes(frame)
        faces = self.fit_many(frame, boxes)
        for f, s in zip(faces, scores):
            f.score = s
        faces.sort(key=lambda f: -f.area)
        return faces

    def detect_near(self, frame: np.ndarray, box: np.ndarray) -> list[Face]:
        """Local dlib detection (:meth:`DlibBackend.detect_near`), landmarks from FAN."""
        found = self._boxes.detect_near(frame, box)
        faces = self.fit_many(frame, [f.box for f in found])
        for f, g in zip(faces, found):
            f.score = g.score
        return faces
