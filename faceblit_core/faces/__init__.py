"""Facial landmarks: detection, tracking, temporal smoothing and files (DESIGN §3).

Every face is described by 68 iBUG/dlib points in frame px (``docs/ARCHITECTURE.md``,
"faces"). The package, one room per concern (imports flow downwards only)::

    types.py      Face, the LandmarkBackend protocol, face-box geometry (no other faces module)
    io.py         landmark files: FaceBlit's 68-line text, JSON, per-frame JSON   (types)
    backends/     dlib.py, fan.py, file.py + the registry BACKENDS/get_backend   (types, io)
    tracking.py   FaceTracker, OneEuroFilter, LandmarkSmoother                    (types, backends.file)
    listing.py    the faces of a clip and their ids (faceblit faces), contact sheet (tracking, backends, confidence)
    confidence.py how far a tracked face can be trusted -> stylization strength  (no other faces module;
                  imported as ``from faceblit_core.faces import confidence``)

Landmark metrics (NME, jitter) live in :mod:`faceblit_core.evaluation`; drawing and
saving for ``faceblit landmarks`` beside the CLI (``cli/landmarks_drawing.py``).
This module re-exports the public names, so ``from faceblit_core.faces import X``
works for each of them.
"""

from __future__ import annotations

from faceblit_core.faces.backends import (
    BACKENDS,
    CNN_TO_HOG,
    DlibBackend,
    FanBackend,
    FrameLandmarksBackend,
    backend_names,
    detect_style_landmarks,
    get_backend,
)
from faceblit_core.faces.backends.fan import FAN_WEIGHTS_FILE, FAN_WEIGHTS_URL, default_fan_weights, load_fan_model
from faceblit_core.faces.io import (
    check_points_inside,
    load_frame_landmarks,
    load_landmarks,
    parse_landmarks_text,
    save_frame_landmarks,
    save_landmarks,
)
from faceblit_core.faces.listing import FaceEntry, FaceListing, contact_sheet, list_faces, track_faces
from faceblit_core.faces.tracking import FaceTracker, LandmarkSmoother, OneEuroFilter, similarity_to_points
from faceblit_core.faces.types import N_POINTS, Face, LandmarkBackend, box_from_points, box_iou, inter_ocular

__all__ = [
    "N_POINTS",
    "Face",
    "LandmarkBackend",
    "BACKENDS",
    "get_backend",
    "backend_names",
    "DlibBackend",
    "FanBackend",
    "FrameLandmarksBackend",
    "FaceTracker",
    "FaceListing",
    "FaceEntry",
    "list_faces",
    "track_faces",
    "contact_sheet",
    "OneEuroFilter",
    "LandmarkSmoother",
    "load_landmarks",
    "save_landmarks",
    "load_frame_landmarks",
    "save_frame_landmarks",
    "parse_landmarks_text",
    "check_points_inside",
    "detect_style_landmarks",
    "box_from_points",
    "box_iou",
    "inter_ocular",
    "similarity_to_points",
    "CNN_TO_HOG",
    "load_fan_model",
    "default_fan_weights",
    "FAN_WEIGHTS_FILE",
    "FAN_WEIGHTS_URL",
]
