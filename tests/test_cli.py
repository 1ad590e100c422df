"""CLI shell: version is fast and light, bad options exit 2 with one line, help lists every tunable;
batches never write one output twice, conflicting options are usage errors, messages name the
file, --json gives a record per input (issue 12)."""

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceblit_core import media
from faceblit_core.config import StylizeConfig

FACEBLIT = [sys.executable, "-m", "cli.main"]
REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "clip.mp4"
STYLE = REPO / "samples" / "exemplar.png"


def run(*args, **kw):
    return subprocess.run([*FACEBLIT, *args], capture_output=True, text=True, cwd=REPO, timeout=120, **kw)


def test_version_imports_nothing_heavy():
    code = "import sys; sys.argv=['faceblit','--version']; from cli.main import main; main(); print(sorted(m for m in ('torch','cv2','dlib','typer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.splitlines()[0].startswith("faceblit 0.")
    assert out.splitlines()[1] == "['typer']"  # typer is light; torch, OpenCV and dlib are not loaded


def test_standard_output_on_a_terminal_is_refused_before_torch_is_loaded(tmp_path):
    """``-o -`` with stdout a terminal: refused as the other outputs are, before the style and torch."""
    master, slave = pty.openpty()
    report = tmp_path / "report.txt"
    code = (f"import sys; sys.argv=['faceblit','stylize',{str(CLIP)!r},'-o','-','--style',{str(STYLE)!r}]; from cli.main import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            f"    open({str(report)!r}, 'w').write(str(e.code) + ' ' + str('torch' in sys.modules))")
    try:
        r = subprocess.run([sys.executable, "-c", code], stdout=slave, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    assert report.read_text().split() == ["5", "False"], r.stderr
    assert "stdout is a terminal" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_a_refused_run_does_not_load_torch(tmp_path):
    """A bad input or output is refused before torch is loaded (~2 s of CPU at every start)."""
    for args, exit_code in (([str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")], "3"),
                            ([str(CLIP), "-o", str(tmp_path / "no" / "o.mp4")], "5")):
        code = (f"import sys; sys.argv=['faceblit','stylize',*{args!r},'--style',{str(STYLE)!r}]; from cli.main import main\n"
                "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert r.stdout.split() == [exit_code, "False"], (args, r.stdout, r.stderr)
        assert r.stderr.startswith("faceblit: error: ") and len(r.stderr.splitlines()) == 1, r.stderr


def test_stylize_help_lists_every_tunable():
    out = run("stylize", "--help", env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    for f in fields(StylizeConfig):
        assert "--" + f.name.replace("_", "-") in out


def test_prepare_style_options_are_the_config_fields_it_uses():
    """prepare-style's tunables are made from StylizeConfig (flags, defaults, ranges), not
    repeated by hand: the help shows the dataclass's defaults and reads at 80 columns."""
    from cli.main import _STYLE_TUNABLES

    out = run("prepare-style", "--help", env=dict(os.environ, COLUMNS="80", TERM="dumb")).stdout
    assert max(len(ln) for ln in out.splitlines()) <= 80
    defaults = {f.name: f.default for f in fields(StylizeConfig)}
    for name in _STYLE_TUNABLES:
        flag = "--" + name.replace("_", "-")
        assert flag in out
        after = out[out.index(flag):]
        assert after[after.index("[default:"):].startswith(f"[default: {defaults[name]}]"), name  # the next default shown is its own
    r = run("prepare-style", str(STYLE), "--lut-radius", "0")
    assert r.returncode == 2 and "faceblit: error: --lut-radius: expected a value in [1.0, 512.0], got 0.0" in r.stderr


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


# ------------------------------------------------------------------ issue 12: batch safety, options, messages


def run_in(cwd, *args, **kw):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
    return subprocess.run([*FACEBLIT, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300, env=env, **kw)


def without_small_style_warning(text: str) -> list[str]:
    """The non-empty stderr lines but the exemplar check's warning about the 200×260 test style
    (its face is 103 px wide: under the 160 px the check asks for, on purpose, for speed)."""
    return [ln for ln in text.splitlines() if ln.strip() and not (ln.startswith("faceblit: warning: style image ") and "103 px wide" in ln)]


def one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("faceblit: error: "), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 200×260 exemplar with its landmarks beside it, already in a style cache, and a
    one-frame still of the sample (renders in well under a second)."""
    d = tmp_path_factory.mktemp("small-style")
    bgr = cv2.imread(str(STYLE))
    h, w = bgr.shape[:2]
    cv2.imwrite(str(d / "small.png"), cv2.resize(bgr, (200, 260), interpolation=cv2.INTER_AREA))
    lm = np.loadtxt(REPO / "samples" / "exemplar.lm.txt")
    np.savetxt(d / "small.lm.txt", (lm + 0.5) * [200 / w, 260 / h] - 0.5, fmt="%.3f")
    frame = next(iter(media.iter_frames(media.probe(CLIP))))
    cv2.imwrite(str(d / "still.png"), frame[:, :, ::-1])
    cache = d / "cache"
    r = run_in(d, "prepare-style", d / "small.png", "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    return {"style": d / "small.png", "still": d / "still.png", "cache": cache}


def test_two_inputs_never_write_the_same_output(tmp_path):
    """a/clip.mp4 and b/clip.mp4 into one --out-dir would both be D/clip-S.mp4: refused up front
    (exit 2, both named, nothing written), --overwrite or not; so are an input given twice
    (also through a symbolic link) and an output that is another input of the run."""
    for sub in ("a", "b", "D"):
        (tmp_path / sub).mkdir()
    shutil.copy(CLIP, tmp_path / "a" / "clip.mp4")
    shutil.copy(CLIP, tmp_path / "b" / "clip.mp4")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "a" / "clip.mp4")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = run_in(tmp_path, "stylize", "a/clip.mp4", "b/clip.mp4", "--style", STYLE, "--out-dir", "D", "--overwrite")
    assert r.returncode == 2
    line = one_error_line(r)
    assert "a/clip.mp4 and b/clip.mp4 would both be written to D/clip-exemplar.mp4" in line
    r = run_in(tmp_path, "stylize", "a/clip.mp4", "link.mp4", "--style", STYLE, "--out-dir", "D")
    assert r.returncode == 2 and "a/clip.mp4 and link.mp4 are the same input" in one_error_line(r)
    r = run_in(tmp_path, "stylize", "a/clip.mp4", "./a/../a/clip.mp4", "--style", STYLE, "-y")
    assert r.returncode == 2 and "are the same input" in one_error_line(r)
    # a/clip.mp4's output next to it would be the second input, which would be replaced before it is read.
    shutil.copy(CLIP, tmp_path / "a" / "clip-exemplar.mp4")
    r = run_in(tmp_path, "stylize", "a/clip.mp4", "a/clip-exemplar.mp4", "--style", STYLE, "-y")
    assert r.returncode == 2 and "is another input of this run (a/clip-exemplar.mp4)" in one_error_line(r)
    (tmp_path / "a" / "clip-exemplar.mp4").unlink()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_colliding_names_compare_without_case_on_a_case_insensitive_folder(tmp_path, monkeypatch):
    from faceblit_core import batch
    from faceblit_core.errors import UsageError

    targets = [str(tmp_path / "Clip-S.mp4"), str(tmp_path / "clip-S.mp4")]
    assert batch._case_insensitive(str(tmp_path)) is False  # this machine's tmp: names keep their case
    batch._check_distinct(["x/Clip.mp4", "y/clip.mp4"], targets)  # distinct files here
    monkeypatch.setattr(batch, "_case_insensitive", lambda folder: True)  # as on macOS / Windows
    with pytest.raises(UsageError, match="x/Clip.mp4 and y/clip.mp4 would both be written to"):
        batch._check_distinct(["x/Clip.mp4", "y/clip.mp4"], targets)
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    with pytest.raises(UsageError, match="would both be written"):  # one folder under two names
        batch._check_distinct(["p.mp4", "q.mp4"], [str(tmp_path / "real" / "o.mp4"), str(tmp_path / "alias" / "o.mp4")])
    assert list((tmp_path / "real").iterdir()) == []


def test_conflicting_options_are_usage_errors(tmp_path):
    (tmp_path / "D").mkdir()
    r = run_in(tmp_path, "stylize", CLIP, "--style", STYLE, "-o", "x.mp4", "--out-dir", "D")
    assert r.returncode == 2 and "-o/--output and --out-dir exclude each other" in one_error_line(r)
    with open(CLIP, "rb") as stdin:  # stdin has no name to put into --out-dir (it used to go to stdout silently)
        r = run_in(tmp_path, "stylize", "-", "--style", STYLE, "--out-dir", "D", stdin=stdin)
    assert r.returncode == 2 and "standard input ('-') has no name to write into --out-dir" in one_error_line(r)
    assert r.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["D"] and os.listdir(tmp_path / "D") == []


def test_an_interrupted_batch_says_which_outputs_were_written(small, tmp_path):
    """SIGINT while the second of two inputs is being written: the first output stays and is
    named, the second is not written; exit 130."""
    long_clip = tmp_path / "long.mp4"
    subprocess.run([media.find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-stream_loop", "3", "-i", str(CLIP), "-c", "copy",
                    str(long_clip)], check=True)
    out = tmp_path / "D"
    out.mkdir()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

    def default_signals():  # a suite started with `cmd &` inherits SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([*FACEBLIT, "stylize", str(small["still"]), str(long_clip), "--style", str(small["style"]), "--out-dir", str(out),
                             "--cache-dir", str(small["cache"]), "-q"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_signals)
    deadline = time.monotonic() + 180
    while not ("still-small.png" in os.listdir(out) and any(".partial" in n for n in os.listdir(out))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = without_small_style_warning(err)
    assert lines == [f"faceblit: error: interrupted by SIGINT; 1 of 2 outputs written ({out / 'still-small.png'}); the one in progress was not written"]
    assert os.listdir(out) == ["still-small.png"]


def test_messages_name_the_file_and_what_to_give(small, tmp_path):
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((120, 100, 3), (60, 120, 200), np.uint8))
    r = run_in(tmp_path, "landmarks", flat)
    line = one_error_line(r)
    assert r.returncode == 4 and f"{flat}: no face found" in line and "lm.txt" in line
    assert "--style-landmarks" not in line and "style image" not in line  # options and words of another command
    r = run_in(tmp_path, "landmarks", CLIP)
    assert r.returncode == 3 and one_error_line(r) == f"faceblit: error: {CLIP}: is a video; give an image"
    r = run_in(tmp_path, "prepare-style", CLIP, "--cache-dir", small["cache"])
    assert r.returncode == 4 and one_error_line(r) == f"faceblit: error: style image {CLIP}: is a video; give an image"
    r = run_in(tmp_path, "stylize", small["still"], "--style", CLIP, "-o", "o.png", "--cache-dir", small["cache"])
    assert r.returncode == 4 and one_error_line(r) == f"faceblit: error: style image {CLIP}: is a video; give an image"
    assert sorted(os.listdir(tmp_path)) == ["flat.png"]


def test_cli_conventions_short_options_and_help_pointers(tmp_path):
    for args in (["-h"], ["stylize", "-h"], ["compare", "-h"], ["landmarks", "-h"]):
        r = run(*args)
        assert r.returncode == 0 and "Usage: faceblit" in r.stdout, (args, r.stderr)
    # -y is --overwrite: it parses (the missing input is what fails, exit 3, not a usage error)
    r = run("stylize", str(tmp_path / "missing.mp4"), "--style", str(STYLE), "-y")
    assert r.returncode == 3 and "no such file" in r.stderr
    r = run("stylize", str(tmp_path / "x.mp4"), "--style", str(STYLE), "--no-such-flag")
    assert r.returncode == 2 and "(see 'faceblit stylize --help')" in r.stderr
    r = run("compare", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "(see 'faceblit compare --help')" in r.stderr
    r = run("stylize", str(tmp_path / "x.mp4"), "--style", str(STYLE), "--levels", "12")
    assert r.returncode == 2 and r.stderr.rstrip().endswith("(see 'faceblit stylize --help')")


def test_stylize_help_reads_at_80_columns():
    env = dict(os.environ, COLUMNS="80", TERM="dumb")
    out = run("stylize", "--help", env=env).stdout
    usage = next(ln for ln in out.splitlines() if "Usage:" in ln)
    assert "faceblit stylize [OPTIONS] INPUT..." in usage and "{" not in usage
    assert "<bool>" not in out  # flags take no value
    assert max(len(ln) for ln in out.splitlines()) <= 80
    # Descriptions have room: ~4 lines an option (squeezed into 22 columns they took ~6).
    n_options = sum(1 for ln in out.splitlines() if re.match(r"^│ [ *]*(-[a-z], )?--[a-z]", ln))
    assert n_options > 30 and len(out.splitlines()) < 5 * n_options
    threshold = next(ln for ln in out.splitlines() if "--threshold" in ln)
    assert "StyleBlit acceptance threshold" in threshold  # the description has room on the option's line
    for panel in ("Synthesis", "Guides and motion", "Faces", "Device and encoding", "Switches"):
        assert panel in out
    compare = run("compare", "--help", env=env).stdout
    assert "compare [OPTIONS] A B" in compare and "--quiet" in compare


def test_compare_quiet(small):
    r = run("compare", str(small["still"]), str(small["still"]))
    assert r.returncode == 0 and r.stdout.startswith("frames=1 ")
    r = run("compare", str(small["still"]), str(small["still"]), "--quiet")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_json_batch_has_a_record_for_every_input(small, tmp_path):
    """--json: one JSON line per input (JSON lines), failed ones included, each with the version and style."""
    from faceblit_core._version import __version__

    (tmp_path / "bad.mp4").write_text("not a video\n")
    (tmp_path / "D").mkdir()
    r = run_in(tmp_path, "stylize", small["still"], "bad.mp4", CLIP, "--style", small["style"], "--out-dir", "D", "--frames", "0:2",
               "--cache-dir", small["cache"], "--json", "-q")
    assert r.returncode == 1, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(rec["input"], rec["status"]) for rec in records] == [(str(small["still"]), "written"), ("bad.mp4", "failed"), (str(CLIP), "written")]
    assert all(rec["version"] == __version__ and rec["style"] == str(small["style"]) for rec in records)
    bad = records[1]
    assert bad["exit_code"] == 3 and bad["error"].startswith("bad.mp4: not a video or image")
    assert records[2]["output"] == "D/clip-small.mp4" and records[2]["frames"] == 2
    assert 0 < records[2]["render_seconds"] <= records[2]["seconds"]
    assert records[2]["fps"] == pytest.approx(2 / records[2]["render_seconds"], rel=0.01)


def test_json_names_standard_input_as_given(small, tmp_path):
    """A video and a still read from '-' are recorded as input '-' (not standard input's spooled copy)."""
    for src, out in ((CLIP, "o.mp4"), (small["still"], "o.png")):
        with open(src, "rb") as stdin:
            r = run_in(tmp_path, "stylize", "-", "--style", small["style"], "-o", out, "--frames", "0:2",
                       "--cache-dir", small["cache"], "--json", "-q", stdin=stdin)
        assert r.returncode == 0, r.stderr
        (record,) = [json.loads(line) for line in r.stdout.splitlines()]
        assert (record["input"], record["status"], record["output"]) == ("-", "written", out)


def _stderr_on_a_terminal(args, cwd) -> str:
    """Run the CLI with stderr on a pseudo-terminal (stdout piped); return what the terminal got."""
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", COLUMNS="100")
    proc = subprocess.Popen([*FACEBLIT, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    proc.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks)[-2000:]
    return b"".join(chunks).decode(errors="replace")


def test_start_up_shows_a_status_on_a_terminal_only_and_fps_says_what_it_counts(small, tmp_path):
    args = ["stylize", small["still"], "--style", small["style"], "--cache-dir", small["cache"], "-o"]
    tty = _stderr_on_a_terminal([*args, tmp_path / "tty.png"], tmp_path)
    assert "faceblit: preparing style" in tty and "\x1b[K" in tty  # a one-line status, rewritten in place
    r = run_in(tmp_path, *args, tmp_path / "pipe.png")
    assert r.returncode == 0, r.stderr
    assert "preparing style" not in r.stderr and "\r" not in r.stderr and "\x1b" not in r.stderr  # logs stay clean
    (line,) = without_small_style_warning(r.stderr)
    assert re.search(r" [0-9.]+ fps on cpu \(rendering only; [0-9.]+ s in all with start-up\)$", line), line


def test_a_batch_refuses_existing_outputs_before_rendering_the_others(small, tmp_path):
    """Without -y an output that exists fails its input up front (its line comes first), the others are still written."""
    (tmp_path / "D").mkdir()
    (tmp_path / "D" / "clip-small.mp4").write_bytes(b"earlier result")
    r = run_in(tmp_path, "stylize", small["still"], CLIP, "--style", small["style"], "--out-dir", "D", "--frames", "0:2",
               "--cache-dir", small["cache"], "--json", "-q")
    assert r.returncode == 1, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(rec["input"], rec["status"]) for rec in records] == [(str(CLIP), "failed"), (str(small["still"]), "written")]
    assert records[0]["exit_code"] == 5 and "exists; use --overwrite" in records[0]["error"]
    assert (tmp_path / "D" / "clip-small.mp4").read_bytes() == b"earlier result"
    assert (tmp_path / "D" / "still-small.png").is_file()


def test_click_usage_errors_point_to_the_help_in_one_sentence(tmp_path):
    r = run_in(tmp_path, "stylize", "x.mp4")
    assert r.returncode == 2
    assert "'. (see" not in r.stderr and "(see 'faceblit stylize --help')" in r.stderr
