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
2    usage error (bad option or value) — raised by Typer/Click
3    input error: missing, unreadable, not a video/image, truncated or corrupt
4    style error: style not an image, no face found, bad landmark file
5    output error: unwritable folder, output exists, output equals input, disk full
6    environment error: no ffmpeg, missing model weights, device not available
7    processing error: ffmpeg failed mid-run, other failure inside the pipeline
130  interrupted (SIGINT); 143 terminated (SIGTERM)
==== =====================================================================
"""

from __future__ import annotations


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


class Interrupted(FaceblitError):
    """The run was stopped by SIGINT (exit 130) or SIGTERM (exit 143)."""

    def __init__(self, signum: int, *, to_stdout: bool = False) -> None:
        name = {2: "SIGINT", 15: "SIGTERM"}.get(signum, f"signal {signum}")
        # Bytes already sent down a pipe cannot be taken back: say the stream is incomplete.
        what = "the video sent to stdout is incomplete" if to_stdout else "no output was written"
        super().__init__(f"interrupted by {name}; {what}")
        self.exit_code = 128 + signum
