"""StyleBlit synthesis, NNF denoising and voting (faceblit_core.synthesis).

The vectorized functions must equal the per-pixel reference loops exactly, for
any tile size, region origin and cache state; these tests check that on random
but *structured* inputs (smooth positional guide, a lookup table consistent
with it) so that every seed level accepts some pixels, and on a crop of real
guides of the team's data.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceblit_core import synthesis as syn
from faceblit_core.synthesis import _util, seeds
from faceblit_core.temporal_state import refresh_mask, refresh_phases

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ inputs
@functools.lru_cache(maxsize=8)
def _style(Hs: int, Ws: int, seed: int):
    """Style appearance/temporal guides and a lookup table consistent with the positions."""
    rng = np.random.default_rng(seed)
    app = rng.integers(96, 160, (Hs, Ws), dtype=np.uint8)
    temp = rng.integers(0, 256, (Hs, Ws, 3), dtype=np.uint8)
    image = rng.integers(0, 256, (Hs, Ws, 3), dtype=np.uint8)
    # LUT[y8, x8, a] = pixel near the cell centre, moved by a small a-dependent step,
    # so neighbouring cells map to neighbouring pixels as a real table does.
    cx = np.clip(np.round((np.arange(256) + 0.5) * Ws / 256 - 0.5), 0, Ws - 1).astype(np.int64)
    cy = np.clip(np.round((np.arange(256) + 0.5) * Hs / 256 - 0.5), 0, Hs - 1).astype(np.int64)
    step = rng.integers(-1, 2, (256, 2))
    x = np.clip(cx[None, :, None] + step[None, None, :, 0], 0, Ws - 1)
    y = np.clip(cy[:, None, None] + step[None, None, :, 1], 0, Hs - 1)
    lut = (y * Ws + x).astype(np.int32)
    lut = np.broadcast_to(lut, (256, 256, 256)).copy()
    return app, temp, image, lut


def _guides(h: int, w: int, Hs: int, Ws: int, seed: int, *, temporal: bool):
    rng = np.random.default_rng(seed + 1000)
    app, temp, image, lut = _style(Hs, Ws, seed % 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sx, sy = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)
    gx = xx * sx + rng.uniform(-3, Ws / 2) + 1.5 * np.sin(yy / 7.0) + rng.normal(0, 0.3, (h, w))
    gy = yy * sy + rng.uniform(-3, Hs / 2) + 1.5 * np.cos(xx / 9.0) + rng.normal(0, 0.3, (h, w))
    g_pos = np.stack([gx, gy], -1).astype(np.float32)
    # Appearance close to the style's at the mapped position: small errors, mixed acceptance.
    ix = np.clip(np.round(gx), 0, Ws - 1).astype(int)
    iy = np.clip(np.round(gy), 0, Hs - 1).astype(int)
    g_app = np.clip(app[iy, ix].astype(int) + rng.integers(-6, 7, (h, w)), 0, 255).astype(np.uint8)
    kw = {}
    if temporal:
        g_temp = np.clip(temp[iy, ix].astype(int) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
        kw = dict(g_temp=g_temp, style_temp=temp, lambda_temp=0.75)
    return g_pos, g_app, app, lut, image, kw


def _compare(g_pos, g_app, app, lut, *, tile_pixels=None, cache=None, **kw):
    got, got_lv = syn.styleblit(g_pos, g_app, app, lut, return_levels=True, tile_pixels=tile_pixels, cache=cache, **kw)
    want, want_lv = syn.styleblit_reference(g_pos, g_app, app, lut, return_levels=True, **kw)
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(got_lv.numpy(), want_lv)
    # Without return_levels (the level-0 statistics pass off) the NNF is the same.
    np.testing.assert_array_equal(syn.styleblit(g_pos, g_app, app, lut, tile_pixels=tile_pixels, **kw).numpy(), want)
    # Evaluated at a few pixels only (the incremental path), each equals the full result.
    _check_pixels_path(lambda px: syn.styleblit(g_pos, g_app, app, lut, pixels=px, return_levels=True, **kw),
                       (want, want_lv))
    return want, want_lv


def _check_pixels_path(at, full, seed: int = 0):
    """``at(pixels)`` equals ``full`` (one array or a tuple) at a random subset, none, and all pixels."""
    full = full if isinstance(full, tuple) else (full,)
    h, w = full[0].shape[:2]
    rng = np.random.default_rng(seed)
    for px in (np.sort(rng.choice(h * w, size=max(1, h * w // 7), replace=False)), np.arange(0),
               np.arange(h * w)):
        got = at(torch.from_numpy(px.astype(np.int64)))
        got = got if isinstance(got, tuple) else (got,)
        for g, f in zip(got, full):
            f = np.asarray(f)
            np.testing.assert_array_equal(g.numpy(), f.reshape((h * w,) + f.shape[2:])[px])


# ------------------------------------------------------------------------------ jitter
def test_jitter_table_is_seeded_cached_and_in_range():
    a = syn.make_jitter(3, 4)
    assert a.shape == (5, 256, 256, 2) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) < 1.0
    np.testing.assert_array_equal(a.numpy(), np.random.default_rng(3).random((5, 256, 256, 2), dtype=np.float32))
    assert syn.JitterTable.create(3, 4) is syn.JitterTable.create(3, 4)
    assert not torch.equal(a, syn.make_jitter(4, 4))
    first = float(a[0, 0, 0, 0])
    a[0, 0, 0, 0] = 2.0          # callers get a copy; the cached table is untouched
    assert float(syn.JitterTable.create(3, 4).table[0, 0, 0, 0]) == first
    wrapped = syn.JitterTable.from_tensor(syn.make_jitter(3, 4))
    assert wrapped.key == syn.JitterTable.from_tensor(syn.make_jitter(3, 4).numpy()).key
    with pytest.raises(ValueError, match="levels"):
        syn.JitterTable.create(0, 12)
    with pytest.raises(ValueError, match="jitter table values"):
        syn.JitterTable.from_tensor(torch.ones(2, 256, 256, 2))


def test_seeds_are_floor_of_h_times_b_plus_j_in_frame_coordinates():
    jt = syn.JitterTable.create(11, 7)
    table = jt.table.numpy().astype(np.float64)
    for level in (0, 1, 3, 7):
        h = 1 << level
        bx = torch.tensor([-3, -1, 0, 5, 255, 256, 700, 40000], dtype=torch.int32)
        by = torch.tensor([-2, 0, 1, 257, 9999], dtype=torch.int32)
        sx, sy = seeds._seed_grid(jt, level, bx, by, torch.device("cpu"))
        for i, cy in enumerate(by.tolist()):
            for j, cx in enumerate(bx.tolist()):
                jx, jy = table[level, cy % 256, cx % 256]
                assert sx[i, j] == math.floor(h * (cx + jx)) and sy[i, j] == math.floor(h * (cy + jy))


def test_quantize_position_is_exact_floor_like_the_lut_module():
    lut_mod = pytest.importorskip("faceblit_core.lut")
    rng = np.random.default_rng(0)
    for size in (1, 3, 255, 256, 480, 683, 768, 1000, 1024, 4095, 65535):
        k = np.arange(-3, 260)
        exact = (k * size / 256.0).astype(np.float32)          # multiples of size/256 and neighbours
        v = np.concatenate([exact, np.nextafter(exact, -np.inf), np.nextafter(exact, np.inf),
                            rng.uniform(-50, size + 50, 5000).astype(np.float32),
                            np.array([-0.0, 0.0, 1e-30, -1e-30, 1e9, -1e9, size, size - 1e-3], np.float32)])
        v = v.astype(np.float32)
        want, _ = lut_mod.quantize_position(v, v, style_w=size, style_h=size)
        got = syn.quantize_position_torch(torch.from_numpy(v), size)
        assert got.dtype == torch.int32
        np.testing.assert_array_equal(got.numpy(), want)


# ---------------------------------------------------------------------------- styleblit
CASES = [
    # h, w, Hs, Ws, levels, threshold, origin, temporal, seed
    (17, 23, 40, 30, 3, 50.0, (5, 7), False, 1),
    (31, 40, 48, 40, 4, 50.0, (130, 3), True, 2),
    (1, 1, 5, 5, 2, 50.0, (0, 0), False, 3),
    (9, 33, 12, 50, 0, 50.0, (0, 0), False, 4),
    (20, 20, 30, 30, 4, 0.0, (3, 3), False, 5),
    (25, 19, 40, 30, 2, 1e30, (1000, 2000), True, 6),
    (13, 37, 30, 60, 4, 25.0, (64, 128), False, 7),
    (40, 3, 64, 20, 3, 80.0, (7, 255), True, 8),
    (2, 45, 20, 64, 1, 40.0, (511, 1), False, 9),
    (33, 29, 50, 50, 4, math.inf, (0, 0), False, 10),
]


@pytest.mark.parametrize("h, w, Hs, Ws, levels, threshold, origin, temporal, seed", CASES)
def test_styleblit_equals_reference(h, w, Hs, Ws, levels, threshold, origin, temporal, seed):
    g_pos, g_app, app, lut, _, kw = _guides(h, w, Hs, Ws, seed, temporal=temporal)
    kw.update(origin=origin, jitter=seed, threshold=threshold, levels=levels)
    _, lv = _compare(g_pos, g_app, app, lut, **kw)
    _compare(g_pos, g_app, app, lut, tile_pixels=w * 2 + 1, **kw)   # other tiling, same result
    if threshold == 0.0:
        assert (lv == -1).all()
    if threshold >= 1e30 and levels > 0 and h * w > 100:
        assert (lv == levels).mean() > 0.5


def test_styleblit_cases_exercise_every_level():
    seen = set()
    for h, w, Hs, Ws, levels, threshold, origin, temporal, seed in CASES:
        g_pos, g_app, app, lut, _, kw = _guides(h, w, Hs, Ws, seed, temporal=temporal)
        _, lv = syn.styleblit(g_pos, g_app, app, lut, origin=origin, jitter=seed, threshold=threshold,
                              levels=levels, return_levels=True, **kw)
        seen |= set(np.unique(lv.numpy()).tolist())
    assert {-1, 0, 1, 2, 3, 4} <= seen


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 14), w=st.integers(1, 14), levels=st.integers(0, 4),
       x0=st.integers(0, 600), y0=st.integers(0, 600), seed=st.integers(0, 50),
       threshold=st.sampled_from([0.0, 10.0, 50.0, 120.0, 1e9]), temporal=st.booleans())
def test_styleblit_equals_reference_property(h, w, levels, x0, y0, seed, threshold, temporal):
    g_pos, g_app, app, lut, _, kw = _guides(h, w, 24, 18, seed, temporal=temporal)
    kw.update(origin=(x0, y0), jitter=seed % 5, threshold=threshold, levels=levels)
    _compare(g_pos, g_app, app, lut, tile_pixels=1 + seed % 40, **kw)


def test_moving_region_reuses_the_seed_window_and_stays_exact():
    cache = syn.SynthesisCache()
    g_pos, g_app, app, lut, _, kw = _guides(24, 30, 40, 40, 3, temporal=False)
    jt = syn.JitterTable.create(2, 4)
    # A face box drifting across the frame: the window cache grows, regions reuse it.
    for origin in [(100, 50), (103, 52), (90, 70), (160, 20), (5, 5)]:
        _compare(g_pos, g_app, app, lut, origin=origin, jitter=jt, levels=4, threshold=60.0, cache=cache)
    assert cache.size("windows") == 1


def test_styleblit_accepts_numpy_and_tensors_and_keeps_the_device():
    g_pos, g_app, app, lut, _, kw = _guides(12, 15, 20, 20, 1, temporal=True)
    a = syn.styleblit(g_pos, g_app, app, lut, jitter=0, levels=3, **kw)
    b = syn.styleblit(torch.from_numpy(g_pos), torch.from_numpy(g_app), torch.from_numpy(app),
                      torch.from_numpy(lut), jitter=syn.JitterTable.create(0, 3), levels=3,
                      g_temp=torch.from_numpy(kw["g_temp"]), style_temp=torch.from_numpy(kw["style_temp"]),
                      lambda_temp=kw["lambda_temp"])
    c = syn.styleblit(g_pos, g_app, app, lut, jitter=syn.make_jitter(0, 5), levels=3, **kw)
    assert a.dtype == torch.int32 and a.shape == (12, 15, 2) and a.device.type == "cpu"
    assert torch.equal(a, b) and torch.equal(a, c)
    assert (a[..., 0] >= 0).all() and (a[..., 0] < 20).all() and (a[..., 1] >= 0).all() and (a[..., 1] < 20).all()


def test_in_place_change_of_a_style_tensor_is_noticed():
    g_pos, g_app, app, lut, _, _ = _guides(16, 16, 24, 24, 2, temporal=False)
    app_t, lut_t = torch.from_numpy(app.copy()), torch.from_numpy(lut.copy())
    kw = dict(jitter=1, levels=3, threshold=40.0)
    syn.styleblit(g_pos, g_app, app_t, lut_t, **kw)
    app_t[:] = 0          # appearance far from the target: nothing is accepted any more
    lut_t[:] = 5
    got = syn.styleblit(g_pos, g_app, app_t, lut_t, **kw)
    np.testing.assert_array_equal(got.numpy(), syn.styleblit_reference(g_pos, g_app, app_t, lut_t, **kw))
    assert (got[..., 0] == 5).all() and (got[..., 1] == 0).all()


def test_styleblit_rejects_bad_inputs():
    g_pos, g_app, app, lut, _, kw = _guides(8, 8, 16, 16, 0, temporal=True)
    base = dict(jitter=0, levels=2)
    with pytest.raises(ValueError, match="g_pos"):
        syn.styleblit(g_pos[..., :1], g_app, app, lut, **base)
    with pytest.raises(ValueError, match="g_pos dtype"):
        syn.styleblit(g_pos.astype(np.float64), g_app, app, lut, **base)
    with pytest.raises(ValueError, match="g_app"):
        syn.styleblit(g_pos, g_app[:4], app, lut, **base)
    with pytest.raises(ValueError, match="lut"):
        syn.styleblit(g_pos, g_app, app, lut[:10], **base)
    with pytest.raises(ValueError, match="lookup table values"):
        syn.styleblit(g_pos, g_app, app, np.full((256, 256, 256), 16 * 16, np.int32), **base)
    with pytest.raises(ValueError, match="temporal guides"):
        syn.styleblit(g_pos, g_app, app, lut, g_temp=kw["g_temp"], **base)
    with pytest.raises(ValueError, match="threshold"):
        syn.styleblit(g_pos, g_app, app, lut, threshold=-1.0, **base)
    with pytest.raises(ValueError, match="jitter table levels"):
        syn.styleblit(g_pos, g_app, app, lut, jitter=syn.JitterTable.create(0, 1), levels=3)
    with pytest.raises(ValueError, match="levels"):
        syn.styleblit(g_pos, g_app, app, lut, jitter=0, levels=10)
    with pytest.raises(ValueError, match="region size"):
        syn.styleblit(g_pos[:0], g_app[:0], app, lut, **base)


# -------------------------------------------------------------------- real guides
def _real_crop(shared_data: Path, size: int = 64):
    """Guides of a crop of target2.png against the 480×640 watercolorgirl exemplar.

    Real appearance guides (faceblit_core.guides) and the real lookup table
    (faceblit_core.lut); the positional guide is a smooth map target → style
    (scale + gentle bend), which needs no landmark detector.
    """
    import cv2

    appearance = pytest.importorskip("faceblit_core.guides.appearance")
    lut_mod = pytest.importorskip("faceblit_core.lut")
    target = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "target2.png")), cv2.COLOR_BGR2RGB)
    style = cv2.cvtColor(cv2.imread(str(shared_data / "styles" / "watercolorgirl_480x640.png")), cv2.COLOR_BGR2RGB)
    Hs, Ws = style.shape[:2]
    H, W = target.shape[:2]
    s_app = appearance.stretch_contrast(appearance.appearance_guide(style))
    t_app = appearance.match_histogram(appearance.appearance_guide(target), appearance.app_cdf(s_app))
    x0, y0 = W // 2 - 40, H // 3 + 10
    yy, xx = np.mgrid[y0:y0 + size, x0:x0 + size].astype(np.float32)
    gx = xx * (Ws / W) + 2.0 * np.sin(yy / 40.0)
    gy = yy * (Hs / H) + 2.0 * np.cos(xx / 50.0)
    g_pos = np.stack([gx, gy], -1).astype(np.float32)
    g_app = np.ascontiguousarray(t_app[y0:y0 + size, x0:x0 + size])
    lut = lut_mod.build_lookup_table(s_app, radius=12.0)
    return g_pos, g_app, s_app, lut, style, (x0, y0)


def test_styleblit_and_voting_equal_reference_on_real_guides(shared_data):
    g_pos, g_app, s_app, lut, style, origin = _real_crop(shared_data)
    for levels, threshold in ((6, 50.0), (4, 24.0)):
        nnf, lv = _compare(g_pos, g_app, s_app, lut, origin=origin, jitter=7, levels=levels, threshold=threshold)
        assert len(np.unique(lv)) >= 3            # several levels accept on real data
    den = syn.denoise_nnf(nnf, style_shape=s_app.shape, radius=1)
    np.testing.assert_array_equal(den.numpy(), syn.denoise_nnf_reference(nnf, style_shape=s_app.shape, radius=1))
    col = syn.vote(den, style, radius=1)
    np.testing.assert_array_equal(col.numpy(), syn.vote_reference(den.numpy(), style, radius=1))


# ---------------------------------------------------------------- denoising and voting
def _nnf(rng, h, w, Hs, Ws, kind):
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "random":
        nx, ny = rng.integers(0, Ws, (h, w)), rng.integers(0, Hs, (h, w))
    else:  # chunks: a few relative offsets, piecewise constant, plus noise pixels
        pal = rng.integers(-4, 5, (4, 2))
        blocks = rng.integers(0, 4, (h // 3 + 1, w // 3 + 1)).repeat(3, 0).repeat(3, 1)[:h, :w]
        noise = rng.random((h, w)) < 0.15
        choice = np.where(noise, rng.integers(0, 4, (h, w)), blocks)
        nx = np.clip(xx + pal[choice, 0] + rng.integers(0, 3), 0, Ws - 1)
        ny = np.clip(yy + pal[choice, 1] + rng.integers(0, 3), 0, Hs - 1)
    return np.stack([nx, ny], -1).astype(np.int32)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 20), w=st.integers(1, 20), Hs=st.integers(1, 24), Ws=st.integers(1, 24),
       radius=st.integers(0, 3), seed=st.integers(0, 10**6), kind=st.sampled_from(["random", "chunks"]),
       tile=st.integers(1, 300))
def test_denoise_and_vote_equal_reference(h, w, Hs, Ws, radius, seed, kind, tile):
    rng = np.random.default_rng(seed)
    nnf = _nnf(rng, h, w, Hs, Ws, kind)
    image = rng.integers(0, 256, (Hs, Ws, 3), dtype=np.uint8)
    den = syn.denoise_nnf(nnf, style_shape=(Hs, Ws), radius=radius, tile_pixels=tile)
    np.testing.assert_array_equal(den.numpy(), syn.denoise_nnf_reference(nnf, style_shape=(Hs, Ws), radius=radius))
    col = syn.vote(nnf, image, radius=radius, tile_pixels=tile)
    np.testing.assert_array_equal(col.numpy(), syn.vote_reference(nnf, image, radius=radius))
    _check_pixels_path(lambda px: syn.denoise_nnf(nnf, style_shape=(Hs, Ws), radius=radius, pixels=px), den.numpy(), seed)
    _check_pixels_path(lambda px: syn.vote(nnf, image, radius=radius, pixels=px), col.numpy(), seed)


@pytest.mark.parametrize("radius", [7, 8])
def test_large_radius_paths(radius):
    # r = 8 switches the vote to 64-bit packing; both denoise tiles shrink with r.
    rng = np.random.default_rng(radius)
    nnf = _nnf(rng, 11, 13, 30, 25, "chunks")
    image = rng.integers(0, 256, (30, 25, 3), dtype=np.uint8)
    np.testing.assert_array_equal(syn.vote(nnf, image, radius=radius).numpy(),
                                  syn.vote_reference(nnf, image, radius=radius))
    np.testing.assert_array_equal(syn.denoise_nnf(nnf, style_shape=(30, 25), radius=radius).numpy(),
                                  syn.denoise_nnf_reference(nnf, style_shape=(30, 25), radius=radius))


@pytest.mark.parametrize("radius", [0, 1, 2, 6, 7, 8])
def test_vote_of_a_bright_exemplar_with_a_large_window(radius):
    # Red sums above 2^15 (r ≥ 6) once came back sign-extended from the packed lanes.
    image = np.full((40, 40, 3), 250, np.uint8)
    image[::3, :, 1] = 7
    nnf = np.stack(np.meshgrid(np.arange(20) + 5, np.arange(20) + 5), -1).astype(np.int32)
    want = syn.vote_reference(nnf, image, radius=radius)
    np.testing.assert_array_equal(syn.vote(nnf, image, radius=radius).numpy(), want)
    px = torch.arange(0, 400, 7)
    np.testing.assert_array_equal(syn.vote(nnf, image, radius=radius, pixels=px).numpy(), want.reshape(-1, 3)[px.numpy()])
    assert want[10, 10, 0] == 250


def test_vote_of_a_uniform_chunk_is_the_copied_pixel_and_rounding_is_half_up():
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    yy, xx = np.mgrid[0:4, 0:4]
    nnf = np.stack([xx, yy], -1).astype(np.int32)         # identity: every window agrees
    np.testing.assert_array_equal(syn.vote(nnf, image, radius=1).numpy(), image)
    # Two votes 0 and 1 → mean 0.5 → 1 (half up); three votes 0, 0, 1 → 0.33 → 0.
    img = np.array([[[0, 0, 0], [1, 1, 1]]], np.uint8)
    nnf2 = np.array([[[0, 0], [0, 0]]], np.int32)          # pixel 1 votes style[0 − 1] (outside) and …
    got = syn.vote(nnf2, img, radius=1).numpy()
    np.testing.assert_array_equal(got, syn.vote_reference(nnf2, img, radius=1))
    nnf3 = np.array([[[0, 0], [1, 0]]], np.int32)
    assert syn.vote(nnf3, img, radius=1).numpy()[0, 0, 0] == 0      # votes: img[0]=0, img[1−1]=0
    nnf4 = np.array([[[1, 0], [1, 0]]], np.int32)
    # pixel 0: own vote img[1] = 1, from pixel 1: img[1 − 1] = 0 → mean 0.5 → rounds up to 1
    assert syn.vote(nnf4, img, radius=1).numpy()[0, 0, 0] == 1


def test_denoise_tie_rules():
    # Row of 3 pixels, radius 1: window of pixel 1 = all three pixels.
    Hs, Ws = 1, 50
    # Offsets (nx − x): a, b, c all different → all counts 1 → centre (pixel 1) keeps its own.
    nnf = np.array([[[10, 0], [30, 0], [20, 0]]], np.int32)
    assert syn.denoise_nnf(nnf, style_shape=(Hs, Ws)).numpy()[0, 1, 0] == 30
    # Pixels 0 and 2 share offset 10 (10 − 0 = 12 − 2): it wins over the centre's own.
    nnf = np.array([[[10, 0], [30, 0], [12, 0]]], np.int32)
    assert syn.denoise_nnf(nnf, style_shape=(Hs, Ws)).numpy()[0, 1, 0] == 11
    # A winner that would leave the style keeps the original entry.
    nnf = np.array([[[0, 0], [49, 0], [0, 0]]], np.int32)    # offsets 0, 48, −2 → for pixel 0: tie, centre
    got = syn.denoise_nnf(nnf, style_shape=(Hs, Ws)).numpy()
    np.testing.assert_array_equal(got, syn.denoise_nnf_reference(nnf, style_shape=(Hs, Ws)))
    # 3×4 region: for pixel (3, 1) the three pixels of column 2 vote offset +47
    # (x = 49); column 3 has three different offsets. 3 + 47 = 50 is outside → kept.
    nnf = np.zeros((3, 4, 2), np.int32)
    nnf[..., 1] = np.arange(3)[:, None]
    nnf[:, 0, 0], nnf[:, 1, 0], nnf[:, 2, 0], nnf[:, 3, 0] = 10, 20, 49, [0, 1, 5]
    got = syn.denoise_nnf(nnf, style_shape=(3, 50)).numpy()
    np.testing.assert_array_equal(got, syn.denoise_nnf_reference(nnf, style_shape=(3, 50)))
    np.testing.assert_array_equal(got[1, 3], nnf[1, 3])
    assert got[1, 2, 0] == 49                                  # column 2 itself keeps +47


def test_denoise_and_vote_reject_bad_inputs():
    nnf = np.zeros((4, 4, 2), np.int32)
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="radius"):
        syn.vote(nnf, img, radius=9)
    with pytest.raises(ValueError, match="nnf dtype"):
        syn.vote(nnf.astype(np.int64), img)
    with pytest.raises(ValueError, match="nnf values"):
        syn.vote(nnf + 4, img)
    with pytest.raises(ValueError, match="style_image"):
        syn.vote(nnf, img[..., :2])
    with pytest.raises(ValueError, match="radius"):
        syn.denoise_nnf(nnf, style_shape=(4, 4), radius=-1)


def test_gpu_check_script_runs_on_the_cpu(shared_data):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu",
                           "--size", "96x64", "--repeat", "1", "--check-size", "48x40"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nnf_equal=1" in proc.stdout and "vote_equal=1" in proc.stdout
    assert "frame_to_frame_equal=1" in proc.stdout
    assert "mpx_per_s=" in proc.stdout


# ------------------------------------------------------------------ frame to frame
def _full_synthesis(g_pos, g_app, app, lut, image, prev_nnf, *, keep_threshold, radius, denoise, refresh=None, **kw):
    """The definition :func:`synthesize` must equal: every step over the whole region."""
    nnf = syn.styleblit(g_pos, g_app, app, lut, **kw)
    if prev_nnf is not None:
        nnf = syn.keep_previous_nnf(nnf, prev_nnf, g_pos, g_app, torch.from_numpy(app), threshold=keep_threshold,
                                    lambda_pos=kw.get("lambda_pos", 10.0), lambda_app=kw.get("lambda_app", 2.0),
                                    refresh=refresh)
    den = syn.denoise_nnf(nnf, style_shape=app.shape, radius=radius) if denoise else nnf
    return nnf, den, syn.vote(den, image, radius=radius)


@pytest.mark.parametrize("sparse_share", [1.0 / 16.0, 1e9, 0.0], ids=["auto", "always-sparse", "always-dense"])
@pytest.mark.parametrize("radius, denoise, temporal, keep", [(1, True, False, 200.0), (2, True, True, 300.0),
                                                             (1, False, False, 200.0), (0, False, True, 200.0)])
def test_incremental_synthesis_equals_the_full_computation_frame_after_frame(monkeypatch, radius, denoise, temporal,
                                                                             keep, sparse_share):
    # The update denoises and votes per changed pixel, or densely when many changed: both exact.
    from faceblit_core.synthesis import incremental

    monkeypatch.setattr(incremental, "SPARSE_VOTE_SHARE", sparse_share)
    g_pos, g_app, app, lut, image, kw = _guides(40, 52, 48, 64, 5, temporal=temporal)
    rng = np.random.default_rng(3)
    prev, prev_nnf = None, None
    evaluated = []
    # Issue 15: a scheduled share of the pixels is re-synthesized whatever the keep test says.
    phases = torch.from_numpy(refresh_phases((40, 52), 5, seed=1))
    for frame in range(5):
        refresh = refresh_mask(phases, frame, 5)
        # The next frame: the appearance drifts a little, a patch changes a lot.
        g_app = np.clip(g_app.astype(int) + rng.integers(-2, 3, g_app.shape), 0, 255).astype(np.uint8)
        g_app[10 + frame:18 + frame, 20:30] = rng.integers(0, 256, (8, 10))
        got = syn.synthesize(g_pos, g_app, app, lut, image, radius=radius, denoise=denoise, previous=prev,
                             keep_threshold=keep, refresh=refresh, origin=(3, 5), jitter=11, levels=4, **kw)
        nnf, den, rgb = _full_synthesis(g_pos, g_app, app, lut, image, prev_nnf, keep_threshold=keep, refresh=refresh,
                                        radius=radius, denoise=denoise, origin=(3, 5), jitter=11, levels=4, **kw)
        np.testing.assert_array_equal(got.nnf.numpy(), nnf.numpy())
        np.testing.assert_array_equal(got.denoised.numpy(), den.numpy())
        np.testing.assert_array_equal(got.rgb.numpy(), rgb.numpy())
        evaluated.append(got.evaluated)
        prev, prev_nnf = got, nnf
    assert evaluated[0] == 40 * 52
    assert 0 < max(evaluated[1:]) < 40 * 52 // 2       # later frames redo only what changed


@pytest.mark.parametrize("radius, denoise, temporal", [(1, True, False), (2, True, True), (1, False, True),
                                                       (0, True, False)])
def test_whole_frame_synthesis_equals_the_steps_across_tile_borders(monkeypatch, radius, denoise, temporal):
    # synthesize() without ``previous`` chains the steps on packed positions, each step
    # writing the next one's input tile by tile: tiles of a few rows put borders everywhere.
    monkeypatch.setattr(_util, "CPU_TILE_PIXELS", {"styleblit": 97, "denoise": 61, "vote": 83})
    g_pos, g_app, app, lut, image, kw = _guides(37, 29, 40, 44, 9, temporal=temporal)
    got = syn.synthesize(g_pos, g_app, app, lut, image, radius=radius, denoise=denoise, origin=(4, 2), jitter=5,
                         levels=4, **kw)
    monkeypatch.undo()
    nnf, den, rgb = _full_synthesis(g_pos, g_app, app, lut, image, None, keep_threshold=0.0, radius=radius,
                                    denoise=denoise, origin=(4, 2), jitter=5, levels=4, **kw)
    np.testing.assert_array_equal(got.rgb.numpy(), rgb.numpy())
    np.testing.assert_array_equal(got.nnf.numpy(), nnf.numpy())
    np.testing.assert_array_equal(got.denoised.numpy(), den.numpy())
    assert (got.denoised is got.nnf) == (not denoise or radius == 0)


def test_incremental_synthesis_notices_a_changed_positional_guide():
    # The keep test's positional terms are carried over while G_pos is the same object;
    # a tensor changed in place, or another object, must be taken into account.
    g_pos, g_app, app, lut, image, _ = _guides(30, 36, 40, 48, 2, temporal=False)
    gp = torch.from_numpy(g_pos.copy())
    prev = syn.synthesize(gp, g_app, app, lut, image, jitter=3, levels=4)
    prev_nnf = prev.nnf.clone()
    for step, move in enumerate((0.0, 2.5, 0.0, -4.0)):
        gp[..., 0] += move                       # in place: same object, new version
        if step == 3:
            gp = gp.clone()                      # another object, same values
        got = syn.synthesize(gp, g_app, app, lut, image, previous=prev, keep_threshold=150.0, jitter=3, levels=4)
        nnf, _, rgb = _full_synthesis(gp, g_app, app, lut, image, prev_nnf, keep_threshold=150.0, radius=1,
                                      denoise=True, jitter=3, levels=4)
        np.testing.assert_array_equal(got.nnf.numpy(), nnf.numpy())
        np.testing.assert_array_equal(got.rgb.numpy(), rgb.numpy())
        prev, prev_nnf = got, nnf


def test_incremental_synthesis_on_real_guides(shared_data):
    g_pos, g_app, s_app, lut, style, origin = _real_crop(shared_data)
    rng = np.random.default_rng(0)
    prev, prev_nnf = None, None
    for _ in range(3):
        g_app = np.clip(g_app.astype(int) + rng.integers(-3, 4, g_app.shape), 0, 255).astype(np.uint8)
        got = syn.synthesize(g_pos, g_app, s_app, lut, style, previous=prev, keep_threshold=400.0,
                             origin=origin, jitter=7)
        nnf, den, rgb = _full_synthesis(g_pos, g_app, s_app, lut, style, prev_nnf, keep_threshold=400.0,
                                        radius=1, denoise=True, origin=origin, jitter=7)
        np.testing.assert_array_equal(got.rgb.numpy(), rgb.numpy())
        np.testing.assert_array_equal(got.nnf.numpy(), nnf.numpy())
        prev, prev_nnf = got, nnf


def test_a_shared_cache_and_carried_keep_terms_change_nothing():
    # The stylizer's way: one SynthesisCache for the clip and a fixed positional guide, whose
    # keep-test terms are carried from frame to frame (same_g_pos=True).
    g_pos, g_app, app, lut, image, kw = _guides(40, 52, 48, 64, 5, temporal=True)
    cache = syn.SynthesisCache()
    rng = np.random.default_rng(4)
    prev, prev_nnf = None, None
    for frame in range(4):
        g_app = np.clip(g_app.astype(int) + rng.integers(-2, 3, g_app.shape), 0, 255).astype(np.uint8)
        g_app[5 + frame:15 + frame, 10:22] = rng.integers(0, 256, (10, 12))
        got = syn.synthesize(g_pos, g_app, app, lut, image, previous=prev, keep_threshold=250.0, same_g_pos=True,
                             cache=cache, origin=(3, 5), jitter=11, levels=4, **kw)
        nnf, den, rgb = _full_synthesis(g_pos, g_app, app, lut, image, prev_nnf, keep_threshold=250.0, radius=1,
                                        denoise=True, origin=(3, 5), jitter=11, levels=4, **kw)
        np.testing.assert_array_equal(got.nnf.numpy(), nnf.numpy())
        np.testing.assert_array_equal(got.denoised.numpy(), den.numpy())
        np.testing.assert_array_equal(got.rgb.numpy(), rgb.numpy())
        prev, prev_nnf = got, nnf
    assert cache.size("regions") == 1 and cache.size("style") == 1 and cache.size("canvases") == 1
    # One cache serves one style: a style of another size is refused, until clear().
    app2, _, _, lut2 = _style(30, 30, 1)
    with pytest.raises(ValueError, match="one cache serves one style"):
        syn.styleblit(g_pos[:6, :6], g_app[:6, :6], app2, lut2, jitter=11, levels=4, cache=cache)
    cache.clear()
    got = syn.styleblit(g_pos[:6, :6], g_app[:6, :6], app2, lut2, jitter=11, levels=4, cache=cache)
    np.testing.assert_array_equal(got.numpy(), syn.styleblit_reference(g_pos[:6, :6], g_app[:6, :6], app2, lut2,
                                                                       jitter=11, levels=4))


def test_synthesize_rejects_a_previous_result_of_another_shape():
    g_pos, g_app, app, lut, image, _ = _guides(12, 14, 24, 24, 1, temporal=False)
    first = syn.synthesize(g_pos, g_app, app, lut, image, jitter=0, levels=3)
    with pytest.raises(ValueError, match="previous synthesis shape"):
        syn.synthesize(g_pos[:10], g_app[:10], app, lut, image, jitter=0, levels=3, previous=first)
