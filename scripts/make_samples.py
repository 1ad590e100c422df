#!/usr/bin/env python
"""Make the repository's own sample material in ``samples/`` (DESIGN §8).

Everything is derived from ``skimage.data.astronaut()`` — NASA's portrait of
astronaut Eileen Collins (public domain, NASA image S95-00395), which ships with
scikit-image — so the repository holds no third-party data:

``samples/exemplar.png``
    480×640 painted-looking portrait (style exemplar): the photo cropped around
    the face, upscaled, flattened with an edge-preserving filter, smeared along
    the image's edge directions (line integral convolution), colour-quantised
    with k-means, and textured with brush-stroke noise and thin ink lines.
``samples/exemplar.lm.txt``
    Its 68 landmarks (FaceBlit format: 68 lines ``x y``), detected by dlib on the
    UNPAINTED crop, so the painting's texture cannot throw them off.
``samples/clip.mp4``
    3 s, 25 fps, 360×480 portrait H.264/yuv420p + a quiet AAC sine tone: the
    (unpainted) photo animated with a gentle head motion (rotation, translation,
    scale) and a smooth non-rigid warp (jaw opening like speech, brow raise, a
    slowly drifting low-frequency field), so the landmarks move like a talking head.
``samples/clip.landmarks.json``
    Ground-truth landmarks of every clip frame (per-frame format of
    ``faceblit_core.faces.io``): dlib's points on the source photo pushed
    through the exact same animation map that rendered the frame.

Run ``python scripts/make_samples.py [--out samples]``. Everything before the
encoder is reproducible (fixed seeds): the exemplar, the landmarks and the clip's
uncompressed frames. The encoded clip also depends on the ffmpeg build and the CPU
(x264's and swscale's code paths differ by CPU features; the committed one and a
regenerated one differ by ~1.5 grey levels on average), so
``tests/test_samples.py`` compares the uncompressed frames with the committed clip
to within the coding loss.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

# --- geometry of the samples -----------------------------------------------------------------
EXEMPLAR_SIZE = (480, 640)  # (W, H) px, FaceBlit's small exemplar size
EXEMPLAR_CROP = (135, 5, 180)  # (x0, y0, width) in the 512×512 photo; height = width·4/3
CLIP_SIZE = (360, 480)  # (W, H) px
CLIP_CROP = (102, 0, 240)  # (x0, y0, width) in the photo; a wider framing than the exemplar
CLIP_FPS = 25
CLIP_FRAMES = 75  # 3 s
CLIP_CRF = 20
AUDIO_HZ = 440.0
AUDIO_VOLUME = 0.1  # quiet: a tone only so the clip carries an audio stream to copy
SEED = 0


# --- landmarks ---------------------------------------------------------------------------------
def _dlib_models():
    """dlib's HOG face detector and the 68-point predictor from face-recognition-models.

    The package is located with find_spec instead of imported: importing it needs
    pkg_resources, which current setuptools no longer provides (DESIGN §3).
    """
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_samples: the package face-recognition-models is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


def detect_landmarks(rgb: np.ndarray, upsample: int = 1) -> np.ndarray:
    """68 dlib landmarks (68, 2) float32 of the largest face in ``rgb``; exits when none."""
    import dlib

    detector, predictor = _dlib_models()
    rects = detector(np.ascontiguousarray(rgb), upsample)
    if not rects:
        sys.exit("make_samples: dlib found no face in the source photo")
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = predictor(np.ascontiguousarray(rgb), dlib.rectangle(rect.left(), rect.top(), rect.right(), rect.bottom()))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


# --- painting ----------------------------------------------------------------------------------
def stroke_orientation(rgb: np.ndarray, *, sigma: float = 8.0, bias: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Unit stroke direction (tx, ty), each (H, W) float32: along edges (perpendicular to the
    dominant gradient of the smoothed structure tensor). In flat areas a small constant
    tensor takes over so strokes fall back to a painter's diagonal hatching instead of noise."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    b = bias * float(np.mean(jxx + jyy))
    jxx, jyy, jxy = jxx + 0.5 * b, jyy + 0.5 * b, jxy + 0.5 * b
    theta = 0.5 * np.arctan2(2.0 * jxy, jxx - jyy)
    return (-np.sin(theta)).astype(np.float32), np.cos(theta).astype(np.float32)


def line_integral_convolution(src: np.ndarray, tx: np.ndarray, ty: np.ndarray, length: int) -> np.ndarray:
    """Average ``src`` along the streamlines of the direction field (tx, ty), ``length`` unit
    steps each way, triangular weights (Cabral & Leedom 1993). Returns float32, same shape."""
    h, w = tx.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    src = src.astype(np.float32)
    acc, norm = src.copy(), 1.0
    for sign in (1.0, -1.0):
        px, py = gx.copy(), gy.copy()
        dxp, dyp = tx * sign, ty * sign
        for i in range(length):
            vx = cv2.remap(tx, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            vy = cv2.remap(ty, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # an orientation field has no sign: keep walking the way we came
            flip = np.where(vx * dxp + vy * dyp < 0, -1.0, 1.0).astype(np.float32)
            vx, vy = vx * flip, vy * flip
            px += vx
            py += vy
            dxp, dyp = vx, vy
            weight = 1.0 - (i + 1) / (length + 1)
            acc += weight * cv2.remap(src, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            norm += weight
    return acc / norm


def feature_weight(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W, 1) float32 in [0, 1]: 1 on brows, eyes, nose and mouth, where strokes stay short."""
    weight = np.zeros(shape, np.float32)
    for lo, hi in ((17, 22), (22, 27), (27, 36), (36, 42), (42, 48), (48, 60)):
        hull = cv2.convexHull(np.round(landmarks[lo:hi]).astype(np.int32))
        cv2.fillConvexPoly(weight, hull, 1.0)
    weight = cv2.GaussianBlur(cv2.dilate(weight, np.ones((9, 9), np.uint8)), (0, 0), 6.0)
    return np.clip(weight * 1.5, 0.0, 1.0)[..., None]


def paint(rgb: np.ndarray, landmarks: np.ndarray, *, seed: int = SEED) -> np.ndarray:
    """Painterly version of ``rgb`` (H, W, 3) uint8: flat colour areas, strokes along the
    edges, visible bristle texture, thin dark outlines; facial features kept legible."""
    h, w = rgb.shape[:2]
    base = cv2.edgePreservingFilter(rgb, flags=cv2.RECURS_FILTER, sigma_s=30, sigma_r=0.25).astype(np.float32)
    tx, ty = stroke_orientation(rgb)
    feat = feature_weight((h, w), landmarks)
    smear = feat * line_integral_convolution(base, tx, ty, 2) + (1 - feat) * line_integral_convolution(base, tx, ty, 7)

    # k-means colour quantisation in Lab: the flat "mixed paint" patches
    lab = cv2.cvtColor(np.clip(smear, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, labels, centres = cv2.kmeans(lab, 16, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    quant = centres[labels.ravel()].reshape(h, w, 3).astype(np.uint8)
    quant = cv2.cvtColor(quant, cv2.COLOR_LAB2RGB).astype(np.float32)
    colour = line_integral_convolution(0.5 * quant + 0.5 * smear, tx, ty, 3)

    # stroke texture: noise smeared along the strokes, broad (brush) and fine (bristles)
    rng = np.random.default_rng(seed)
    broad = cv2.resize(rng.random((h // 3, w // 3), dtype=np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    fine = rng.random((h, w), dtype=np.float32)
    s1 = line_integral_convolution(broad, tx, ty, 12)
    s2 = line_integral_convolution(fine, tx, ty, 6)
    s1 = (s1 - s1.mean()) / s1.std()
    s2 = (s2 - s2.mean()) / s2.std()

    # ink: negative lobe of a difference of Gaussians darkens the edges
    gray = cv2.cvtColor(np.clip(base, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    dog = cv2.GaussianBlur(gray, (0, 0), 1.0) - cv2.GaussianBlur(gray, (0, 0), 1.6)
    ink = line_integral_convolution(1.0 - 0.5 * np.clip(-dog / 6.0, 0.0, 1.0), tx, ty, 2)

    out = colour * (1.0 + 0.08 * s1[..., None] + 0.05 * s2[..., None]) * ink[..., None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def crop_resize(photo: np.ndarray, crop: tuple[int, int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``(x0, y0, width)`` (height = width·H/W) and resize to ``size``; also the 2×3 affine
    photo→crop map."""
    x0, y0, cw = crop
    ch = cw * size[1] // size[0]
    s = size[0] / cw
    out = cv2.resize(photo[y0 : y0 + ch, x0 : x0 + cw], size, interpolation=cv2.INTER_LANCZOS4)
    return out, np.array([[s, 0, -s * x0], [0, s, -s * y0]], np.float64)


# --- animation ---------------------------------------------------------------------------------
class HeadMotion:
    """Animation of the photo: source point x ↦ A_t(x + D_t(x)).

    ``D_t`` (photo px) is the non-rigid part: the lower face (lower lip, chin) moves
    down like a jaw opening in ~3 Hz "syllables", the brows lift once, and a weak
    low-frequency field drifts slowly. ``A_t`` is the rigid part (photo px → clip px):
    the clip's crop with a small rotation, scale and translation about the face centre.
    All are smooth in t, so frame-to-frame motion stays small (≤ ~3 px).
    """

    def __init__(self, landmarks: np.ndarray, *, seed: int = SEED) -> None:
        self.lm = landmarks.astype(np.float64)
        self.centre = self.lm[27:36].mean(axis=0)  # nose
        self.face_w = float(self.lm[16, 0] - self.lm[0, 0])
        self.mouth_y = float(self.lm[[62, 66], 1].mean())  # between the lips
        self.chin_y = float(self.lm[8, 1])
        self.brow_y = float(self.lm[17:27, 1].mean())
        rng = np.random.default_rng(seed)
        self.waves = [(rng.uniform(0.01, 0.03, 2), rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.2, 0.5)) for _ in range(3)]
        _, self.crop = crop_resize(np.zeros((512, 512, 3), np.uint8), CLIP_CROP, CLIP_SIZE)

    def jaw(self, t: float) -> float:
        """Jaw opening, photo px, ≥ 0: ~3 syllables per second with an on/off envelope."""
        envelope = 0.5 - 0.5 * np.cos(2 * np.pi * t / 1.5)
        return 3.5 * envelope * (0.5 - 0.5 * np.cos(2 * np.pi * 3.0 * t))

    def displacement(self, x: np.ndarray, y: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Non-rigid displacement D_t at photo points (x, y), photo px."""
        c = self.centre
        across = np.exp(-(((x - c[0]) / (0.45 * self.face_w)) ** 2))  # fades out beyond the cheeks
        # jaw: 0 above the mouth, 1 from the lips down to the chin, back to 0 under the chin (neck stays)
        below = np.clip((y - (self.mouth_y - 4)) / 6.0, 0, 1)
        fade = np.clip(1 - (y - self.chin_y) / 25.0, 0, 1)
        dy = self.jaw(t) * across * below * fade
        brows = 2.0 * np.exp(-(((t - 1.6) / 0.35) ** 2))
        dy = dy - brows * across * np.exp(-(((y - self.brow_y) / 10.0) ** 2))
        dx = np.zeros_like(dy)
        near = np.exp(-(((x - c[0]) ** 2 + (y - c[1]) ** 2) / (1.2 * self.face_w) ** 2))
        for k, phase, amp in self.waves:
            arg = k[0] * x + k[1] * y + phase[0] + 2 * np.pi * 0.4 * t
            dx = dx + amp * near * np.sin(arg)
            dy = dy + amp * near * np.cos(arg + phase[1])
        return dx, dy

    def rigid(self, t: float) -> np.ndarray:
        """A_t as a 3×3 matrix, photo px → clip px."""
        angle = 4.0 * np.sin(2 * np.pi * t / 3.0) + 1.5 * np.sin(2 * np.pi * t / 1.3)  # degrees
        scale = 1.0 + 0.04 * np.sin(2 * np.pi * t / 3.0 + 1.0)
        shift = (5.0 * np.sin(2 * np.pi * t / 2.5 + 0.3), 3.0 * np.sin(2 * np.pi * t / 1.7))  # photo px
        about = cv2.getRotationMatrix2D((float(self.centre[0]), float(self.centre[1])), angle, scale)
        about[:, 2] += shift
        crop = np.vstack([self.crop, [0, 0, 1]])
        return crop @ np.vstack([about, [0, 0, 1]])

    def points(self, pts: np.ndarray, t: float) -> np.ndarray:
        """Where photo points (N, 2) land in the clip frame at time t, (N, 2) float32."""
        dx, dy = self.displacement(pts[:, 0], pts[:, 1], t)
        moved = np.stack([pts[:, 0] + dx, pts[:, 1] + dy, np.ones(len(pts))], axis=1)
        return (moved @ self.rigid(t).T)[:, :2].astype(np.float32)

    def render(self, photo: np.ndarray, t: float) -> np.ndarray:
        """Clip frame (H, W, 3) uint8 at time t: inverts the map per output pixel."""
        w, h = CLIP_SIZE
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        inv = np.linalg.inv(self.rigid(t))
        qx = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
        qy = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
        # solve x + D(x) = q by fixed-point iteration (D is smooth, |∇D| << 1, so it converges fast)
        x, y = qx.copy(), qy.copy()
        for _ in range(10):
            dx, dy = self.displacement(x, y, t)
            x, y = qx - dx, qy - dy
        # the top of the photo ends above the head; mirror the plain backdrop there
        return cv2.remap(photo, x.astype(np.float32), y.astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def encode_clip(frames: list[np.ndarray], path: Path) -> None:
    """H.264 yuv420p (CRF 20, single-threaded so it is reproducible on one machine) + AAC
    sine tone, MP4, with the ffmpeg faceblit itself uses."""
    from faceblit_core.media import find_ffmpeg

    ffmpeg = find_ffmpeg()
    w, h = CLIP_SIZE
    duration = len(frames) / CLIP_FPS
    tmp = path.with_name(path.stem + ".part.mp4")
    cmd = [
        ffmpeg, "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(CLIP_FPS), "-i", "-",
        "-f", "lavfi", "-i", f"sine=frequency={AUDIO_HZ}:sample_rate=44100:duration={duration}",
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "medium", "-crf", str(CLIP_CRF), "-pix_fmt", "yuv420p", "-threads", "1",
        "-c:a", "aac", "-b:a", "48k", "-af", f"volume={AUDIO_VOLUME}",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
        "-movflags", "+faststart", str(tmp),
    ]  # fmt: skip
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        sys.exit("make_samples: ffmpeg failed: " + proc.stderr.decode(errors="replace").strip())
    os.replace(tmp, path)


def save_landmarks_txt(path: Path, landmarks: np.ndarray) -> None:
    """FaceBlit's text format: 68 lines ``x y`` (integers like FaceBlit's files, here 2 decimals)."""
    path.write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in landmarks))


def build(out: Path) -> np.ndarray:
    """Write the four sample files into ``out``; return the clip's uncompressed frames,
    (T, H, W, 3) uint8 RGB, as they went into the encoder."""
    from skimage import data

    out.mkdir(parents=True, exist_ok=True)
    photo = np.ascontiguousarray(data.astronaut()[..., :3])  # (512, 512, 3) uint8 RGB

    # exemplar: landmarks on the unpainted crop, then paint it
    crop, _ = crop_resize(photo, EXEMPLAR_CROP, EXEMPLAR_SIZE)
    crop_lm = detect_landmarks(crop, upsample=0)
    exemplar = paint(crop, crop_lm)
    cv2.imwrite(str(out / "exemplar.png"), exemplar[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    save_landmarks_txt(out / "exemplar.lm.txt", crop_lm)

    # clip: the photo itself, animated
    photo_lm = detect_landmarks(photo, upsample=1)
    motion = HeadMotion(photo_lm)
    times = [i / CLIP_FPS for i in range(CLIP_FRAMES)]
    frames = [motion.render(photo, t) for t in times]
    encode_clip(frames, out / "clip.mp4")
    # the per-frame landmark format of faceblit_core.faces.io (one face, id 0, per frame),
    # so the file also drives a render with known landmarks (--landmarks FILE)
    truth = [[{"points": np.round(motion.points(photo_lm, t).astype(np.float64), 2).tolist(), "id": 0}] for t in times]
    (out / "clip.landmarks.json").write_text(
        json.dumps({"fps": CLIP_FPS, "width": CLIP_SIZE[0], "height": CLIP_SIZE[1], "frames": truth}, separators=(",", ":")) + "\n"
    )
    return np.stack(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "samples")
    args = parser.parse_args(argv)
    out: Path = args.out
    build(out)
    for name in ("exemplar.png", "exemplar.lm.txt", "clip.mp4", "clip.landmarks.json"):
        print(f"{name}={(out / name).stat().st_size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
