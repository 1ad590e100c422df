"""What :class:`~faceblit_core.stylizer.FrameStylizer` keeps between frames: one
:class:`FaceTrack` per tracked face, one :class:`PreparedExemplar` per exemplar.

A face's track holds the state the next frame builds on (kept synthesis, the
flow-carried chains of :mod:`faceblit_core.flow_carry`); an exemplar's preparation
holds what every frame reads from it (device tensors, the exemplar region face-space
synthesis works on, its synthesis cache). Both are plain state: the algorithm that
updates them is in the stylizer, :mod:`faceblit_core.flow_carry` and
:mod:`faceblit_core.temporal_state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from faceblit_core.config import StylizeConfig
from faceblit_core.faces import inter_ocular
from faceblit_core.geometry import Region
from faceblit_core.guides import continue_face_outward, face_mask_outline, whole_face_mask
from faceblit_core.guides.segmentation import interior_source
from faceblit_core.synthesis import Synthesis, SynthesisCache

__all__ = ["FaceTrack", "PreparedExemplar"]


@dataclass(eq=False)
class FaceTrack:
    """What :class:`FrameStylizer` keeps of one tracked face (one ``Face.id``) between frames.

    It lives as long as the tracker reports that id (memory stays bounded).

    Attributes
    ----------
    continued : bool
        The face was in the previous frame of the same shot, so this frame may build
        on it (temporal guide, flow, kept NNF). False for a new face and after a
        scene cut.
    synthesis : Synthesis or None
        Last frame's face-space synthesis (NNF, colours, keep-test terms), updated
        by the next one when ``keep_previous`` is on; None in frame space.
    chains : list of 2 (guide_pos, mask) or None
        The two staggered flow-carried chains (:func:`faceblit_core.temporal_state.carry_schedule`):
        last frame's positional guide ``(h, w, 2) float32`` (style px) and face mask
        ``(h, w) float32`` in [0, 1] on ``region``, each after its flow carry.
    region : Region or None
        The frame region (frame px) of the chains' maps.
    index : int
        Absolute index of the frame ``synthesis`` is of (the kept NNF's refresh schedule).
    occluders : ndarray or None
        Last frame's occluder mask ``(h, w) float32`` on ``region`` (``keep_occluders``,
        :func:`faceblit_core.occlusion.occluder_mask`), carried to the next frame.
    """

    continued: bool = False
    synthesis: Synthesis | None = None
    chains: list = field(default_factory=lambda: [None, None])
    region: Region | None = None
    index: int = -1
    occluders: np.ndarray | None = None


@dataclass(eq=False)
class PreparedExemplar:
    """One exemplar as the synthesis uses it: its asset, its tensors on the device, the
    exemplar region face-space synthesis works on, and its own :class:`SynthesisCache`
    (style tables and seed maps of one style size).

    Cost, measured on the CPU with a 480×640 exemplar (``bench/exemplars.py``, README
    "Several faces"): ~170 MiB of peak RSS per exemplar — the lookup table (256³ int32,
    64 MiB, the memory-mapped cache entry on the CPU, a device copy on CUDA), StyleBlit's
    padded copy of it (66 MiB) and padded temporal guide (10.5 MiB) in the synthesis
    cache, seed maps (~15–19 MiB), face-space arrays (~5 MiB), images (3 MiB).
    """

    asset: object
    app_t: torch.Tensor
    temp_t: torch.Tensor
    image_t: torch.Tensor
    face_image_t: torch.Tensor
    lut_t: torch.Tensor
    iod: float
    region: Region
    identity: np.ndarray
    face: np.ndarray
    interior_source: object
    synthesis_cache: SynthesisCache

    @classmethod
    def prepare(cls, style, config: StylizeConfig, device: str) -> "PreparedExemplar":
        dev = torch.device(device)
        # Face-space synthesis works on a fixed region of the exemplar around its face.
        # Only what the face mask can show is synthesized: its outline plus the feather
        # and the voting window (the frame-space margin is for the MLS and tracking slack).
        pad = (config.mask_feather // 2 + config.blend_radius + 2) / max(1.0, float(np.ptp(style.landmarks[:, 1])))
        sr = Region.around(face_mask_outline(style.landmarks), margin=pad, frame_size=(style.width, style.height))
        ys, xs = np.mgrid[sr.y0 : sr.y1, sr.x0 : sr.x1].astype(np.float32)
        source = None
        # A painting's mask: the whole forehead ellipse (all of its face is texture to copy).
        whole_face = whole_face_mask(style.image, style.landmarks, feather=config.mask_feather) > 0.5
        if config.mouth_interior:
            source = interior_source(style.image, style.landmarks, whole_face)
        return cls(
            asset=style,
            app_t=torch.from_numpy(np.ascontiguousarray(style.app)).to(dev),
            temp_t=torch.from_numpy(np.ascontiguousarray(style.temp)).to(dev),
            image_t=torch.from_numpy(np.ascontiguousarray(style.image)).to(dev),
            # What faces copy: past its outline the face's own texture, not the painting's
            # background (the feathered mask edge shows what lies there).
            face_image_t=torch.from_numpy(continue_face_outward(style.image, whole_face_mask(style.image, style.landmarks, feather=0) > 0.5)).to(dev),
            lut_t=torch.from_numpy(np.ascontiguousarray(style.lut)).to(dev),
            iod=inter_ocular(style.landmarks),
            region=sr,
            identity=np.ascontiguousarray(np.stack([xs, ys], axis=-1)),
            face=np.ascontiguousarray(whole_face[sr.slice]),
            interior_source=source,
            synthesis_cache=SynthesisCache(),   # this clip's tables and seed maps of this style
        )
