"""The per-frame algorithm: a frame in, the frame with every face stylized out.

:class:`FrameStylizer` runs, for each frame: landmarks (tracked, smoothed) →
for each face, guides → StyleBlit → NNF denoising → voting → composite. What it
keeps from frame to frame is per clip (previous output and input frame, for the
temporal guide and the flow) and per face (a :class:`~faceblit_core.face_state.FaceTrack`:
last frame's kept synthesis and its flow-carried guide and mask, :mod:`faceblit_core.flow_carry`).

Three ways to synthesize a region, one method each:

* :meth:`FrameStylizer._background` — the whole frame (``background``), the
  largest face anchoring the positional guide, else scaling alone;
* :meth:`FrameStylizer._face_in_face_space` — the default: StyleBlit runs in the
  exemplar's frame and the result is warped back (:mod:`faceblit_core.warp`);
* :meth:`FrameStylizer._face_in_frame_space` — FaceBlit's original: StyleBlit on
  the frame region around the face.

References
----------
Texler et al. 2021, "FaceBlit: Instant Real-time Example-based Style Transfer to Facial Videos".
Sýkora et al. 2019, "StyleBlit: Fast Example-Based Stylization with Local Guidance".
Fišer et al. 2017, "Example-Based Synthesis of Stylized Facial Animations" (temporal guide).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from faceblit_core import occlusion, warp
from faceblit_core._runtime import Background
from faceblit_core.compositing import blend_original, composite
from faceblit_core.face_state import FaceTrack, PreparedExemplar
from faceblit_core.flow_carry import FlowCarry
from faceblit_core.config import StylizeConfig
from faceblit_core.checks import check
from faceblit_core.faces import Face, box_from_points, confidence, inter_ocular
from faceblit_core.faces.listing import make_tracker, skips_tracking
from faceblit_core.geometry import Region, active_picture
from faceblit_core.guides import (
    appearance_guide,
    background_anchors,
    fold_into_exemplar,
    face_mask,
    face_mask_outline,
    mask_to_gray,
    match_histogram,
    positional_guide,
    positional_to_rgb,
    temporal_guide,
)
from faceblit_core.guides.segmentation import keep_mask, paint_mouth_interior
from faceblit_core.media import write_image
from faceblit_core.synthesis import JitterTable, synthesize
from faceblit_core.temporal_state import (
    MEMORY_FRAMES,
    keep_threshold,
    reanchor_faces,
    refresh_mask,
    refresh_phases,
)

__all__ = ["FrameStylizer"]


#: Smallest side of a face's frame region that is stylized, px: below it the face is
#: (almost) out of the frame.
_MIN_REGION = 16
#: Smallest side of a region OpenCV's DIS flow is run on, px: DIS (fast preset: 8-px
#: patches from pyramid scale 2) crashes the process on thinner images.
_MIN_FLOW = 40


class FrameStylizer:
    """Per-frame part of the pipeline, holding the state that lives across frames.

    State: each exemplar on the device (:class:`PreparedExemplar`), the landmark tracker, the
    previous output (for the temporal guide), the previous frame (for the optical flow)
    and a :class:`FaceTrack` per face id. Use one instance per clip.

    Parameters
    ----------
    style : StyleAsset or None
        The exemplar of every face (:func:`faceblit_core.style.prepare_style`); None:
        only the faces of ``face_styles`` are stylized (not with ``background``).
    config : StylizeConfig
        All tunables.
    fps : float
        Frame rate of the clip (One Euro filter timing, ``boil`` timing).
    backend : LandmarkBackend
        Landmark detector/fitter (:func:`faceblit_core.faces.get_backend`).
    device : str
        torch device of the synthesis.
    save_guides : Path, optional
        Folder receiving each frame's guides as PNGs.
    face_styles : mapping of int to StyleAsset, keyword-only
        Exemplars of given face ids (the tracker's ids, :mod:`faceblit_core.faces.listing`),
        instead of ``style``. Each distinct exemplar is prepared once.
    only : frozenset of int, keyword-only
        Only these face ids are stylized (``--faces``); None = every face with an exemplar.
        The others are written unchanged.
    prepared : FrameStylizer, optional, keyword-only
        An earlier stylizer of the same exemplars, config and device: its prepared exemplars
        (device tensors, synthesis tables, all value-keyed) are reused — same results, no
        rebuild (the preview's stylizers, one per frame shown).
    """

    def __init__(self, style, config: StylizeConfig, *, fps: float, backend, device: str, save_guides: Path | None = None,
                 face_styles: Mapping[int, object] | None = None, only: frozenset[int] | None = None,
                 prepared: "FrameStylizer | None" = None) -> None:
        check(style is not None or face_styles, "style", "a StyleAsset, or face_styles", style)
        check(style is not None or not config.background, "style", "the background's exemplar when background is on", style)
        self.config = config
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.device = device
        self.save_guides = Path(save_guides) if save_guides is not None else None
        self.tracker = make_tracker(backend, config, fps=self.fps)
        self._jitter_seed = None
        self._jitter = None
        # One PreparedExemplar per distinct exemplar (by cache key): one mapped to several ids is prepared once.
        by_key: dict[str, PreparedExemplar] = {}
        if prepared is not None:
            by_key = {e.asset.key: e for e in (prepared.default, *prepared.face_exemplars.values()) if e is not None}

        def exemplar(asset) -> PreparedExemplar:
            if asset.key not in by_key:
                by_key[asset.key] = PreparedExemplar.prepare(asset, config, device)
            return by_key[asset.key]

        self.default = exemplar(style) if style is not None else None
        self.face_exemplars = {int(fid): exemplar(asset) for fid, asset in (face_styles or {}).items()}
        self.only = frozenset(only) if only is not None else None
        self._use(self.default or next(iter(self.face_exemplars.values())))
        self.prev_output: np.ndarray | None = None   # the synthesis' own output (temporal guide)
        self.prev_shown: np.ndarray | None = None    # what was returned (after keep / strength)
        self.prev_frame: np.ndarray | None = None
        self.tracks: dict[int, FaceTrack] = {}
        self.flow_carry = FlowCarry(follow=config.flow_follow, bound=config.flow_bound)
        # Graceful degradation (faceblit_core.faces.confidence): a fade state per face
        # id, how each frame was written, the raw landmark fits (occluders).
        self.fades: dict[int, confidence.FadeState] = {}
        self.frame_states: dict[str, int] = {}
        self.fade_reasons: dict[str, int] = {}
        self.frames_with_unselected = 0  # frames showing a face not selected, written as it is
        self.carry_resets = 0
        self.raw: dict[int, np.ndarray] = {}       # this frame's unsmoothed fits by face id
        self.prev_raw: dict[int, np.ndarray] = {}  # last frame's, of the faces it showed
        self._last_counts: tuple[list, list, int] = ([], [], 0)
        self._last_faces: list = []
        self.stage_ms: dict[str, float] = {}
        self.index = 0       # ABSOLUTE frame index of the next frame (start_at): every schedule is keyed on it
        self.scene_cuts = 0
        self._refresh_phases: dict[tuple[int, int], torch.Tensor] = {}   # kept-NNF refresh schedule per region size

    def start_at(self, index: int) -> None:
        """Number the next frame ``index`` of the clip (a render that starts mid-clip: a chunk, ``--frames``).

        Everything scheduled (re-detection, ``boil``, the restarts of the flow-carried
        chains, the refresh of the kept NNF) is keyed to this absolute index, so a
        render started ``MEMORY_FRAMES`` (plus smoothing) frames before t shows frame t
        as a render from frame 0 does. Call before the first frame.
        """
        self.index = int(index)
        self.tracker.start_at(index)

    def _use(self, exemplar: PreparedExemplar) -> None:
        """Make ``exemplar`` the one the synthesis steps read (``self.style``, ``self.lut_t``, …):
        set before each face is synthesized (each face id has its own exemplar)."""
        self.style, self.style_app_t, self.style_temp_t = exemplar.asset, exemplar.app_t, exemplar.temp_t
        self.style_image_t, self.lut_t, self.style_iod = exemplar.image_t, exemplar.lut_t, exemplar.iod
        self.face_image_t = exemplar.face_image_t
        self.style_region, self.style_identity, self.style_face = exemplar.region, exemplar.identity, exemplar.face
        self.interior_source, self.synthesis_cache = exemplar.interior_source, exemplar.synthesis_cache

    def exemplar_for(self, face_id: int):
        """The exemplar (StyleAsset) face ``face_id`` is stylized with, None when it is written unchanged."""
        found = self._exemplar_of(face_id)
        return found.asset if found is not None else None

    def _exemplar_of(self, face_id: int) -> PreparedExemplar | None:
        if self.only is not None and face_id not in self.only:
            return None
        return self.face_exemplars.get(face_id, self.default)

    def _tick(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + (t1 - t0) * 1000.0
        return t1

    def _jitter_for_frame(self):
        cfg = self.config
        seed = cfg.seed
        if cfg.boil > 0:
            seed = cfg.seed + int(math.floor(self.index / self.fps * cfg.boil))
        if seed != self._jitter_seed:
            self._jitter = JitterTable.create(seed, cfg.levels)
            self._jitter_seed = seed
        return self._jitter

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, list]:
        """Stylize one frame.

        Parameters
        ----------
        frame : (H, W, 3) uint8 RGB

        Returns
        -------
        out : (H, W, 3) uint8 RGB
            The frame with every face stylized (or the frame unchanged when no face
            was found and ``background`` is off).
        faces : list of Face
            The (tracked, smoothed) faces used; empty when none was found.
        """
        cfg = self.config
        if self.prev_output is not None and skips_tracking(frame, self.prev_frame, fade_frames=cfg.fade_frames):
            # A repeated input frame gets the same output (nothing moves while the video stands still).
            self._count_frame(*self._last_counts)
            self.index += 1
            return self.prev_shown.copy(), list(self._last_faces)
        t = time.perf_counter()
        # The tracker did not see the repeated frames skipped above: number this one by the
        # ABSOLUTE index, or its re-detection cadence (and a per-frame landmark file) would
        # fall behind by the repeats since the render started — a different count for a
        # render started mid-clip than for the one-piece render.
        self.tracker.start_at(self.index)
        faces = reanchor_faces(self.tracker.update(frame), self.tracker.last_raw, cfg.landmark_bound)
        t = self._tick("landmarks", t)
        if self.tracker.scene_cut_detected:
            # Nothing of the last shot may steer this one: temporal guide, flow, kept NNF.
            self.scene_cuts += 1
            self.prev_output = self.prev_frame = None
            for track in self.tracks.values():
                track.continued = False
            self.fades = {}
        H, W = frame.shape[:2]
        out = frame.copy()
        faces_sorted = sorted(faces, key=lambda f: -f.area)
        strengths, reasons, dropped = [], [], set()
        unselected = 0  # faces found but not stylized by choice (not selected, or without an exemplar)
        drawn: list[tuple[np.ndarray, Region]] = []  # landmarks and region of every face stylized
        picture = None
        if cfg.background:
            self._use(self.default)
            # Letterbox/pillarbox bars stay as they are: stylized, their edge rows were
            # mapped onto the exemplar's border and smeared into streaks (issue 12).
            picture = active_picture(frame)
            out[picture.y0 : picture.y1, picture.x0 : picture.x1] = self._background(frame, faces_sorted[0] if faces_sorted else None, picture)
            if faces_sorted:
                drawn.append((faces_sorted[0].points, Region.around(face_mask_outline(faces_sorted[0].points), margin=cfg.margin, frame_size=(W, H))))
            faces_sorted = faces_sorted[1:]
            strengths.append(1.0)
        synthesize_face = self._face_in_face_space if cfg.synthesis_space == "face" else self._face_in_frame_space
        raw = self.raw = {f.id: f.points for f in self.tracker.last_raw}
        ghosts = self._lost_faces(frame, {f.id for f in faces})
        lost = {g.id for g in ghosts}
        for face in faces_sorted + ghosts:
            exemplar = self._exemplar_of(face.id)
            if exemplar is None:
                unselected += 1
                continue  # not selected (--faces) or without an exemplar: written unchanged
            self._use(exemplar)
            if face.id in lost:
                strength, reason = confidence.fade_lost(self.fades[face.id], face.points, fade_frames=cfg.fade_frames)
            else:
                strength, reason = self._strength(face, raw.get(face.id, face.points), (W, H))
            # The mask reaches well above the brows (forehead ellipse): grow the region from its outline.
            region = Region.around(face_mask_outline(face.points), margin=cfg.margin, frame_size=(W, H))
            if min(region.width, region.height) < _MIN_REGION:
                strength, reason = 0.0, reason or "outside_frame"
            strengths.append(strength)
            reasons.append((strength, reason))
            if strength <= 0.0:
                # Faded out: the frame keeps the original face and nothing of this
                # face's state (kept NNF, flow-carried guide, temporal guide) is carried on.
                dropped.add(face.id)
                continue
            track = self.tracks.setdefault(face.id, FaceTrack())
            stylized, mask = synthesize_face(frame, face, region, track)
            t = time.perf_counter()
            composite(out, stylized, mask * np.float32(strength) if strength < 1.0 else mask, region)
            self._tick("composite", t)
            drawn.append((face.points, region))
        result = self._show_original(frame, out, drawn, picture)
        self._count_frame(strengths, reasons, unselected)
        self._last_counts, self._last_faces = (strengths, reasons, unselected), faces
        self.prev_output = out
        self.prev_shown = result
        self.prev_frame = frame
        shown = {f.id for f in faces + ghosts}
        kept = shown - dropped
        self.prev_raw = {fid: points for fid, points in raw.items() if fid in kept}
        self.fades = {k: v for k, v in self.fades.items() if k in shown and (k not in dropped or k in {f.id for f in faces})}
        # Per-face state lives only as long as its track (memory stays bounded); a face
        # faded out starts afresh.
        self.tracks = {fid: self.tracks[fid] if fid in self.tracks else FaceTrack() for fid in kept}
        for track in self.tracks.values():
            track.continued = True
        self.index += 1
        return result, faces

    def _show_original(self, frame: np.ndarray, out: np.ndarray, drawn: list[tuple[np.ndarray, Region]], picture: Region | None) -> np.ndarray:
        """The frame as returned: ``out`` with the input brought back where the user asks
        (``keep``: the named face parts; ``strength`` < 1: everywhere, linearly).

        Only what is shown changes: ``out`` itself (the synthesis' own result) stays the
        source of the next frame's temporal guide, so neither option changes the synthesis
        and ``strength`` s gives exactly ``s·out + (1 − s)·input`` (up to rounding).

        Parameters
        ----------
        drawn : list of ((68, 2) float32, Region)
            Landmarks (frame px) and region of every face composited into ``out``.
        picture : Region or None
            The stylized background's region (``background``), else None.

        Returns
        -------
        (H, W, 3) uint8
            ``out`` itself when neither option is set, else a blended copy.
        """
        cfg = self.config
        parts = cfg.keep_regions
        if not parts and cfg.strength >= 1.0:
            return out
        area = picture
        for _, region in drawn:  # the box holding every face's region (and the background)
            area = region if area is None else Region(min(area.x0, region.x0), min(area.y0, region.y0),
                                                      max(area.x1, region.x1), max(area.y1, region.y1))
        if area is None or area.is_empty:
            return out
        t = time.perf_counter()
        weight = np.full(area.shape, cfg.strength, np.float32)
        if parts:
            for points, region in drawn:
                kept = keep_mask(points, parts, region.shape, origin=region.origin)
                weight[region.y0 - area.y0 : region.y1 - area.y0, region.x0 - area.x0 : region.x1 - area.x0] *= 1.0 - kept
        shown = out.copy()
        blend_original(shown, frame, weight, area)
        self._tick("keep", t)
        return shown

    def _strength(self, face, raw: np.ndarray, frame_size: tuple[int, int]) -> tuple[float, str | None]:
        """This frame's stylization strength of ``face`` and why it is below 1 (:func:`faceblit_core.faces.confidence.update`).

        A face on the clip's first frame or after a scene cut starts at the
        strength its evidence allows; a face that appears later fades in.
        """
        fresh = face.id not in self.fades
        state = self.fades.setdefault(face.id, confidence.FadeState())
        if fresh and (self.index == 0 or self.prev_frame is None):
            state.strength = confidence.target_strength(
                confidence.measure(face.points, raw, None, self.style.landmarks, frame_size))[0]
        return confidence.update(state, face.points, raw, self.style.landmarks, frame_size, fade_frames=self.config.fade_frames)

    def _lost_faces(self, frame: np.ndarray, found: set[int]) -> list:
        """Faces shown last frame that the tracker lost now, moved along the optical flow.

        They fade out over ``fade_frames`` frames instead of vanishing in one
        (:func:`faceblit_core.faces.confidence.coast`); none after a scene cut.
        """
        if self.prev_frame is None or self.config.fade_frames <= 0:
            return []
        H, W = frame.shape[:2]
        ghosts = []
        for fid, state in self.fades.items():
            if fid in found or state.strength <= 0.0 or state.points is None:
                continue
            region = Region.around(face_mask_outline(state.points), margin=self.config.margin, frame_size=(W, H))
            if min(region.width, region.height) < _MIN_FLOW:
                continue
            points = confidence.coast(state.points, self.flow_carry.start(frame, self.prev_frame, region, forward=True).result(), (region.x0, region.y0))
            ghosts.append(Face(points=points, box=box_from_points(points), score=0.0, id=fid))
        return ghosts

    def _count_frame(self, strengths: list[float], reasons: list[tuple[float, str | None]], unselected: int) -> None:
        """Count this frame as stylized / faded / unchanged, with the reason of its weakest face.

        ``strengths``/``reasons`` are the stylized faces'; ``unselected`` the number of faces
        found but left as they are because the run does not stylize them: such a face is
        neither a missing face (``no_face``) nor a fade, so it is counted on its own
        (``frames_with_unselected``; reason ``unselected`` when no other face was there).
        """
        state = confidence.frame_state(strengths)
        self.frame_states[state] = self.frame_states.get(state, 0) + 1
        if unselected:
            self.frames_with_unselected += 1
        if state != "stylized":
            weakest = min(reasons, key=lambda sr: sr[0], default=(0.0, "unselected" if unselected else "no_face"))
            reason = weakest[1] or "recovering"
            self.fade_reasons[reason] = self.fade_reasons.get(reason, 0) + 1

    def _occluders(self, flow: Background | None, face, region: Region) -> np.ndarray | None:
        """What moves in front of the face on ``region`` (:func:`faceblit_core.occlusion.occluder_mask`), or None.

        Needs the face's optical flow and last frame's raw landmarks; call it before
        :meth:`_follow_flow`, which consumes the flow field.
        """
        track = self.tracks[face.id]
        if flow is None or not self.config.keep_occluders or face.id not in self.prev_raw or face.id not in self.raw:
            track.occluders = None   # nothing judged: nothing to carry on
            return None
        t = time.perf_counter()
        # The raw fits: the smoothed points lag a moving face, their motion is not the face's.
        now = self.raw[face.id]
        expected = occlusion.landmark_motion(now, self.prev_raw[face.id], region, grid=self.config.mls_grid)
        previous = None
        if track.occluders is not None and track.region is not None:
            # Last frame's occluders moved along the flow (a copy: the carry overwrites it).
            previous = np.nan_to_num(warp.carry_maps(flow.result().copy(), region, track.region, [track.occluders])[0], nan=0.0)
        found = occlusion.occluder_mask(flow.result(), expected, iod=max(1.0, inter_ocular(now)), within=occlusion.landmark_hull(now, region),
                                        previous=previous)
        track.occluders = found
        self._tick("occluders", t)
        return found

    def _use_temporal(self, continued: bool) -> bool:
        """Whether this frame's synthesis gets a temporal guide (from the previous output)."""
        return self.config.lambda_temp > 0 and self.prev_output is not None and continued

    # ----------------------------------------------------------- the three ways to synthesize
    def _background(self, frame: np.ndarray, face, region: Region) -> np.ndarray:
        """The picture ``region`` (the frame less letterbox bars, :func:`active_picture`)
        stylized (``background``): ``(h, w, 3) uint8``.

        ``face`` (the largest, or None) steers the positional guide, with anchors
        mapping the picture's borders to the exemplar's; without a face the picture maps
        onto the exemplar by scaling alone.
        """
        cfg, style = self.config, self.style
        t = time.perf_counter()
        if face is None:
            # No landmarks to steer by: map the region (the picture) onto the exemplar by scaling alone.
            ys, xs = np.mgrid[0 : region.height, 0 : region.width].astype(np.float32)
            g_pos = np.stack([xs * (style.width / region.width), ys * (style.height / region.height)], axis=-1)
        else:
            # The picture's bottom corners (not a letterbox bar's) pin the body; the
            # anchors' style side does not depend on where the picture starts.
            origin = np.array([region.x0, region.y0], dtype=np.float32)
            p, q = background_anchors(region.width, region.height, face.points - origin, style.landmarks, style.width, style.height)
            anchors = (p + origin, q)
            g_pos = positional_guide(face.points, style.landmarks, region=region, alpha=cfg.mls_alpha, grid=cfg.mls_grid, anchors=anchors)
            # Where the frame reaches past the painting, the painting continues mirrored
            # (clamped positions would repeat its border pixels as streaks).
            g_pos = fold_into_exemplar(g_pos, style.width, style.height)
        self._tick("guide_pos", t)
        continued = face is None or (face.id in self.tracks and self.tracks[face.id].continued)
        return self._synthesize_in_frame_space(frame, face, region, g_pos, None, use_temp=self._use_temporal(continued))

    def _face_in_face_space(self, frame: np.ndarray, face, region: Region, track: FaceTrack) -> tuple[np.ndarray, np.ndarray]:
        """One face synthesized in the exemplar's frame and warped onto ``region``.

        Returns the stylized region ``(h, w, 3) uint8`` and its mask ``(h, w) float32``
        (the face mask, cut to what the exemplar's region covers).
        """
        g_pos, mask, flow = self._face_guides(frame, face, region, track)
        stylized_face = self._synthesize_in_face_space(frame, face, track, use_temp=self._use_temporal(track.continued))
        occluders = self._occluders(flow, face, region)
        g_pos, mask = self._follow_flow(flow, track, region, g_pos, mask)
        t = time.perf_counter()
        stylized, covered = warp.face_space_to_frame(stylized_face, g_pos, self.style_region, feather=self.config.mask_feather)
        self._tick("warp_to_frame", t)
        self._paint_interior(stylized, frame, face, region, mask)
        # The frame's mask (skin found on the forehead) can reach past what the
        # exemplar's region covers; there the result would be smeared border pixels.
        mask = mask * covered
        if occluders is not None:
            mask = mask * (1.0 - occluders)
        if self.save_guides is not None:
            self._write_guides(face, {"pos": g_pos, "stylized": stylized, "mask": mask})
        return stylized, mask

    def _face_in_frame_space(self, frame: np.ndarray, face, region: Region, track: FaceTrack) -> tuple[np.ndarray, np.ndarray]:
        """One face synthesized on the frame ``region`` (seeds fixed on the screen, FaceBlit's original).

        Returns the stylized region ``(h, w, 3) uint8`` and its face mask ``(h, w) float32``.
        """
        g_pos, mask, flow = self._face_guides(frame, face, region, track)
        occluders = self._occluders(flow, face, region)
        g_pos, mask = self._follow_flow(flow, track, region, g_pos, mask)
        if occluders is not None:
            mask = mask * (1.0 - occluders)
        stylized = self._synthesize_in_frame_space(frame, face, region, g_pos, mask, use_temp=self._use_temporal(track.continued))
        self._paint_interior(stylized, frame, face, region, mask)
        return stylized, mask

    # ------------------------------------------------------------------------------ steps
    def _face_guides(self, frame: np.ndarray, face, region: Region, track: FaceTrack) -> tuple[np.ndarray, np.ndarray, Background | None]:
        """The face's landmark-based positional guide and mask on ``region``, and its optical flow started.

        The flow (None for a face new in this shot, or with ``flow_follow`` 0) runs
        in a thread meanwhile: face-space synthesis does not need it.
        """
        cfg, style = self.config, self.style
        t = time.perf_counter()
        g_pos = positional_guide(face.points, style.landmarks, region=region, alpha=cfg.mls_alpha, grid=cfg.mls_grid, anchors=None)
        t = self._tick("guide_pos", t)
        mask = face_mask(frame, face.points, region=region, feather=cfg.mask_feather)
        self._tick("mask", t)
        flow = None
        if cfg.flow_follow > 0 and track.continued and track.region is not None and min(region.width, region.height) >= _MIN_FLOW:
            flow = self.flow_carry.start(frame, self.prev_frame, region)
        return g_pos, mask, flow

    def _synthesize_in_frame_space(self, frame: np.ndarray, face, region: Region, g_pos: np.ndarray, mask: np.ndarray | None, *, use_temp: bool) -> np.ndarray:
        """Appearance and temporal guides of the frame ``region``, then StyleBlit and voting → ``(h, w, 3) uint8``."""
        cfg, style = self.config, self.style
        W = frame.shape[1]
        t = time.perf_counter()
        crop = frame[region.y0 : region.y1, region.x0 : region.x1]
        g_app = match_histogram(appearance_guide(crop), style.app_cdf, mask=(mask > 0.5) if mask is not None else None)
        t = self._tick("guide_app", t)
        g_temp = None
        if use_temp:
            prev_crop = self.prev_output[region.y0 : region.y1, region.x0 : region.x1]
            scale = inter_ocular(face.points) / self.style_iod if face is not None and self.style_iod > 0 else W / style.width
            g_temp = temporal_guide(prev_crop, sigma=max(0.5, cfg.temporal_blur * scale))
        self._tick("guide_temp", t)
        # A face copies the exemplar's face continued past its outline; the background the painting itself.
        image_t = self.face_image_t if mask is not None else self.style_image_t
        stylized = self._styleblit_and_vote(g_pos, g_app, g_temp, image_t, origin=(region.x0, region.y0))
        if self.save_guides is not None:
            self._write_guides(face, {"pos": g_pos, "app": g_app, "temp": g_temp, "mask": mask, "stylized": stylized})
        return stylized

    def _synthesize_in_face_space(self, frame: np.ndarray, face, track: FaceTrack, *, use_temp: bool) -> np.ndarray:
        """StyleBlit in the exemplar's frame: chunks stay on the face as it moves.

        The frame is warped onto the exemplar with the inverse MLS map (style landmarks
        → target landmarks) and StyleBlit runs there with the identity as positional
        guide (seeds fixed relative to the face); :func:`faceblit_core.warp.face_space_to_frame`
        brings the result back. Texture then moves with the face instead of jumping
        between screen-fixed chunks.

        Returns the stylized exemplar region ``(hs, ws, 3) uint8`` (``self.style_region``).
        """
        cfg, style, sr = self.config, self.style, self.style_region
        t = time.perf_counter()
        inverse = warp.face_space_maps(style.landmarks, face.points, sr, alpha=cfg.mls_alpha, grid=cfg.mls_grid)
        canonical = warp.warp_to_face_space(frame, inverse)
        t = self._tick("warp_to_face", t)
        g_app = match_histogram(appearance_guide(canonical), style.app_cdf, mask=self.style_face)
        t = self._tick("guide_app", t)
        g_temp = None
        if use_temp:
            g_temp = temporal_guide(warp.warp_to_face_space(self.prev_output, inverse), sigma=cfg.temporal_blur)
        self._tick("guide_temp", t)
        stylized_face = self._styleblit_and_vote(self.style_identity, g_app, g_temp, self.face_image_t, origin=(sr.x0, sr.y0), track=track)
        if self.save_guides is not None:
            self._write_guides(face, {"face_app": g_app, "face_temp": g_temp, "face_stylized": stylized_face})
        return stylized_face

    def _follow_flow(self, flow: Background | None, track: FaceTrack, region: Region, g_pos: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`FlowCarry.follow <faceblit_core.flow_carry.FlowCarry.follow>` for this frame and exemplar, timed and counted."""
        t = time.perf_counter()
        g_pos, mask, resets = self.flow_carry.follow(flow, track, region, g_pos, mask, index=self.index, style_iod=self.style_iod)
        self.carry_resets += resets
        if flow is not None:
            self._tick("flow", t)
        return g_pos, mask

    def _paint_interior(self, stylized: np.ndarray, frame: np.ndarray, face, region: Region, mask: np.ndarray) -> None:
        """The target's open mouth painted into ``stylized`` (in place) from the exemplar's texture
        (:func:`faceblit_core.guides.segmentation.paint_mouth_interior`)."""
        if self.interior_source is None:
            return
        t = time.perf_counter()
        crop = frame[region.y0 : region.y1, region.x0 : region.x1]
        local = face.points - np.array([region.x0, region.y0], dtype=np.float32)
        paint_mouth_interior(stylized, crop, local, self.interior_source, face=mask > 0.5)
        self._tick("interior", t)

    def _styleblit_and_vote(self, g_pos: np.ndarray, g_app: np.ndarray, g_temp: np.ndarray | None, image_t: torch.Tensor, *,
                            origin: tuple[int, int], track: FaceTrack | None = None) -> np.ndarray:
        """StyleBlit NNF of one region, NNF denoising and colour voting of ``image_t``'s pixels → (h, w, 3) uint8 RGB.

        With ``track`` (face-space synthesis of a tracked face) last frame's result of
        that face is kept where it still fits and only the rest is recomputed.
        """
        cfg = self.config
        t = time.perf_counter()
        previous = track.synthesis if track is not None and track.continued and cfg.keep_previous else None
        refresh = None
        if previous is not None:
            # Each kept entry is re-synthesized once every MEMORY_FRAMES frames (scattered
            # pixels, absolute index): the kept NNF forgets where a render started.
            shape = tuple(g_app.shape[:2])
            if shape not in self._refresh_phases:
                self._refresh_phases[shape] = torch.from_numpy(refresh_phases(shape, MEMORY_FRAMES, seed=cfg.seed)).to(self.style_app_t.device)
            refresh = refresh_mask(self._refresh_phases[shape], self.index, MEMORY_FRAMES, frames=max(1, self.index - track.index))
        result = synthesize(
            g_pos,
            g_app,
            self.style_app_t,
            self.lut_t,
            image_t,
            radius=cfg.blend_radius,
            denoise=cfg.denoise_nnf,
            previous=previous,
            keep_threshold=keep_threshold(cfg.threshold, cfg.keep_tolerance),
            origin=origin,
            jitter=self._jitter_for_frame(),
            threshold=cfg.threshold,
            lambda_pos=cfg.lambda_pos,
            lambda_app=cfg.lambda_app,
            lambda_temp=cfg.lambda_temp if g_temp is not None else 0.0,
            g_temp=g_temp,
            style_temp=self.style_temp_t if g_temp is not None else None,
            levels=cfg.levels,
            same_g_pos=track is not None,   # face space: g_pos is the fixed style_identity
            refresh=refresh,
            cache=self.synthesis_cache,
        )
        if track is not None:
            track.synthesis, track.index = result, self.index
        out = result.rgb.cpu().numpy()
        # Voting's share includes the copy to the host (on CUDA, the wait for the device).
        blit_ms = result.step_ms["styleblit"]
        self.stage_ms["styleblit"] = self.stage_ms.get("styleblit", 0.0) + blit_ms
        self._tick("voting", t + blit_ms / 1e3)
        return out

    def _write_guides(self, face, images: dict) -> None:
        """Write this frame's guides as PNGs: positional colour-coded, the rest as images."""
        self.save_guides.mkdir(parents=True, exist_ok=True)
        tag = f"frame{self.index:06d}_face{face.id if face is not None else 'bg'}"
        for name, image in images.items():
            if image is None:
                continue
            if name == "pos":
                image = positional_to_rgb(image, self.style.width, self.style.height)
            elif image.dtype != np.uint8:
                image = mask_to_gray(image)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            write_image(self.save_guides / f"{tag}_{name}.png", image, overwrite=True)
