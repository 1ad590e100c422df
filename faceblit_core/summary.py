"""What a run did: :class:`RunSummary`, one per output (the CLI prints it; ``--json`` writes it).

Filled by :mod:`faceblit_core.pipeline` (one piece), :mod:`faceblit_core.chunks`
(chunked and on Ray) and read by :mod:`faceblit_core.batch` and the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from faceblit_core.faces import confidence


@dataclass
class RunSummary:
    """What one ``stylize`` run did (printed by the CLI, ``--json`` gives :meth:`to_dict`).

    Two clocks: ``seconds`` is the whole run of this input, start-up included
    (probing, landmark models, the writer's ffmpeg; for the first input of a batch
    also the style preparation and whatever the caller counted before, see
    :func:`stylize_batch`), ``render_seconds`` only the frames (decode → stylize →
    encode, until the output is complete). :attr:`fps` uses the latter.

    How each frame was written (:func:`faceblit_core.faces.confidence.frame_state`):
    ``frames_stylized`` (every face at full strength), ``frames_faded`` (some face
    faded toward the original because its evidence was poor), ``frames_unchanged``
    (no face stylized: none found, or all faded out); ``fade_reasons`` counts the
    faded and unchanged frames by the reason of their weakest face
    (:data:`faceblit_core.faces.confidence.REASONS`; ``unselected``: the frame's faces
    are all ones the run does not stylize). Those three count the faces the run stylizes:
    ``frames_with_unselected`` counts, apart, the frames showing a face left as it is
    because it is not selected (``--faces``, or ``--style ID=S`` without an exemplar for
    every face), whatever happened to the others. ``carry_resets``: times a face's
    guide carried along the optical flow was dropped because it had left the face.
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
    frames_stylized: int = 0
    frames_faded: int = 0
    frames_unchanged: int = 0
    fade_reasons: dict = field(default_factory=dict)
    frames_with_unselected: int = 0
    carry_resets: int = 0
    chunks: int = 1
    resumed_chunks: int = 0

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
        why = ", ".join(f"{reason} {n}" for reason, n in self.fade_reasons.items())
        left = f"; a face not selected left as is on {self.frames_with_unselected}" if self.frames_with_unselected else ""
        return (
            f"{self.output}: {self.frames} frame(s), face on {self.frames_with_face}, "
            f"no face on {self.frames_without_face}; stylized fully {self.frames_stylized}, faded {self.frames_faded}, "
            f"unchanged {self.frames_unchanged}{f' ({why})' if why else ''}{left}; {self.fps:.1f} fps on {self.device} "
            f"(rendering only; {self.seconds:.1f} s in all with start-up)"
        )


def add_frame_counts(summary: RunSummary, stylizer) -> None:
    """Copy how the frames were written (stylized / faded / unchanged, reasons, faces not selected) into the summary."""
    set_frame_counts(summary, stylizer.frame_states, stylizer.fade_reasons, stylizer.carry_resets, stylizer.frames_with_unselected)


def set_frame_counts(summary: RunSummary, frame_states: dict, fade_reasons: dict, carry_resets: int, frames_with_unselected: int) -> None:
    """How the frames were written, from counts by :func:`faceblit_core.faces.confidence.frame_state`
    (``frame_states``), by reason (``fade_reasons``) and of frames with a face not selected,
    e.g. summed over the chunks of a render."""
    summary.frames_stylized = int(frame_states.get("stylized", 0))
    summary.frames_faded = int(frame_states.get("faded", 0))
    summary.frames_unchanged = int(frame_states.get("unchanged", 0))
    summary.fade_reasons = {r: int(fade_reasons[r]) for r in confidence.REASONS if fade_reasons.get(r)}
    summary.frames_with_unselected = int(frames_with_unselected)
    summary.carry_resets = int(carry_resets)
