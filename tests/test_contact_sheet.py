"""scripts/contact_sheet.py: which frames it picks, and the sheet it writes (the team's sample clip)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "contact_sheet.py"


def _module():
    spec = importlib.util.spec_from_file_location("contact_sheet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pick_frames_spreads_adds_the_last_and_explicit_frames() -> None:
    pick = _module().pick_frames
    assert pick(1008, 4, 0, []) == [126, 378, 630, 882]  # middles of four equal parts
    assert pick(1008, 4, 2, [-1, 5, 2000]) == [5, 126, 378, 630, 882, 1006, 1007]
    assert pick(1, 4, 3, []) == [0]  # a still
    assert pick(10, 0, 0, []) == []


def test_contact_sheet_of_a_clip_and_itself(samples_dir: Path, tmp_path: Path) -> None:
    clip = samples_dir / "clip.mp4"
    if not clip.is_file():
        pytest.skip("samples/ not generated (run scripts/make_samples.py)")
    out = tmp_path / "sheet.png"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(clip), str(clip), "-o", str(out), "--frames", "2", "--at", "-1",
         "--labels", "copy", "--height", "96"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sheet = cv2.imread(str(out))
    # 3 rows of 96 px tiles under a 28 px header; two 360×480 columns scaled to 72×96
    assert sheet.shape == (28 + 3 * 96, 2 * 72, 3)
    # the two columns show the same frames: only the frame-number label differs
    left, right = sheet[28 : 28 + 60, :72].astype(int), sheet[28 : 28 + 60, 72:].astype(int)
    assert abs(left - right).max() == 0


def test_contact_sheet_reports_a_missing_render(samples_dir: Path, tmp_path: Path) -> None:
    clip = samples_dir / "clip.mp4"
    if not clip.is_file():
        pytest.skip("samples/ not generated (run scripts/make_samples.py)")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(clip), str(tmp_path / "none.mp4"), "-o", str(tmp_path / "s.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3 and proc.stderr.startswith("contact_sheet: error:")
    assert not (tmp_path / "s.png").exists()
