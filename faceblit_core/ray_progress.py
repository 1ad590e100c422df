"""The Ray actor through which chunk tasks report their frames to the driver's progress bar.

A chunk task (:func:`faceblit_core.ray_engine._render_chunk_task`) tells the
:class:`FrameCounter` how many of its chunk's frames it has written, every
``interval`` seconds (fire-and-forget actor calls); the driver reads what its own
render's tasks reported while it waits for them and moves its bar
(:func:`faceblit_core.ray_engine.render_chunks`). One actor per bar: the renders that
share a bar (a batch on Ray) share it, and only a run that shows a bar makes one.

Kept apart from :mod:`faceblit_core.ray_engine` because the actor's worker process
imports the actor's module: this one imports nothing heavy (no torch, no OpenCV), so
the actor starts in a fraction of a second and holds little memory.
"""

from __future__ import annotations

__all__ = ["FrameCounter"]


class FrameCounter:
    """Frames written so far by each running chunk task, keyed ``(render, chunk index)``.

    A retried task (its worker died) starts its count again from 0: the largest count
    reported for a chunk is kept, so the bar never goes back (it waits until the retry
    has caught up).
    """

    def __init__(self) -> None:
        self._done: dict[str, dict[int, int]] = {}

    def report(self, render: str, chunk: int, frames: int) -> None:
        """Chunk ``chunk`` of render ``render`` has written ``frames`` frames."""
        counts = self._done.setdefault(render, {})
        counts[chunk] = max(counts.get(chunk, 0), int(frames))

    def counts(self, render: str) -> dict[int, int]:
        """Frames written by each chunk of ``render`` that reported."""
        return dict(self._done.get(render, {}))

    def forget(self, render: str) -> None:
        """Drop ``render``'s counts (it is over: the actor's memory stays bounded)."""
        self._done.pop(render, None)
