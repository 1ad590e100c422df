"""Compositing: blend a stylized face region into a frame with its feathered mask (FaceBlit §4, DESIGN §2)."""

from __future__ import annotations

import cv2
import numpy as np

from faceblit_core.checks import check_array
from faceblit_core.geometry import Region


def composite(frame: np.ndarray, stylized: np.ndarray, mask: np.ndarray, region: Region) -> None:
    """Alpha-blend ``stylized`` over ``frame[region]`` in place: out = mask·stylized + (1 − mask)·frame.

    Parameters
    ----------
    frame : (H, W, 3) uint8 RGB
        The frame, modified in place inside ``region``.
    stylized : (h, w, 3) uint8 RGB
        The stylized region; ``(h, w)`` = ``(region.height, region.width)``.
    mask : (h, w) float32 in [0, 1]
        Feathered face mask (alpha), 1 = fully stylized.
    region : Region
        Where ``stylized`` lies in the frame, frame px, half-open.

    Raises
    ------
    ValueError
        When the shapes disagree (message gives expected and actual).

    References
    ----------
    Texler et al. 2021, "FaceBlit", §4 (blending the stylized face with a feathered mask).
    """
    h, w = region.height, region.width
    check_array(stylized, "stylized region", shape=(h, w, 3), dtype=np.uint8)
    check_array(mask, "face mask", shape=(h, w), dtype=np.float32)
    dst = frame[region.y0 : region.y1, region.x0 : region.x1]
    dst[...] = cv2.blendLinear(np.ascontiguousarray(stylized), np.ascontiguousarray(dst), mask, 1.0 - mask)


def blend_original(rendered: np.ndarray, frame: np.ndarray, weight: np.ndarray, region: Region) -> None:
    """Bring the original back where the user asks (``keep``, ``strength``), in place inside ``region``:
    ``rendered = weight·rendered + (1 − weight)·frame``.

    Parameters
    ----------
    rendered : (H, W, 3) uint8 RGB
        The stylized frame (faces composited); modified in place inside ``region``.
    frame : (H, W, 3) uint8 RGB
        The input frame.
    weight : (h, w) float32 in [0, 1]
        Share of the stylized frame on ``region``: ``strength`` × (1 − kept face parts);
        0 gives the input's pixel exactly, 1 leaves ``rendered`` as it is.
    region : Region
        Where ``weight`` lies in the frame, frame px, half-open.

    Raises
    ------
    ValueError
        When the shapes disagree.
    """
    check_array(rendered, "rendered frame", shape=(None, None, 3), dtype=np.uint8)
    check_array(frame, "frame", shape=rendered.shape, dtype=np.uint8)
    check_array(weight, "weight", shape=(region.height, region.width), dtype=np.float32)
    sl = (slice(region.y0, region.y1), slice(region.x0, region.x1))
    dst = rendered[sl]
    dst[...] = cv2.blendLinear(np.ascontiguousarray(dst), np.ascontiguousarray(frame[sl]), weight, 1.0 - weight)
