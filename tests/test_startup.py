"""Start-up cost of a short run: what a cached-style still loads (timings are in bench/startup.py, not here)."""

from __future__ import annotations

import mmap
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np

from faceblit_core.style import prepare_style_report

REPO = Path(__file__).resolve().parents[1]


def test_a_cache_hit_maps_the_table_instead_of_reading_it(tmp_path):
    rng = np.random.default_rng(3)
    style = tmp_path / "s.png"
    assert cv2.imwrite(str(style), rng.integers(0, 255, (80, 64, 3), dtype=np.uint8))
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    pts = np.stack([32 + 18 * np.cos(t), 40 + 22 * np.sin(t)], axis=1).astype(np.float32)
    # force: a noise image with a 36 px ring of points, which the exemplar check refuses; this is about the cache.
    built = prepare_style_report(style, landmarks=pts, cache_dir=tmp_path / "c", lut_radius=2.0, force=True)
    hit = prepare_style_report(style, landmarks=pts, cache_dir=tmp_path / "c", lut_radius=2.0, force=True)
    assert hit.cache_hit
    lut = hit.asset.lut
    base = lut
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(getattr(base, "obj", base), mmap.mmap)  # 64 MiB are paged in on demand, not read
    assert lut.flags.writeable  # copy-on-write: torch.from_numpy takes it without a warning
    np.testing.assert_array_equal(lut, built.asset.lut)


_DETECT = textwrap.dedent(
    """
    import sys, time
    import cv2
    from faceblit_core.faces.backends.dlib import _dlib_model
    t = time.process_time()
    hog = _dlib_model("hog")
    took = time.process_time() - t
    img = cv2.cvtColor(cv2.imread(sys.argv[1]), cv2.COLOR_BGR2RGB)
    rects, scores, _ = hog.run(img, 1, 0)
    print([(r.left(), r.top(), r.right(), r.bottom()) for r in rects], [round(s, 9) for s in scores])
    """
)


def test_the_hog_detector_is_kept_decoded_and_detects_identically(tmp_path, shared_data):
    import dlib

    env = {"FACEBLIT_CACHE_DIR": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"}
    image = str(shared_data / "images" / "target2.png")
    first = subprocess.run([sys.executable, "-c", _DETECT, image], capture_output=True, text=True, cwd=REPO, env=env, check=True)
    saved = tmp_path / "c" / "models" / f"dlib-{dlib.__version__}-frontal-face.svm"
    assert saved.is_file() and saved.stat().st_size > 100_000
    again = subprocess.run([sys.executable, "-c", _DETECT, image], capture_output=True, text=True, cwd=REPO, env=env, check=True)
    assert again.stdout == first.stdout and "[(" in first.stdout  # same face box, same score
    saved.write_bytes(b"damaged")  # a damaged file is rebuilt, not fatal
    third = subprocess.run([sys.executable, "-c", _DETECT, image], capture_output=True, text=True, cwd=REPO, env=env, check=True)
    assert third.stdout == first.stdout and saved.stat().st_size > 100_000


def test_a_batch_of_one_probes_its_input_once(tmp_path, monkeypatch):
    from faceblit_core import batch, media

    still = tmp_path / "still.png"
    media.write_image(still, next(iter(media.iter_frames(media.probe(REPO / "samples" / "clip.mp4"), start=0, end=1))))
    calls = []
    real = media.probe
    monkeypatch.setattr(media, "probe", lambda p: calls.append(p) or real(p))
    summaries, failures = batch.stylize_batch([str(still)], REPO / "samples" / "exemplar.png", output=str(tmp_path / "o.png"),
                                                 cache_dir=tmp_path / "c", progress=False)
    assert not failures and summaries[0].frames == 1
    assert len(calls) == 1  # two ffmpeg runs and a decode, not twice that
