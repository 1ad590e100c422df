"""StyleBlit synthesis and voting as vectorized torch (DESIGN §6), one code path for CPU and CUDA.

Every target pixel is decided independently (the parallel form of StyleBlit), so a
frame is a few dozen tensor operations per seed level on any device. The package,
one algorithm per module (each public function validates its arguments, then hands
them to a private fast solver chosen by one predicate):

* :mod:`.seeds` — :class:`JitterTable`, the jittered seed grids and nearest-seed maps;
* :mod:`.styleblit` — :func:`styleblit`: guides → nearest-neighbour field (NNF), style
  pixel per target pixel (:mod:`.tables`: its per-style device tables);
* :mod:`.denoise` — :func:`denoise_nnf`: FaceBlit's NNF denoising (most frequent
  relative offset in a window);
* :mod:`.vote` — :func:`vote`: colour = rounded mean of the window's votes ``style[NNF(p + d) − d]``;
* :mod:`.incremental` — :func:`synthesize`: the three in a row, frame to frame: last
  frame's matches kept while they fit (:func:`keep_previous_nnf`), only what changes recomputed;
* :mod:`.reference` — ``*_reference``: the same definitions as plain per-pixel Python
  loops, the specification every fast path is tested against;
* :mod:`.cache` — :class:`SynthesisCache`: the tables and seed maps kept from call to
  call, one object owned by whoever runs the synthesis (the stylizer), passed as
  ``cache=``; a call without one uses a fresh cache (same result, slower).

Exactness (binding, docs/ARCHITECTURE.md "synthesis")
-----------------------------------------------------
The vectorized functions equal their references bit for bit, and CPU equals CUDA:

* Seeds use integers only: ``seed = h·b + floor(h·j)``, which is exactly
  ``floor(h·(b + j))`` because ``h = 2^l`` makes ``h·j`` exact in float32.
* The error is evaluated in float32, in the documented order::

      e = λ_pos·(|Gx(p) − o.x|·(256/Ws) + |Gy(p) − o.y|·(256/Hs))
          + λ_app·|Ga(p) − Sa(o)| + λ_temp·(|ΔR| + |ΔG| + |ΔB|)/3

  with ``λ``, ``256/W`` and the threshold rounded to float32 once. Only IEEE
  add/sub/mul/abs/compare run on the device; the division of the temporal term
  (``/3``) is tabulated on the host for the 766 possible sums, because CUDA
  divides by a host scalar as a multiplication by its reciprocal.
* Positions are quantised exactly, ``x8 = clip(floor(x·256/W), 0, 255)`` of the
  real quotient (as :func:`faceblit_core.lut.quantize_position`, float64): the
  float64 quotient of a float32 position by the exact ``W/256`` never rounds
  across an integer, and it is divided on the device by a device tensor.
* Voting sums colours in integers and rounds half up.

Speed: the passes are bound by memory traffic, not by arithmetic: narrower dtypes
(float16 style guide, int16 counts in denoising), fewer passes and CPU tiles that
stay in the caches are what make them fast. Each module's notes name its tricks.

References
----------
Sýkora et al. 2019, "StyleBlit: Fast Example-Based Stylization with Local
Guidance", §3–4 (seeds on jittered grids of spacing 2^l, chunk copy u + (p − q),
acceptance threshold, blending by voting). Texler et al. 2021, "FaceBlit: Instant
Real-time Example-based Style Transfer to Facial Videos", §4 (lookup table,
λ_pos = 10, λ_app = 2, threshold 50, NNF denoising by the most frequent offset).
Fišer et al. 2017, "Example-Based Synthesis of Stylized Facial Animations", §3.3
(temporal guide).
"""

from faceblit_core.synthesis.cache import SynthesisCache
from faceblit_core.synthesis.denoise import denoise_nnf
from faceblit_core.synthesis.incremental import Synthesis, keep_previous_nnf, synthesize
from faceblit_core.synthesis.reference import denoise_nnf_reference, styleblit_reference, vote_reference
from faceblit_core.synthesis.seeds import JitterTable, clear_caches, make_jitter
from faceblit_core.synthesis.styleblit import styleblit
from faceblit_core.synthesis.tables import quantize_position_torch
from faceblit_core.synthesis.vote import vote

__all__ = [
    "JitterTable",
    "make_jitter",
    "quantize_position_torch",
    "styleblit",
    "styleblit_reference",
    "denoise_nnf",
    "denoise_nnf_reference",
    "vote",
    "vote_reference",
    "keep_previous_nnf",
    "Synthesis",
    "synthesize",
    "SynthesisCache",
    "clear_caches",
]
