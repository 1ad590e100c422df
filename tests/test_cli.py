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
    assert "--levels: expected a value in [0, 9], got 12" in r.stderr      # the option, not the field
    assert "Traceback" not in r.stderr
    r = run("stylize", str(tmp_path / "x.mp4"), "--style", "s.png", "--blend-radius", "99")
    assert r.returncode == 2 and "faceblit: error: --blend-radius: expected" in r.stderr


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path):
    r = run("--debug", "stylize", str(tmp_path / "missing.mp4"), "--style", "s.png", "-o", str(tmp_path / "o.mp4"))
    assert r.returncode == 3                     # an input error, as without --debug
    assert "Traceback" in r.stderr and "InputError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("faceblit: error: ")
    r = run("--debug", "stylize", str(tmp_path / "x.mp4"), "--style", "s.png", "--levels", "12")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_output_that_is_a_folder_is_named_as_such(tmp_path):
    import pytest

    from faceblit_core.errors import OutputError
    from faceblit_core.media import check_output

    (tmp_path / "styled").mkdir()
    with pytest.raises(OutputError, match="is a directory; give a file name") as err:
        check_output(tmp_path / "styled", overwrite=True, video=True)
    assert err.value.exit_code == 5


def test_an_interrupt_while_writing_to_stdout_says_the_stream_is_incomplete():
    from faceblit_core.errors import Interrupted

    assert Interrupted(2).message == "interrupted by SIGINT; no output was written"
    stdout = Interrupted(15, to_stdout=True)
    assert stdout.exit_code == 143 and "sent to stdout is incomplete" in stdout.message
