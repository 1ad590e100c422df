"""Lookup table (faceblit_core.lut): the fast builder equals the definition exactly."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceblit_core import lut as L
from faceblit_core.lut import build_lookup_table, build_lookup_table_reference, quantize_position


def _cells(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random cells plus the corners and edge midpoints (y8, x8)."""
    edges = [(0, 0), (0, 255), (255, 0), (255, 255), (0, 128), (128, 0), (255, 127), (127, 255), (1, 254), (254, 1)]
    return np.concatenate([np.array(edges), rng.integers(0, 256, (n, 2))]).astype(np.int64)


def _assert_equal_to_reference(app, cells, **kw):
    fast = build_lookup_table(app, **kw)
    ref = build_lookup_table_reference(app, cells=cells, **kw)
    got = fast[cells[:, 0], cells[:, 1]]
    bad = np.argwhere(got != ref)
    assert bad.size == 0, f"{len(bad)} entries differ, first cell {cells[bad[0][0]]} a={bad[0][1]}: {got[tuple(bad[0])]} vs {ref[tuple(bad[0])]}"
    return fast


# ----------------------------------------------------------------------------- quantize_position
def test_quantize_position_integer_pixels_match_integer_division():
    for w in (1, 7, 200, 255, 256, 257, 480, 768, 3000):
        x = np.arange(w)
        x8, y8 = quantize_position(x, x, w, w)
        np.testing.assert_array_equal(x8, np.minimum(x * 256 // w, 255))
        np.testing.assert_array_equal(y8, x8)
        assert x8.dtype == np.int64


def test_quantize_position_floats_exact_at_boundaries_and_clipped():
    rng = np.random.default_rng(1)
    w, h = 480, 640
    # exact boundaries k·W/256, the float32 values right beside them, and out-of-range values
    k = np.arange(257)
    b = (k * w / 256).astype(np.float32)
    xs = np.concatenate([b, np.nextafter(b, -np.inf), np.nextafter(b, np.inf), rng.uniform(-50, w + 50, 2000).astype(np.float32), [-1e9, 1e9]]).astype(np.float32)
    want = np.array([min(255, max(0, int((Fraction(float(v)) * 256) // w))) for v in xs])
    x8, _ = quantize_position(xs, xs, w, h)
    np.testing.assert_array_equal(x8, want)
    # the (g_pos, W, H) form and torch tensors give the same
    g = np.stack([xs, xs * (h / w)], axis=-1).astype(np.float32)
    gx, gy = quantize_position(g, w, h)
    np.testing.assert_array_equal(gx, want)
    tx, ty = quantize_position(torch.from_numpy(g), style_w=w, style_h=h)
    assert tx.dtype == torch.long
    np.testing.assert_array_equal(tx.numpy(), gx)
    np.testing.assert_array_equal(ty.numpy(), gy)


def test_quantize_position_bad_calls():
    with pytest.raises(TypeError):
        quantize_position(np.zeros(3))
    with pytest.raises(ValueError, match="g_pos shape"):
        quantize_position(np.zeros((4, 3)), 10, 10)
    with pytest.raises(ValueError, match="style size"):
        quantize_position(np.zeros(3), np.zeros(3), 0, 10)


# ------------------------------------------------------------------------- hand-checked cases
def test_one_pixel_per_cell_maps_to_itself():
    app = np.random.default_rng(2).integers(0, 256, (256, 256), dtype=np.uint8)
    t = build_lookup_table(app, lambda_pos=10, lambda_app=2, radius=3)
    assert t.shape == (256, 256, 256) and t.dtype == np.int32
    y8, x8 = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    # 256×256: each cell's bin is its own pixel, the only candidate with cost 0 at a = a(pixel).
    own = t[y8, x8, app[y8, x8]]
    np.testing.assert_array_equal(own, y8 * 256 + x8)


def test_ties_go_to_the_smallest_linear_index():
    # 512×512, constant appearance: the 4 pixels of each 2×2 bin tie at cost 0 → top-left one.
    app = np.full((512, 512), 77, np.uint8)
    t = build_lookup_table(app, radius=2.0)
    y8, x8 = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    want = (2 * y8) * 512 + 2 * x8
    np.testing.assert_array_equal(t, np.broadcast_to(want[:, :, None], t.shape))


def test_no_candidate_falls_back_to_nearest_pixel_ties_to_smaller():
    # 512 wide: centres at 2·x8 + 0.5, no pixel within radius 0.3 → nearest, tie → 2·x8.
    app = np.random.default_rng(3).integers(0, 256, (512, 512), dtype=np.uint8)
    t = build_lookup_table(app, radius=0.3)
    y8, x8 = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    np.testing.assert_array_equal(t[:, :, 0], (2 * y8) * 512 + 2 * x8)
    assert (t == t[:, :, :1]).all()
    # 768×1024: centres are pixel (3·x8 + 1, 4·y8 + 1.5): radius 0.5 keeps the two vertical neighbours
    app = np.random.default_rng(4).integers(0, 256, (1024, 768), dtype=np.uint8)
    cells = _cells(np.random.default_rng(5), 20)
    _assert_equal_to_reference(app, cells, radius=0.5)


def test_values_are_valid_indices_and_lambda_app_zero_ignores_appearance():
    app = np.random.default_rng(6).integers(0, 256, (50, 70), dtype=np.uint8)
    t = build_lookup_table(app, lambda_pos=10, lambda_app=0, radius=6)
    assert t.min() >= 0 and t.max() < 50 * 70
    assert (t == t[:, :, :1]).all()


# ---------------------------------------------------------------------- equality with reference
@pytest.mark.parametrize(
    "lambda_pos,lambda_app,radius",
    [(10.0, 2.0, 30.0), (1.2, 2.0, 7.5), (10.0, 1.2, 12.3), (0.0, 2.0, 5.0), (3.3, 0.0, 4.0)],
)
def test_fast_equals_reference_on_real_style(shared_data, lambda_pos, lambda_app, radius):
    import cv2

    from faceblit_core.guides.appearance import appearance_guide, stretch_contrast
    from faceblit_core.media import read_image

    rgb = read_image(shared_data / "styles" / "watercolorgirl_480x640.png")
    app = stretch_contrast(appearance_guide(cv2.resize(rgb, (96, 128), interpolation=cv2.INTER_AREA)))
    rng = np.random.default_rng(int(lambda_pos * 10 + radius))
    n = 30 if radius > 20 else 80
    _assert_equal_to_reference(app, _cells(rng, n), lambda_pos=lambda_pos, lambda_app=lambda_app, radius=radius)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    lambda_pos=st.sampled_from([0.0, 0.5, 1.2, 2.0, 10.0, 37.77]),
    lambda_app=st.sampled_from([0.0, 0.3, 1.2, 2.0, 9.0]),
    radius=st.sampled_from([0.0, 0.6, 1.0, 2.5, 6.0, 13.7]),
    seed=st.integers(0, 2**31 - 1),
    levels=st.sampled_from([2, 16, 256]),
)
def test_fast_equals_reference_random(h, w, lambda_pos, lambda_app, radius, seed, levels):
    rng = np.random.default_rng(seed)
    # few distinct values make many ties; 256 makes few
    app = (rng.integers(0, levels, (h, w)) * (255 // max(1, levels - 1))).astype(np.uint8)
    _assert_equal_to_reference(app, _cells(rng, 24), lambda_pos=lambda_pos, lambda_app=lambda_app, radius=radius)


def test_whole_rows_equal_reference():
    # every cell of the first, a middle and the last row: all x8, all a
    app = np.random.default_rng(7).integers(0, 256, (37, 53), dtype=np.uint8)
    cells = np.array([(y, x) for y in (0, 131, 255) for x in range(256)])
    _assert_equal_to_reference(app, cells, lambda_pos=1.2, lambda_app=2.0, radius=4.2)


def test_result_independent_of_blocks_threads_and_key_width(monkeypatch):
    app = np.random.default_rng(8).integers(0, 256, (80, 60), dtype=np.uint8)
    kw = dict(lambda_pos=2.5, lambda_app=1.2, radius=5.5)
    base = build_lookup_table(app, **kw)
    # tiny blocks split each row's offsets into many chunks; one worker runs inline
    np.testing.assert_array_equal(build_lookup_table(app, block_elements=4096, workers=1, **kw), base)
    np.testing.assert_array_equal(build_lookup_table(app, workers=3, **kw), base)
    monkeypatch.setattr(L, "_INT32_KEYS", False)
    np.testing.assert_array_equal(build_lookup_table(app, **kw), base)


def test_bad_inputs():
    ok = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match="dtype"):
        build_lookup_table(ok.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        build_lookup_table(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(TypeError):
        build_lookup_table(torch.zeros((10, 10), dtype=torch.uint8))
    with pytest.raises(ValueError, match="weight"):
        build_lookup_table(ok, lambda_pos=-1)
    with pytest.raises(ValueError, match="weight"):
        build_lookup_table(ok, lambda_app=float("nan"))
    with pytest.raises(ValueError, match="radius"):
        build_lookup_table(ok, radius=float("inf"))
    with pytest.raises(ValueError, match="pixels"):
        build_lookup_table(np.zeros((4097, 4096), np.uint8))
    with pytest.raises(ValueError, match="size"):
        build_lookup_table(np.zeros((0, 5), np.uint8))


def test_weight_quantisation_is_round_half_up():
    assert L.quantize_weight(10) == 2560
    assert L.quantize_weight(1.2) == 307  # 307.2
    assert L.quantize_weight(1.5 / 256) == 2  # half up
    assert L.disc_limit(30) == (512 * 30) ** 2


@pytest.mark.parametrize("int32_keys", [True, False])
def test_extreme_weights(monkeypatch, int32_keys):
    monkeypatch.setattr(L, "_INT32_KEYS", int32_keys)
    app = np.random.default_rng(9).integers(0, 256, (30, 40), dtype=np.uint8)
    cells = _cells(np.random.default_rng(10), 6)
    for lp, la in [(1e6, 1e6), (999999.9, 0.001), (0.0, 1e6)]:
        _assert_equal_to_reference(app, cells, lambda_pos=lp, lambda_app=la, radius=20.0)
