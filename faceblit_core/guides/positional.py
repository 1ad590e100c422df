"""Positional guide G_pos: for every target pixel, the style position it corresponds to (DESIGN §4.1).

The target→style warp is a moving-least-squares (MLS) *similarity* deformation
(Schaefer, McPhail & Warren 2006, §2.2) with the target landmarks as control
points p_i and the style landmarks as their images q_i. As in FaceBlit it is
evaluated exactly on a coarse grid (every ``grid`` px) and interpolated
bilinearly in between; the interpolation here is exact at the grid nodes and
runs in OpenCV (see :func:`interpolate_nodes`).

Grid placement: the nodes sit at frame pixels that are multiples of ``grid``
(not at the region's corner), so a pixel's guide value does not depend on where
the synthesis region happens to start — the region follows the face and would
otherwise drag the interpolation pattern along with it, frame to frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceblit_core.checks import check, check_array
from faceblit_core.geometry import Region

__all__ = [
    "mls_similarity",
    "positional_guide",
    "background_anchors",
    "fold_into_exemplar",
    "positional_to_rgb",
    "interpolate_nodes",
]

# Points per block of the (N, K) weight matrix: 512 × 68 float64 ≈ 280 KB stays in
# cache; larger blocks were 5x slower here (page faults on fresh temporaries).
_CHUNK = 512
# Squared distance (px²) below which a point counts as sitting on a control point.
# Its weight 1/eps^alpha then dominates every other weight by > 10^9 for alpha = 1,
# so f(p_i) = q_i to far better than 1e-3 px, without a special case.
_EPS_D2 = 1e-9


def _as_points(a: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(a)
    check_array(arr, what, shape=(None, 2))
    arr = arr.astype(np.float64, copy=False)
    check(bool(np.isfinite(arr).all()), what, "finite coordinates", "NaN or inf")
    return arr


def mls_similarity(points: np.ndarray, p: np.ndarray, q: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    """Moving-least-squares similarity deformation f with f(p_i) = q_i, evaluated at ``points``.

    For each point v, with weights w_i = 1 / |p_i − v|^(2α), weighted centroids
    p* = Σ w_i p_i / Σ w_i and q* likewise, p̂_i = p_i − p*, q̂_i = q_i − q*,
    μ_s = Σ w_i |p̂_i|²::

        f(v) = q* + M (v − p*),   M = (1/μ_s) Σ w_i [p̂_i; −p̂_i^⊥]ᵀ [q̂_i; −q̂_i^⊥]

    which is the best weighted similarity (rotation + uniform scale +
    translation) sending the p_i to the q_i. In complex notation, used here,
    M is multiplication by a = Σ w_i conj(p̂_i) q̂_i / μ_s.

    Parameters
    ----------
    points : (N, 2) float array
        Positions v (x, y) where f is evaluated, px of the source (target) image.
    p : (K, 2) float array, K ≥ 1
        Control points in the source space (target landmarks), px.
    q : (K, 2) float array
        Their images (style landmarks), px of the destination (style) image.
    alpha : float, keyword-only, > 0
        Weight falloff exponent α (Schaefer et al.: 1; ``StylizeConfig.mls_alpha``).

    Returns
    -------
    (N, 2) float32
        f(v) in destination px. A point on a control point p_i maps to q_i (to
        within 1e-3 px; the weight is clamped at |p_i − v|² = 1e-9 px² instead of
        being infinite). Where μ_s = 0 (K = 1, or all controls coincident) no
        rotation or scale is defined and f is the translation p* → q*.

    Raises
    ------
    ValueError
        On wrong shapes, ``len(p) != len(q)``, K = 0, non-finite values or α ≤ 0.

    Notes
    -----
    Vectorized: blocks of 512 points × K controls in float64, two matrix
    products per block; ≈ 3 ms for 8 000 points × 68 controls on one core.
    Coordinates are centred on the control centroids first, which keeps the
    expanded sums well conditioned.

    References
    ----------
    S. Schaefer, T. McPhail, J. Warren, "Image Deformation Using Moving Least
    Squares", SIGGRAPH 2006, §2.2 (similarity deformations, μ_s, eq. for f_s).
    A. Texler et al., "FaceBlit", 2021, §3 (G_pos by MLS on the landmarks).
    """
    v = _as_points(points, "points")
    pp = _as_points(p, "control points p")
    qq = _as_points(q, "control points q")
    check(pp.shape == qq.shape, "control points", "p and q of the same shape", f"{pp.shape} and {qq.shape}")
    check(pp.shape[0] >= 1, "control points", "at least one", 0)
    check(math.isfinite(alpha) and alpha > 0, "alpha", "a finite value > 0", alpha)

    n, k = v.shape[0], pp.shape[0]
    out = np.empty((n, 2), dtype=np.float32)
    if n == 0:
        return out
    cp, cq = pp.mean(axis=0), qq.mean(axis=0)
    P, Q, V = pp - cp, qq - cq, v - cp

    # |v − p_i|² = |v|² + |p_i|² − 2 v·p_i as one product with A.
    A = np.empty((3, k))
    A[0:2] = -2.0 * P.T
    A[2] = (P * P).sum(axis=1)
    # One product gives every weighted sum the similarity fit needs:
    # Σw p, Σw q, Σw Re(conj(p) q), Σw Im(conj(p) q), Σw, Σw |p|².
    B = np.empty((k, 8))
    B[:, 0:2] = P
    B[:, 2:4] = Q
    B[:, 4] = P[:, 0] * Q[:, 0] + P[:, 1] * Q[:, 1]
    B[:, 5] = P[:, 0] * Q[:, 1] - P[:, 1] * Q[:, 0]
    B[:, 6] = 1.0
    B[:, 7] = A[2]
    vaug = np.empty((n, 3))
    vaug[:, 0:2] = V
    vaug[:, 2] = 1.0
    vv = (V * V).sum(axis=1)
    unit_alpha = alpha == 1.0

    for s in range(0, n, _CHUNK):
        e = min(s + _CHUNK, n)
        d2 = vaug[s:e] @ A
        d2 += vv[s:e, None]
        np.maximum(d2, _EPS_D2, out=d2)
        if unit_alpha:
            w = np.reciprocal(d2, out=d2)
        else:
            w = np.power(d2, -alpha, out=d2)
        S = w @ B
        sw = S[:, 6]
        ps = S[:, 0:2] / sw[:, None]
        qs = S[:, 2:4] / sw[:, None]
        # Σ w |p̂|² and Σ w conj(p̂) q̂ expanded around the weighted centroids.
        mu = S[:, 7] - sw * (ps * ps).sum(axis=1)
        c_re = S[:, 4] - sw * (ps[:, 0] * qs[:, 0] + ps[:, 1] * qs[:, 1])
        c_im = S[:, 5] - sw * (ps[:, 0] * qs[:, 1] - ps[:, 1] * qs[:, 0])
        # μ_s = 0 only when the weight sits on coincident controls: no rotation/scale
        # is defined there, so fall back to the translation p* → q* (relative test:
        # the sums carry rounding).
        ok = mu > 1e-12 * S[:, 7] + 1e-300
        safe = np.where(ok, mu, 1.0)
        a_re = np.where(ok, c_re / safe, 1.0)
        a_im = np.where(ok, c_im / safe, 0.0)
        ux = V[s:e, 0] - ps[:, 0]
        uy = V[s:e, 1] - ps[:, 1]
        out[s:e, 0] = qs[:, 0] + a_re * ux - a_im * uy + cq[0]
        out[s:e, 1] = qs[:, 1] + a_re * uy + a_im * ux + cq[1]
    return out


# ------------------------------------------------------------------ grid interpolation
def _halve_step(a: np.ndarray, axis: int) -> np.ndarray:
    """Insert the midpoint between each pair of neighbouring nodes along ``axis``."""
    a = np.moveaxis(a, axis, 0)
    n = a.shape[0]
    if n < 2:
        return np.moveaxis(a, 0, axis)
    out = np.empty((2 * n - 1,) + a.shape[1:], dtype=a.dtype)
    out[0::2] = a
    np.add(a[:-1], a[1:], out=out[1::2])
    out[1::2] *= 0.5
    return np.moveaxis(out, 0, axis)


def _refine(nodes: np.ndarray, factor: int) -> np.ndarray:
    """Insert ``factor − 1`` linearly interpolated nodes between neighbours along both axes.

    ``factor`` must be a power of two: the grid is halved repeatedly by inserting
    midpoints, which is exact for a piecewise-linear function. The bilinear
    interpolant of the refined grid is the same function as that of the coarse
    grid (a bilinear patch restricted to a sub-cell is bilinear), so this
    changes the grid step without changing a single interpolated value, and the
    original node values are copied untouched. (Plain slicing, no BLAS: on this
    loaded 2-core machine a threaded OpenBLAS product of this size took 50 ms.)
    """
    check(factor >= 1 and factor & (factor - 1) == 0, "refinement factor", "a power of two", factor)
    a = nodes.astype(np.float64)
    while factor > 1:
        a = _halve_step(_halve_step(a, 0), 1)
        factor //= 2
    return a


def interpolate_nodes(nodes: np.ndarray, *, step: int, offset: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of values given on a regular grid, exact at the nodes.

    Output pixel (x, y) takes the bilinear interpolant of ``nodes`` at node
    coordinates ((x + ox) / step, (y + oy) / step); i.e. node (j, i) sits on
    output pixel (i·step − ox, j·step − oy). Beyond the last node the value is
    clamped (edge nodes repeated).

    Parameters
    ----------
    nodes : (ny, nx) or (ny, nx, C) float array, C ≤ 4
        Values at the grid nodes.
    step : int, ≥ 1, keyword-only
        Node spacing, output px.
    offset : (int, int), keyword-only
        ``(ox, oy)`` ≥ 0: position of output pixel (0, 0) measured from node (0, 0), px.
    size : (int, int), keyword-only
        ``(width, height)`` of the output, px.

    Returns
    -------
    (height, width) or (height, width, C) float32, C-contiguous

    Raises
    ------
    ValueError
        On a bad step, offset, size or node array.

    Notes
    -----
    OpenCV's ``resize`` is the fast bilinear up-sampler (0.2 ms for a 768×1024×2
    float32 output) but puts the source samples at pixel *centres*: up-sampling
    by s maps output pixel i to source (i + 0.5)/s − 0.5, which lands nodes on
    integer pixels only for odd s. So the grid is first refined exactly (see
    :func:`_refine`) by the power-of-two part of ``step``, leaving an odd factor
    for ``resize``. When ``step`` is a power of two, ``warpAffine`` is exact
    instead: its 1/32-px interpolation table represents every fraction k/step
    for step dividing 32.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (MLS on a 10 px grid, bilinear in between).
    """
    check(isinstance(step, (int, np.integer)) and step >= 1, "step", "an integer >= 1", step)
    ox, oy = int(offset[0]), int(offset[1])
    w, h = int(size[0]), int(size[1])
    check(ox >= 0 and oy >= 0, "offset", ">= 0", offset)
    check(w >= 0 and h >= 0, "size", ">= 0", size)
    nodes = np.asarray(nodes)
    check(nodes.ndim in (2, 3) and nodes.shape[0] >= 1 and nodes.shape[1] >= 1, "nodes shape",
          "(ny, nx) or (ny, nx, C) with ny, nx >= 1", nodes.shape)
    step = int(step)
    if w == 0 or h == 0:
        return np.zeros((h, w) + nodes.shape[2:], dtype=np.float32)
    if step == 1:
        ys = np.clip(np.arange(oy, oy + h), 0, nodes.shape[0] - 1)
        xs = np.clip(np.arange(ox, ox + w), 0, nodes.shape[1] - 1)
        return np.ascontiguousarray(nodes[ys][:, xs], dtype=np.float32)

    pow2 = step & -step  # largest power of two dividing step
    odd = step // pow2
    if odd > 1:
        fine = np.ascontiguousarray(_refine(nodes, pow2), dtype=np.float32)
        ny, nx = fine.shape[:2]
        big = cv2.resize(fine, (nx * odd, ny * odd), interpolation=cv2.INTER_LINEAR)
        # resize puts refined node k on output index k·odd + (odd − 1)/2.
        half = (odd - 1) // 2
        return np.ascontiguousarray(big[oy + half : oy + half + h, ox + half : ox + half + w])

    warp_step = min(step, 32)
    fine = np.ascontiguousarray(_refine(nodes, step // warp_step), dtype=np.float32)
    m = np.array([[1.0 / warp_step, 0.0, ox / warp_step], [0.0, 1.0 / warp_step, oy / warp_step]])
    return cv2.warpAffine(fine, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


# ------------------------------------------------------------------ positional guide
def _grid_frame(region: Region, grid: int) -> tuple[int, int, int, int]:
    """First node (frame px, a multiple of ``grid`` at or before the region) and node counts."""
    gx0 = (region.x0 // grid) * grid
    gy0 = (region.y0 // grid) * grid
    nx = -(-(region.x1 - 1 - gx0) // grid) + 1
    ny = -(-(region.y1 - 1 - gy0) // grid) + 1
    return gx0, gy0, nx, ny


def positional_guide(
    target_landmarks: np.ndarray,
    style_landmarks: np.ndarray,
    *,
    region: Region,
    alpha: float = 1.0,
    grid: int = 10,
    anchors: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Target positional guide G_pos on ``region``: the style position of every target pixel.

    Parameters
    ----------
    target_landmarks : (68, 2) float array
        Landmarks of the face in the frame, frame px (control points p_i).
    style_landmarks : (68, 2) float array
        Landmarks of the style exemplar, style px (their images q_i).
    region : Region, keyword-only
        Where to evaluate, frame px; must be non-empty.
    alpha : float, keyword-only, > 0
        MLS weight exponent (``StylizeConfig.mls_alpha``; 1).
    grid : int, keyword-only, ≥ 1
        MLS is evaluated exactly at frame pixels whose x and y are multiples of
        ``grid`` (``StylizeConfig.mls_grid``; FaceBlit: 10) — nodes cover the
        region including its last row and column — and interpolated
        bilinearly in between (exact at the nodes).
    anchors : ((M, 2), (M, 2)) float arrays, keyword-only, optional
        Extra control pairs (p in frame px, q in style px) appended to the
        landmarks, e.g. :func:`background_anchors` for FaceBlit's background mode.

    Returns
    -------
    (h, w, 2) float32
        ``(h, w) = region.shape``; ``[..., 0]`` = style x, ``[..., 1]`` = style y,
        style px. Values may fall outside the style image (far from the face);
        consumers clamp (the lookup-table quantisation does).

    Raises
    ------
    ValueError
        On wrong shapes, non-finite landmarks, an empty region, ``grid < 1`` or α ≤ 0.

    References
    ----------
    A. Texler et al., "FaceBlit: Instant Real-time Example-based Style Transfer to
    Facial Videos", 2021, §3 (positional guide, MLS on a grid).
    S. Schaefer et al., "Image Deformation Using Moving Least Squares", 2006, §2.2.
    """
    p = _as_points(target_landmarks, "target landmarks")
    q = _as_points(style_landmarks, "style landmarks")
    check(p.shape == q.shape, "landmarks", "target and style of the same shape", f"{p.shape} and {q.shape}")
    check(isinstance(region, Region) and not region.is_empty, "region", "a non-empty Region", region)
    check(isinstance(grid, (int, np.integer)) and grid >= 1, "grid", "an integer >= 1", grid)
    if anchors is not None:
        ap = _as_points(anchors[0], "anchor points p")
        aq = _as_points(anchors[1], "anchor points q")
        check(ap.shape == aq.shape, "anchors", "p and q of the same shape", f"{ap.shape} and {aq.shape}")
        p = np.concatenate([p, ap])
        q = np.concatenate([q, aq])
    grid = int(grid)
    gx0, gy0, nx, ny = _grid_frame(region, grid)
    xs = gx0 + grid * np.arange(nx, dtype=np.float64)
    ys = gy0 + grid * np.arange(ny, dtype=np.float64)
    gx, gy = np.meshgrid(xs, ys)
    nodes = mls_similarity(np.stack([gx.ravel(), gy.ravel()], axis=1), p, q, alpha=alpha).reshape(ny, nx, 2)
    return interpolate_nodes(nodes, step=grid, offset=(region.x0 - gx0, region.y0 - gy0),
                             size=(region.width, region.height))


def background_anchors(
    frame_w: int,
    frame_h: int,
    target_landmarks: np.ndarray,
    style_landmarks: np.ndarray,
    style_w: int,
    style_h: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Two extra MLS control pairs pinning the frame's bottom corners, for FaceBlit's background mode.

    FaceBlit adds the two bottom image corners as control points so that, when
    the whole frame is stylized, the body does not swing with the head. Target
    and style have different sizes and framings here, so the corners cannot
    simply map onto the style's corners without stretching the body. Choice:
    the corners are mapped by the landmark similarity transform *with its
    rotation removed* — uniform scale s = RMS radius of the style landmarks
    about their centroid / that of the target landmarks, translation taking the
    target landmark centroid onto the style landmark centroid::

        q_corner = c_style + s · (p_corner − c_target)

    So the body keeps the face's size and follows the face's position, but a
    tilted or nodding head does not rotate the torso. When the target is framed
    like the exemplar (FaceBlit's 768×1024 setting) this lands close to the
    style's own bottom corners.

    Parameters
    ----------
    frame_w, frame_h : int
        Frame size, px.
    target_landmarks : (68, 2) float array
        Face landmarks in the frame, frame px.
    style_landmarks : (68, 2) float array
        Exemplar landmarks, style px.
    style_w, style_h : int
        Exemplar size, px (accepted for a stable signature and checked; the
        mapping above does not need it — positions outside the exemplar are
        reflected back into it by :func:`fold_into_exemplar`).

    Returns
    -------
    p : (2, 2) float32
        Pixel centres of the frame's bottom-left and bottom-right pixels, frame px.
    q : (2, 2) float32
        Their style positions, style px (may lie outside the exemplar).

    Raises
    ------
    ValueError
        On bad sizes or landmark arrays.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (background stylization: two extra
    control points at the bottom corners of the image).
    """
    check(frame_w >= 1 and frame_h >= 1, "frame size", ">= 1 px", (frame_w, frame_h))
    check(style_w >= 1 and style_h >= 1, "style size", ">= 1 px", (style_w, style_h))
    pt = _as_points(target_landmarks, "target landmarks")
    ps = _as_points(style_landmarks, "style landmarks")
    check(pt.shape == ps.shape and pt.shape[0] >= 2, "landmarks", "target and style of the same shape, >= 2 points",
          f"{pt.shape} and {ps.shape}")
    ct, cs = pt.mean(axis=0), ps.mean(axis=0)
    rt = math.sqrt(((pt - ct) ** 2).sum(axis=1).mean())
    rs = math.sqrt(((ps - cs) ** 2).sum(axis=1).mean())
    scale = rs / rt if rt > 0 else 1.0
    p = np.array([[0.0, frame_h - 1.0], [frame_w - 1.0, frame_h - 1.0]])
    q = cs + scale * (p - ct)
    return p.astype(np.float32), q.astype(np.float32)



def fold_into_exemplar(g_pos: np.ndarray, style_w: int, style_h: int) -> np.ndarray:
    """Positions outside the exemplar reflected back into it at its borders (background mode).

    In background mode the frame's edges can map beyond the painting (a target
    framed wider than the exemplar). The lookup table clamps such positions, so
    every pixel past a border finds the same border pixel: rows and columns of
    one repeated colour, streaks along the frame's edges. Reflected instead, the
    painting continues as its mirror image: the positional guide stays continuous
    and varying, so StyleBlit finds real strokes there. Pixel centres are at integer
    coordinates, so the exemplar covers ``[-0.5, W - 0.5]`` and the mirror lines
    are its outer pixel edges (period ``2W``)::

        t = (x + 0.5) mod 2W;  x' = t - 0.5 if t < W else 2W - t - 0.5

    Parameters
    ----------
    g_pos : (h, w, 2) float32
        Positional guide, style px (x, y); positions inside are unchanged.
    style_w, style_h : int
        Exemplar size, px.

    Returns
    -------
    (h, w, 2) float32
        Every position inside ``[-0.5, W - 0.5] × [-0.5, H - 0.5]``.
    """
    check_array(g_pos, "g_pos", shape=(None, None, 2), dtype=np.float32)
    check(style_w >= 1 and style_h >= 1, "style size", ">= 1 px", (style_w, style_h))
    out = np.empty_like(g_pos)
    for axis, size in ((0, style_w), (1, style_h)):
        t = np.mod(g_pos[..., axis].astype(np.float64) + 0.5, 2.0 * size)
        out[..., axis] = (np.where(t < size, t, 2.0 * size - t) - 0.5).astype(np.float32)
    return out


def positional_to_rgb(g_pos: np.ndarray, style_w: int, style_h: int) -> np.ndarray:
    """8-bit picture of a positional guide, like FaceBlit's gradient image (for ``--save-guides``).

    Parameters
    ----------
    g_pos : (h, w, 2) float32
        Positional guide, style px.
    style_w, style_h : int
        Exemplar size, px.

    Returns
    -------
    (h, w, 3) uint8 RGB
        R = x·255/W, G = y·255/H (rounded, clipped to [0, 255]), B = 0.

    Raises
    ------
    ValueError
        On a wrong shape or a non-positive style size.

    References
    ----------
    A. Texler et al., "FaceBlit", 2021, §3 (G_pos stored as an RG gradient image).
    """
    check_array(g_pos, "positional guide", shape=(None, None, 2))
    check(style_w >= 1 and style_h >= 1, "style size", ">= 1 px", (style_w, style_h))
    h, w = g_pos.shape[:2]
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[..., 0] = np.clip(np.rint(g_pos[..., 0] * (255.0 / style_w)), 0, 255)
    rgb[..., 1] = np.clip(np.rint(g_pos[..., 1] * (255.0 / style_h)), 0, 255)
    return rgb
