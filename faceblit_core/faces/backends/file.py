"""The per-frame file backend: replays landmarks saved earlier, for reproducible renders.

``get_backend("clip.landmarks.json")`` returns a :class:`FrameLandmarksBackend` for a
file written by :func:`~faceblit_core.faces.io.save_frame_landmarks` (the format is
described in :mod:`faceblit_core.faces.io`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faceblit_core.errors import StyleError
from faceblit_core.faces.io import load_frame_landmarks
from faceblit_core.faces.types import Face, box_iou

__all__ = ["FrameLandmarksBackend"]

class FrameLandmarksBackend:
    """Replays a per-frame landmark file (:func:`~faceblit_core.faces.io.save_frame_landmarks`), for reproducible renders.

    :class:`~faceblit_core.faces.tracking.FaceTracker` recognises it and returns the stored faces of each frame
    unchanged (no tracking, no smoothing, ids from the file). Used directly,
    ``detect`` returns the faces of the next frame in order (the n-th call gets
    frame n) and ``fit`` the stored face of the current frame that overlaps the
    box most.

    Parameters
    ----------
    path : str or path-like
        JSON ``{"frames": [[{"points", "box", "score", "id"}, ...], ...]}``.

    Raises
    ------
    InputError
        Missing file.
    StyleError
        Malformed file.
    """

    name = "file"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.frames = load_frame_landmarks(self.path)
        self._cursor = 0

    def __len__(self) -> int:
        return len(self.frames)

    def faces_at(self, index: int) -> list[Face]:
        """Copies of the stored faces of frame ``index``.

        Raises
        ------
        StyleError
            The file has no entry for that frame.
        """
        if not 0 <= index < len(self.frames):
            raise StyleError(f"{self.path}: has landmarks for {len(self.frames)} frames, frame {index} asked for")
        return [f.copy() for f in self.frames[index]]

    def detect(self, frame: np.ndarray) -> list[Face]:
        """The stored faces of the next frame in order (``frame`` is not looked at)."""
        faces = self.faces_at(self._cursor)
        self._cursor += 1
        return faces

    def fit(self, frame: np.ndarray, box: np.ndarray) -> Face:
        """The stored face of the frame last returned by :meth:`detect` that overlaps ``box`` most.

        Raises
        ------
        StyleError
            That frame has no face.
        """
        index = max(0, self._cursor - 1)
        faces = self.faces_at(index)
        if not faces:
            raise StyleError(f"{self.path}: frame {index} has no face to fit")
        return max(faces, key=lambda f: box_iou(f.box, np.asarray(box, dtype=np.float32)))

