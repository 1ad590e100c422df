"""The feathered edge of the face mask shows the exemplar's face paint, never the painting's background.

The mask is feathered across the face's outline, and there the synthesis copies what
lies just past the exemplar's face: its background, collar, ears. An exemplar painted
on a pale ground left a pale halo along every target's jaw and cheeks (looked at on
d18 × het). :func:`faceblit_core.guides.continue_face_outward` continues the face's
texture past its outline for the copy; this test paints an exemplar's background pure
green and looks for green in the output.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core import media
from faceblit_core.config import StylizeConfig
from faceblit_core.guides import whole_face_mask
from faceblit_core.pipeline import stylize_image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def _green(image: np.ndarray) -> np.ndarray:
    """Pixels far greener than red and blue (none in the sample clip or exemplar)."""
    rgb = image.astype(np.int16)
    return (rgb[..., 1] > rgb[..., 0] + 80) & (rgb[..., 1] > rgb[..., 2] + 80)


@pytest.fixture(scope="module")
def green_ground(tmp_path_factory) -> tuple[Path, Path]:
    """The sample exemplar with everything outside its face painted green, and a frame of the sample clip."""
    folder = tmp_path_factory.mktemp("edge")
    # At the size the test renders with (no downscaling to mix green into the face's pixels).
    exemplar = cv2.resize(media.read_image(SAMPLES / "exemplar.png"), (240, 320), interpolation=cv2.INTER_AREA)
    landmarks = np.loadtxt(SAMPLES / "exemplar.lm.txt") * 0.5
    painted = exemplar.copy()
    painted[whole_face_mask(exemplar, landmarks, feather=0) < 0.5] = (0, 255, 0)
    style = folder / "green.png"
    media.write_image(style, painted)
    np.savetxt(folder / "green.lm.txt", landmarks)
    frame = next(iter(media.iter_frames(media.probe(SAMPLES / "clip.mp4"), start=12, end=13)))
    assert not _green(frame).any() and not _green(exemplar).any()
    target = folder / "frame.png"
    media.write_image(target, frame)
    return style, target


@pytest.mark.parametrize("space", ["face", "frame"])
def test_no_background_of_the_painting_along_the_face_edge(green_ground, style_cache, tmp_path, space):
    style, target = green_ground
    out = tmp_path / "out.png"
    stylize_image(target, style, out, config=StylizeConfig(style_max_side=320, synthesis_space=space), cache_dir=style_cache)
    result = media.read_image(out)
    changed = np.abs(result.astype(np.int16) - media.read_image(target).astype(np.int16)).max(axis=-1) > 8
    assert changed.sum() > 5000                      # the face is painted
    assert _green(result).sum() == 0, f"{_green(result).sum()} green pixels"
