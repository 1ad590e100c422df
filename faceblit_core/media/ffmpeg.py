"""Finding and starting ffmpeg: the binary, its command lines, its children.

:func:`find_ffmpeg` picks ``$FACEBLIT_FFMPEG``, else the ffmpeg bundled in the
``imageio-ffmpeg`` wheel, else ``ffmpeg`` on ``PATH``. Children are started with
:func:`_popen` / :func:`_run_capture` so that they die with their parent
(``PR_SET_PDEATHSIG``) and their error logs become one-line reasons.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import IO, Any


from faceblit_core.errors import EnvironmentProblem



# Pipes default to 64 KiB; a frame is megabytes, so a 1 MiB pipe (the usual
# /proc/sys/fs/pipe-max-size) cuts the context switches per frame ~16-fold.
_PIPE_SIZE = 1 << 20
# swscale's defaults (fast, 8-bit intermediate, chroma interpolated only for
# luma positions) lose ~7 dB in an rgb→yuv420p→rgb round trip: 45 dB instead of
# 52 dB on d3.mp4/target2.mp4 at lossless encoding, for a few % more time.
_SWS_FLAGS = "bicubic+accurate_rnd+full_chroma_int"
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


# --------------------------------------------------------------------------------------
# ffmpeg binary
# --------------------------------------------------------------------------------------

_NO_FFMPEG = (
    "ffmpeg not found: install it (e.g. `apt install ffmpeg` or `pip install imageio-ffmpeg`) "
    "or set FACEBLIT_FFMPEG=/path/to/ffmpeg"
)


def find_ffmpeg() -> str:
    """Path of the ffmpeg executable to use (cached per environment).

    Looks at ``$FACEBLIT_FFMPEG`` first (must be an executable file), then
    ``imageio_ffmpeg.get_ffmpeg_exe()`` (the wheel bundles a static ffmpeg with
    libx264 and aac, without ffprobe), then ``ffmpeg`` on ``PATH``. The bundled
    binary comes first because it is the same build on every machine (pinned in
    ``constraints.txt``): outputs, options and tests do not depend on whatever
    ffmpeg the machine happens to have (Debian 12's 5.1 lacks options newer ones
    have, and encodes differently). ``PATH`` is the fallback when the wheel has no
    binary for the platform. The binary is run once (``-version``) to make sure
    it works.

    Returns
    -------
    str
        Absolute path of a working ffmpeg binary.

    Raises
    ------
    EnvironmentProblem
        No usable ffmpeg; the message says how to provide one.

    References
    ----------
    DESIGN §7 (Video I/O).
    """
    return _find_ffmpeg_cached(os.environ.get("FACEBLIT_FFMPEG"), os.environ.get("PATH", ""))


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # imageio_ffmpeg raises RuntimeError when its binary is missing
        return None


@functools.lru_cache(maxsize=8)
def _find_ffmpeg_cached(env_value: str | None, path_env: str) -> str:
    if env_value:
        exe = shutil.which(env_value) if os.sep not in env_value else env_value
        if not exe or not os.path.isfile(exe) or not os.access(exe, os.X_OK):
            raise EnvironmentProblem(f"FACEBLIT_FFMPEG={env_value} is not an executable file; fix it or unset it")
    else:
        exe = _bundled_ffmpeg() or shutil.which("ffmpeg", path=path_env)
        if not exe:
            raise EnvironmentProblem(_NO_FFMPEG)
    exe = os.path.abspath(exe)
    _ffmpeg_version(exe)  # fails early with a clear message when the binary cannot run
    return exe


@functools.lru_cache(maxsize=8)
def _ffmpeg_version(exe: str) -> tuple[int, int] | None:
    """(major, minor) of the ffmpeg at ``exe``; ``None`` for git builds ("N-12345-g…")."""
    try:
        out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, errors="replace", timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise EnvironmentProblem(f"ffmpeg at {exe} cannot run ({e}); set FACEBLIT_FFMPEG to a working ffmpeg") from None
    if out.returncode != 0:
        raise EnvironmentProblem(f"ffmpeg at {exe} cannot run (exit {out.returncode}); set FACEBLIT_FFMPEG to a working ffmpeg")
    m = re.search(r"ffmpeg version n?(\d+)\.(\d+)", out.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _passthrough_option() -> dict[str, str]:
    """Output option keeping every decoded frame with its timestamp (no dup/drop).

    ``-fps_mode`` exists since ffmpeg 5.1; older builds only know ``-vsync``.
    """
    version = _ffmpeg_version(find_ffmpeg())
    if version is not None and version < (5, 1):
        return {"vsync": "passthrough"}
    return {"fps_mode": "passthrough"}


def _ffmpeg_args(stream_spec: Any, *, loglevel: str = "error") -> list[str]:
    """Command line from an ffmpeg-python graph, with global options in front.

    ffmpeg-python appends ``global_args`` after the output, where ffmpeg
    ignores trailing options, so they are inserted right after the binary.
    """
    import ffmpeg

    args = ffmpeg.compile(stream_spec, cmd=find_ffmpeg(), overwrite_output=True)
    args[1:1] = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", loglevel]
    return args


def _ffmpeg_url(path: str | os.PathLike[str]) -> str:
    # "file:" stops ffmpeg from reading "name:rest" as a protocol (e.g. "a:b.mp4").
    return "file:" + os.path.abspath(os.fspath(path))


def _set_pipe_size(fileobj: IO[bytes] | None) -> None:
    if fileobj is None:
        return
    with contextlib.suppress(OSError):  # EPERM above pipe-max-size: keep the default
        fcntl.fcntl(fileobj.fileno(), _F_SETPIPE_SZ, _PIPE_SIZE)


# ffmpeg log lines start with "[mov,mp4 @ 0x55…] " or "[vist#0:0/h264 @ 0x…] [dec:h264 @ 0x…] ".
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)+")
_BOILERPLATE = re.compile(
    r"^(Conversion failed!?|Error opening (input|output) files?.*|Error opening input file .*|"
    r"Terminating thread with return code.*|Task finished with error code.*|"
    r"Last message repeated.*|Exiting normally.*|Error while filtering.*|Nothing was written into output file.*|"
    r"At least one output file must be specified|Press \[q\].*|frame=.*|Error closing file.*)$"
)
# Causes worth naming even when other lines follow them, most specific first.
_KEY_CAUSES = (
    "No space left on device",
    "File too large",
    "Permission denied",
    "moov atom not found",
    "partial file",
    "corrupt input packet",
    "Unknown encoder",
    "Encoder not found",
    "not currently supported in container",
    "Broken pipe",
)


def _ffmpeg_reason(stderr: str) -> str:
    """The most informative line of an ffmpeg log, without the ``[ctx @ 0x…]`` prefixes."""
    lines = [_LOG_PREFIX.sub("", ln).strip() for ln in stderr.splitlines()]
    lines = [re.sub(r"^Error opening input: ", "", ln) for ln in lines]
    lines = [ln for ln in lines if ln]
    for cause in _KEY_CAUSES:
        for ln in lines:
            if cause.lower() in ln.lower():
                return ln
    meaningful = [ln for ln in lines if not _BOILERPLATE.match(ln)]
    if meaningful:
        return meaningful[-1]
    return lines[-1] if lines else "no message"


def _read_log(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    """libc's ``prctl`` (Linux), looked up once here so the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent(parent: int) -> None:
    """``preexec_fn`` of every ffmpeg child: SIGKILL it when this process dies.

    Without it a ``kill -9`` of faceblit leaves an encoder that sees its input end,
    finishes the partial file and keeps running. ``PR_SET_PDEATHSIG`` is a kernel
    setting, so it holds whatever way the parent dies. It runs between fork and exec:
    only a system call (libc and the ctypes function were loaded before the fork, so
    nothing here takes a lock another thread could have held). Caveat of the kernel
    feature: the signal follows the *thread* that started the child, so ffmpeg must be
    started by a thread that outlives it (here: the caller's, which also stops it).
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the setting took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _child_options() -> dict[str, Any]:
    """Popen options of ffmpeg children: own session (a terminal's Ctrl-C reaches only
    Python, which then stops ffmpeg deliberately and removes partial output), and death
    with this process (:func:`_die_with_parent`; Linux only)."""
    kw: dict[str, Any] = {"start_new_session": True}
    if _PRCTL is not None:
        kw["preexec_fn"] = functools.partial(_die_with_parent, os.getpid())
    return kw


def _popen(args: list[str], **kw: Any) -> subprocess.Popen:
    """Start ffmpeg with :func:`_child_options` and unbuffered pipes."""
    try:
        return subprocess.Popen(args, bufsize=0, **_child_options(), **kw)
    except OSError as e:
        raise EnvironmentProblem(f"cannot start ffmpeg at {args[0]} ({e.strerror}); set FACEBLIT_FFMPEG to a working ffmpeg") from None


def _kill(proc: subprocess.Popen | None, *, close_pipes: bool = True) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
    if close_pipes:
        _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen) -> None:
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


def _run_capture(args: list[str], *, want_stdout: bool = False) -> tuple[int, str, str]:
    try:
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, **_child_options())
    except OSError as e:
        raise EnvironmentProblem(f"cannot start ffmpeg at {args[0]} ({e.strerror}); set FACEBLIT_FFMPEG to a working ffmpeg") from None
    out = r.stdout.decode("utf-8", "replace") if want_stdout else ""
    return r.returncode, r.stderr.decode("utf-8", "replace"), out
