"""Shared fixtures. Real faces come from ../shared/data (CI has it); tests that need
them skip with a clear reason when it is absent. Small fixtures are made at test time."""

from __future__ import annotations

import os
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
def samples_dir() -> Path:
    return REPO / "samples"
