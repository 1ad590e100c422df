"""Quality metrics of a stylized clip, measured rather than eyeballed (DESIGN §9).

Figures comparing an output with its input (and the style exemplar):

``warp_ratio`` — temporal stability
    Warping error of the output, mean ``|O_t − warp(O_{t−1})|`` over the face,
    divided by the same error of the input; the warp comes from optical flow of
    the INPUT frames. 1.0 = exactly as stable as the source; > 1 = the output
    flickers more than the source moves. FaceBlit's own published clips: 6.8–8.0.
``struct_nme`` — structure / identity
    68 landmarks re-detected on the output (each frame on its own) against the
    ones detected on the input, mean point error / inter-ocular distance.
    0 = the face is where it was. FaceBlit's clips: 0.031–0.053.
``style_nn`` — style fidelity
    Mean distance from the output's face patches (7×7 RGB at half scale) to
    their nearest patch of the style's face. Lower = more of the exemplar's own
    texture. See :func:`style_nn` for the unit and measured reference values.

Five more from the same landmarks and warping errors (issues 14 and 18):

``expr_err`` — expression kept
    Mean over frames of ``|mouth_out − mouth_in| + |eyes_out − eyes_in|``, the
    inner-lip and eyelid openings per inter-ocular distance. 0 = same expression.
``drift`` — faithful over time
    ``struct_nme`` over the last third of the clip / over its first third. 1.0 = no drift.
``sharp_ratio`` — crispness
    Mean |Laplacian| of the output's face over the exemplar's face, both at 60 px
    eye distance. 1.0 = strokes as crisp as the painting's.
``warp_spike`` — break-ups
    Largest per-frame-pair warping-error ratio over its median (the input's error
    floored at its clip median: repeated input frames). 1 = even.
``redetect_rate`` — still a face
    Fraction of the frames with an input face where the output's face is re-found.

:func:`evaluate_pair` measures all of them on two media files in one streaming
pass (``scripts/evaluate.py IN OUT --style S`` prints them as ``key=value``).
The lower-level functions take in-memory frame sequences.

The package's modules, one way (each imports only those above it):
:mod:`~faceblit_core.evaluation.constants` (the tunable numbers),
:mod:`~faceblit_core.evaluation.warping` (``warp_ratio``, ``warp_spike``),
:mod:`~faceblit_core.evaluation.landmarks` (``struct_nme``, ``nme``, ``expr_err``,
``drift``, ``redetect_rate``, mouth/eye openings),
:mod:`~faceblit_core.evaluation.texture` (``style_nn``, ``sharp_ratio``),
:mod:`~faceblit_core.evaluation.run` (``evaluate_pair``, ``evaluate_outputs``).
"""

from faceblit_core.evaluation.constants import (
    EYE_PAIRS,
    FB_ALPHA,
    FB_BETA,
    MASK_FEATHER,
    MASK_THRESHOLD,
    MATCH_IOU,
    MOUTH_PAIRS,
    NN_PATCH,
    NN_SAMPLES,
    NN_SCALE,
    SHARP_IOD,
    SPIKE_INPUT_FLOOR,
)
from faceblit_core.evaluation.warping import WarpErrors, WarpSpike, warp_errors, warp_ratio, warp_spike, warp_spike_stats
from faceblit_core.evaluation.landmarks import (
    ExprErr,
    StructNME,
    drift,
    expr_err,
    expr_err_stats,
    eye_opening,
    landmark_jitter,
    mouth_opening,
    nme,
    redetect_rate,
    struct_nme,
    struct_nme_stats,
)
from faceblit_core.evaluation.texture import face_sharpness, sharp_ratio, style_face_mask, style_nn
from faceblit_core.evaluation.run import evaluate_outputs, evaluate_pair

__all__ = [
    "WarpErrors",
    "StructNME",
    "warp_errors",
    "warp_ratio",
    "struct_nme_stats",
    "struct_nme",
    "nme",
    "landmark_jitter",
    "style_face_mask",
    "style_nn",
    "ExprErr",
    "WarpSpike",
    "mouth_opening",
    "eye_opening",
    "expr_err_stats",
    "expr_err",
    "drift",
    "redetect_rate",
    "face_sharpness",
    "sharp_ratio",
    "warp_spike_stats",
    "warp_spike",
    "evaluate_pair",
    "evaluate_outputs",
    "MOUTH_PAIRS",
    "EYE_PAIRS",
    "SHARP_IOD",
    "SPIKE_INPUT_FLOOR",
    "FB_ALPHA",
    "FB_BETA",
    "NN_PATCH",
    "NN_SCALE",
    "NN_SAMPLES",
    "MASK_THRESHOLD",
    "MATCH_IOU",
    "MASK_FEATHER",
]
