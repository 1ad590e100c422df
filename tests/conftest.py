"""Shared fixtures. Real faces come from ../shared/data (CI has it); tests that need
them skip with a clear reason when it is absent. Small fixtures are made at test time."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEBLIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when the team's data set is not there."""
    if not (SHARED_DATA / "styles").is_dir():
        pytest.skip(f"shared data set not found at {SHARED_DATA} (set FACEBLIT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def style_cache(tmp_path_factory) -> Path:
    """One style cache folder for the session. Tests that only render with an exemplar share
    its preparation (~1.5 s of CPU each; the same exemplar and options hit the cache, other
    options make another entry). Tests of the cache itself keep their own folders."""
    return tmp_path_factory.mktemp("style-cache")


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return REPO / "samples"


@pytest.fixture(scope="session")
def display_rotated():
    """``make(src, dst, degrees) -> dst``: a stream copy of the video ``src`` whose display
    matrix turns it ``degrees`` counter-clockwise (``upright = np.rot90(coded, degrees // 90)``).

    Made with the ffmpeg faceblit uses (:func:`faceblit_core.media.find_ffmpeg`), whatever
    its version: ``-display_rotation`` where it has it (ffmpeg 6.1 on), else the legacy
    ``rotate`` tag (clockwise degrees), which ffmpeg 5.x writes as the same matrix.
    """
    from faceblit_core import media

    def make(src: Path, dst: Path, degrees: int) -> Path:
        base = [media.find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        r = subprocess.run([*base, "-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(dst)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            assert "display_rotation" in r.stderr, r.stderr
            r = subprocess.run([*base, "-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={-degrees % 360}", str(dst)],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        return Path(dst)

    return make
