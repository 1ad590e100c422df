"""The metrics' tunable numbers, one place (DESIGN §9): flow consistency, the
``style_nn`` patch sampling, masks, face matching, the landmark pairs of the
mouth and eye openings, ``sharp_ratio``'s scale and ``warp_spike``'s input floor.
"""

from __future__ import annotations






#: Forward-backward flow consistency, ``|f + b|² ≤ FB_ALPHA·(|f|² + |b|²) + FB_BETA`` (px²);
#: the constants of Sundaram et al. 2010 as used by Ruder et al. 2016.
FB_ALPHA = 0.01
FB_BETA = 0.5
#: Patch side of ``style_nn``, px at the working scale.
NN_PATCH = 7
#: Working scale of ``style_nn`` (both the output and the style are resized by it).
NN_SCALE = 0.5
#: Output patches sampled per clip for ``style_nn``.
NN_SAMPLES = 4000
#: A pixel belongs to the face for ``style_nn`` where the (feathered) mask is at least this.
MASK_THRESHOLD = 0.5
#: An output face matches the input face when their boxes overlap at least this much (IoU).
MATCH_IOU = 0.3
#: Feathering of the masks made by :func:`evaluate_pair` / :func:`style_face_mask`, px (FaceBlit: 20).
MASK_FEATHER = 20


#: Inner-lip point pairs (upper, lower) whose distances make the mouth opening (iBUG order).
MOUTH_PAIRS = ((61, 67), (62, 66), (63, 65))
#: Eyelid point pairs (upper, lower) of both eyes whose distances make the eye opening.
EYE_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
#: Inter-ocular distance the faces are rescaled to before ``sharp_ratio``'s Laplacian, px.
SHARP_IOD = 60.0
#: ``warp_spike``: a pair's input warping error counts as at least this × its clip median.
SPIKE_INPUT_FLOOR = 1.0
