"""Errors that reach the user, each with a one-line message and an exit code.

The CLI prints ``faceblit: error: <message>`` and exits with
``error.exit_code``; library users catch :class:`FaceblitError`. The codes are
documented in the README ("Exit codes") and must stay stable: batch jobs and
CI branch on them.

==== =====================================================================
code meaning
==== =====================================================================
0    success
1    ``compare``: at least one frame below ``--min-psnr``; ``stylize`` batch:
     at least one input failed (the others were written)
2    usage error: bad option or value (Typer/Click, :class:`ConfigError`),
     conflicting options or colliding inputs/outputs (:class:`UsageError`)
3    input error: missing, unreadable, not a video/image, truncated or corrupt
4    style error: style not an image, no face found, bad landmark file
5    output error: unwritable folder, output exists, output equals input, disk full
6    environment error: no ffmpeg, missing model weights, device not available
7    processing error: ffmpeg failed mid-run, other failure inside the pipeline
130  interrupted (SIGINT); 143 terminated (SIGTERM)
==== =====================================================================
"""

from __future__ import annotations

from typing import Sequence


class FaceblitError(Exception):
    """Base class: an error with a user-facing one-line message and an exit code."""

    exit_code: int = 7

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(FaceblitError):
    """The input file is missing, unreadable, not a video/image, or corrupt (exit 3)."""

    exit_code = 3


class StyleError(FaceblitError):
    """The style exemplar or its landmarks cannot be used (exit 4)."""

    exit_code = 4


class OutputError(FaceblitError):
    """The output cannot be written where asked (exit 5)."""

    exit_code = 5


class EnvironmentProblem(FaceblitError):
    """Something the machine must provide is missing: ffmpeg, weights, a device (exit 6)."""

    exit_code = 6


class ProcessingError(FaceblitError):
    """A failure inside the pipeline, e.g. ffmpeg exiting mid-encode (exit 7)."""

    exit_code = 7


class ConfigError(FaceblitError, ValueError):
    """A tunable is out of its documented range (exit 2, like a usage error)."""

    exit_code = 2


class UsageError(FaceblitError):
    """Options that exclude each other, or inputs of one run that would collide (exit 2).

    Raised before anything is read or written: two inputs that would write the same
    output, an input given twice, ``-o`` with ``--out-dir``, standard input with ``--out-dir``.
    """

    exit_code = 2


class Interrupted(FaceblitError):
    """The run was stopped by SIGINT (exit 130) or SIGTERM (exit 143).

    Parameters
    ----------
    signum : int
        The signal (2 or 15).
    to_stdout : bool, keyword-only
        The output in progress was going to standard output (what went down the pipe is incomplete).
    written : sequence of str, keyword-only
        Outputs of a batch completed before the signal (named in the message).
    total : int, keyword-only
        Number of inputs of the batch; above 1 the message says how many outputs were written.
    """

    def __init__(self, signum: int, *, to_stdout: bool = False, written: Sequence[str] = (), total: int = 1) -> None:
        name = {2: "SIGINT", 15: "SIGTERM"}.get(signum, f"signal {signum}")
        # Bytes already sent down a pipe cannot be taken back: say the stream is incomplete.
        if total > 1:
            done = f"{len(written)} of {total} outputs written" + (f" ({', '.join(written)})" if written else "")
            current = "the video sent to stdout is incomplete" if to_stdout else "the one in progress was not written"
            what = f"{done}; {current}"
        else:
            what = "the video sent to stdout is incomplete" if to_stdout else "no output was written"
        super().__init__(f"interrupted by {name}; {what}")
        self.signum = signum
        self.to_stdout = to_stdout
        self.exit_code = 128 + signum
