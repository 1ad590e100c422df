"""faceblit_core.warp: the face-space warps and the flow carry on inputs whose answer is known."""

from __future__ import annotations

import cv2
import numpy as np

from faceblit_core.geometry import Region
from faceblit_core.warp import carry_along_flow, face_space_to_frame, fixed_point_maps, warp_to_face_space


def _grid(region: Region) -> np.ndarray:
    ys, xs = np.mgrid[region.y0 : region.y1, region.x0 : region.x1].astype(np.float32)
    return np.stack([xs, ys], axis=-1)


def test_fixed_point_maps_of_integer_positions_copy_the_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    xy = _grid(Region(5, 2, 25, 17))
    assert np.array_equal(warp_to_face_space(image, fixed_point_maps(xy)), image[2:17, 5:25])


def test_fixed_point_maps_interpolate_at_1_32_px():
    image = np.zeros((4, 8, 1), np.uint8)
    image[..., 0] = np.arange(8, dtype=np.uint8) * 32
    xy = np.array([[[2.5, 1.0]]], np.float32)  # half way between 64 and 96
    out = cv2.remap(image, *fixed_point_maps(xy), cv2.INTER_LINEAR)
    assert int(out[0, 0]) == 80


def test_face_space_to_frame_with_the_identity_guide_gives_back_the_face_and_its_coverage():
    sr = Region(10, 20, 50, 60)
    rng = np.random.default_rng(1)
    face = rng.integers(0, 256, (sr.height, sr.width, 3), dtype=np.uint8)
    stylized, covered = face_space_to_frame(face, _grid(sr), sr, feather=1)
    assert np.array_equal(stylized, face)
    inside = np.zeros((sr.height, sr.width), np.float32)
    inside[1:-2, 1:-2] = 1  # short of the edges by what bicubic reads: one pixel before, two after
    assert np.array_equal(covered, inside)


def test_face_space_to_frame_coverage_fades_with_the_feather():
    sr = Region(0, 0, 40, 40)
    _, covered = face_space_to_frame(np.zeros((40, 40, 3), np.uint8), _grid(sr), sr, feather=8)
    assert covered[20, 20] == 1.0
    assert 0.0 < covered[20, 2] < 1.0 and covered[20, 0] == 0.0
    assert np.all((covered >= 0) & (covered <= 1))


def test_carry_along_a_zero_flow_blends_with_the_follow_weight():
    region = Region(3, 4, 19, 14)
    rng = np.random.default_rng(2)
    prev_pos, now_pos = rng.random((2, region.height, region.width, 2), dtype=np.float32) * 100
    prev_mask, now_mask = rng.random((2, region.height, region.width), dtype=np.float32)
    back = np.zeros((region.height, region.width, 2), np.float32)
    pos, mask = carry_along_flow(back, region, region, (prev_pos, prev_mask), (now_pos, now_mask), follow=0.75)
    inner = (slice(0, -1), slice(0, -1))
    np.testing.assert_allclose(pos[inner], 0.75 * prev_pos[inner] + 0.25 * now_pos[inner], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mask[inner], 0.75 * prev_mask[inner] + 0.25 * now_mask[inner], rtol=1e-5, atol=1e-6)
    # The last row and column: bilinear sampling reads past the previous mask there, so this frame's values.
    assert np.array_equal(mask[-1], now_mask[-1]) and np.array_equal(mask[:, -1], now_mask[:, -1])


def test_carry_follows_the_region_shift_and_falls_back_outside_the_last_region():
    prev_region = Region(0, 0, 10, 6)
    region = Region(4, 0, 14, 6)             # moved 4 px right; the flow is zero
    prev_mask = np.tile(np.arange(10, dtype=np.float32), (6, 1))
    now_mask = np.full((6, 10), -1.0, np.float32)
    back = np.zeros((6, 10, 2), np.float32)
    (mask,) = carry_along_flow(back, region, prev_region, (prev_mask,), (now_mask,), follow=1.0)
    # Columns 0..4 of the new region are columns 4..8 of the previous one (its last row and
    # column are not carried: bilinear sampling reads past them).
    np.testing.assert_allclose(mask[:-1, :5], prev_mask[:-1, 4:9], atol=1e-6)
    # From the previous region's last column on: this frame's values.
    assert np.all(mask[:, 5:] == -1.0) and np.all(mask[-1] == -1.0)


def test_face_space_to_frame_keeps_more_detail_than_bilinear_at_half_pixel_positions():
    # Issue 14 (crispness): the one resampling of synthesized texture must not be a
    # low-pass; bilinear at half a pixel averages neighbours, bicubic keeps more.
    sr = Region(0, 0, 64, 64)
    rng = np.random.default_rng(3)
    face = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    g_pos = _grid(sr) + np.float32(0.5)
    stylized, _ = face_space_to_frame(face, g_pos, sr, feather=1)
    bilinear = cv2.remap(face, *fixed_point_maps(g_pos), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def detail(img):
        return float(np.abs(cv2.Laplacian(img[4:-4, 4:-4].astype(np.float32), cv2.CV_32F)).mean())

    assert detail(stylized) > 1.2 * detail(bilinear)
