"""Regions of a frame: where a face needs synthesis (ARCHITECTURE "Regions"), the picture
inside letterbox/pillarbox bars (:func:`active_picture`), and the named face parts a user
may keep unstylized (:data:`KEEP_REGIONS`).

A :class:`Region` is a half-open box ``[x0, x1) × [y0, y1)`` in frame pixels.
Every per-face stage (guides, StyleBlit, voting, compositing) works on the crop
``frame[region.slice]`` so the cost follows the face size, not the frame size.

:data:`KEEP_REGIONS` is the one list of the face parts ``--keep`` names (validated by
:class:`~faceblit_core.config.StylizeConfig`, drawn by
:func:`faceblit_core.guides.segmentation.keep_mask`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faceblit_core.checks import check, check_array


@dataclass(frozen=True)
class LandmarkRegion:
    """A face part outlined by groups of the 68 landmarks (for ``StylizeConfig.keep``).

    Attributes
    ----------
    groups : tuple of tuple of int
        0-based iBUG landmark indices, one tuple per outline (e.g. one per eye).
    closed : bool
        True: each group is a closed outline, filled; False: an open curve, drawn as a
        band ``2·grow`` wide around it.
    grow : float
        How far the part reaches beyond its landmarks, fraction of the inter-ocular
        distance (lids and lashes around the eye contour, the brow's width).
    """

    groups: tuple[tuple[int, ...], ...]
    closed: bool
    grow: float


#: Face parts whose own pixels ``StylizeConfig.keep`` can keep, by name: the one list of
#: them. Eyes: each eye's lid contour (36–41, 42–47), i.e. the eyeball and the lid margin;
#: mouth: the inner lip contour (60–67), what the open mouth shows (teeth, tongue), the
#: lips staying painted; lips: the outer lip contour (48–59), the lips and what is between
#: them; brows: the curve along each brow (17–21, 22–26), a band about as wide as a brow.
#: ``grow`` measured on d18 (eye distance 100 px: brows ~10 px thick); eyes and mouth reach
#: the default ``landmark_bound`` (0.04) beyond their contour, the most the smoothed points
#: may lie from a frame's raw fit, so the raw contour is always inside. No more real skin
#: than that: a ring of it in a painted face reads as a pasted patch.
KEEP_REGIONS: dict[str, LandmarkRegion] = {
    "eyes": LandmarkRegion(groups=(tuple(range(36, 42)), tuple(range(42, 48))), closed=True, grow=0.04),
    "brows": LandmarkRegion(groups=(tuple(range(17, 22)), tuple(range(22, 27))), closed=False, grow=0.06),
    "mouth": LandmarkRegion(groups=(tuple(range(60, 68)),), closed=True, grow=0.04),
    "lips": LandmarkRegion(groups=(tuple(range(48, 60)),), closed=True, grow=0.04),
}


@dataclass(frozen=True)
class Region:
    """A half-open box of frame pixels: columns ``x0 … x1 − 1``, rows ``y0 … y1 − 1``.

    Parameters
    ----------
    x0, y0 : int
        First column / row inside the region, frame px.
    x1, y1 : int
        One past the last column / row, frame px; ``x1 ≥ x0`` and ``y1 ≥ y0``
        (equal means empty).

    Raises
    ------
    TypeError
        When a coordinate is not an integer.
    ValueError
        When ``x1 < x0`` or ``y1 < y0``.
    """

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        for name in ("x0", "y0", "x1", "y1"):
            value = getattr(self, name)
            check(isinstance(value, (int, np.integer)) and not isinstance(value, bool),
                  f"Region.{name}", "an integer", repr(value), exc=TypeError)
            # Normalise numpy integers so equality, hashing and repr behave like ints.
            object.__setattr__(self, name, int(value))
        check(self.x1 >= self.x0 and self.y1 >= self.y0, "Region", "x1 >= x0 and y1 >= y0",
              f"({self.x0}, {self.y0}, {self.x1}, {self.y1})")

    # ------------------------------------------------------------------ sizes
    @property
    def width(self) -> int:
        """Number of columns, px."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Number of rows, px."""
        return self.y1 - self.y0

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, the shape of a single-channel crop."""
        return (self.height, self.width)

    @property
    def is_empty(self) -> bool:
        """True when the region holds no pixel."""
        return self.width == 0 or self.height == 0

    @property
    def origin(self) -> tuple[int, int]:
        """``(x0, y0)``: frame position of the crop's pixel (0, 0)."""
        return (self.x0, self.y0)

    @property
    def slice(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices: ``frame[region.slice]`` is the crop (a view)."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    def crop(self, image: np.ndarray) -> np.ndarray:
        """Return ``image[y0:y1, x0:x1]`` (a view; extra trailing axes are kept)."""
        return image[self.y0 : self.y1, self.x0 : self.x1]

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """Frame px → crop px: ``points − (x0, y0)``, ``(..., 2) float32``."""
        return np.asarray(points, dtype=np.float32) - np.array([self.x0, self.y0], dtype=np.float32)

    def intersect(self, other: "Region") -> "Region":
        """The common part of two regions (empty, anchored at the clipped corner, when disjoint)."""
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1, y1 = max(x0, min(self.x1, other.x1)), max(y0, min(self.y1, other.y1))
        return Region(x0, y0, x1, y1)

    # ------------------------------------------------------------ constructors
    @classmethod
    def full(cls, width: int, height: int) -> "Region":
        """The whole ``width × height`` frame: ``Region(0, 0, width, height)``."""
        return cls(0, 0, int(width), int(height))

    @classmethod
    def around(cls, points: np.ndarray, margin: float, frame_size: tuple[int, int]) -> "Region":
        """Bounding box of ``points`` grown by ``margin`` × its size on every side, clipped to the frame.

        Parameters
        ----------
        points : (N, 2) float array, N ≥ 1
            Points (x, y) in frame px, e.g. the 68 landmarks of a face. Points
            outside the frame are allowed.
        margin : float, ≥ 0
            Fraction of the box width added left and right, and of the box height
            added above and below (``StylizeConfig.margin``).
        frame_size : (int, int)
            ``(width, height)`` of the frame, px.

        Returns
        -------
        Region
            Pixel box covering every grown point's pixel (pixel (x, y) covers
            [x − 0.5, x + 0.5) × [y − 0.5, y + 0.5)), clipped to
            ``[0, width) × [0, height)``; empty when the face lies entirely outside.

        Raises
        ------
        ValueError
            When ``points`` is not ``(N, 2)`` with N ≥ 1 and finite values, or
            ``margin`` is negative.
        """
        pts = np.asarray(points, dtype=np.float64)
        check_array(pts, "points", shape=(None, 2))
        check(pts.shape[0] >= 1 and bool(np.isfinite(pts).all()), "points", "at least one finite point",
              f"{pts.shape[0]} points, finite={bool(np.isfinite(pts).all())}")
        check(margin >= 0, "margin", ">= 0", margin)
        fw, fh = int(frame_size[0]), int(frame_size[1])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        grow = (hi - lo) * float(margin)
        lo, hi = lo - grow, hi + grow
        # Pixel indices whose cells touch [lo, hi]: round to the nearest pixel centre.
        x0 = math.floor(lo[0] + 0.5)
        y0 = math.floor(lo[1] + 0.5)
        x1 = math.floor(hi[0] + 0.5) + 1
        y1 = math.floor(hi[1] + 0.5) + 1
        x0, x1 = min(max(x0, 0), fw), min(max(x1, 0), fw)
        y0, y1 = min(max(y0, 0), fh), min(max(y1, 0), fh)
        return cls(x0, y0, max(x0, x1), max(y0, y1))


def active_picture(frame: np.ndarray, *, level: int = 24, max_bar: float = 1 / 3) -> Region:
    """The frame without its letterbox/pillarbox bars: the region background mode stylizes.

    A bar is a run of whole rows (top, bottom) or columns (left, right) at the
    frame's edge whose every pixel is dark (all channels ≤ ``level``: encoders
    leave a little noise in black). Bars wider than ``max_bar`` of the frame
    are not taken as bars (a dark scene is picture, not a bar), nor is an
    all-dark frame.

    Parameters
    ----------
    frame : (H, W, 3) uint8 RGB
    level : int, keyword-only
        Brightest value (0–255) a bar pixel may have.
    max_bar : float, keyword-only
        Largest bar, as a fraction of the frame's height (width for side bars).

    Returns
    -------
    Region
        The picture, frame px; the whole frame when there are no bars.
    """
    H, W = frame.shape[:2]
    dark = frame.max(axis=2) <= level
    rows, cols = dark.all(axis=1), dark.all(axis=0)

    def run(flags: np.ndarray, limit: int) -> int:
        n = int(np.argmin(flags)) if not flags.all() else len(flags)
        return n if n <= limit else 0

    if rows.all():
        return Region.full(W, H)
    top, bottom = run(rows, int(H * max_bar)), run(rows[::-1], int(H * max_bar))
    left, right = run(cols, int(W * max_bar)), run(cols[::-1], int(W * max_bar))
    return Region(left, top, W - right, H - bottom)
