"""Guides (DESIGN §4): MLS positional guide, appearance guide, temporal guide, face mask; and Region."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core.faces.types import MEAN_SHAPE
from faceblit_core.geometry import Region
from faceblit_core.guides import (
    continue_face_outward,
    app_cdf,
    appearance_guide,
    background_anchors,
    face_mask,
    face_mask_outline,
    fold_into_exemplar,
    interpolate_nodes,
    mask_to_gray,
    match_histogram,
    mls_similarity,
    positional_guide,
    positional_to_rgb,
    stretch_contrast,
    temporal_guide,
)
from faceblit_core.guides.mask import _FaceFrame

MASK_STYLES = ["het", "watercolorgirl", "frank", "oldman", "girl", "expressive"]


# ------------------------------------------------------------------ helpers
def load_lm(path: Path) -> np.ndarray:
    """FaceBlit's landmark text format: 68 lines ``x y``, optional first line ``68``."""
    rows = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if len(rows[0]) == 1:
        rows = rows[1:]
    pts = np.array(rows, dtype=np.float64)
    assert pts.shape == (68, 2)
    return pts


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def lm_pair(shared_data):
    """(p, q) = (het landmarks as the 'target', watercolorgirl landmarks as the style)."""
    return load_lm(shared_data / "styles" / "het.lm.txt"), load_lm(shared_data / "styles" / "watercolorgirl.lm.txt")


def bilinear_reference(nodes: np.ndarray, step: int, ox: int, oy: int, w: int, h: int) -> np.ndarray:
    """Plain numpy bilinear interpolation with node (j, i) on output pixel (i·step − ox, j·step − oy), clamped."""
    ny, nx = nodes.shape[:2]
    y = np.clip((np.arange(h) + oy) / step, 0, ny - 1)
    x = np.clip((np.arange(w) + ox) / step, 0, nx - 1)
    y0 = np.minimum(np.floor(y).astype(int), max(ny - 2, 0))
    x0 = np.minimum(np.floor(x).astype(int), max(nx - 2, 0))
    y1, x1 = np.minimum(y0 + 1, ny - 1), np.minimum(x0 + 1, nx - 1)
    ty, tx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    n = nodes.astype(np.float64)
    return (n[y0][:, x0] * (1 - ty) * (1 - tx) + n[y0][:, x1] * (1 - ty) * tx
            + n[y1][:, x0] * ty * (1 - tx) + n[y1][:, x1] * ty * tx)


def pixel_grid(region: Region) -> np.ndarray:
    ys, xs = np.mgrid[region.y0 : region.y1, region.x0 : region.x1]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)


# ------------------------------------------------------------------ Region
def test_region_basics():
    r = Region(2, 3, 10, 7)
    assert (r.width, r.height, r.shape, r.origin) == (8, 4, (4, 8), (2, 3))
    img = np.arange(12 * 12).reshape(12, 12)
    assert np.array_equal(img[r.slice], img[3:7, 2:10])
    assert np.array_equal(r.crop(img), img[3:7, 2:10])
    assert Region.full(640, 480) == Region(0, 0, 640, 480)
    assert Region(np.int64(1), 2, 3, 4) == Region(1, 2, 3, 4)
    assert r.intersect(Region(8, 0, 20, 5)) == Region(8, 3, 10, 5)
    assert r.intersect(Region(50, 50, 60, 60)).is_empty
    np.testing.assert_allclose(r.to_local([[2.0, 3.0], [5.5, 4.0]]), [[0, 0], [3.5, 1]])
    with pytest.raises(ValueError):
        Region(5, 0, 4, 1)
    with pytest.raises(TypeError):
        Region(0.5, 0, 4, 1)


def test_region_around_grows_and_clips():
    pts = np.array([[100.0, 200.0], [200.0, 400.0]])
    r = Region.around(pts, 0.25, (1000, 1000))
    # box 100×200 grown by 25 / 50 px each side, pixel-inclusive on the right/bottom.
    assert r == Region(75, 150, 226, 451)
    assert Region.around(pts, 0.0, (1000, 1000)) == Region(100, 200, 201, 401)
    # Clipped to the frame, also for points outside it.
    r = Region.around(np.array([[-50.0, -20.0], [30.0, 40.0]]), 0.5, (64, 48))
    assert r == Region(0, 0, 64, 48)
    assert Region.around(np.array([[-500.0, 10.0], [-400.0, 20.0]]), 0.1, (64, 48)).is_empty
    with pytest.raises(ValueError):
        Region.around(np.array([[np.nan, 1.0]]), 0.1, (10, 10))
    with pytest.raises(ValueError):
        Region.around(pts, -0.1, (10, 10))


# ------------------------------------------------------------------ MLS
def test_mls_maps_landmarks_onto_style_landmarks(lm_pair):
    p, q = lm_pair
    f = mls_similarity(p, p, q)
    assert f.dtype == np.float32 and f.shape == (68, 2)
    assert np.abs(f - q).max() < 0.5
    # Through the positional guide with a per-pixel grid: landmarks on pixel centres.
    pr = np.rint(p)
    region = Region.around(pr, 0.0, (768, 1024))
    g = positional_guide(pr, q, region=region, grid=1)
    ix, iy = (pr[:, 0] - region.x0).astype(int), (pr[:, 1] - region.y0).astype(int)
    assert np.abs(g[iy, ix] - q).max() < 0.5


def test_mls_identity(lm_pair):
    p, _ = lm_pair
    rng = np.random.default_rng(0)
    v = rng.uniform(-200, 1200, size=(5000, 2))
    assert np.abs(mls_similarity(v, p, p) - v).max() < 1e-3
    region = Region(37, 291, 500, 700)
    g = positional_guide(p, p, region=region, grid=10)
    ys, xs = np.mgrid[region.y0 : region.y1, region.x0 : region.x1]
    assert np.abs(g[..., 0] - xs).max() < 1e-3 and np.abs(g[..., 1] - ys).max() < 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mls_reproduces_similarity_transforms(lm_pair, seed):
    p, _ = lm_pair
    rng = np.random.default_rng(seed)
    angle, scale = rng.uniform(-math.pi, math.pi), rng.uniform(0.3, 3.0)
    t = rng.uniform(-300, 300, size=2)
    rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    q = p @ rot.T + t
    v = rng.uniform(-100, 1100, size=(3000, 2))
    for alpha in (1.0, 0.5, 2.0):
        np.testing.assert_allclose(mls_similarity(v, p, q, alpha=alpha), v @ rot.T + t, atol=1e-3 * scale + 1e-3)


def test_mls_matches_reference_formula(lm_pair):
    """Check the vectorized form against a direct transcription of Schaefer et al.'s f_s."""
    p, q = lm_pair
    rng = np.random.default_rng(3)
    v = rng.uniform(0, 1000, size=(50, 2))
    want = []
    for vv in v:
        w = 1.0 / ((p - vv) ** 2).sum(axis=1)
        ps, qs = w @ p / w.sum(), w @ q / w.sum()
        ph, qh = p - ps, q - qs
        mu = (w * (ph ** 2).sum(axis=1)).sum()
        perp = lambda a: np.stack([-a[..., 1], a[..., 0]], axis=-1)  # noqa: E731
        d = vv - ps
        big = np.stack([d, -perp(d)], axis=0)  # rows (v−p*), −(v−p*)^⊥
        f = np.zeros(2)
        for i in range(len(p)):
            a_i = w[i] * np.stack([ph[i], -perp(ph[i])], axis=0) @ big.T
            f += qh[i] @ a_i / mu
        want.append(f + qs)
    np.testing.assert_allclose(mls_similarity(v, p, q), np.array(want), atol=1e-3)


def test_mls_degenerate_inputs():
    p = np.array([[10.0, 10.0]])
    q = np.array([[30.0, -5.0]])
    v = np.array([[0.0, 0.0], [10.0, 10.0], [99.0, 3.0]])
    np.testing.assert_allclose(mls_similarity(v, p, q), v + (q - p), atol=1e-4)  # one control: translation
    p2 = np.array([[5.0, 5.0], [5.0, 5.0]])
    q2 = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert np.isfinite(mls_similarity(v, p2, q2)).all()
    assert mls_similarity(np.zeros((0, 2)), p, q).shape == (0, 2)
    with pytest.raises(ValueError):
        mls_similarity(v, p, q2)
    with pytest.raises(ValueError):
        mls_similarity(v, np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError):
        mls_similarity(v, p, q, alpha=0.0)
    with pytest.raises(ValueError):
        mls_similarity(np.array([[np.inf, 0.0]]), p, q)


# ------------------------------------------------------------------ grid interpolation / positional guide
@pytest.mark.parametrize("step", [1, 2, 3, 5, 8, 10, 12, 64])
def test_interpolate_nodes_is_exact_bilinear(step):
    rng = np.random.default_rng(step)
    nodes = (rng.random((9, 7, 2)) * 500).astype(np.float32)
    for ox, oy in [(0, 0), (step - 1, step // 2)]:
        w, h = 6 * step + 1 - ox, 8 * step + 1 - oy
        got = interpolate_nodes(nodes, step=step, offset=(ox, oy), size=(w, h))
        assert got.shape == (h, w, 2) and got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
        np.testing.assert_allclose(got, bilinear_reference(nodes, step, ox, oy, w, h), atol=1e-3)
    # Past the last node the edge value is held.
    one = interpolate_nodes(nodes[..., 0], step=step, offset=(0, 0), size=(7 * step + 3, 9 * step + 3))
    np.testing.assert_allclose(one[-1, -1], nodes[-1, -1, 0], atol=1e-3)


@pytest.mark.parametrize("grid", [10, 7, 8])
def test_positional_guide_exact_at_grid_nodes(lm_pair, grid):
    p, q = lm_pair
    region = Region(33, 287, 701, 1011)  # odd corners: nodes are frame multiples of grid, not region corners
    g = positional_guide(p, q, region=region, grid=grid)
    assert g.shape == (region.height, region.width, 2) and g.dtype == np.float32
    xs = np.arange(-(-region.x0 // grid) * grid, region.x1, grid)
    ys = np.arange(-(-region.y0 // grid) * grid, region.y1, grid)
    gx, gy = np.meshgrid(xs, ys)
    nodes = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float64)
    exact = mls_similarity(nodes, p, q)
    got = g[gy.ravel() - region.y0, gx.ravel() - region.x0]
    assert np.abs(got - exact).max() < 1e-3


def test_positional_guide_does_not_depend_on_region_placement(lm_pair):
    p, q = lm_pair
    a = positional_guide(p, q, region=Region(100, 300, 600, 900), grid=10)
    b = positional_guide(p, q, region=Region(133, 347, 555, 871), grid=10)
    np.testing.assert_allclose(a[47:571, 33:455], b, atol=1e-3)


def test_positional_guide_interpolation_error_is_small(lm_pair):
    """Report the grid-10 interpolation error against per-pixel MLS on the face region."""
    p, q = lm_pair
    region = Region.around(p, 0.25, (768, 1024))
    g = positional_guide(p, q, region=region, grid=10)
    # Every 3rd pixel keeps the test quick and still samples every phase of the 10-px grid.
    sub = Region(region.x0, region.y0, region.x1, region.y1)
    pts = pixel_grid(sub)[::3]
    exact = mls_similarity(pts, p, q)
    got = g[(pts[:, 1] - region.y0).astype(int), (pts[:, 0] - region.x0).astype(int)]
    err = np.linalg.norm(got - exact, axis=1)
    print(f"G_pos grid-10 interpolation error vs per-pixel MLS (style px): mean={err.mean():.4f} "
          f"p99={np.percentile(err, 99):.3f} max={err.max():.3f}")
    assert err.mean() < 0.1
    assert np.percentile(err, 99) < 1.0


def test_positional_guide_checks_inputs(lm_pair):
    p, q = lm_pair
    with pytest.raises(ValueError):
        positional_guide(p, q[:60], region=Region(0, 0, 10, 10))
    with pytest.raises(ValueError):
        positional_guide(p, q, region=Region(5, 5, 5, 10))
    with pytest.raises(ValueError):
        positional_guide(p, q, region=Region(0, 0, 10, 10), grid=0)


def test_background_anchors(lm_pair):
    p, q = lm_pair
    # Same landmarks, same size: the corners stay where they are.
    ap, aq = background_anchors(768, 1024, q, q, 768, 1024)
    np.testing.assert_allclose(ap, [[0, 1023], [767, 1023]])
    np.testing.assert_allclose(aq, ap, atol=1e-3)
    # A rotated, scaled, shifted head: the corners follow scale and translation, not rotation.
    c = p.mean(axis=0)
    rot = np.array([[math.cos(0.4), -math.sin(0.4)], [math.sin(0.4), math.cos(0.4)]])
    target = (p - c) @ rot.T * 0.5 + c + [40.0, -30.0]
    ap, aq = background_anchors(768, 1024, target, q, 768, 1024)
    span = aq[1] - aq[0]
    assert abs(span[1]) < 1e-3  # bottom edge stays horizontal in the style
    ratio = np.sqrt(((q - q.mean(0)) ** 2).sum(1).mean() / ((target - target.mean(0)) ** 2).sum(1).mean())
    assert span[0] == pytest.approx(767 * ratio, rel=1e-4)
    g = positional_guide(target, q, region=Region.full(768, 1024), grid=10, anchors=(ap, aq))
    np.testing.assert_allclose(g[-1, 0], aq[0], atol=0.5)
    np.testing.assert_allclose(g[-1, -1], aq[1], atol=0.5)


def test_positional_to_rgb():
    g = np.array([[[0.0, 0.0], [767.0, 1023.0], [-5.0, 2000.0]]], dtype=np.float32)
    rgb = positional_to_rgb(g, 768, 1024)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0].tolist() == [[0, 0, 0], [255, 255, 0], [0, 255, 0]]
    assert positional_to_rgb(np.full((2, 2, 2), 384.0, np.float32), 768, 1024)[0, 0].tolist() == [128, 96, 0]


# ------------------------------------------------------------------ appearance guide
@pytest.mark.parametrize("shape", [(1024, 768), (37, 53), (9, 7), (1, 1), (2, 17)])
def test_appearance_guide_constant_is_128(shape):
    img = np.full(shape + (3,), 77, dtype=np.uint8)
    app = appearance_guide(img)
    assert app.shape == shape and app.dtype == np.uint8
    assert (app == 128).all()


def test_appearance_guide_low_pass_is_aligned():
    """A luminance ramp has no detail: a correctly aligned low-pass leaves ~128 (a 3.5 px shift would not)."""
    ramp = np.tile(np.arange(203, dtype=np.uint8)[None, :, None], (61, 1, 3))
    app = appearance_guide(ramp)
    inner = app[16:-16, 16:-16].astype(int)
    assert np.abs(inner - 128).max() <= 1
    # Odd image sizes behave the same (not only multiples of 8).
    assert np.abs(appearance_guide(np.ascontiguousarray(ramp[:, :197]))[16:-16, 16:-16].astype(int) - 128).max() <= 1


def test_appearance_guide_detail_sign():
    img = np.full((64, 64, 3), 100, dtype=np.uint8)
    img[30:34, 30:34] = 200  # a bright dot
    app = appearance_guide(img)
    assert app[31, 31] > 160 and app[5, 5] == 128


def test_stretch_contrast_symmetric(shared_data):
    app = appearance_guide(load_rgb(shared_data / "styles" / "watercolorgirl.png"))
    s = stretch_contrast(app)
    assert s.shape == app.shape and s.dtype == np.uint8
    assert abs(float(s.mean()) - 128.0) < 0.5
    assert (s[app == 128] == 128).all()
    dev = np.abs(s.astype(int) - 128)
    assert dev.std() > 2.5 * np.abs(app.astype(int) - 128).std()
    assert 0.005 < ((s <= 1) | (s == 255)).mean() < 0.02  # the top ~1 % saturates
    flat = np.full((8, 8), 128, dtype=np.uint8)
    assert np.array_equal(stretch_contrast(flat), flat)
    with pytest.raises(ValueError):
        stretch_contrast(app, percentile=0.0)


def test_app_cdf():
    app = np.array([[0, 128], [128, 255]], dtype=np.uint8)
    cdf = app_cdf(app)
    assert cdf.shape == (256,) and cdf.dtype == np.float64
    assert cdf[0] == 0.25 and cdf[127] == 0.25 and cdf[128] == 0.75 and cdf[255] == 1.0
    assert app_cdf(app, mask=np.array([[True, False], [False, False]]))[0] == 1.0
    assert not app_cdf(app, mask=np.zeros((2, 2), bool)).any()


def test_match_histogram_synthetic():
    rng = np.random.default_rng(1)
    ref_img = np.clip(rng.normal(128, 35, (200, 300)), 0, 255).astype(np.uint8)
    ref = app_cdf(ref_img)
    src = np.clip(rng.normal(100, 12, (240, 320)), 0, 255).astype(np.uint8)
    out = match_histogram(src, ref)
    assert out.shape == src.shape and out.dtype == np.uint8
    assert np.abs(app_cdf(src) - ref).max() > 0.5
    # A source bin cannot be split: the CDF distance is bounded by the largest bin (~3 %).
    largest_bin = np.bincount(src.ravel(), minlength=256).max() / src.size
    assert np.abs(app_cdf(out) - ref).max() <= largest_bin + 0.005
    # Monotone: the order of values is kept.
    order = np.argsort(src.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()
    # Matching to its own CDF is the identity.
    assert np.array_equal(match_histogram(src, app_cdf(src)), src)


def test_match_histogram_uses_the_mask():
    rng = np.random.default_rng(2)
    ref = app_cdf(np.clip(rng.normal(128, 30, (100, 100)), 0, 255).astype(np.uint8))
    img = np.full((100, 200), 128, dtype=np.uint8)
    img[:, 100:] = np.clip(rng.normal(90, 10, (100, 100)), 0, 255).astype(np.uint8)
    mask = np.zeros((100, 200), dtype=np.float32)
    mask[:, 100:] = 1.0
    out = match_histogram(img, ref, mask=mask)
    assert np.abs(app_cdf(out[:, 100:]) - ref).max() < 0.05  # the masked half matches the reference
    assert out[:, :100].std() == 0  # … and the LUT still applies everywhere
    with pytest.raises(ValueError):
        match_histogram(img, ref, mask=np.ones((5, 5), bool))
    with pytest.raises(ValueError):
        match_histogram(img, np.linspace(0, 0.5, 256))


def test_match_histogram_real_pair(shared_data):
    style = stretch_contrast(appearance_guide(load_rgb(shared_data / "styles" / "watercolorgirl.png")))
    ref = app_cdf(style)
    target = appearance_guide(load_rgb(shared_data / "images" / "target2.png"))
    out = match_histogram(target, ref)
    # Earth mover's distance between the value distributions, 8-bit levels.
    before, after = np.abs(app_cdf(target) - ref).sum(), np.abs(app_cdf(out) - ref).sum()
    assert after < 0.35 * before and after < 5.0
    assert abs(float(out.std()) - float(style.std())) < 0.15 * float(style.std())


# ------------------------------------------------------------------ temporal guide
@pytest.mark.parametrize("sigma", [1.0, 6.0, 13.0])
@pytest.mark.parametrize("shape", [(101, 77), (64, 64)])
def test_temporal_guide_shape_and_constant(sigma, shape):
    img = np.zeros(shape + (3,), dtype=np.uint8)
    img[...] = (10, 200, 90)
    out = temporal_guide(img, sigma=sigma)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, img)


def test_temporal_guide_matches_gaussian(shared_data):
    img = load_rgb(shared_data / "images" / "target2.png")[200:700, 150:650]
    for sigma in (2.0, 6.0, 11.0):
        fast = temporal_guide(img, sigma=sigma).astype(int)
        exact = temporal_guide(img, sigma=sigma, exact=True).astype(int)
        assert np.array_equal(exact, cv2.GaussianBlur(img, (0, 0), sigma))
        assert np.abs(fast - exact).mean() < 0.5
        assert np.percentile(np.abs(fast - exact), 99.9) <= 3


def test_temporal_guide_blurs_by_sigma():
    edge = np.zeros((40, 401, 3), dtype=np.uint8)
    edge[:, 200:] = 200
    for sigma in (2.0, 4.5, 8.0):
        row = temporal_guide(edge, sigma=sigma)[20, :, 0].astype(float)
        d = np.diff(row)
        x = np.arange(d.size) + 0.5
        mean = (d * x).sum() / d.sum()
        sd = math.sqrt((d * x * x).sum() / d.sum() - mean ** 2)
        assert mean == pytest.approx(199.5, abs=0.1)
        assert sd == pytest.approx(sigma, rel=0.06)
    with pytest.raises(ValueError):
        temporal_guide(edge, sigma=0.0)
    with pytest.raises(ValueError):
        temporal_guide(edge[..., 0], sigma=2.0)


# ------------------------------------------------------------------ face mask
def _face_axes(lm: np.ndarray):
    brow = lm[17:27].mean(axis=0)
    chin = lm[8]
    up = (brow - chin) / np.linalg.norm(brow - chin)
    return brow, up, float(np.linalg.norm(brow - chin))


def _check_face_mask(mask: np.ndarray, lm: np.ndarray, region: Region, *, forehead: bool = True) -> None:
    h, w = region.shape
    assert mask.shape == (h, w) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0

    def at(pt):
        x, y = int(round(pt[0])) - region.x0, int(round(pt[1])) - region.y0
        return float(mask[y, x]) if 0 <= x < w and 0 <= y < h else None

    centre = lm[27:36].mean(axis=0)
    inner = [lm[30], lm[33], lm[29]] + [0.5 * (lm[i] + centre) for i in range(17)]
    vals = [at(p) for p in inner]
    assert all(v is None or v > 0.99 for v in vals), vals
    brow, up, d = _face_axes(lm)
    if forehead:
        v = at(brow + 0.3 * d * up)
        assert v is None or v > 0.5
    # Far outside: twice the face size away from the centre along the eye line.
    ex = np.array([up[1], -up[0]])
    for side in (-1, 1):
        v = at(centre + side * 2.2 * d * ex)
        assert v is None or v == 0.0


@pytest.mark.parametrize("name", MASK_STYLES)
def test_face_mask_on_real_faces(shared_data, name):
    # Painted exemplars: their mask keeps the whole forehead (hair_aware=False, as
    # PreparedExemplar and the evaluation use it); the hair-aware mask of the same
    # pictures must still hold the hull and be region-independent.
    img = load_rgb(shared_data / "styles" / f"{name}.png")
    lm = load_lm(shared_data / "styles" / f"{name}.lm.txt")
    region = Region.full(img.shape[1], img.shape[0])
    mask = face_mask(img, lm, region=region, hair_aware=False)
    _check_face_mask(mask, lm, region)
    sub = Region.around(face_mask_outline(lm), 0.1, (img.shape[1], img.shape[0]))
    odd = Region(sub.x0 + 37, sub.y0 + 51, sub.x1 - 13, sub.y1 - 29)
    for hair_aware in (False, True):
        # The values do not depend on the region (feathering and skin included).
        full = face_mask(img, lm, region=region, hair_aware=hair_aware)
        assert np.array_equal(face_mask(img, lm, region=sub, hair_aware=hair_aware), full[sub.slice])
        assert np.array_equal(face_mask(img, lm, region=odd, hair_aware=hair_aware), full[odd.slice])
    _check_face_mask(full, lm, region, forehead=False)
    full_hard = face_mask(img, lm, region=region, feather=0, skin_tol=0)
    # The outline bounds the hard mask (without the skin part).
    ys, xs = np.nonzero(full_hard)
    box = Region.around(face_mask_outline(lm), 0.0, (img.shape[1], img.shape[0]))
    assert xs.min() >= box.x0 - 1 and xs.max() < box.x1 + 1 and ys.min() >= box.y0 - 1 and ys.max() < box.y1 + 1


def test_face_mask_feather_and_hard(shared_data):
    img = load_rgb(shared_data / "styles" / "het.png")
    lm = load_lm(shared_data / "styles" / "het.lm.txt")
    region = Region.around(lm, 0.5, (img.shape[1], img.shape[0]))
    for hair_aware in (False, True):
        hard = face_mask(img, lm, region=region, feather=0, hair_aware=hair_aware)
        assert set(np.unique(hard).tolist()) <= {0.0, 1.0}
        soft = face_mask(img, lm, region=region, feather=20, hair_aware=hair_aware)
        assert ((soft > 0) & (soft < 1)).mean() > 0.01
        assert abs(float(soft.sum()) - float(hard.sum())) < 0.02 * float(hard.sum())
    geometric = face_mask(img, lm, region=region, feather=0, skin_tol=0)
    # Without hair awareness the skin part only adds to the whole ellipse.
    assert (geometric <= face_mask(img, lm, region=region, feather=0, hair_aware=False)).all()
    # skin_tol=0 is the geometric mask whatever hair_aware says.
    assert np.array_equal(face_mask(img, lm, region=region, feather=0, skin_tol=0, hair_aware=False), geometric)


def test_face_mask_touching_the_border(shared_data):
    img = load_rgb(shared_data / "styles" / "watercolorgirl.png")
    lm = load_lm(shared_data / "styles" / "watercolorgirl.lm.txt")
    H, W = img.shape[:2]
    for shift in ([-330.0, 0.0], [300.0, 0.0], [0.0, -480.0], [0.0, 450.0]):
        moved = lm + shift
        frame = np.zeros_like(img)
        # Move the picture with the landmarks so skin samples stay on the face.
        dx, dy = int(shift[0]), int(shift[1])
        src = img[max(0, -dy) : H - max(0, dy), max(0, -dx) : W - max(0, dx)]
        frame[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
        region = Region.around(moved, 0.25, (W, H))
        assert not region.is_empty
        for hair_aware in (False, True):  # a painting: its forehead is checked without hair awareness
            mask = face_mask(frame, moved, region=region, hair_aware=hair_aware)
            _check_face_mask(mask, moved, region, forehead=not hair_aware)
            assert mask.max() == 1.0


def test_face_mask_rotated_face(shared_data):
    img = load_rgb(shared_data / "styles" / "frank.png")
    lm = load_lm(shared_data / "styles" / "frank.lm.txt")
    H, W = img.shape[:2]
    ref = face_mask(img, lm, region=Region.full(W, H), hair_aware=False)
    # 90° clockwise: pixel (x, y) → (H − 1 − y, x).
    rot = np.ascontiguousarray(np.rot90(img, k=-1))
    lm_rot = np.stack([H - 1 - lm[:, 1], lm[:, 0]], axis=1)
    got = face_mask(rot, lm_rot, region=Region.full(H, W), hair_aware=False)
    _check_face_mask(got, lm_rot, Region.full(H, W))
    want = np.rot90(ref, k=-1)
    a, b = got > 0.5, want > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.97  # same mask, turned with the face
    # An arbitrary in-plane tilt keeps the forehead covered.
    c = lm.mean(axis=0)
    m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), 35.0, 1.0)
    tilted = cv2.warpAffine(img, m, (W, H))
    lm_t = lm @ m[:, :2].T + m[:, 2]
    _check_face_mask(face_mask(tilted, lm_t, region=Region.full(W, H), hair_aware=False), lm_t, Region.full(W, H))


def test_face_mask_checks_inputs(shared_data):
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    lm = load_lm(shared_data / "styles" / "het.lm.txt") * 0.1
    with pytest.raises(ValueError):
        face_mask(img, lm, region=Region(0, 0, 120, 100))
    with pytest.raises(ValueError):
        face_mask(img, lm[:60], region=Region(0, 0, 100, 100))
    with pytest.raises(ValueError):
        face_mask(img, lm, region=Region(0, 0, 100, 100), feather=-1)
    with pytest.raises(ValueError):
        face_mask(img, lm, region=Region(0, 0, 100, 100), hair_aware="yes")
    # Degenerate landmarks (all on one point) do not crash.
    out = face_mask(img, np.full((68, 2), 50.0), region=Region(0, 0, 100, 100))
    assert out.shape == (100, 100) and np.isfinite(out).all()


# A drawn face (known answer for the hair-aware forehead): MEAN_SHAPE landmarks on a
# skin-coloured head with a hairline near the forehead ellipse's top, shaded skin with
# noise, a highlight and a mole on the forehead; optionally a fringe over the forehead.
_SKIN = (224, 172, 140)
_DARK_HAIR = (62, 42, 30)
_BLONDE_HAIR = (226, 196, 128)  # golden: skin-like luma and hue, more yellow than skin


def _drawn_face(fringe=None, *, seed: int = 0):
    """(image (720, 640, 3) uint8, landmarks (68, 2), fringe mask (720, 640) bool)."""
    H, W = 720, 640
    lm = MEAN_SHAPE.astype(np.float64) * 300.0 + np.array([320.0, 330.0])
    img = np.zeros((H, W, 3), np.float32)
    img[:] = (90, 110, 140)  # grey-blue wall
    head = np.zeros((H, W), np.uint8)
    cv2.ellipse(head, (320, 270), (150, 250), 0.0, 0.0, 360.0, 1, -1)
    shade = 0.82 + 0.18 * np.clip(np.arange(H, dtype=np.float32) / 300.0, 0, 1)  # forehead top a little darker
    img[head > 0] = (np.array(_SKIN, np.float32)[None, None] * shade[:, None, None] * np.ones((H, W, 1), np.float32))[head > 0]
    # Hair: the head above the hairline (y < 50) and at the sides of the head.
    cap = np.zeros((H, W), np.uint8)
    cv2.ellipse(cap, (320, 270), (156, 256), 0.0, 180.0, 360.0, 1, -1)
    cap[50:] = 0
    img[cap > 0] = _DARK_HAIR
    cv2.circle(img, (300, 110), 16, (252, 240, 232), -1)  # highlight
    cv2.circle(img, (350, 150), 4, (120, 80, 60), -1)  # mole
    for a, b in ((36, 42), (42, 48)):
        cv2.fillPoly(img, [np.rint(lm[a:b]).astype(np.int32)], (40, 30, 30))
    for a, b in ((17, 22), (22, 27)):
        cv2.polylines(img, [np.rint(lm[a:b]).astype(np.int32)], False, (70, 50, 40), 7)
    cv2.fillPoly(img, [np.rint(lm[48:60]).astype(np.int32)], (180, 90, 90))
    hair = np.zeros((H, W), np.uint8)
    if fringe is not None:
        # A fringe from the hairline down to ~0.2 brow-to-chin above the brows, its
        # lower edge wavy.
        xs = np.arange(150, 491)
        bottom = 165 + 10 * np.sin(xs / 17.0)
        poly = np.concatenate([np.stack([xs, bottom], 1), [[490, 0], [150, 0]]])
        cv2.fillPoly(hair, [np.rint(poly).astype(np.int32)], 1)
        hair &= head | cap
        img[hair > 0] = fringe
    rng = np.random.default_rng(seed)
    img += rng.normal(0.0, 3.0, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), lm, hair > 0


def _forehead_skin(lm: np.ndarray, hair: np.ndarray, shape) -> np.ndarray:
    """The drawn forehead's bare skin inside the mask's ellipse, 10 px in from every edge (bool)."""
    ff = _FaceFrame(lm)
    ax, ay = ff.ellipse_axes()
    ellipse = np.zeros(shape, np.uint8)
    cv2.ellipse(ellipse, tuple(int(v) for v in np.rint(ff.brow)), (int(ax), int(ay)), 0.0, 180.0, 360.0, 1, -1)
    skin = np.zeros(shape, np.uint8)
    cv2.ellipse(skin, (320, 270), (150, 250), 0.0, 0.0, 360.0, 1, -1)
    skin[:50] = 0
    skin[hair] = 0
    skin[int(lm[17:27, 1].max()) :] = 0  # above the brows only
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))
    return cv2.erode(skin & ellipse, kernel) > 0


def test_face_mask_bare_forehead_fully_covered():
    img, lm, hair = _drawn_face()
    H, W = img.shape[:2]
    full = Region.full(W, H)
    hard = face_mask(img, lm, region=full, feather=0)
    bare = _forehead_skin(lm, hair, (H, W))
    assert bare.sum() > 20000
    # Every forehead pixel is in: the highlight and the mole leave no hole.
    assert hard[bare].min() == 1.0
    assert hard[110, 300] == 1.0 and hard[150, 350] == 1.0
    # ... and no hole anywhere: the mask's holes (background components not touching
    # the border) are none.
    n, labels = cv2.connectedComponents((hard == 0).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    assert set(range(1, n)) <= set(border.tolist())
    # The hairline (y < 50) and the wall stay out.
    assert hard[:40].max() == 0.0 and hard[:, :150].max() == 0.0 and hard[:, 495:].max() == 0.0
    # Feathered: no seam between the hull and the forehead skin — the middle line is
    # fully in from the nose up to 0.4 brow-to-chin above the brows.
    soft = face_mask(img, lm, region=full, feather=20)
    brow, up, d = _face_axes(lm)
    y0, y1 = int(brow[1] - 0.4 * d), int(lm[30, 1])
    assert soft[y0:y1, 318:323].min() == 1.0
    # The same drawing without hair awareness covers the ellipse: as much forehead.
    geometric = face_mask(img, lm, region=full, feather=0, hair_aware=False)
    assert geometric[bare].min() == 1.0


@pytest.mark.parametrize("colour", [_DARK_HAIR, _BLONDE_HAIR], ids=["dark", "blonde"])
def test_face_mask_leaves_a_fringe_out(colour):
    img, lm, hair = _drawn_face(colour)
    H, W = img.shape[:2]
    full = Region.full(W, H)
    hard = face_mask(img, lm, region=full, feather=0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))
    fringe = cv2.erode(hair.astype(np.uint8), kernel) > 0
    assert fringe.sum() > 20000
    # Known answer: the fringe (10 px in from its edge) is out, the bare skin below it in.
    assert hard[fringe].max() == 0.0
    bare = _forehead_skin(lm, hair, (H, W))
    assert bare.sum() > 3000
    assert hard[bare].min() == 1.0
    # The fixed ellipse would have laid the exemplar's forehead over most of it.
    geometric = face_mask(img, lm, region=full, feather=0, skin_tol=0)
    assert geometric[fringe].mean() > 0.5
    # The face below the brows is untouched by the fringe.
    clean = face_mask(_drawn_face()[0], lm, region=full, feather=20)
    soft = face_mask(img, lm, region=full, feather=20)
    below = int(lm[17:27, 1].max()) + 15
    assert np.array_equal(soft[below:], clean[below:])
    # Region-independent, as the rest of the mask.
    sub = Region(97, 31, 533, 611)
    assert np.array_equal(face_mask(img, lm, region=sub), soft[sub.slice])


def test_face_mask_hair_aware_turns_with_the_face():
    img, lm, _ = _drawn_face(_DARK_HAIR)
    H, W = img.shape[:2]
    ref = face_mask(img, lm, region=Region.full(W, H))
    rot = np.ascontiguousarray(np.rot90(img, k=-1))  # pixel (x, y) → (H − 1 − y, x)
    lm_rot = np.stack([H - 1 - lm[:, 1], lm[:, 0]], axis=1)
    got = face_mask(rot, lm_rot, region=Region.full(H, W))
    a, b = got > 0.5, np.rot90(ref, k=-1) > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.97


def test_mask_to_gray():
    m = np.array([[0.0, 0.5, 1.0, 1.2]], dtype=np.float32)
    g = mask_to_gray(m)
    assert g.dtype == np.uint8 and g.tolist() == [[0, 128, 255, 255]]


def test_guides_accept_crops_and_float32_landmarks(shared_data):
    """The pipeline passes frame crops (views) and float32 landmarks."""
    frame = load_rgb(shared_data / "styles" / "het.png")
    lm = load_lm(shared_data / "styles" / "het.lm.txt")
    q = load_lm(shared_data / "styles" / "watercolorgirl.lm.txt").astype(np.float32)
    region = Region.around(lm, 0.25, (frame.shape[1], frame.shape[0]))
    crop = region.crop(frame)
    assert not crop.flags["C_CONTIGUOUS"]
    app = appearance_guide(crop)
    assert np.array_equal(app, appearance_guide(np.ascontiguousarray(crop)))
    mask = face_mask(frame, lm.astype(np.float32), region=region)
    view = np.zeros((mask.shape[0] + 4, mask.shape[1] + 4), bool)[2:-2, 2:-2]
    view[...] = mask > 0.5
    ref = app_cdf(stretch_contrast(app))
    assert np.array_equal(match_histogram(app, ref, mask=view), match_histogram(app, ref, mask=mask))
    assert np.array_equal(temporal_guide(crop, sigma=6.0), temporal_guide(np.ascontiguousarray(crop), sigma=6.0))
    g32 = positional_guide(lm.astype(np.float32), q, region=region)
    g64 = positional_guide(lm.astype(np.float32).astype(np.float64), q.astype(np.float64), region=region)
    assert np.array_equal(g32, g64)


def test_fold_into_exemplar_mirrors_positions_outside_and_keeps_those_inside():
    W, H = 10, 6
    xs = np.array([-0.5, -1.0, -3.0, 0.0, 4.25, 9.0, 9.5, 11.0, 19.5, 25.0], np.float32)
    g = np.stack([xs, np.full_like(xs, 2.0)], axis=-1)[None]
    x = fold_into_exemplar(g, W, H)[0, :, 0]
    # Mirror lines at the outer pixel edges -0.5 and W - 0.5; period 2W.
    np.testing.assert_allclose(x, [-0.5, 0.0, 2.0, 0.0, 4.25, 9.0, 9.5, 8.0, -0.5, 5.0], atol=1e-6)
    rng = np.random.default_rng(3)
    g = rng.uniform(-40, 40, (7, 9, 2)).astype(np.float32)
    f = fold_into_exemplar(g, W, H)
    assert f.dtype == np.float32 and f.shape == g.shape
    assert (f[..., 0] >= -0.5).all() and (f[..., 0] <= W - 0.5).all() and (f[..., 1] >= -0.5).all() and (f[..., 1] <= H - 0.5).all()
    inside = (g[..., 0] >= -0.5) & (g[..., 0] < W - 0.5) & (g[..., 1] >= -0.5) & (g[..., 1] < H - 0.5)
    np.testing.assert_array_equal(f[inside], g[inside])
    # Continuous: neighbours stay neighbours (no jump where the mirror folds).
    line = np.stack([np.linspace(-30, 30, 601, dtype=np.float32), np.zeros(601, np.float32)], axis=-1)[None]
    assert np.abs(np.diff(fold_into_exemplar(line, W, H)[0, :, 0])).max() <= 0.1 + 1e-5



def test_continue_face_outward_mirrors_the_face_across_its_outline():
    """Outside the face a pixel takes its mirror image across the outline (2b − p), the
    nearest face pixel b where the mirror point leaves the face or the image."""
    h, w = 40, 100
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 2          # columns told apart
    image[..., 1] = np.arange(h, dtype=np.uint8)[:, None] * 3          # rows told apart
    face = np.zeros((h, w), bool)
    face[:, :50] = True                                                # a half-plane: x < 50
    out = continue_face_outward(image, face)
    np.testing.assert_array_equal(out[face], image[face])
    for x in (50, 55, 90, 98):                                         # mirror of x across b = 49: 98 − x
        np.testing.assert_array_equal(out[:, x], image[:, 98 - x])
    np.testing.assert_array_equal(out[:, 99], image[:, 49])            # 98 − 99 < 0: the edge pixel
    # A face too thin to mirror far pixels into: beyond twice its width they take the edge pixel.
    thin = np.zeros((h, w), bool)
    thin[:, :5] = True
    out = continue_face_outward(image, thin)
    np.testing.assert_array_equal(out[:, 6], image[:, 2])              # 2·4 − 6 = 2, inside
    np.testing.assert_array_equal(out[:, 30], image[:, 4])             # 2·4 − 30 < 0: the edge pixel
    assert image[0, 0, 0] == 0 and out is not image
    with pytest.raises(ValueError, match="face"):
        continue_face_outward(image, np.zeros((h, w), bool))
