"""Style assets (faceblit_core.style): contents, cache keys, atomic and self-healing cache."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core import style as S
from faceblit_core import style_asset
from faceblit_core.errors import ConfigError, StyleError
from faceblit_core.guides.appearance import app_cdf, appearance_guide, stretch_contrast
from faceblit_core.guides.temporal import temporal_guide
from faceblit_core.faces.io import load_landmarks, save_landmarks
from faceblit_core.lut import build_lookup_table
from faceblit_core.style import StyleAsset, prepare_style, prepare_style_report

REPO = Path(__file__).resolve().parents[1]
# A small radius keeps each table build well under a second. force: the synthetic 64×80
# styles here have a ring of landmarks 40 px across, which the exemplar check
# (tests/test_exemplar_check.py) rightly refuses; these tests are about assets and the cache.
FAST = dict(lut_radius=3.0, force=True)


def _image(seed: int = 0, size: tuple[int, int] = (64, 80)) -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) % 256], axis=-1)
    return np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)


def _write(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _points(w: int, h: int) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    pts = np.stack([w / 2 + 0.3 * w * np.cos(t), h / 2 + 0.3 * h * np.sin(t)], axis=1)
    return np.round(pts * 4) / 4  # quarter pixels survive the text format exactly


@pytest.fixture
def cache(tmp_path):
    d = tmp_path / "cache"
    yield d
    shutil.rmtree(d, ignore_errors=True)  # entries are 64 MiB each: don't keep them around


@pytest.fixture
def style_file(tmp_path) -> Path:
    return _write(tmp_path / "s.png", _image())


# ---------------------------------------------------------------------------------- contents
def test_builds_the_documented_assets_then_hits_the_cache(style_file, cache):
    rgb = cv2.cvtColor(cv2.imread(str(style_file)), cv2.COLOR_BGR2RGB)
    pts = _points(64, 80)
    r1 = prepare_style_report(style_file, landmarks=pts, cache_dir=cache, temporal_blur=4.0, **FAST)
    a = r1.asset
    assert not r1.cache_hit and r1.cache_file is not None and r1.cache_file.is_file()
    assert (a.width, a.height) == (64, 80) and a.path == str(style_file)
    np.testing.assert_array_equal(a.image, rgb)
    np.testing.assert_array_equal(a.landmarks, pts.astype(np.float32))
    app = stretch_contrast(appearance_guide(rgb))
    np.testing.assert_array_equal(a.app, app)
    np.testing.assert_array_equal(a.app_cdf, app_cdf(app))
    np.testing.assert_array_equal(a.temp, temporal_guide(rgb, sigma=4.0))
    np.testing.assert_array_equal(a.lut, build_lookup_table(app, lambda_pos=10.0, lambda_app=2.0, radius=3.0))
    assert a.lut.dtype == np.int32 and a.app_cdf.dtype == np.float64 and a.landmarks.dtype == np.float32
    assert len(a.key) == 64 and a.params == {"lambda_pos": 10.0, "lambda_app": 2.0, "lut_radius": 3.0, "temporal_blur": 4.0}
    assert {"hash", "read", "landmarks", "guides", "lut", "save"} <= set(r1.stage_s)
    assert "built" in r1.describe() and "64x80" in r1.describe()

    r2 = prepare_style_report(style_file, landmarks=pts, cache_dir=cache, temporal_blur=4.0, **FAST)
    assert r2.cache_hit and r2.cache_file == r1.cache_file and r2.asset.key == a.key
    for name in ("image", "landmarks", "app", "app_cdf", "temp", "lut"):
        np.testing.assert_array_equal(getattr(r2.asset, name), getattr(a, name))
    assert "cache" in r2.describe()
    # one entry, no temporary files left behind
    assert [p.name for p in cache.iterdir() if p.name != ".lock"] == [f"{a.key}.fbstyle"]
    # the plain form returns the asset; a renamed copy of the file finds the same entry
    copy = shutil.copy(style_file, style_file.with_name("renamed.png"))
    assert isinstance(prepare_style(copy, landmarks=pts, cache_dir=cache, temporal_blur=4.0, **FAST), StyleAsset)
    assert len(list(cache.glob("*.fbstyle"))) == 1


def test_sibling_landmark_file_is_used_automatically(style_file, cache):
    pts = _points(64, 80) + 0.25
    save_landmarks(style_file.with_name("s.lm.txt"), pts)
    r = prepare_style_report(style_file, cache_dir=cache, **FAST)
    assert r.landmarks_source.startswith("sibling") and "s.lm.txt" in r.landmarks_source
    np.testing.assert_array_equal(r.asset.landmarks, load_landmarks(style_file.with_name("s.lm.txt")))
    # an explicit file wins over the sibling
    other = style_file.with_name("other.txt")
    save_landmarks(other, pts + 1)
    r2 = prepare_style_report(style_file, landmarks=other, cache_dir=cache, **FAST)
    assert r2.landmarks_source == f"file {other}"
    np.testing.assert_array_equal(r2.asset.landmarks, (pts + 1).astype(np.float32))


def test_resolve_landmarks_is_the_one_rule(style_file, tmp_path):
    # given values, else the given file, else NAME.lm.txt beside the style, else "detected"
    assert S.resolve_landmarks(style_file) == (None, "detected")
    pts = _points(64, 80)
    sibling = style_file.with_name("s.lm.txt")
    save_landmarks(sibling, pts)
    got, source = S.resolve_landmarks(style_file)
    assert source == f"sibling {sibling}"
    np.testing.assert_array_equal(got, pts.astype(np.float32))
    other = tmp_path / "other.txt"
    save_landmarks(other, pts + 1)
    got, source = S.resolve_landmarks(style_file, other)
    assert source == f"file {other}"
    np.testing.assert_array_equal(got, (pts + 1).astype(np.float32))
    got, source = S.resolve_landmarks(str(style_file), pts + 2)
    assert source == "array" and got.dtype == np.float32
    np.testing.assert_array_equal(got, (pts + 2).astype(np.float32))
    with pytest.raises(StyleError, match="landmark file not found") as e:
        S.resolve_landmarks(style_file, tmp_path / "nope.txt")
    assert e.value.exit_code == 4
    with pytest.raises(StyleError, match="NaN"):
        S.resolve_landmarks(style_file, np.full((68, 2), np.nan))
    with pytest.raises(StyleError, match="outside the 10x10 image"):
        S.resolve_landmarks(style_file, image_size=(10, 10))


def test_evaluation_resolves_style_landmarks_the_same_way(style_file, tmp_path, monkeypatch):
    from faceblit_core import evaluation

    pts = _points(64, 80)
    save_landmarks(style_file.with_name("s.lm.txt"), pts)
    image, got = evaluation.run._load_style(style_file, None)
    assert image.shape == (80, 64, 3)
    np.testing.assert_array_equal(got, pts.astype(np.float32))
    with pytest.raises(StyleError, match="landmark file not found"):
        evaluation.run._load_style(style_file, tmp_path / "nope.txt")
    style_file.with_name("s.lm.txt").unlink()
    monkeypatch.setattr(evaluation.run, "detect_style_landmarks", lambda image: pts + 3)
    np.testing.assert_array_equal(evaluation.run._load_style(style_file, None)[1], pts + 3)


def test_without_landmarks_they_are_detected(style_file, cache, monkeypatch):
    from faceblit_core import faces

    pts = _points(64, 80).astype(np.float32)
    calls = []
    monkeypatch.setattr(faces, "detect_style_landmarks", lambda image: calls.append(image.shape) or pts)
    r = prepare_style_report(style_file, cache_dir=cache, **FAST)
    assert calls == [(80, 64, 3)] and r.landmarks_source == "detected"
    np.testing.assert_array_equal(r.asset.landmarks, pts)
    # detected points are cached with the asset: no second detection
    assert prepare_style_report(style_file, cache_dir=cache, **FAST).cache_hit and len(calls) == 1


def test_real_style_with_its_landmark_file(shared_data, tmp_path, cache):
    # a shared exemplar downscaled to 240×320 (any size is fine), its hand-made points scaled alike
    src = shared_data / "styles" / "watercolorgirl_480x640.png"
    rgb = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)
    small = _write(tmp_path / "wg.png", cv2.resize(rgb, (240, 320), interpolation=cv2.INTER_AREA))
    save_landmarks(tmp_path / "wg.lm.txt", load_landmarks(src.with_name("watercolorgirl_480x640.lm.txt")) / 2)
    r = prepare_style_report(small, cache_dir=cache, lut_radius=8.0)
    a = r.asset
    assert (a.width, a.height) == (240, 320) and r.landmarks_source.startswith("sibling")
    assert a.lut.min() >= 0 and a.lut.max() < 240 * 320
    # the table's answer for a cell at its own appearance lies near the cell
    ys, xs = np.divmod(a.lut[128, 128, :].astype(np.int64), 240)
    assert np.abs(xs - 120).max() <= 9 and np.abs(ys - 160).max() <= 9


def test_landmarks_of_another_size_of_the_painting_are_warned_about(shared_data, tmp_path, cache):
    # The 480x640 file lies inside the 768x1024 painting, so no check of the bounds sees it;
    # the face found in the image does (1.2 eye distances away). Its own file: no warning.
    src = shared_data / "styles" / "watercolorgirl.png"
    with pytest.warns(S.ExemplarWarning, match="lie far from the face found in the image"):
        prepare_style_report(src, landmarks=shared_data / "styles" / "watercolorgirl_480x640.lm.txt", cache_dir=cache, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error", S.ExemplarWarning)
        prepare_style_report(src, landmarks=shared_data / "styles" / "watercolorgirl.lm.txt", cache_dir=cache, **FAST)


# --------------------------------------------------------------------------------- cache keys
def test_any_change_makes_a_new_entry_never_a_stale_hit(tmp_path, cache):
    rgb = _image(1)
    path = _write(tmp_path / "s.png", rgb)
    pts = _points(64, 80)
    base = dict(landmarks=pts, cache_dir=cache, lambda_pos=10.0, lambda_app=2.0, lut_radius=3.0, temporal_blur=6.0, force=True)
    first = prepare_style_report(path, **base)
    keys = {first.asset.key}

    def fresh(p=path, **changes):
        r = prepare_style_report(p, **{**base, **changes})
        assert not r.cache_hit, changes
        assert r.asset.key not in keys, changes
        keys.add(r.asset.key)
        return r.asset

    changed = rgb.copy()
    changed[40, 30, 1] ^= 1  # one pixel, one bit
    asset = fresh(_write(tmp_path / "s2.png", changed))
    assert asset.image[40, 30, 1] == changed[40, 30, 1]
    moved = pts.copy()
    moved[30, 0] += 0.25
    np.testing.assert_array_equal(fresh(landmarks=moved).landmarks[30], moved[30].astype(np.float32))
    fresh(lambda_pos=10.5)
    fresh(lambda_app=1.2)
    assert not np.array_equal(fresh(lut_radius=3.5).lut, first.asset.lut)
    fresh(temporal_blur=5.0)
    # the same inputs again: a hit, with the original content
    again = prepare_style_report(path, **base)
    assert again.cache_hit and again.asset.key == first.asset.key
    # an image file whose bytes change in place (same name) does not reuse the entry
    _write(path, changed)
    assert prepare_style_report(path, **base).asset.key != first.asset.key


def test_key_covers_bytes_landmarks_and_parameters():
    p = dict(lambda_pos=10.0, lambda_app=2.0, lut_radius=30.0, temporal_blur=6.0)
    pts = _points(64, 80)
    k = S.style_key(b"abc", pts, p)
    assert k == S.style_key(b"abc", pts.astype(np.float32), dict(p))
    assert k != S.style_key(b"abd", pts, p)
    assert k != S.style_key(b"abc", None, p)
    assert k != S.style_key(b"abc", pts + 0.25, p)
    for name in p:
        assert k != S.style_key(b"abc", pts, {**p, name: p[name] + 0.5}), name


# ------------------------------------------------------------------------- robustness of cache
def test_corrupt_entries_are_rebuilt(style_file, cache):
    pts = _points(64, 80)
    r = prepare_style_report(style_file, landmarks=pts, cache_dir=cache, **FAST)
    entry, want = r.cache_file, r.asset.lut.copy()
    size = entry.stat().st_size
    other = prepare_style_report(style_file, landmarks=pts + 1, cache_dir=cache, **FAST).cache_file

    def damage_truncate():
        with open(entry, "r+b") as f:
            f.truncate(size // 2)

    def damage_garbage():
        entry.write_bytes(b"not a zip at all")

    def damage_other_key():
        shutil.copyfile(other, entry)  # a valid entry, but of another key

    def damage_empty():
        entry.write_bytes(b"")

    def damage_table_values():
        # Same size, same header: 100 kB of noise in the table, far from the slab once checked.
        with open(entry, "r+b") as f:
            f.seek(20_000_000)
            f.write(np.random.default_rng(5).integers(0, 256, 100_000, dtype=np.uint8).tobytes())

    for damage in (damage_truncate, damage_garbage, damage_other_key, damage_empty, damage_table_values):
        damage()
        again = prepare_style_report(style_file, landmarks=pts, cache_dir=cache, **FAST)
        assert not again.cache_hit and "rebuilt" in again.note, damage.__name__
        np.testing.assert_array_equal(again.asset.lut, want)
        assert prepare_style_report(style_file, landmarks=pts, cache_dir=cache, **FAST).cache_hit, damage.__name__


def test_unwritable_cache_still_returns_the_asset(style_file, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    r = prepare_style_report(style_file, landmarks=_points(64, 80), cache_dir=not_a_dir / "sub", **FAST)
    assert r.cache_file is None and not r.cache_hit and "not written" in r.note
    assert r.asset.lut.shape == (256, 256, 256)


_WRITER = textwrap.dedent(
    """
    import sys
    from faceblit_core.style import prepare_style_report
    from faceblit_core.style_asset import save_entry
    r = prepare_style_report(sys.argv[1], cache_dir=sys.argv[2], lut_radius=3.0, force=True)
    for _ in range(6):  # keep rewriting the same entry while the other process and the test read it
        save_entry(r.cache_file, r.asset)
    print(r.asset.key, r.cache_hit)
    """
)


def test_concurrent_runs_on_the_same_style_never_see_half_a_file(style_file, cache):
    save_landmarks(style_file.with_name("s.lm.txt"), _points(64, 80))
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(style_file), str(cache)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    loads, errors = [0], []

    def reader():
        while any(p.poll() is None for p in procs):
            entries = list(cache.glob("*.fbstyle")) if cache.is_dir() else []
            for e in entries:
                try:
                    style_asset.load_entry(e, e.name[: -len(".fbstyle")], path="x", params={})
                    loads[0] += 1
                except FileNotFoundError:
                    pass
                except Exception as exc:  # noqa: BLE001 - any other failure is a half-written file
                    errors.append(repr(exc))

    t = threading.Thread(target=reader)
    t.start()
    outs = [p.communicate(timeout=180) for p in procs]
    t.join()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    keys = {o[0].split()[0] for o in outs}
    assert len(keys) == 1 and not errors, errors[:3]
    assert loads[0] > 0
    assert sorted(p.name for p in cache.iterdir() if p.name != ".lock") == [f"{keys.pop()}.fbstyle"]  # no temporary files left
    assert prepare_style_report(style_file, cache_dir=cache, lut_radius=3.0, force=True).cache_hit


def test_two_threads_building_at_once_agree(style_file, cache):
    pts = _points(64, 80)
    barrier = threading.Barrier(2)
    results = []

    def build():
        barrier.wait()
        results.append(prepare_style_report(style_file, landmarks=pts, cache_dir=cache, **FAST))

    threads = [threading.Thread(target=build) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == 2
    np.testing.assert_array_equal(results[0].asset.lut, results[1].asset.lut)
    assert len(list(cache.glob("*.fbstyle"))) == 1


# ------------------------------------------------------------------------------------- errors
def test_style_errors_are_one_line(tmp_path, cache, monkeypatch):
    pts = _points(64, 80)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    cases = {
        "missing": tmp_path / "nope.png",
        "directory": tmp_path,
        "not an image": text,
    }
    for what, path in cases.items():
        with pytest.raises(StyleError) as e:
            prepare_style_report(path, landmarks=pts, cache_dir=cache, **FAST)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg, (what, msg)
        assert e.value.exit_code == 4
    good = _write(tmp_path / "s.png", _image())
    with pytest.raises(StyleError, match="landmarks"):
        prepare_style_report(good, landmarks=tmp_path / "missing.lm.txt", cache_dir=cache, **FAST)
    bad_lm = tmp_path / "bad.txt"
    bad_lm.write_text("1 2\n3 4\n")
    with pytest.raises(StyleError, match="68"):
        prepare_style_report(good, landmarks=bad_lm, cache_dir=cache, **FAST)
    with pytest.raises(StyleError, match="outside"):
        prepare_style_report(good, landmarks=pts + 500, cache_dir=cache, **FAST)
    with pytest.raises(ConfigError, match="lut_radius"):
        prepare_style_report(good, landmarks=pts, cache_dir=cache, lut_radius=-1.0)
    # over 2^24 pixels (limit lowered here instead of writing a huge file)
    from faceblit_core import lut

    monkeypatch.setattr(lut, "MAX_STYLE_PIXELS", 1000)
    with pytest.raises(StyleError, match="downscale"):
        prepare_style_report(good, landmarks=pts, cache_dir=cache, **FAST)


def test_default_cache_dir_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEBLIT_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert S.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("FACEBLIT_CACHE_DIR")
    assert S.default_cache_dir() == tmp_path / "x" / "faceblit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert S.default_cache_dir() == tmp_path / "home" / ".cache" / "faceblit"


def test_asset_checks_shapes():
    z = np.zeros
    ok = dict(image=z((4, 5, 3), np.uint8), landmarks=z((68, 2), np.float32), app=z((4, 5), np.uint8),
              app_cdf=z(256), temp=z((4, 5, 3), np.uint8), lut=z((256, 256, 256), np.int32), key="k")
    assert StyleAsset(**ok).width == 5
    with pytest.raises(ValueError, match="style app shape"):
        StyleAsset(**{**ok, "app": z((5, 4), np.uint8)})
