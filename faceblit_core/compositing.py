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
