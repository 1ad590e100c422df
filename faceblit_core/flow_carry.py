"""Flow carry: the positional guide and face mask follow the skin from frame to frame.

Landmarks jitter and lag; optical flow follows the skin. :class:`FlowCarry` computes
the backward optical flow of a face's region (OpenCV DIS, in a thread, overlapping
the guides) and carries last frame's guide and mask along it, re-anchored to this
frame's landmark maps (:mod:`faceblit_core.temporal_state`: a bounded residual, two
staggered chains of bounded memory). The carried maps live in the face's
:class:`~faceblit_core.face_state.FaceTrack`; the warps are :mod:`faceblit_core.warp`.

References
----------
Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse Search" (DIS).
Fišer et al. 2017, "Example-Based Synthesis of Stylized Facial Animations" (guides
that follow the face over time).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceblit_core import warp
from faceblit_core._runtime import Background
from faceblit_core.face_state import FaceTrack
from faceblit_core.faces import confidence
from faceblit_core.geometry import Region
from faceblit_core.temporal_state import carry_positional, carry_schedule, clamp_mask

__all__ = ["FlowCarry"]


class FlowCarry:
    """The optical flow of face regions and the flow carry of their guides, for one clip.

    Parameters
    ----------
    follow : float
        How much of the carried residual is kept (``flow_follow``, 0–1).
    bound : float
        Largest distance of the carried guide from this frame's landmark guide, in
        exemplar inter-ocular distances (``flow_bound``).
    """

    def __init__(self, *, follow: float, bound: float) -> None:
        self.flow_follow = follow
        self.flow_bound = bound
        # Made on first use (two: the backward and the forward flow may run at once).
        self._backward = self._forward = None

    def start(self, frame: np.ndarray, previous: np.ndarray, region: Region, *, forward: bool = False) -> Background:
        """Backward optical flow (t → t−1) of ``region`` in a thread: OpenCV DIS (Kroeger et al. 2016).

        ``frame`` and ``previous`` are this and the last frame, ``(H, W, 3) uint8`` RGB.
        ``forward``: the flow t−1 → t instead (to move a lost face along), with a DIS
        instance of its own (one instance must not run twice at once). The result is a
        ``(h, w, 2) float32`` field of ``region``, px.
        """
        if self._backward is None:
            self._backward = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
            self._forward = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        sl = (slice(region.y0, region.y1), slice(region.x0, region.x1))
        cur = cv2.cvtColor(np.ascontiguousarray(frame[sl]), cv2.COLOR_RGB2GRAY)
        prev = cv2.cvtColor(np.ascontiguousarray(previous[sl]), cv2.COLOR_RGB2GRAY)
        if forward:
            return Background(self._forward.calc, prev, cur, None)
        return Background(self._backward.calc, cur, prev, None)

    def follow(self, flow: Background | None, track: FaceTrack, region: Region, g_pos: np.ndarray, mask: np.ndarray, *,
               index: int, style_iod: float) -> tuple[np.ndarray, np.ndarray, int]:
        """Last frame's positional guide and mask carried along the flow, re-anchored to this frame's;
        kept in ``track`` for the next frame.

        Landmarks jitter and lag, optical flow follows the skin: a guide (and mask) that
        moves with the flow keeps the texture glued to the face from frame to frame. It is
        a bounded residual on this frame's landmark-based maps
        (:mod:`faceblit_core.temporal_state`): never more than ``flow_bound`` × the
        exemplar's inter-ocular distance (mask: ``MASK_BOUND``) away from them, so the
        flow's errors cannot accumulate over a long clip. And it is of bounded memory:
        two chains are carried, each restarted from the landmark maps every
        ``MEMORY_FRAMES`` frames of the absolute index, half a period apart, and blended
        with weights that are 0 at a chain's restart (:func:`~faceblit_core.temporal_state.carry_schedule`).

        Parameters
        ----------
        flow : Background or None
            The backward flow of ``region`` (:meth:`start`); None for a face
            without a previous frame (the maps are returned as they are).
        g_pos : (h, w, 2) float32
            This frame's landmark-based positional guide on ``region``.
        mask : (h, w) float32
            This frame's landmark-based face mask on ``region``.
        index : int, keyword-only
            Absolute index of this frame (the chains' restart schedule).
        style_iod : float, keyword-only
            The exemplar's inter-ocular distance, style px (the bound's unit).

        Returns
        -------
        (g_pos, mask, resets)
            The carried and blended maps (shapes as given) and how many chains were
            restarted because their maps had left the face.
        """
        weights, restarts = carry_schedule(index)
        resets = 0
        anchor = (g_pos, mask)
        chains = [anchor, anchor]
        if flow is not None:
            back = flow.result()
            carry = [c for c in (0, 1) if track.chains[c] is not None and not restarts[c]]
            carried = warp.carry_maps(back, region, track.region, [m for c in carry for m in track.chains[c]]) if carry else []
            for k, c in enumerate(carry):
                carried_pos, carried_mask = carried[2 * k], carried[2 * k + 1]
                # NaN (came from outside the last region) falls back to this frame's maps.
                new_pos = carry_positional(carried_pos, g_pos, follow=self.flow_follow, bound=self.flow_bound * style_iod)
                new_mask = clamp_mask(carried_mask, mask)
                if confidence.carry_left_face(new_pos, g_pos, mask, style_iod=style_iod, carried_mask=new_mask):
                    # The carried maps left the face (bad flow on a fast move, an occluder,
                    # a cut from the frame edge): this chain starts again from the landmarks.
                    resets += 1
                else:
                    chains[c] = (new_pos, new_mask)
            if chains[0] is not anchor or chains[1] is not anchor:
                w0, w1 = np.float32(weights[0]), np.float32(weights[1])
                g_pos = chains[0][0] * w0 + chains[1][0] * w1
                mask = chains[0][1] * w0 + chains[1][1] * w1
        track.chains, track.region = chains, region
        return g_pos, mask, resets
