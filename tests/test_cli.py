"""CLI shell: version is fast and light, bad options exit 2 with one line, help lists every tunable."""

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from faceblit_core.config import StylizeConfig

FACEBLIT = [sys.executable, "-m", "cli.main"]
REPO = Path(__file__).resolve().parents[1]


def run(*args, **kw):
    return subprocess.run([*FACEBLIT, *args], capture_output=True, text=True, cwd=REPO, timeout=120, **kw)


def test_version_imports_nothing_heavy():
    code = "import sys; sys.argv=['faceblit','--version']; from cli.main import main; main(); print(sorted(m for m in ('torch','cv2','dlib','typer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.splitlines()[0].startswith("faceblit 0.")
    assert out.splitlines()[1] == "['typer']"  # typer is light; torch, OpenCV and dlib are not loaded


def test_stylize_help_lists_every_tunable():
    out = run("stylize", "--help", env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    for f in fields(StylizeConfig):
        assert "--" + f.name.replace("_", "-") in out


def test_out_of_range_tunable_is_a_usage_error(tmp_path):
    r = run("stylize", str(tmp_path / "x.mp4"), "--style", "s.png", "--levels", "12")
    assert r.returncode == 2
    assert "levels: expected a value in [0, 9], got 12" in r.stderr
    assert "Traceback" not in r.stderr
