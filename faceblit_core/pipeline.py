"""The whole job: decode → landmarks → guides → StyleBlit → voting → composite → encode.

:func:`stylize_video` and :func:`stylize_image` are what the CLI's ``stylize``
calls; :func:`stylize_batch` adds the several-inputs behaviour (continue past a
bad file, report it, fail at the end). Frames stream through: memory does not
grow with the clip's length. Decoding and encoding run in their own threads (and
ffmpeg processes), so they overlap the synthesis of the current frame.

References
----------
Texler et al. 2021, "FaceBlit: Instant Real-time Example-based Style Transfer to Facial Videos".
Sýkora et al. 2019, "StyleBlit: Fast Example-Based Stylization with Local Guidance".
Fišer et al. 2017, "Example-Based Synthesis of Stylized Facial Animations" (temporal guide).
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from faceblit_core.config import StylizeConfig
from faceblit_core.errors import ConfigError, EnvironmentProblem, FaceblitError, Interrupted, OutputError, UsageError
from faceblit_core.faces import inter_ocular
from faceblit_core.media import IMAGE_EXTENSIONS


@dataclass
class RunSummary:
    """What one ``stylize`` run did (printed by the CLI, ``--json`` gives :meth:`to_dict`).

    Two clocks: ``seconds`` is the whole run of this input, start-up included
    (probing, landmark models, the writer's ffmpeg; for the first input of a batch
    also the style preparation and whatever the caller counted before, see
    :func:`stylize_batch`), ``render_seconds`` only the frames (decode → stylize →
    encode, until the output is complete). :attr:`fps` uses the latter.
    """

    input: str
    output: str
    frames: int = 0
    frames_with_face: int = 0
    frames_without_face: int = 0
    max_faces: int = 0
    scene_cuts: int = 0
    fps_in: float = 0.0
    seconds: float = 0.0
    render_seconds: float = 0.0
    device: str = "cpu"
    stage_ms: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """Frames per second of the rendering alone (start-up not included)."""
        return self.frames / self.render_seconds if self.render_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fps"] = round(self.fps, 3)
        d["seconds"] = round(self.seconds, 3)
        d["render_seconds"] = round(self.render_seconds, 3)
        d["stage_ms"] = {k: round(v, 3) for k, v in self.stage_ms.items()}
        return d

    def describe(self) -> str:
        return (
            f"{self.output}: {self.frames} frame(s), face on {self.frames_with_face}, "
            f"no face on {self.frames_without_face} (written unchanged), {self.fps:.1f} fps on {self.device} "
            f"(rendering only; {self.seconds:.1f} s in all with start-up)"
        )


def parse_frame_range(text: str) -> tuple[int, int | None]:
    """Parse ``START:END`` (0-based, END exclusive, either may be empty) into ``(start, end)``.

    Raises
    ------
    ConfigError
        When the text is not two non-negative integers with START < END.
    """
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        end = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise ConfigError(f"frames: expected START:END with integers (e.g. 0:50), got {text!r}") from None
    if start < 0 or (end is not None and end <= start):
        raise ConfigError(f"frames: expected 0 <= START < END, got {text!r}")
    return start, end


def resolve_device(name: str) -> str:
    """Map ``auto | cpu | cuda | cuda:N`` to a torch device string.

    Raises
    ------
    EnvironmentProblem
        ``cuda`` was asked for and torch sees no CUDA device (``auto`` falls back to the CPU).
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EnvironmentProblem(f"--device {name}: torch sees no CUDA device on this machine; use --device cpu or --device auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise EnvironmentProblem(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return name


def default_output_path(input_path: str | os.PathLike, style_path: str | os.PathLike, *, out_dir: str | os.PathLike | None = None) -> Path:
    """``NAME-STYLE.EXT`` next to the input (or in ``out_dir``); an image keeps its
    extension (every one of :data:`faceblit_core.media.IMAGE_EXTENSIONS` is written), videos become ``.mp4``."""
    src = Path(input_path)
    ext = src.suffix.lower() if src.suffix.lower() in IMAGE_EXTENSIONS else ".mp4"
    name = f"{src.stem}-{Path(style_path).stem}{ext}"
    return (Path(out_dir) if out_dir is not None else src.parent) / name


# ------------------------------------------------------------------------- frame stylizer
class FrameStylizer:
    """Per-frame part of the pipeline, holding the state that lives across frames.

    State: the style asset on the device, the landmark tracker, the previous output
    (for the temporal guide) and which face ids it showed. Use one instance per clip.

    Parameters
    ----------
    style : StyleAsset
        The exemplar with its guides and lookup table (:func:`faceblit_core.style.prepare_style`).
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
    """

    def __init__(self, style, config: StylizeConfig, *, fps: float, backend, device: str, save_guides: Path | None = None) -> None:
        import torch

        from faceblit_core.faces import FaceTracker
        from faceblit_core.guides.temporal import temporal_guide
        from faceblit_core.synthesis import JitterTable, SynthesisCache

        self.style = style
        self.config = config
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.device = device
        self.save_guides = Path(save_guides) if save_guides is not None else None
        self.tracker = FaceTracker(
            backend,
            detect_every=config.detect_every,
            max_faces=config.max_faces,
            min_cutoff=config.smooth_min_cutoff,
            beta=config.smooth_beta,
            scene_cut=config.scene_cut,
            fps=self.fps,
        )
        self._make_jitter = JitterTable.create
        self._jitter_seed = None
        self._jitter = None
        dev = torch.device(device)
        self.style_app_t = torch.from_numpy(np.ascontiguousarray(style.app)).to(dev)
        self.style_temp_t = torch.from_numpy(np.ascontiguousarray(style.temp)).to(dev)
        self.style_image_t = torch.from_numpy(np.ascontiguousarray(style.image)).to(dev)
        self.lut_t = torch.from_numpy(np.ascontiguousarray(style.lut)).to(dev)
        self.style_iod = inter_ocular(style.landmarks)
        # Face-space synthesis works on a fixed region of the exemplar around its face.
        from faceblit_core.geometry import Region
        from faceblit_core.guides.mask import face_mask, face_mask_outline

        # Only what the face mask can show is synthesized: its outline plus the feather
        # and the voting window (the frame-space margin is for the MLS and tracking slack).
        pad = (config.mask_feather // 2 + config.blend_radius + 2) / max(1.0, float(np.ptp(style.landmarks[:, 1])))
        self.style_region = Region.around(face_mask_outline(style.landmarks), margin=pad, frame_size=(style.width, style.height))
        sr = self.style_region
        ys, xs = np.mgrid[sr.y0 : sr.y1, sr.x0 : sr.x1].astype(np.float32)
        self.style_identity = np.ascontiguousarray(np.stack([xs, ys], axis=-1))
        self.style_face = face_mask(style.image, style.landmarks, region=sr, feather=config.mask_feather) > 0.5
        self.prev_output: np.ndarray | None = None
        self.prev_ids: set[int] = set()
        self.prev_synthesis: dict = {}
        self.synthesis_cache = SynthesisCache()   # this clip's style tables and seed maps
        self.prev_guides: dict = {}
        self.prev_frame: np.ndarray | None = None
        self._flow = None
        self.stage_ms: dict[str, float] = {}
        self.index = 0
        self.scene_cuts = 0
        self._temporal_guide = temporal_guide

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
            self._jitter = self._make_jitter(seed, cfg.levels)
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
        from faceblit_core.compositing import composite
        from faceblit_core.geometry import Region
        from faceblit_core.guides.mask import face_mask_outline

        cfg = self.config
        t = time.perf_counter()
        faces = self.tracker.update(frame)
        t = self._tick("landmarks", t)
        if self.tracker.scene_cut_detected:
            # Nothing of the last shot may steer this one: temporal guide, flow, kept NNF.
            self.scene_cuts += 1
            self.prev_output = self.prev_frame = None
            self.prev_ids = set()
        H, W = frame.shape[:2]
        out = frame.copy()
        faces_sorted = sorted(faces, key=lambda f: -f.area)
        if cfg.background:
            main = faces_sorted[0] if faces_sorted else None
            # Letterbox/pillarbox bars stay as they are: stylized, their edge rows were
            # mapped onto the exemplar's border and smeared into streaks (issue 12).
            picture = active_picture(frame)
            stylized, _ = self._synthesize(frame, main, picture, background=True)
            out[picture.y0 : picture.y1, picture.x0 : picture.x1] = stylized
            faces_sorted = faces_sorted[1:]
        for face in faces_sorted:
            # The mask reaches well above the brows (forehead ellipse): grow the region from its outline.
            region = Region.around(face_mask_outline(face.points), margin=cfg.margin, frame_size=(W, H))
            if region.width < 2 or region.height < 2:
                continue
            stylized, mask = self._synthesize(frame, face, region, background=False)
            t = time.perf_counter()
            composite(out, stylized, mask, region)
            self._tick("composite", t)
        self.prev_output = out
        self.prev_frame = frame
        self.prev_ids = {f.id for f in faces}
        # Per-face state lives only as long as its track (memory stays bounded).
        self.prev_synthesis = {k: v for k, v in self.prev_synthesis.items() if k in self.prev_ids}
        self.prev_guides = {k: v for k, v in self.prev_guides.items() if k in self.prev_ids}
        self.index += 1
        return out, faces

    def _synthesize(self, frame: np.ndarray, face, region, *, background: bool):
        """Guides → StyleBlit → voting for one region; returns (stylized (h,w,3) uint8, mask (h,w) float32 or None)."""
        from faceblit_core.guides import appearance_guide, background_anchors, face_mask, match_histogram, positional_guide

        cfg, style = self.config, self.style
        H, W = frame.shape[:2]
        t = time.perf_counter()
        if face is None:
            # No landmarks to steer by: map the region (the picture) onto the exemplar by scaling alone.
            ys, xs = np.mgrid[0 : region.height, 0 : region.width].astype(np.float32)
            g_pos = np.stack([xs * (style.width / region.width), ys * (style.height / region.height)], axis=-1)
        else:
            anchors = None
            if background:
                # The picture's bottom corners (not a letterbox bar's) pin the body; the
                # anchors' style side does not depend on where the picture starts.
                origin = np.array([region.x0, region.y0], dtype=np.float32)
                p, q = background_anchors(region.width, region.height, face.points - origin, style.landmarks, style.width, style.height)
                anchors = (p + origin, q)
            g_pos = positional_guide(face.points, style.landmarks, region=region, alpha=cfg.mls_alpha, grid=cfg.mls_grid, anchors=anchors)
        t = self._tick("guide_pos", t)
        mask = flow = None
        if face is not None and not background:
            mask = face_mask(frame, face.points, region=region, feather=cfg.mask_feather)
            t = self._tick("mask", t)
            if cfg.flow_follow > 0 and face.id in self.prev_ids and face.id in self.prev_guides:
                # Face-space synthesis does not need the flow: it runs meanwhile.
                flow = self._start_flow(frame, region)
        use_temp = cfg.lambda_temp > 0 and self.prev_output is not None and (face is None or face.id in self.prev_ids)
        if face is not None and not background and cfg.synthesis_space == "face":
            stylized_face = self._synthesize_in_face_space(frame, face, use_temp)
            g_pos, mask = self._follow_flow(flow, face.id, region, g_pos, mask)
            stylized, covered = self._warp_to_frame(stylized_face, g_pos)
            # The frame's mask (skin found on the forehead) can reach past what the
            # exemplar's region covers; there the result would be smeared border pixels.
            mask = mask * covered
            if self.save_guides is not None:
                self._write_guides(face, {"pos": g_pos, "stylized": stylized, "mask": mask})
            return stylized, mask
        if face is not None and not background:
            g_pos, mask = self._follow_flow(flow, face.id, region, g_pos, mask)
        t = time.perf_counter()
        crop = frame[region.y0 : region.y1, region.x0 : region.x1]
        g_app = match_histogram(appearance_guide(crop), style.app_cdf, mask=(mask > 0.5) if mask is not None else None)
        t = self._tick("guide_app", t)
        g_temp = None
        if use_temp:
            prev_crop = self.prev_output[region.y0 : region.y1, region.x0 : region.x1]
            scale = inter_ocular(face.points) / self.style_iod if face is not None and self.style_iod > 0 else W / style.width
            g_temp = self._temporal_guide(prev_crop, sigma=max(0.5, cfg.temporal_blur * scale))
        self._tick("guide_temp", t)
        stylized = self._styleblit_and_vote(g_pos, g_app, g_temp, origin=(region.x0, region.y0))
        if self.save_guides is not None:
            self._write_guides(face, {"pos": g_pos, "app": g_app, "temp": g_temp, "mask": mask, "stylized": stylized})
        return stylized, mask

    def _start_flow(self, frame: np.ndarray, region) -> "_Background":
        """Backward optical flow (t → t−1) of ``region`` in a thread: OpenCV DIS (Kroeger et al. 2016)."""
        import cv2

        if self._flow is None:
            self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        sl = (slice(region.y0, region.y1), slice(region.x0, region.x1))
        cur = cv2.cvtColor(np.ascontiguousarray(frame[sl]), cv2.COLOR_RGB2GRAY)
        prev = cv2.cvtColor(np.ascontiguousarray(self.prev_frame[sl]), cv2.COLOR_RGB2GRAY)
        return _Background(self._flow.calc, cur, prev, None)

    def _follow_flow(self, flow: "_Background | None", face_id: int, region, g_pos: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Carry last frame's positional guide and mask along the input's optical flow, pulled toward this frame's.

        Landmarks jitter and lag, optical flow follows the skin: a guide (and mask) that
        moves with the flow keeps the stylized texture glued to the face from frame to
        frame, while the pull ``1 − flow_follow`` toward this frame's landmark-based
        values stops it drifting.

        Parameters
        ----------
        flow : _Background or None
            The backward flow of ``region`` (:meth:`_start_flow`); None for a face
            without a previous frame (the maps are returned as they are).
        g_pos : (h, w, 2) float32
            This frame's landmark-based positional guide on ``region``.
        mask : (h, w) float32
            This frame's landmark-based face mask on ``region``.

        Returns
        -------
        g_pos, mask
            Blended with last frame's maps carried along the flow; also kept as
            this face's maps for the next frame.
        """
        import cv2

        if flow is not None:
            t = time.perf_counter()
            back = flow.result()
            previous, prev_region = self.prev_guides[face_id]
            h, w = back.shape[:2]
            # Position of each pixel in the previous frame, in the previous region's coordinates.
            back[..., 0] += np.arange(w, dtype=np.float32) + np.float32(region.x0 - prev_region.x0)
            back[..., 1] += np.arange(h, dtype=np.float32)[:, None] + np.float32(region.y0 - prev_region.y0)
            maps = _fixed_point_maps(back)
            follow = self.config.flow_follow
            out = []
            for name, now in (("pos", g_pos), ("mask", mask)):
                carried = cv2.remap(previous[name], *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
                blended = cv2.addWeighted(carried, follow, now, 1.0 - follow, 0.0)
                np.copyto(blended, now, where=np.isnan(carried))      # came from outside the last region
                out.append(blended)
            g_pos, mask = out
            self._tick("flow", t)
        self.prev_guides[face_id] = ({"pos": g_pos, "mask": mask}, region)
        return g_pos, mask

    def _synthesize_in_face_space(self, frame: np.ndarray, face, use_temp: bool) -> np.ndarray:
        """StyleBlit in the exemplar's frame: chunks stay on the face as it moves.

        The frame is warped onto the exemplar with the inverse MLS map (style landmarks
        → target landmarks) and StyleBlit runs there with the identity as positional
        guide (seeds fixed relative to the face); :meth:`_warp_to_frame` brings the
        result back. Texture then moves with the face instead of jumping between
        screen-fixed chunks.

        Returns the stylized exemplar region ``(hs, ws, 3) uint8`` (``self.style_region``).
        """
        import cv2

        from faceblit_core.guides import appearance_guide, match_histogram, positional_guide

        cfg, style, sr = self.config, self.style, self.style_region
        t = time.perf_counter()
        inverse = _fixed_point_maps(positional_guide(style.landmarks, face.points, region=sr, alpha=cfg.mls_alpha, grid=cfg.mls_grid))
        canonical = cv2.remap(frame, *inverse, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        t = self._tick("warp_to_face", t)
        g_app = match_histogram(appearance_guide(canonical), style.app_cdf, mask=self.style_face)
        t = self._tick("guide_app", t)
        g_temp = None
        if use_temp:
            prev = cv2.remap(self.prev_output, *inverse, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            g_temp = self._temporal_guide(prev, sigma=cfg.temporal_blur)
        self._tick("guide_temp", t)
        stylized_face = self._styleblit_and_vote(self.style_identity, g_app, g_temp, origin=(sr.x0, sr.y0), key=face.id)
        if self.save_guides is not None:
            self._write_guides(face, {"face_app": g_app, "face_temp": g_temp, "face_stylized": stylized_face})
        return stylized_face

    def _warp_to_frame(self, stylized_face: np.ndarray, g_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The face-space result warped into the frame region with ``g_pos`` (bilinear, sub-pixel).

        Returns the stylized region ``(h, w, 3) uint8`` and ``(h, w) float32`` in [0, 1]:
        1 where ``g_pos`` lands inside the synthesized part of the exemplar, fading to 0
        outside it (multiplied into the face mask).
        """
        import cv2

        t = time.perf_counter()
        sr = self.style_region
        maps = g_pos - np.array([sr.x0, sr.y0], dtype=np.float32)
        stylized = cv2.remap(stylized_face, *_fixed_point_maps(maps), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mx, my = maps[..., 0], maps[..., 1]
        inside = ((mx >= 1) & (my >= 1) & (mx <= sr.width - 2) & (my <= sr.height - 2)).astype(np.float32)
        k = max(1, self.config.mask_feather // 2)
        covered = np.minimum(inside, cv2.blur(inside, (k, k))) if k > 1 else inside
        self._tick("warp_to_frame", t)
        return stylized, covered

    def _styleblit_and_vote(self, g_pos: np.ndarray, g_app: np.ndarray, g_temp: np.ndarray | None, *, origin: tuple[int, int], key=None) -> np.ndarray:
        """StyleBlit NNF of one region, NNF denoising and colour voting → (h, w, 3) uint8 RGB.

        With ``key`` (face-space synthesis of a tracked face) last frame's result for
        that key is kept where it still fits and only the rest is recomputed.
        """
        from faceblit_core.synthesis import synthesize

        cfg = self.config
        t = time.perf_counter()
        previous = self.prev_synthesis.get(key) if key is not None and key in self.prev_ids and cfg.keep_previous else None
        result = synthesize(
            g_pos,
            g_app,
            self.style_app_t,
            self.lut_t,
            self.style_image_t,
            radius=cfg.blend_radius,
            denoise=cfg.denoise_nnf,
            previous=previous,
            keep_threshold=cfg.threshold * cfg.keep_tolerance,
            origin=origin,
            jitter=self._jitter_for_frame(),
            threshold=cfg.threshold,
            lambda_pos=cfg.lambda_pos,
            lambda_app=cfg.lambda_app,
            lambda_temp=cfg.lambda_temp if g_temp is not None else 0.0,
            g_temp=g_temp,
            style_temp=self.style_temp_t if g_temp is not None else None,
            levels=cfg.levels,
            same_g_pos=key is not None,   # face space: g_pos is the fixed style_identity
            cache=self.synthesis_cache,
        )
        if key is not None:
            self.prev_synthesis[key] = result
        out = result.rgb.cpu().numpy()
        # Voting's share includes the copy to the host (on CUDA, the wait for the device).
        blit_ms = result.step_ms["styleblit"]
        self.stage_ms["styleblit"] = self.stage_ms.get("styleblit", 0.0) + blit_ms
        self._tick("voting", t + blit_ms / 1e3)
        return out

    def _write_guides(self, face, images: dict) -> None:
        """Write this frame's guides as PNGs: positional colour-coded, the rest as images."""
        from faceblit_core.guides import mask_to_gray, positional_to_rgb
        from faceblit_core.media import write_image

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


def active_picture(frame: np.ndarray, *, level: int = 24, max_bar: float = 1 / 3) -> "Region":
    """The frame without its letterbox/pillarbox bars: the region background mode stylizes.

    A bar is a run of whole rows (top, bottom) or columns (left, right) at the
    frame's edge whose every pixel is dark (all channels ≤ ``level``: encoders
    leave a little noise in black). Bars wider than ``max_bar`` of the frame
    are not taken as bars (a dark scene is picture, not a bar), nor is an
    all-dark frame.

    Parameters
    ----------
    frame : (H, W, 3) uint8 RGB
    level : int, keyword-only
        Brightest value (0–255) a bar pixel may have.
    max_bar : float, keyword-only
        Largest bar, as a fraction of the frame's height (width for side bars).

    Returns
    -------
    Region
        The picture, frame px; the whole frame when there are no bars.
    """
    from faceblit_core.geometry import Region

    H, W = frame.shape[:2]
    dark = frame.max(axis=2) <= level
    rows, cols = dark.all(axis=1), dark.all(axis=0)

    def run(flags: np.ndarray, limit: int) -> int:
        n = int(np.argmin(flags)) if not flags.all() else len(flags)
        return n if n <= limit else 0

    if rows.all():
        return Region.full(W, H)
    top, bottom = run(rows, int(H * max_bar)), run(rows[::-1], int(H * max_bar))
    left, right = run(cols, int(W * max_bar)), run(cols[::-1], int(W * max_bar))
    return Region(left, top, W - right, H - bottom)


def _fixed_point_maps(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(h, w, 2) float32`` source positions as OpenCV's fixed-point remap maps (1/32 px).

    ``cv2.remap`` with these runs ~2.5× faster than with float maps; a map used
    twice is converted once.
    """
    import cv2

    return cv2.convertMaps(np.ascontiguousarray(xy, dtype=np.float32), None, cv2.CV_16SC2)


# ------------------------------------------------------------------------------ threading
class _Background:
    """``fn(*args)`` running in a thread; :meth:`result` waits for it and returns its value or raises its exception."""

    def __init__(self, fn: Callable, *args) -> None:
        from faceblit_core.media import start_thread

        self._value = self._error = None
        self._thread = start_thread(self._run, args=(fn, args), name="faceblit-flow")

    def _run(self, fn: Callable, args: tuple) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class _Sink:
    """Feed frames to a writer from a thread (the encoder then overlaps the synthesis)."""

    def __init__(self, write: Callable[[np.ndarray], None], *, depth: int = 4) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._write = write
        self._error: BaseException | None = None
        from faceblit_core.media import start_thread  # signals held back while it starts

        self._thread = start_thread(self._run)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._write(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the producer
                    self._error = exc

    def put(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(frame)

    def finish(self) -> None:
        self._q.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class SignalInterrupt(KeyboardInterrupt):
    """Raised by the SIGTERM handler: like Ctrl-C's KeyboardInterrupt it is no ``Exception``,
    so no ``except Exception`` on the way (cache reader, ffmpeg waits) can swallow it;
    :func:`_signals_as_exceptions` (or the CLI) turns it into :class:`Interrupted` once
    the cleanup has run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_signal_interrupt(signum, _frame):
    """Signal handler raising :class:`SignalInterrupt`."""
    raise SignalInterrupt(signum)


@contextlib.contextmanager
def _signals_as_exceptions(*, to_stdout: bool = False) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (exit 130 / 143), after the cleanup of the block ran."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    old = signal.signal(signal.SIGTERM, raise_signal_interrupt)
    try:
        yield
    except KeyboardInterrupt as exc:
        raise Interrupted(getattr(exc, "signum", signal.SIGINT), to_stdout=to_stdout) from None
    finally:
        signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------------ public API
def _load_style(style, *, config, style_landmarks, cache_dir):
    from faceblit_core.style import StyleAsset, prepare_style

    if isinstance(style, StyleAsset):
        return style
    return prepare_style(style, landmarks=style_landmarks, config=config, cache_dir=cache_dir)


_probed: dict = {}


def _probe(path):
    """:func:`media.probe`, once per file version: the batch's early check and the run then share
    one probe (two ffmpeg runs and a decode of a still: ~0.3 s of a one-still run's start-up)."""
    from faceblit_core import media

    try:
        st = os.stat(path)
        key = (os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    except (OSError, TypeError, ValueError):
        return media.probe(path)  # probe gives the one-line reason
    if key not in _probed:
        _probed.clear()  # one entry: a batch probes each input right before using it
        _probed[key] = media.probe(path)
    return _probed[key]


def _style_path(style) -> str:
    """The exemplar's file name (for default output names), from a path or a StyleAsset."""
    return str(getattr(style, "path", None) or "style") if not isinstance(style, (str, os.PathLike)) else str(style)


def _make_backend(config: StylizeConfig, fan_weights, device: str, *, video: bool):
    """The landmark backend named by ``config.landmarks``.

    For video, dlib's CNN fallback detector is off: it costs ~1 s per re-detection
    on frames without a face (seconds of a clip), while paintings — where it helps —
    come as stills or exemplars (:func:`faceblit_core.faces.detect_style_landmarks`).
    """
    from faceblit_core.faces import get_backend

    options: dict = {}
    if config.landmarks == "fan":
        options = {"weights": fan_weights, "device": device}
    elif config.landmarks == "dlib" and video:
        options = {"cnn_fallback": False}
    return get_backend(config.landmarks, **options)


def _make_stylizer(style, config: StylizeConfig, *, device: str, fps: float, video: bool, style_landmarks, fan_weights, cache_dir, save_guides) -> FrameStylizer:
    """Style asset + landmark backend + torch threads → a :class:`FrameStylizer` for one clip or still."""
    asset = _load_style(style, config=config, style_landmarks=style_landmarks, cache_dir=cache_dir)
    backend = _make_backend(config, fan_weights, device, video=video)
    _set_threads()
    return FrameStylizer(asset, config, fps=fps, backend=backend, device=device, save_guides=Path(save_guides) if save_guides else None)


def stylize_video(
    input: str | os.PathLike,
    style,
    output: str | os.PathLike | None = None,
    *,
    config: StylizeConfig | None = None,
    style_landmarks=None,
    fan_weights: str | os.PathLike | None = None,
    frames: tuple[int, int | None] | None = None,
    side_by_side: bool = False,
    save_guides: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Stylize every face of a video with one style exemplar; keep every frame, the rate and the audio.

    Parameters
    ----------
    input : path
        Input video (anything ffmpeg reads; ``-`` = standard input).
    style : path or StyleAsset
        The style exemplar (or an asset from :func:`faceblit_core.style.prepare_style`).
    output : path, optional
        Output video; ``-`` = standard output (fragmented MP4); default
        ``NAME-STYLE.mp4`` next to the input.
    config : StylizeConfig, keyword-only
        All tunables (default: ``StylizeConfig()``).
    style_landmarks : path or (68, 2) float32, keyword-only
        Landmarks of the exemplar; default ``NAME.lm.txt`` beside it, else detected.
    fan_weights : path, keyword-only
        Weights of the ``fan`` landmark backend.
    frames : (start, end), keyword-only
        Only frames ``start <= i < end`` (0-based; ``end`` None = to the end); the
        audio is cut to match.
    side_by_side : bool, keyword-only
        Write ``input | output`` in one frame (twice the width).
    save_guides : path, keyword-only
        Folder for each frame's guide PNGs.
    cache_dir : path, keyword-only
        Style cache folder.
    overwrite : bool, keyword-only
        Replace an existing output.
    progress : bool, keyword-only
        Show a progress bar (tqdm, on stderr; only when stderr is a terminal).

    Returns
    -------
    RunSummary
        Frames written, frames with/without a face, timings per stage (ms, summed).

    Raises
    ------
    InputError, StyleError, OutputError, EnvironmentProblem, ProcessingError, Interrupted
        With a one-line message; no output file is left behind on any error.
    """
    from faceblit_core import media

    config = config or StylizeConfig()
    if str(input) == "-":
        with media.spooled_stdin() as spooled:
            return stylize_video(
                spooled, style, output if output is not None else "-", config=config, style_landmarks=style_landmarks,
                fan_weights=fan_weights, frames=frames, side_by_side=side_by_side, save_guides=save_guides,
                cache_dir=cache_dir, overwrite=overwrite, progress=progress,
            )
    started = time.perf_counter()
    info = _probe(input)
    out_path = str(output) if output is not None else str(default_output_path(input, _style_path(style)))
    # The content decides what the input is, the output's extension what is written:
    # a still (even one named .mp4) becomes an image, or a one-frame video for a video name.
    if info.is_image and (out_path == "-" or Path(out_path).suffix.lower() not in media.VIDEO_EXTENSIONS):
        return stylize_image(
            input, style, output, config=config, style_landmarks=style_landmarks, fan_weights=fan_weights,
            side_by_side=side_by_side, save_guides=save_guides, cache_dir=cache_dir, overwrite=overwrite,
        )
    # A bad output path fails now, not after the style, the models and the first frames.
    media.check_output(out_path, overwrite=overwrite, inputs=[input], video=True)
    device = resolve_device(config.device)
    start, end = frames if frames is not None else (0, None)
    if info.n_frames and start >= info.n_frames:
        from faceblit_core.errors import InputError

        raise InputError(f"{input}: --frames {start}:{'' if end is None else end} starts after the last frame (the video has {info.n_frames})")
    if end is not None and info.n_frames:
        end = min(end, info.n_frames)  # "0:50" on a shorter clip means "to its end"
    last = end if end is not None else (info.n_frames or None)
    n_frames = max(0, last - start) if last is not None else None
    writer_w = info.width * (2 if side_by_side else 1)
    stylizer = _make_stylizer(style, config, device=device, fps=float(info.fps), video=True, style_landmarks=style_landmarks,
                              fan_weights=fan_weights, cache_dir=cache_dir, save_guides=save_guides)
    summary = RunSummary(input=str(input), output=out_path, fps_in=float(info.fps), device=device)
    audio_span = (start / float(info.fps), (end - start) / float(info.fps) if end is not None else None) if frames else None

    with _signals_as_exceptions(to_stdout=out_path == "-"):
        reader = bar = None
        # Ctrl-C/SIGTERM are held from the writer's first temporary file until its
        # block is entered (which removes it on any exception), then handled.
        held = media.hold_signals()
        try:
            writer = media.VideoWriter(
                out_path, width=writer_w, height=info.height, fps=info.fps, audio_from=input if info.has_audio else None,
                audio_span=audio_span, codec=config.codec, crf=config.crf, preset=config.preset, overwrite=overwrite,
                inputs=[input],
            )
        except BaseException:
            media.release_signals(held)
            raise
        try:
            with writer:
                media.release_signals(held)
                render_started = time.perf_counter()
                # Made inside the writer's block: a signal arriving while they start
                # must still abort the writer (its temporary file and its ffmpeg).
                # iter_frames decodes ahead in its own thread (bounded), overlapping the synthesis.
                reader = media.iter_frames(info, start=start, end=end)
                bar = _progress_bar(n_frames, progress, Path(str(input)).name)
                sink = _Sink(writer.write)
                try:
                    for frame in reader:
                        out, faces = stylizer(frame)
                        summary.frames += 1
                        if faces:
                            summary.frames_with_face += 1
                            summary.max_faces = max(summary.max_faces, len(faces))
                        else:
                            summary.frames_without_face += 1
                        sink.put(np.concatenate([frame, out], axis=1) if side_by_side else out)
                        if bar is not None:
                            bar.update(1)
                finally:
                    sink.finish()
                if summary.frames == 0:
                    raise FaceblitError(f"{input}: no frame in the range {start}:{'' if end is None else end}")
        finally:
            if reader is not None:
                reader.close()
            if bar is not None:
                bar.close()
    summary.render_seconds = time.perf_counter() - render_started
    summary.seconds = time.perf_counter() - started
    summary.scene_cuts = stylizer.scene_cuts
    summary.stage_ms = {k: v / max(1, summary.frames) for k, v in stylizer.stage_ms.items()}
    return summary


def stylize_image(
    input: str | os.PathLike,
    style,
    output: str | os.PathLike | None = None,
    *,
    config: StylizeConfig | None = None,
    style_landmarks=None,
    fan_weights: str | os.PathLike | None = None,
    side_by_side: bool = False,
    save_guides: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> RunSummary:
    """Stylize every face of one still image; same parameters as :func:`stylize_video`.

    Returns
    -------
    RunSummary
        With ``frames == 1``.

    Raises
    ------
    InputError, StyleError, OutputError, EnvironmentProblem
        With a one-line message; nothing is written on error.
    """
    from faceblit_core import media

    config = config or StylizeConfig()
    started = time.perf_counter()
    frame = media.read_image(input)
    out_path = Path(output) if output is not None else default_output_path(input, _style_path(style))
    if str(out_path) != "-" and out_path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise OutputError(f"{out_path}: an image input needs an image output ({', '.join(IMAGE_EXTENSIONS)})")
    # A bad output path fails now, before any expensive work (write_image checks again).
    media.check_output(out_path, overwrite=overwrite, inputs=[input], image=True)
    stylizer = _make_stylizer(style, config, device=resolve_device(config.device), fps=25.0, video=False,
                              style_landmarks=style_landmarks, fan_weights=fan_weights, cache_dir=cache_dir, save_guides=save_guides)
    render_started = time.perf_counter()
    out, faces = stylizer(frame)
    if side_by_side:
        out = np.concatenate([frame, out], axis=1)
    media.write_image(out_path, out, overwrite=overwrite, inputs=[input])
    done = time.perf_counter()
    return RunSummary(
        input=str(input), output=str(out_path), frames=1, frames_with_face=int(bool(faces)), frames_without_face=int(not faces),
        max_faces=len(faces), seconds=done - started, render_seconds=done - render_started, device=stylizer.device,
        stage_ms=dict(stylizer.stage_ms),
    )


def stylize_batch(
    inputs: Sequence[str],
    style,
    *,
    output: str | None = None,
    out_dir: str | os.PathLike | None = None,
    config: StylizeConfig | None = None,
    on_error: Callable[[str, FaceblitError], None] | None = None,
    on_done: Callable[[RunSummary], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    started: float | None = None,
    **options,
) -> tuple[list[RunSummary], list[FaceblitError]]:
    """Stylize several inputs with one style; continue past a failing input.

    The style is prepared once. ``output`` is allowed with a single input only;
    otherwise outputs go to ``out_dir`` (or next to each input) as ``NAME-STYLE.EXT``.
    Standard input (``-``) writes to ``output`` when given, else to standard output;
    it has no name to put into ``out_dir``.

    Before anything is read or written, the run is refused when two inputs are the
    same file (also through a link), when two inputs would write the same output
    (e.g. ``a/clip.mp4`` and ``b/clip.mp4`` with one ``out_dir``; paths compared
    resolved, and without case on a case-insensitive file system), or when an
    output would be another input of the run.

    Parameters
    ----------
    on_error : callable(path, error), keyword-only
        Called for each failed input (the batch goes on).
    on_done : callable(RunSummary), keyword-only
        Called for each written output, as soon as it is complete.
    on_status : callable(str), keyword-only
        Told what the batch is doing before the frames start (``"preparing style S"``),
        for a status line during the first seconds.
    started : float, keyword-only
        ``time.perf_counter()`` when the caller started (e.g. before its imports); the
        first input's ``seconds`` count from there. Default: now.

    Returns
    -------
    (summaries, failures)
        A summary per written output and the error of each failed input (after
        ``on_error(path, error)`` was called for it). Interruption and problems of
        the style or the machine stop the whole batch (they would fail every input).

    Raises
    ------
    UsageError
        ``output`` with several inputs or with ``out_dir``, standard input with
        ``out_dir``, an input given twice, two outputs that collide (exit 2).
    OutputError
        ``out_dir`` is not a folder.
    StyleError, EnvironmentProblem, ConfigError
        Stop the batch.
    Interrupted
        Stops the batch; with several inputs its message names the outputs written.
    """
    from faceblit_core.errors import StyleError

    started = time.perf_counter() if started is None else started
    config = config or StylizeConfig()
    status = on_status or (lambda text: None)
    if output is not None and out_dir is not None:
        raise UsageError("-o/--output and --out-dir exclude each other: -o names the one output, --out-dir the folder of several")
    if output is not None and len(inputs) > 1:
        raise UsageError("-o/--output takes one input; use --out-dir for several")
    if out_dir is not None and "-" in inputs:
        raise UsageError("standard input ('-') has no name to write into --out-dir; give it -o FILE (without -o it goes to standard output)")
    # Standard input has no name to derive one from: its output goes to standard output.
    targets = [output if output is not None else ("-" if path == "-" else str(default_output_path(path, style, out_dir=out_dir))) for path in inputs]
    _check_distinct(inputs, targets)
    if out_dir is not None and not Path(out_dir).is_dir():
        raise OutputError(f"{out_dir}: --out-dir is not an existing folder")
    if len(inputs) == 1 and inputs[0] != "-":
        try:
            _probe(inputs[0])  # a bad input is reported as such before the style is prepared
        except FaceblitError as exc:
            if isinstance(exc, (EnvironmentProblem, Interrupted)):
                raise
            if on_error is not None:
                on_error(inputs[0], exc)
            return [], [exc]
    status(f"preparing style {_style_path(style)}")
    asset = _load_style(style, config=config, style_landmarks=options.pop("style_landmarks", None), cache_dir=options.get("cache_dir"))
    summaries, failures = [], []
    for index, (path, target) in enumerate(zip(inputs, targets)):
        status(f"starting {path}")
        input_started = time.perf_counter()
        try:
            summary = stylize_video(path, asset, target, config=config, **options)
        except (StyleError, EnvironmentProblem, ConfigError):
            raise
        except (Interrupted, KeyboardInterrupt) as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            raise Interrupted(signum, to_stdout=getattr(exc, "to_stdout", target == "-"), written=[s.output for s in summaries],
                              total=len(inputs)) from None
        except FaceblitError as exc:
            failures.append(exc)
            if on_error is not None:
                on_error(path, exc)
            continue
        if index == 0:  # the first input carries the start-up: style preparation, and the caller's before it
            summary.seconds += input_started - started
        summaries.append(summary)
        if on_done is not None:
            on_done(summary)
    return summaries, failures


def _check_distinct(inputs: Sequence[str], targets: Sequence[str]) -> None:
    """Refuse a batch whose inputs repeat or whose outputs collide, before anything is written.

    Inputs are compared by file identity (``st_dev``, ``st_ino``: symbolic and hard
    links, ``./a`` and ``a``); outputs by their resolved path (symbolic links of the
    folders), without case where the folder is on a case-insensitive file system.
    Missing inputs are left to fail on their own (exit 3).

    Raises
    ------
    UsageError
        Naming both inputs and the output they share.
    """
    seen_in: dict = {}
    for path in inputs:
        key = "-" if path == "-" else _file_id(path)
        if key is None:
            continue
        if key in seen_in:
            raise UsageError(f"{seen_in[key]} and {path} are the same input; give each input once")
        seen_in[key] = path
    seen_out: dict = {}
    folded: dict = {}
    for path, target in zip(inputs, targets):
        if target == "-":
            continue  # stdout: only standard input writes there, and it is given at most once
        resolved = os.path.realpath(target)
        other = seen_out.get(resolved)
        if other is None:
            fold = (os.path.dirname(resolved), os.path.basename(resolved).casefold())
            other = folded.get(fold)
            if other is not None and not _case_insensitive(os.path.dirname(resolved)):
                other = None
            folded.setdefault(fold, path)
        if other is not None:
            raise UsageError(f"{other} and {path} would both be written to {target}; rename one, or run them separately")
        seen_out[resolved] = path
        out_id = _file_id(target)
        if out_id is not None and out_id in seen_in and seen_in[out_id] != path:
            raise UsageError(f"the output of {path}, {target}, is another input of this run ({seen_in[out_id]}); choose another --out-dir")


def _file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of an existing file (links followed), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _case_insensitive(folder: str) -> bool:
    """Whether names in ``folder`` ignore case (macOS, Windows, some mounts): a hidden probe file
    is made and looked up in upper case. True when that cannot be tried (the safe answer)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(prefix=".faceblit-case-", dir=folder or ".") as probe_file:
            name = os.path.basename(probe_file.name)
            return os.path.exists(os.path.join(folder or ".", name.upper()))
    except OSError:
        return True


def _progress_bar(total: int | None, enabled: bool, label: str):
    if not enabled:
        return None
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (a log file would fill with \r updates).
    return tqdm(total=total, desc=label, unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr, disable=None)


def _set_threads() -> None:
    """torch threads for the CPU synthesis: all cores but one, which ffmpeg's decoder and encoder use.

    ``FACEBLIT_THREADS`` overrides. Oversubscribed torch threads stall badly on
    small machines (measured on 2 cores: ms-long waits per op), so the default
    leaves the encoder its core.
    """
    import torch

    wanted = int(os.environ.get("FACEBLIT_THREADS", "0") or 0)
    torch.set_num_threads(wanted if wanted > 0 else max(1, (os.cpu_count() or 2) - 1))
