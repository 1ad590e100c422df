"""Several inputs, one style: output names, the checks made before anything is written, and the batch loop.

:func:`stylize_batch` is what the CLI's ``stylize`` calls with its inputs: it names
every output (:func:`faceblit_core.pipeline.default_output_path`), refuses a run
whose inputs repeat or whose outputs collide (before the style is prepared),
prepares the style once, then renders each input with
:func:`faceblit_core.pipeline.stylize_video` (locally one after another, or all at
once on Ray) and goes on past a failing input.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Sequence

from faceblit_core.config import StylizeConfig
from faceblit_core.errors import ConfigError, EnvironmentProblem, FaceblitError, Interrupted, OutputError, StyleError, UsageError
from faceblit_core.face_styles import FaceStyles, as_style, needs_ids
from faceblit_core.pipeline import default_output_path, load_style, probe, style_path, stylize_video
from faceblit_core.setup import FrameProgress
from faceblit_core.summary import RunSummary


def stylize_batch(
    inputs: Sequence[str],
    style,
    *,
    output: str | None = None,
    out_dir: str | os.PathLike | None = None,
    config: StylizeConfig | None = None,
    on_error: Callable[[str, FaceblitError], None] | None = None,
    on_done: Callable[[RunSummary], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    started: float | None = None,
    **options,
) -> tuple[list[RunSummary], list[FaceblitError]]:
    """Stylize several inputs with one style; continue past a failing input.

    The style is prepared once. ``output`` is allowed with a single input only;
    otherwise outputs go to ``out_dir`` (or next to each input) as ``NAME-STYLE.EXT``.
    Standard input (``-``) writes to ``output`` when given, else to standard output;
    it has no name to put into ``out_dir``.

    Before anything is read or written, the run is refused when two inputs are the
    same file (also through a link), when two inputs would write the same output
    (e.g. ``a/clip.mp4`` and ``b/clip.mp4`` with one ``out_dir``; paths compared
    resolved, and without case on a case-insensitive file system), or when an
    output would be another input of the run.

    Parameters
    ----------
    on_error : callable(path, error), keyword-only
        Called for each failed input (the batch goes on).
    on_done : callable(RunSummary), keyword-only
        Called for each written output, as soon as it is complete.
    on_status : callable(str), keyword-only
        Told what the batch is doing before the frames start (``"preparing style S"``),
        for a status line during the first seconds.
    started : float, keyword-only
        ``time.perf_counter()`` when the caller started (e.g. before its imports); the
        first input's ``seconds`` count from there. Default: now.

    Returns
    -------
    (summaries, failures)
        A summary per written output and the error of each failed input (after
        ``on_error(path, error)`` was called for it). Interruption and problems of
        the style or the machine stop the whole batch (they would fail every input).

    Raises
    ------
    UsageError
        ``output`` with several inputs or with ``out_dir``, standard input with
        ``out_dir``, an input given twice, two outputs that collide (exit 2).
    OutputError
        ``out_dir`` is not a folder.
    StyleError, EnvironmentProblem, ConfigError
        Stop the batch.
    Interrupted
        Stops the batch; with several inputs its message names the outputs written.
    """
    started = time.perf_counter() if started is None else started
    config = config or StylizeConfig()
    style = as_style(style)
    FaceStyles.of(style).check(config)
    if options.get("engine") == "ray" and needs_ids(style, config):
        raise UsageError("--style ID=STYLE and --faces other than all: not with --engine ray (each chunk would number the faces afresh)")
    status = on_status or (lambda text: None)
    if output is not None and out_dir is not None:
        raise UsageError("-o/--output and --out-dir exclude each other: -o names the one output, --out-dir the folder of several")
    if output is not None and len(inputs) > 1:
        raise UsageError("-o/--output takes one input; use --out-dir for several")
    if out_dir is not None and "-" in inputs:
        raise UsageError("standard input ('-') has no name to write into --out-dir; give it -o FILE (without -o it goes to standard output)")
    # Standard input has no name to derive one from: its output goes to standard output.
    targets = [output if output is not None else ("-" if path == "-" else str(default_output_path(path, style_path(style), out_dir=out_dir))) for path in inputs]
    _check_distinct(inputs, targets)
    if out_dir is not None and not Path(out_dir).is_dir():
        raise OutputError(f"{out_dir}: --out-dir is not an existing folder")
    if len(inputs) == 1 and inputs[0] != "-":
        try:
            probe(inputs[0])  # a bad input is reported as such before the style is prepared
        except FaceblitError as exc:
            if isinstance(exc, (EnvironmentProblem, Interrupted)):
                raise
            if on_error is not None:
                on_error(inputs[0], exc)
            return [], [exc]
    status(f"preparing style {style_path(style)}")
    asset = load_style(style, config=config, style_landmarks=options.pop("style_landmarks", None), cache_dir=options.get("cache_dir"),
                        force_style=options.pop("force_style", False))
    summaries, failures = [], []
    # An output that exists (without overwrite) fails its input now, not after the inputs
    # before it have been rendered; the others are still written.
    # (With one input it fails at once anyway; an output that is an input is refused as such by media.)
    input_ids = {_file_id(p) for p in inputs if p != "-"}
    taken = [i for i, target in enumerate(targets)
             if len(inputs) > 1 and target != "-" and not options.get("overwrite") and os.path.lexists(target)
             and _file_id(target) not in input_ids]
    for index in taken:
        failures.append(OutputError(f"{targets[index]}: exists; use --overwrite to replace it"))
        if on_error is not None:
            on_error(inputs[index], failures[-1])
    if options.get("engine") == "ray" and len(inputs) - len(taken) > 1:
        rest = [i for i in range(len(inputs)) if i not in taken]
        summaries, failed = _batch_on_ray([inputs[i] for i in rest], [targets[i] for i in rest], asset, config, on_error, on_done, options)
        return summaries, failures + failed
    for index, (path, target) in enumerate(zip(inputs, targets)):
        if index in taken:
            continue
        status(f"starting {path}")
        input_started = time.perf_counter()
        try:
            summary = stylize_video(path, asset, target, config=config, **options)
        except (StyleError, EnvironmentProblem, ConfigError):
            raise
        except (Interrupted, KeyboardInterrupt) as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            raise Interrupted(signum, to_stdout=getattr(exc, "to_stdout", target == "-"), written=[s.output for s in summaries],
                              total=len(inputs)) from None
        except FaceblitError as exc:
            failures.append(exc)
            if on_error is not None:
                on_error(path, exc)
            continue
        if not summaries:  # the first input written carries the start-up: style preparation, and the caller's before it
            summary.seconds += input_started - started
        summaries.append(summary)
        if on_done is not None:
            on_done(summary)
    return summaries, failures


def _batch_on_ray(inputs, targets, asset, config, on_error, on_done, options) -> tuple[list[RunSummary], list[FaceblitError]]:
    """A batch on Ray: every input's chunks are submitted at once (one driver thread per input, each
    keeping its own work folder), so the cluster's workers share the files; results as they finish.

    One progress bar over the frames of every input (:class:`~faceblit_core.setup.FrameProgress`,
    its total growing as the inputs start); each summary line is printed above it."""
    from faceblit_core import ray_engine  # lazy: Ray is an optional extra, imported only for engine="ray"

    ray_engine.connect(options.get("ray_address"), config.device)  # an unreachable cluster fails before any output
    bar = FrameProgress(f"{len(inputs)} inputs", enabled=bool(options.get("progress", True)))
    options = {**options, "progress": bar}
    summaries, failures = [], []
    pool = ThreadPoolExecutor(max_workers=min(16, len(inputs)), thread_name_prefix="faceblit-ray")
    futures = {pool.submit(stylize_video, path, asset, target, config=config, **options): path for path, target in zip(inputs, targets)}
    try:
        for future in as_completed(futures):
            path = futures[future]
            try:
                summary = future.result()
            except FaceblitError as exc:
                if isinstance(exc, (StyleError, EnvironmentProblem, ConfigError)):
                    raise
                failures.append(exc)
                if on_error is not None:
                    with bar.printing():
                        on_error(path, exc)
                continue
            summaries.append(summary)
            if on_done is not None:
                with bar.printing():
                    on_done(summary)
    except BaseException as exc:
        bar.close()
        # Stop the other inputs: their tasks die with Ray (their work folders stay, for a rerun).
        pool.shutdown(wait=False, cancel_futures=True)
        ray_engine.shutdown()
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(getattr(exc, "signum", signal.SIGINT), to_stdout=False, written=[s.output for s in summaries],
                              total=len(inputs)) from None
        raise
    pool.shutdown(wait=True)
    bar.close()
    return summaries, failures


def _check_distinct(inputs: Sequence[str], targets: Sequence[str]) -> None:
    """Refuse a batch whose inputs repeat or whose outputs collide, before anything is written.

    Inputs are compared by file identity (``st_dev``, ``st_ino``: symbolic and hard
    links, ``./a`` and ``a``); outputs by their resolved path (symbolic links of the
    folders), without case where the folder is on a case-insensitive file system.
    Missing inputs are left to fail on their own (exit 3).

    Raises
    ------
    UsageError
        Naming both inputs and the output they share.
    """
    seen_in: dict = {}
    for path in inputs:
        key = "-" if path == "-" else _file_id(path)
        if key is None:
            continue
        if key in seen_in:
            raise UsageError(f"{seen_in[key]} and {path} are the same input; give each input once")
        seen_in[key] = path
    seen_out: dict = {}
    folded: dict = {}
    for path, target in zip(inputs, targets):
        if target == "-":
            continue  # stdout: only standard input writes there, and it is given at most once
        resolved = os.path.realpath(target)
        other = seen_out.get(resolved)
        if other is None:
            fold = (os.path.dirname(resolved), os.path.basename(resolved).casefold())
            other = folded.get(fold)
            if other is not None and not _case_insensitive(os.path.dirname(resolved)):
                other = None
            folded.setdefault(fold, path)
        if other is not None:
            raise UsageError(f"{other} and {path} would both be written to {target}; rename one, or run them separately")
        seen_out[resolved] = path
        out_id = _file_id(target)
        if out_id is not None and out_id in seen_in and seen_in[out_id] != path:
            elsewhere = "choose another --out-dir" if os.path.dirname(target) != os.path.dirname(path) else "give it -o FILE, or write into --out-dir"
            raise UsageError(f"the output of {path}, {target}, is another input of this run ({seen_in[out_id]}); {elsewhere}")


def _file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of an existing file (links followed), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _case_insensitive(folder: str) -> bool:
    """Whether names in ``folder`` ignore case (macOS, Windows, some mounts): a hidden probe file
    is made and looked up in upper case. True when that cannot be tried (the safe answer)."""
    try:
        with tempfile.NamedTemporaryFile(prefix=".faceblit-case-", dir=folder or ".") as probe_file:
            name = os.path.basename(probe_file.name)
            return os.path.exists(os.path.join(folder or ".", name.upper()))
    except OSError:
        return True
