"""Hard clips made at test time from a real talking-head clip (issue 18).

Each maker takes real frames (``(T, H, W, 3) uint8`` RGB, a frontal face) and
their landmarks, and returns the made frames plus what the test needs to know
(which frames show the face, where the occluder is). They use OpenCV only and
are deterministic.

* :func:`slide_out` — the face slides out of the frame (top or side) and back.
* :func:`turn` — the head "turns" away and back. Synthetic: the frame is mapped
  onto a vertical cylinder through the face and the cylinder rotated by up to 80°
  (a proxy for a real head turn: the far cheek is compressed and leaves the
  silhouette as on a turning head, but the texture is flat — the nose has no
  depth — so the landmarks read less turn than the cylinder's angle: dlib's fit
  gives ≈ 40° of foreshortening at a 60° cylinder turn, ≈ 55–60° at 80°).
* :func:`occlude` — a hand-sized, skin-coloured, textured shape (palm + four
  fingers) moves across the face.
* :func:`shake` — every frame translated by a large random offset.

``python tests/made_clips.py OUT_DIR [SOURCE.mp4]`` writes them as MP4s (for
measuring with ``scripts/evaluate.py``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

#: Side of the made clips, px (the source is resized to it: small and fast).
SIDE = 256
BACKGROUND = (90, 90, 90)
#: Frames the hand of :func:`occlude` takes to cross the face (~5 px a frame at SIDE).
CROSSING = 40


@dataclass
class MadeClip:
    """Frames of a made clip and the facts a test checks against."""

    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    face_in: np.ndarray  # (T,) bool: the whole face (landmark hull) is inside the frame / frontal enough
    occluder: np.ndarray | None = field(default=None)  # (T, H, W) bool: occluder pixels, or None


def load_source(path: str | Path, n: int, *, side: int = SIDE, start: int = 0) -> np.ndarray:
    """``n`` frames of a video from ``start``, resized to ``side × side`` (INTER_AREA): ``(n, side, side, 3) uint8``."""
    from faceblit_core import media

    info = media.probe(path)
    frames = []
    reader = media.iter_frames(info, start=start, end=start + n)
    try:
        for frame in reader:
            frames.append(cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA))
    finally:
        reader.close()
    return np.stack(frames)


def _path(t: int, keys: list[tuple[int, float]]) -> float:
    """Piecewise-linear value at frame ``t`` through ``(frame, value)`` keys."""
    xs, ys = zip(*keys)
    return float(np.interp(t, xs, ys))


def slide_out(frames: np.ndarray, points: np.ndarray, *, axis: str = "y", hold: int = 4) -> MadeClip:
    """The face slides out of the frame (up for ``axis='y'``, left for ``'x'``) and comes back.

    ``points`` are the landmarks of the first frame (the face stays about where it
    is in the source). Timeline: ``hold`` frames still, out over 16 frames, ``hold``
    frames out, back over 14, then still to the end (faster slides over the flat
    background trip the tracker's scene-cut test, whose reset is meant to pop).
    """
    T, H, W = frames.shape[:3]
    lo = points[:, 1].max() if axis == "y" else points[:, 0].max()
    gone = -(lo + 0.05 * (H if axis == "y" else W))
    keys = [(0, 0.0), (hold, 0.0), (hold + 16, gone), (2 * hold + 16, gone), (2 * hold + 30, 0.0), (max(T, 2 * hold + 31), 0.0)]
    out = np.empty_like(frames)
    face_in = np.zeros(T, bool)
    lo_x, lo_y = points[:27].min(axis=0)
    for t in range(T):
        d = _path(t, keys)
        m = np.float32([[1, 0, d if axis == "x" else 0], [0, 1, d if axis == "y" else 0]])
        out[t] = cv2.warpAffine(frames[t], m, (W, H), borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND)
        face_in[t] = (lo_y + d if axis == "y" else lo_x + d) >= 0
    return MadeClip(f"slide_{axis}", out, face_in)


def cylinder_turn(frame: np.ndarray, cx: float, radius: float, yaw_deg: float) -> np.ndarray:
    """``frame`` with the vertical cylinder of ``radius`` px around column ``cx`` rotated by ``yaw_deg``.

    Output column x' inside the cylinder shows the source column at angle
    ``asin((x' − cx)/R) − yaw``; the back of the cylinder shows its edge column.
    Columns outside the cylinder are left as they are.
    """
    H, W = frame.shape[:2]
    xs = np.arange(W, dtype=np.float32)
    u = (xs - cx) / radius
    inside = np.abs(u) < 1.0
    phi = np.arcsin(np.clip(u, -1.0, 1.0)) - np.radians(yaw_deg)
    src = np.where(inside, cx + radius * np.sin(np.clip(phi, -np.pi / 2, np.pi / 2)), xs).astype(np.float32)
    map_x = np.repeat(src[None, :], H, axis=0)
    map_y = np.repeat(np.arange(H, dtype=np.float32)[:, None], W, axis=1)
    return cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def turn(frames: np.ndarray, points: np.ndarray, *, peak: float = 80.0) -> MadeClip:
    """The head turns from frontal to ``peak`` degrees of cylinder yaw and back (:func:`cylinder_turn`).

    Timeline: 6 frames frontal, to ``peak`` over 12, held 4, back over 12, frontal to the end.
    ``face_in`` marks frames at ≤ 20° (where a frontal exemplar fits well).
    """
    T = len(frames)
    cx = float(points[27:31, 0].mean())
    radius = 0.75 * float(points[16, 0] - points[0, 0])
    keys = [(0, 0.0), (6, 0.0), (18, peak), (22, peak), (34, 0.0), (T, 0.0)]
    out = np.empty_like(frames)
    face_in = np.zeros(T, bool)
    for t in range(T):
        yaw = _path(t, keys)
        out[t] = cylinder_turn(frames[t], cx, radius, yaw)
        face_in[t] = yaw <= 20.0
    return MadeClip("turn", out, face_in)


def hand_shape(size: int, colour: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A hand-like sprite: palm ellipse + four fingers, skin ``colour`` with shading and texture.

    Returns ``(rgb (s, s, 3) uint8, alpha (s, s) bool)`` with ``s = size``.
    """
    rng = np.random.default_rng(seed)
    alpha = np.zeros((size, size), np.uint8)
    c = size // 2
    cv2.ellipse(alpha, (c, int(size * 0.68)), (int(size * 0.30), int(size * 0.26)), 0, 0, 360, 1, -1)
    fw = max(2, size // 11)
    for i, (dx, length) in enumerate([(-0.21, 0.40), (-0.07, 0.46), (0.07, 0.44), (0.20, 0.36)]):
        x = int(c + dx * size)
        cv2.line(alpha, (x, int(size * 0.62)), (x, int(size * (0.62 - length))), 1, fw)
    cv2.line(alpha, (int(c - 0.26 * size), int(size * 0.70)), (int(c - 0.44 * size), int(size * 0.48)), 1, fw)  # thumb
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    shade = 0.85 + 0.25 * xx - 0.1 * yy
    noise = cv2.GaussianBlur(rng.normal(0, 14, (size, size)).astype(np.float32), (0, 0), 1.2)
    rgb = np.clip(colour[None, None, :] * shade[..., None] + noise[..., None], 0, 255).astype(np.uint8)
    # Knuckle and finger lines: structure that optical flow can follow.
    for k in range(3):
        y = int(size * (0.32 + 0.1 * k))
        cv2.line(rgb, (int(c - 0.27 * size), y), (int(c + 0.25 * size), y), tuple(int(v) for v in colour * 0.7), 1)
    return rgb, alpha.astype(bool)


def occlude(frames: np.ndarray, points: np.ndarray) -> MadeClip:
    """A hand-sized skin-coloured hand shape moves across the face at eye-to-mouth height.

    The hand (side ≈ 1.6 inter-ocular distances) takes its colour from the cheeks
    of the first frame and crosses from outside the face on the left to outside
    on the right in :data:`CROSSING` frames (then rests there).
    """
    T, H, W = frames.shape[:3]
    iod = float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))
    size = int(round(1.6 * iod))
    cheek = np.concatenate([frames[0][int(p[1]) - 2 : int(p[1]) + 3, int(p[0]) - 2 : int(p[0]) + 3].reshape(-1, 3)
                            for p in (0.5 * (points[2] + points[31]), 0.5 * (points[14] + points[35]))])
    rgb, alpha = hand_shape(size, cheek.mean(axis=0).astype(np.float32))
    y = int(points[30, 1] - size * 0.45)
    x_from, x_to = float(points[0, 0] - size * 0.9), float(points[16, 0] - size * 0.1)
    out = frames.copy()
    occ = np.zeros((T, H, W), bool)
    for t in range(T):
        x = int(round(x_from + (x_to - x_from) * min(1.0, t / (CROSSING - 1))))
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + size), min(H, y + size)
        if x1 <= x0 or y1 <= y0:
            continue
        a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
        out[t, y0:y1, x0:x1][a] = rgb[y0 - y : y1 - y, x0 - x : x1 - x][a]
        occ[t, y0:y1, x0:x1] = a
    return MadeClip("occlude", out, np.ones(T, bool), occ)


def shake(frames: np.ndarray, *, amplitude: float = 0.12, seed: int = 0) -> MadeClip:
    """Every frame translated by a random offset of up to ``amplitude`` × the frame size (a fast shake)."""
    T, H, W = frames.shape[:3]
    rng = np.random.default_rng(seed)
    out = np.empty_like(frames)
    for t in range(T):
        dx, dy = rng.uniform(-amplitude, amplitude, 2) * (W, H)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        out[t] = cv2.warpAffine(frames[t], m, (W, H), borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND)
    return MadeClip("shake", out, np.ones(T, bool))


def make_all(source: str | Path, n: int = 50) -> list[MadeClip]:
    """Every made clip from the first ``n`` frames of ``source`` (landmarks of its first frame by dlib)."""
    from faceblit_core.faces import get_backend

    frames = load_source(source, n)
    found = get_backend("dlib", cnn_fallback=False).detect(frames[0])
    if not found:
        raise ValueError(f"{source}: no face on the first frame")
    points = max(found, key=lambda f: f.area).points
    return [slide_out(frames, points, axis="y"), slide_out(frames, points, axis="x"), turn(frames, points),
            occlude(frames, points), shake(frames)]


def write_clip(clip: MadeClip, path: str | Path, fps: float = 30.0) -> None:
    """Write a made clip as MP4 (libx264, CRF 12: close to lossless for measuring)."""
    from fractions import Fraction

    from faceblit_core import media

    T, H, W = clip.frames.shape[:3]
    with media.VideoWriter(str(path), width=W, height=H, fps=Fraction(fps).limit_denominator(1000), codec="libx264", crf=12,
                           preset="veryfast", overwrite=True) as writer:
        for frame in clip.frames:
            writer.write(frame)


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    source = sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "d3.mp4")
    out_dir.mkdir(parents=True, exist_ok=True)
    for clip in make_all(source):
        write_clip(clip, out_dir / f"{clip.name}.mp4")
        np.save(out_dir / f"{clip.name}.face_in.npy", clip.face_in)
        if clip.occluder is not None:
            np.save(out_dir / f"{clip.name}.occluder.npy", clip.occluder)
        print(out_dir / f"{clip.name}.mp4")
