"""Guides steering StyleBlit (DESIGN §4): positional, appearance, temporal, and the face mask.

Shapes and units follow docs/ARCHITECTURE.md: ``G_pos (h, w, 2) float32`` style px,
``G_app (h, w) uint8`` (128 = no detail), ``G_temp (h, w, 3) uint8``, mask
``(h, w) float32`` in [0, 1], all on a :class:`~faceblit_core.geometry.Region`
of the frame.
"""

from faceblit_core.guides.appearance import app_cdf, appearance_guide, match_histogram, stretch_contrast
from faceblit_core.guides.mask import continue_face_outward, face_mask, face_mask_outline, mask_to_gray, whole_face_mask
from faceblit_core.guides.positional import (
    background_anchors,
    fold_into_exemplar,
    interpolate_nodes,
    mls_similarity,
    positional_guide,
    positional_to_rgb,
)
from faceblit_core.guides.temporal import temporal_guide

__all__ = [
    "mls_similarity",
    "positional_guide",
    "background_anchors",
    "fold_into_exemplar",
    "positional_to_rgb",
    "interpolate_nodes",
    "appearance_guide",
    "stretch_contrast",
    "app_cdf",
    "match_histogram",
    "temporal_guide",
    "face_mask",
    "face_mask_outline",
    "whole_face_mask",
    "continue_face_outward",
    "mask_to_gray",
]
