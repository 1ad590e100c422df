"""Frame to frame: StyleBlit → (keep last frame's matches) → NNF denoising → voting of one region.

:func:`synthesize` runs the three steps for a region. Its two solvers, chosen by
whether last frame's result is given:

* :func:`_synthesize_dense` (no ``previous``: a first frame, a cut, a whole frame)
  chains the steps on packed positions: StyleBlit's padded style indices become
  denoising's packed NNF, and the denoised NNF voting's table indices, each written
  tile by tile while the tile is in cache; the (h, w, 2) NNFs of the result are laid
  out only when asked (:class:`_NNFMap`).
* :func:`_synthesize_update` (with ``previous``, over a fixed region: face space)
  evaluates only the pixels whose last match no longer fits (:func:`keep_previous_nnf`'s
  test) and what their change reaches (the ``pixels`` option of each step): about
  0.1 % of a face per frame.

References
----------
Sýkora et al. 2019, "StyleBlit", §3–4; Texler et al. 2021, "FaceBlit", §4; Fišer et
al. 2017, "Example-Based Synthesis of Stylized Facial Animations", §4 (temporal
coherence); DESIGN §6 and §4.3.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from faceblit_core.checks import check
from faceblit_core.synthesis._util import check_radius, device_of, flatnonzero, repack, to, unpack
from faceblit_core.synthesis.cache import SynthesisCache, fresh
from faceblit_core.synthesis.denoise import check_denoise_style, denoise_canvas, denoise_dense, denoise_nnf
from faceblit_core.synthesis.styleblit import BlitOptions, styleblit_packed
from faceblit_core.synthesis.tables import StyleTables
from faceblit_core.synthesis.vote import vote, vote_dense, voting

__all__ = ["keep_previous_nnf", "Synthesis", "synthesize"]


def keep_previous_nnf(
    nnf: torch.Tensor,
    prev_nnf: torch.Tensor,
    g_pos: Any,
    g_app: Any,
    style_app: torch.Tensor,
    *,
    threshold: float,
    lambda_pos: float = BlitOptions.lambda_pos,
    lambda_app: float = BlitOptions.lambda_app,
    refresh: torch.Tensor | None = None,
) -> torch.Tensor:
    """Keep last frame's NNF wherever it still meets ``threshold`` (and is not refreshed); take ``nnf`` elsewhere.

    The temporal counterpart of StyleBlit's acceptance test: a pixel whose previous
    exemplar pixel ``o = prev_nnf(p)`` still has guide error
    ``λ_pos·(|Gx(p) − o.x|·256/Ws + |Gy(p) − o.y|·256/Hs) + λ_app·|Ga(p) − Sa(o)|``
    below ``threshold`` keeps it, so chunks persist from frame to frame instead of
    flickering between near-equal matches (hysteresis: pass a threshold above the
    synthesis threshold). Meaningful when both NNFs are over the same region in the
    same coordinates — the face-space synthesis of :mod:`faceblit_core.pipeline`.

    Parameters
    ----------
    nnf, prev_nnf : (h, w, 2) int32 tensor
        This frame's and last frame's NNF, style px (x, y), inside the style.
    g_pos : (h, w, 2) float32
        Positional guide of the region, style px (x, y).
    g_app : (h, w) uint8
        Appearance guide of the region.
    style_app : (Hs, Ws) uint8 tensor
        Appearance guide of the exemplar, on ``nnf``'s device.
    threshold : float, keyword-only
        Keep where the error is below this, 8-bit guide units.
    lambda_pos, lambda_app : float, keyword-only
        Error weights (as :func:`styleblit`).
    refresh : (h, w) bool tensor, keyword-only, optional
        Pixels that take ``nnf`` whatever their previous error: the schedule that makes
        the kept NNF forget (:func:`faceblit_core.temporal_state.refresh_mask`).

    Returns
    -------
    (h, w, 2) int32 tensor
        On ``nnf``'s device.

    Raises
    ------
    ValueError
        When the NNF shapes differ.

    References
    ----------
    Sýkora et al. 2019, "StyleBlit", §3 (acceptance by guide error); Fišer et al. 2017,
    "Example-Based Synthesis of Stylized Facial Animations", §4 (temporal coherence).
    """
    check(tuple(nnf.shape) == tuple(prev_nnf.shape), "previous NNF shape", tuple(nnf.shape), tuple(prev_nnf.shape))
    keep = _keeps(prev_nnf, g_pos, g_app, style_app, threshold=threshold, lambda_pos=lambda_pos, lambda_app=lambda_app)
    if refresh is not None:
        check(tuple(refresh.shape) == tuple(nnf.shape[:2]), "refresh shape", tuple(nnf.shape[:2]), tuple(refresh.shape))
        keep &= ~refresh.to(keep.device)
    return torch.where(keep[..., None], prev_nnf, nnf)


def _keep_terms(nnf: torch.Tensor, gp: torch.Tensor, style_app: torch.Tensor,
                lambda_pos: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The parts of the keep test that depend on the NNF and G_pos only, float32, shaped ``nnf.shape[:-1]``:
    ``λ_pos·(|Gx − o.x|·256/Ws + |Gy − o.y|·256/Hs)`` and ``Sa(o)`` for ``o = nnf``."""
    hs, ws = style_app.shape
    # On whole (..., 2) planes: strided per-channel ops are several times slower.
    d = torch.sub(gp, nnf.to(torch.float32)).abs_().mul_(
        torch.tensor([256.0 / ws, 256.0 / hs], dtype=torch.float32, device=nnf.device))
    e_pos = torch.add(d[..., 0], d[..., 1]).mul_(lambda_pos)
    idx = nnf[..., 1] * ws + nnf[..., 0]
    sa = style_app.reshape(-1).index_select(0, idx.reshape(-1)).view(idx.shape).to(torch.float32)
    return e_pos, sa


def _keeps(prev_nnf: torch.Tensor, g_pos: Any, g_app: Any, style_app: torch.Tensor, *, threshold: float,
           lambda_pos: float, lambda_app: float, terms: tuple | None = None) -> torch.Tensor:
    """(h, w) bool: where the previous NNF's error is below ``threshold`` (:func:`keep_previous_nnf`).

    e = λ_pos·(|Gx − o.x|·256/Ws + |Gy − o.y|·256/Hs) + λ_app·|Ga − Sa(o)| in float32;
    ``terms`` = :func:`_keep_terms` of ``prev_nnf`` when already known.
    """
    dev = prev_nnf.device
    e_pos, sa = terms if terms is not None else _keep_terms(prev_nnf, torch.as_tensor(g_pos, device=dev), style_app,
                                                           lambda_pos)
    ga = torch.as_tensor(g_app, device=dev).to(torch.float32)
    return torch.add(e_pos, ga.sub_(sa).abs_().mul_(lambda_app)) < threshold


def _grow(pixels: torch.Tensor, r: int, hh: int, ww: int) -> torch.Tensor:
    """The region-linear pixels within Chebyshev distance ``r`` of ``pixels``, sorted, inside the region."""
    if r == 0 or pixels.numel() == 0:
        return pixels
    py = torch.div(pixels, ww, rounding_mode="floor")
    px = pixels - py * ww
    d = torch.arange(-r, r + 1, device=pixels.device)
    ys = (py[:, None, None] + d[None, :, None]).expand(-1, -1, 2 * r + 1)
    xs = (px[:, None, None] + d[None, None, :]).expand(-1, 2 * r + 1, -1)
    inside = (ys >= 0) & (ys < hh) & (xs >= 0) & (xs < ww)
    return torch.unique(ys[inside] * ww + xs[inside])


def _changed(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """(k,) bool: rows of ``new`` that differ from ``old`` (both (k, c))."""
    return (new != old).any(dim=1)


@dataclass(frozen=True)
class _KeepTerms:
    """:func:`_keep_terms` of a result's NNF (for ``lambda_pos``), carried to the next frame when the
    caller says its positional guide is unchanged (``same_g_pos``) and updated where the NNF changes."""

    lambda_pos: float
    e_pos: torch.Tensor
    sa: torch.Tensor


class _NNFMap:
    """An (h, w, 2) int32 NNF, or the packed positions it is unpacked from on first use.

    A whole-frame synthesis keeps its NNFs packed (``((y + off) << s) + x + off``, as the
    steps computed them): laying them out as (h, w, 2) costs a few ms per megapixel, and
    only the next frame's :func:`synthesize` (or a caller asking) needs them. The lock
    makes the first access safe from any thread (a result may be read by another).
    """

    def __init__(self, nnf: torch.Tensor | None = None, *, packed: torch.Tensor | None = None,
                 unpack: tuple[int, int, int] = (0, 0, 0), shape: tuple[int, int] = (0, 0)) -> None:
        self._nnf, self._packed, self._unpack, self._shape = nnf, packed, unpack, shape
        self._lock = threading.Lock()

    def get(self) -> torch.Tensor:
        with self._lock:
            if self._nnf is None:
                self._nnf = unpack(self._packed, *self._unpack).view(*self._shape, 2)
                self._packed = None
            return self._nnf


@dataclass(frozen=True)
class Synthesis:
    """One region's StyleBlit result, and what the next frame's :func:`synthesize` builds on.

    Attributes
    ----------
    nnf : (h, w, 2) int32 tensor
        StyleBlit NNF (after keeping the previous frame's matches), style px (x, y);
        laid out on first access.
    denoised : (h, w, 2) int32 tensor
        The NNF after denoising (the same tensor as ``nnf`` when denoising is off).
    rgb : (h, w, 3) uint8 tensor
        The voted colours.
    evaluated : int
        Pixels whose StyleBlit match was evaluated for this frame (h·w for a full run).
    voted : int
        Pixels whose colour was voted for this frame.
    step_ms : dict
        Wall time of the steps, ms: ``"styleblit"`` (with the keep test) and
        ``"voting"`` (with denoising). On CUDA the host does not wait for the
        device between steps, so the split there is only indicative.
    """

    rgb: torch.Tensor
    evaluated: int
    voted: int
    _nnf: _NNFMap = field(repr=False)
    _denoised: _NNFMap = field(repr=False)
    step_ms: dict = field(default_factory=dict)
    # The keep test's NNF-only terms for ``nnf``: the next frame, with the same G_pos
    # (face space, ``same_g_pos``), updates them only where the NNF changes.
    keep_terms: _KeepTerms | None = field(default=None, repr=False)

    @property
    def nnf(self) -> torch.Tensor:
        return self._nnf.get()

    @property
    def denoised(self) -> torch.Tensor:
        return self._denoised.get()


def synthesize(
    g_pos: Any,
    g_app: Any,
    style_app: Any,
    lut: Any,
    style_image: Any,
    *,
    radius: int = 1,
    denoise: bool = True,
    previous: Synthesis | None = None,
    keep_threshold: float = 400.0,
    same_g_pos: bool = False,
    refresh: torch.Tensor | None = None,
    cache: SynthesisCache | None = None,
    **styleblit_options: Any,
) -> Synthesis:
    """StyleBlit → (keep the previous frame's matches) → NNF denoising → voting for one region.

    Without ``previous`` this is :func:`styleblit`, :func:`denoise_nnf` (when
    ``denoise``) and :func:`vote`. With ``previous`` (last frame's result over the
    same region, in the same coordinates) the NNF is
    ``keep_previous_nnf(styleblit(...), previous.nnf, threshold=keep_threshold, refresh=refresh)``,
    and only what can differ from last frame is computed: StyleBlit at the pixels
    whose previous match fails ``keep_threshold``, denoising within ``radius`` of
    the NNF entries that changed, voting within ``radius`` of the denoised entries
    that changed. The result equals the full computation exactly; in face-space
    synthesis a frame typically evaluates well under 1 % of the region.

    Parameters
    ----------
    g_pos, g_app, style_app, lut
        As :func:`styleblit`.
    style_image : (Hs, Ws, 3) uint8
        The style exemplar (as :func:`vote`).
    radius : int, keyword-only
        Denoising and voting window radius r in [0, 8].
    denoise : bool, keyword-only
        Apply :func:`denoise_nnf` before voting.
    previous : Synthesis, optional, keyword-only
        Last frame's result over the same region (same shape); ``None`` for a first
        frame, a cut, or a region that moved in its own coordinates. It is
        *consumed*: the result reuses (and updates in place) its tensors, so do not
        use it, or arrays taken from it, afterwards.
    keep_threshold : float, keyword-only
        Keep a previous match while its error (positional and appearance terms, as
        :func:`keep_previous_nnf`) is below this, 8-bit guide units.
    same_g_pos : bool, keyword-only
        The caller's word that ``g_pos`` holds the same values as ``previous``'s frame
        (face space: the exemplar's identity guide). The keep test's positional terms
        are then carried over and updated only where the NNF changed, instead of
        recomputed over the region. Wrong when the guide changed: leave it False then.
    refresh : (h, w) bool tensor, optional, keyword-only
        With ``previous``: pixels re-synthesized whatever their keep test says (the
        schedule that makes the kept NNF forget, :func:`faceblit_core.temporal_state.refresh_mask`).
    cache : SynthesisCache, optional, keyword-only
        Per-style tables and seed maps kept from frame to frame (one style per cache;
        the stylizer owns one); a fresh one when absent (same result, slower).
    **styleblit_options
        Keyword options of :func:`styleblit` (``origin``, ``jitter``, ``threshold``,
        ``lambda_pos``, ``lambda_app``, ``lambda_temp``, ``g_temp``, ``style_temp``,
        ``levels``); ``lambda_pos``/``lambda_app`` also weigh the keep test.

    Returns
    -------
    Synthesis
        On the inputs' device.

    Raises
    ------
    ValueError
        As :func:`styleblit`, :func:`denoise_nnf` and :func:`vote`; a ``previous``
        of another shape.

    References
    ----------
    Sýkora et al. 2019, §3–4; Texler et al. 2021, §4; DESIGN §6 and §4.3.
    """
    r = check_radius(radius)
    device = device_of(g_pos, g_app, style_app, lut, style_image)
    sapp = to(style_app, device)
    opts = BlitOptions(**styleblit_options)
    cache = fresh(cache)
    t0 = time.perf_counter()
    if previous is None:
        return _synthesize_dense(g_pos, g_app, sapp, lut, style_image, r, denoise, opts, cache, t0)
    return _synthesize_update(g_pos, g_app, sapp, lut, style_image, r, denoise, opts, cache, t0,
                              previous=previous, keep_threshold=keep_threshold, same_g_pos=same_g_pos, refresh=refresh)


#: The incremental update denoises and votes pixel by pixel (index gathers, ~16x the cost
#: per pixel of the dense tiled steps, measured on 2 CPU cores): when the changed NNF
#: entries' windows could cover more than this share of the region, the dense steps run.
SPARSE_VOTE_SHARE = 1.0 / 16.0


def _synthesize_update(g_pos: Any, g_app: Any, sapp: torch.Tensor, lut: Any, style_image: Any, r: int,
                       denoise: bool, opts: BlitOptions, cache: SynthesisCache, t0: float, *,
                       previous: Synthesis, keep_threshold: float, same_g_pos: bool,
                       refresh: torch.Tensor | None = None) -> Synthesis:
    """:func:`synthesize` with ``previous``: each step only where its input can have changed.

    Denoising at p reads the NNF within r of p; voting reads the denoised NNF within r. So
    StyleBlit runs where the keep test fails, denoising within r of the NNF entries that
    changed, voting within r of the denoised entries that changed.
    """
    hh, ww = int(g_pos.shape[0]), int(g_pos.shape[1])
    Hs, Ws = int(sapp.shape[0]), int(sapp.shape[1])
    check(tuple(previous.nnf.shape) == (hh, ww, 2), "previous synthesis shape", (hh, ww, 2),
          tuple(previous.nnf.shape))
    lam_pos = opts.lambda_pos
    gp = to(g_pos, sapp.device)
    terms = previous.keep_terms
    if not same_g_pos or terms is None or terms.lambda_pos != lam_pos:
        terms = _KeepTerms(lam_pos, *_keep_terms(previous.nnf, gp, sapp, lam_pos))
    keep = _keeps(previous.nnf, gp, g_app, sapp, threshold=keep_threshold, lambda_pos=lam_pos,
                  lambda_app=opts.lambda_app, terms=(terms.e_pos, terms.sa))
    if refresh is not None:
        check(tuple(refresh.shape) == (hh, ww), "refresh shape", (hh, ww), tuple(refresh.shape))
        keep &= ~refresh.to(keep.device)
    redo = flatnonzero(keep.reshape(-1), False)
    # Updated in place (``previous`` is consumed): copying the maps costs more than the update.
    nnf, den, rgb = previous.nnf, previous.denoised, previous.rgb
    flat = nnf.view(-1, 2)
    changed = redo[:0]
    if redo.numel():
        blit = styleblit_packed(gp, g_app, sapp, lut, replace(opts, pixels=redo), cache)
        new = unpack(blit.res, blit.st.s, blit.st.Wp - 1, blit.st.P)
        changed = redo[_changed(new, flat.index_select(0, redo))]
        flat.index_copy_(0, redo, new)
    if changed.numel():
        e_c, sa_c = _keep_terms(flat.index_select(0, changed), gp.reshape(-1, 2).index_select(0, changed), sapp, lam_pos)
        terms.e_pos.view(-1).index_copy_(0, changed, e_c)
        terms.sa.view(-1).index_copy_(0, changed, sa_c)
    t1 = time.perf_counter()
    if changed.numel() * (2 * r + 1) ** 2 > hh * ww * SPARSE_VOTE_SHARE:
        # Many changes (a re-anchored frame): the dense steps are cheaper than per-pixel updates.
        den = denoise_nnf(nnf, style_shape=(Hs, Ws), radius=r, cache=cache) if denoise and r > 0 else nnf
        rgb = vote(den, style_image, radius=r, cache=cache)
        nnf_map = _NNFMap(nnf)
        return Synthesis(rgb=rgb, evaluated=int(redo.numel()), voted=hh * ww,
                         step_ms=_steps(t0, t1, time.perf_counter()), keep_terms=terms, _nnf=nnf_map,
                         _denoised=nnf_map if den is nnf else _NNFMap(den))
    if denoise and r > 0:
        dflat = den.view(-1, 2)
        redo_d = _grow(changed, r, hh, ww)
        changed = redo_d
        if redo_d.numel():
            new = denoise_nnf(nnf, style_shape=(Hs, Ws), radius=r, pixels=redo_d, cache=cache)
            changed = redo_d[_changed(new, dflat.index_select(0, redo_d))]
            dflat.index_copy_(0, redo_d, new)
    revote = _grow(changed, r, hh, ww)
    if revote.numel():
        rgb.view(-1, 3).index_copy_(0, revote, vote(den, style_image, radius=r, pixels=revote, cache=cache))
    nnf_map = _NNFMap(nnf)
    return Synthesis(rgb=rgb, evaluated=int(redo.numel()), voted=int(revote.numel()),
                     step_ms=_steps(t0, t1, time.perf_counter()), keep_terms=terms, _nnf=nnf_map,
                     _denoised=nnf_map if den is nnf else _NNFMap(den))


def _synthesize_dense(g_pos: Any, g_app: Any, sapp: torch.Tensor, lut: Any, style_image: Any, r: int, denoise: bool,
                      opts: BlitOptions, cache: SynthesisCache, t0: float) -> Synthesis:
    """:func:`synthesize` without ``previous``: the steps chained on packed positions, each step's
    input written by the previous step tile by tile while it is in cache; the NNFs stay packed."""
    device = sapp.device
    Hs, Ws = int(sapp.shape[0]), int(sapp.shape[1])
    hh, ww = int(g_pos.shape[0]), int(g_pos.shape[1])
    vs = voting(style_image, r, device, cache)
    lin = torch.empty((hh, ww), dtype=torch.int32, device=device)   # vote input: y·wpad + x + lin_add
    denoise = denoise and r > 0
    if denoise:
        check_denoise_style(Hs, Ws)
        cv = denoise_canvas(hh, ww, r, device, cache)
        pk = torch.zeros(cv.n, dtype=torch.int32, device=device)
        pk_rows = cv.region(pk)

    def blit_tile(r0: int, r1: int, res: torch.Tensor, st: StyleTables) -> None:
        rows = res.view(r1 - r0, ww)
        if denoise:      # ((y + P) << s) + x + P  →  ((y + r) << 16) + x + r
            pk_rows[r0:r1] = repack(rows, st.s, st.Wp - 1, 1 << 16, (r - st.P) * ((1 << 16) + 1))
        else:
            lin[r0:r1] = repack(rows, st.s, st.Wp - 1, vs.wpad, vs.lin_add - st.P * (vs.wpad + 1))

    def denoise_tile(t0: int, t1: int, rows: torch.Tensor) -> None:
        lin[t0:t1] = repack(rows, 16, 0xFFFF, vs.wpad, vs.lin_add - r * (vs.wpad + 1))

    blit = styleblit_packed(g_pos, g_app, sapp, lut, opts, cache, emit=blit_tile)
    st = blit.st
    nnf = _NNFMap(packed=blit.res, unpack=(st.s, st.Wp - 1, st.P), shape=(hh, ww))
    t1 = time.perf_counter()
    den = nnf
    if denoise:
        den = _NNFMap(packed=denoise_dense(pk, cv, Hs, Ws, None, emit=denoise_tile), unpack=(16, 0xFFFF, r),
                      shape=(hh, ww))
    rgb = vote_dense(lin, vs, None)
    return Synthesis(rgb=rgb, evaluated=hh * ww, voted=hh * ww, step_ms=_steps(t0, t1, time.perf_counter()),
                     _nnf=nnf, _denoised=den)


def _steps(t0: float, t1: float, t2: float) -> dict:
    """``Synthesis.step_ms`` from the start, the end of StyleBlit and the end of voting (perf_counter s)."""
    return {"styleblit": (t1 - t0) * 1e3, "voting": (t2 - t1) * 1e3}
