"""faceblit_core.quality: psnr, ssim (checked against scikit-image) and compare_media."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from faceblit_core import media
from faceblit_core.errors import InputError
from faceblit_core.quality import FrameScore, compare_media, psnr, ssim


def _ffmpeg(*args: str) -> None:
    subprocess.run([media.find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _clip(path: Path, *, size: str = "64x48", frames: int = 8, crf: int = 0) -> Path:
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-frames:v", str(frames),
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", str(crf), "-pix_fmt", "yuv420p", str(path))
    return path


def _photo_like(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([120 + 90 * np.sin(xx / 6), 120 + 90 * np.cos(yy / 5), 100 + 60 * np.sin((xx - yy) / 9)], -1)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ psnr


def test_psnr_known_values():
    a = np.zeros((10, 10, 3), np.uint8)
    assert psnr(a, a) == math.inf
    b = a + 1  # MSE = 1
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2))
    c = a.copy()
    c[0, 0, 0] = 255  # MSE = 255² / 300
    assert psnr(a, c) == pytest.approx(10 * math.log10(300))
    assert psnr(np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8)) == pytest.approx(0.0)


def test_psnr_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="shapes"):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        psnr(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32))


# ------------------------------------------------------------------------------ ssim


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    a = _photo_like()
    rng = np.random.default_rng(1)
    for sigma in (2.0, 10.0, 30.0):
        b = np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8)
        ours = ssim(a, b)
        luma = lambda x: x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
        ref = structural_similarity(luma(a), luma(b), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255)
        assert ours == pytest.approx(ref, abs=1e-6)


def test_ssim_properties():
    a = _photo_like()
    assert ssim(a, a) == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    scores = [ssim(a, np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8)) for s in (1, 5, 20, 60)]
    assert all(x > y for x, y in zip(scores, scores[1:]))  # more noise, less similar
    assert ssim(a, 255 - a) < 0  # inverted structure
    assert ssim(a[:, :, 0], a[:, :, 0]) == pytest.approx(1.0)  # gray input
    with pytest.raises(ValueError, match="size"):
        ssim(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))


# ------------------------------------------------------------------------------ compare_media


def test_compare_video_with_itself_and_a_reencode(tmp_path):
    a = _clip(tmp_path / "a.mp4", crf=0)
    scores = compare_media(a, a)
    assert len(scores) == 8 and all(isinstance(s, FrameScore) for s in scores)
    assert [s.index for s in scores] == list(range(8))
    assert all(s.psnr == math.inf and s.ssim == pytest.approx(1.0) for s in scores)
    b = tmp_path / "b.mp4"
    _ffmpeg("-i", str(a), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "35", str(b))
    worse = compare_media(a, b)
    assert all(15 < s.psnr < 45 and 0.3 < s.ssim < 1.0 for s in worse)
    fast = compare_media(a, b, with_ssim=False, end=3)
    assert len(fast) == 3 and all(math.isnan(s.ssim) for s in fast)
    assert [s.psnr for s in fast] == [s.psnr for s in worse[:3]]


def test_compare_images(tmp_path):
    img = _photo_like()
    media.write_image(tmp_path / "a.png", img)
    media.write_image(tmp_path / "b.jpg", img, quality=90)
    (same,) = compare_media(tmp_path / "a.png", tmp_path / "a.png")
    assert same.psnr == math.inf
    (s,) = compare_media(tmp_path / "a.png", tmp_path / "b.jpg")
    assert 25 < s.psnr < 60 and 0.8 < s.ssim < 1.0


def test_compare_mismatches_name_both_numbers(tmp_path):
    a = _clip(tmp_path / "a.mp4", frames=8)
    short = _clip(tmp_path / "short.mp4", frames=5)
    big = _clip(tmp_path / "big.mp4", size="96x48", frames=8)
    media.write_image(tmp_path / "still.png", _photo_like(48, 64))
    cases = [
        (short, ["frame counts differ", "8", "5"]),
        (big, ["sizes differ", "64x48", "96x48"]),
        (tmp_path / "still.png", ["cannot compare", "image", "video"]),
        (tmp_path / "missing.mp4", ["missing.mp4", "no such file"]),
    ]
    for other, words in cases:
        with pytest.raises(InputError) as ei:
            compare_media(a, other)
        msg = str(ei.value)
        assert "\n" not in msg
        for w in words:
            assert w in msg, (w, msg)


def test_compare_shared_clip_round_trip(shared_data, tmp_path):
    src = media.probe(shared_data / "videos" / "d3.mp4")
    out = tmp_path / "d3-12.mp4"
    with media.VideoWriter(out, width=src.width, height=src.height, fps=src.fps, preset="ultrafast", crf=18) as w:
        for f in media.iter_frames(src, end=12):
            w.write(f)
    cut = tmp_path / "d3-ref.mp4"  # same 12 frames, losslessly, as the reference
    with media.VideoWriter(cut, width=src.width, height=src.height, fps=src.fps, preset="ultrafast", crf=0) as w:
        for f in media.iter_frames(src, end=12):
            w.write(f)
    scores = compare_media(cut, out)
    assert len(scores) == 12 and min(s.psnr for s in scores) > 38 and min(s.ssim for s in scores) > 0.97
