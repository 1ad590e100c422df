"""``faceblit`` — batch video stylizer for faces (FaceBlit / StyleBlit).

The CLI only parses, calls one :mod:`faceblit_core` function, prints and sets the
exit code. Errors a user can cause print one line, ``faceblit: error: …``, and
exit with the code of :mod:`faceblit_core.errors` (documented in the README);
``--debug`` shows the traceback instead. Progress bars and summaries go to
stderr, so stdout stays free for ``-o -`` (video on stdout).
"""

from __future__ import annotations

import inspect
import os
import json
import re
import sys
import time
import warnings
from dataclasses import fields
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from faceblit_core._runtime import raise_signal_interrupt
from faceblit_core._version import __version__


def _plain_flags(params: list) -> list:
    """On/off options show no value type in ``--help`` (typer 0.29 writes ``<bool>`` beside every flag)."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


class _Command(TyperCommand):
    """A command whose help shows flags without a value and whose usage line reads
    ``faceblit stylize [OPTIONS] INPUT...`` (typer 0.29 writes required arguments as ``{INPUT}``)."""

    def get_params(self, ctx):
        return _plain_flags(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if p.param_type_name == "argument":
                name = p.metavar or p.name.upper()
                if p.nargs != 1 and not name.endswith("..."):
                    name += "..."
                pieces.append(name if p.required else f"[{name}]")
        return pieces


class _Group(TyperGroup):
    """The root command, with flags shown without a value (as :class:`_Command`)."""

    def get_params(self, ctx):
        return _plain_flags(super().get_params(ctx))


app = typer.Typer(
    cls=_Group,
    name="faceblit",
    help="Repaint every face in a video with the brush strokes of ONE painted portrait (example-based: FaceBlit/StyleBlit).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_DEBUG = False
#: When the command started (perf_counter): the summary's "in all with start-up" counts from here.
_STARTED = time.perf_counter()


def _fail(exc: BaseException, command: str) -> "typer.Exit":
    """Print the one-line reason of a failure and return the Exit carrying its code.

    Usage errors (exit 2) point to ``faceblit COMMAND --help``.
    """
    from faceblit_core.errors import ConfigError, FaceblitError, Interrupted

    if _DEBUG:
        # The traceback first, then the usual line and exit code (scripts rely on the code).
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM (_runtime.SignalInterrupt)
        exc = Interrupted(getattr(exc, "signum", 2))
    if isinstance(exc, FaceblitError):
        message = exc.message
        if isinstance(exc, ConfigError):
            # Name the option the user typed, not the StylizeConfig field behind it.
            field, sep, rest = message.partition(":")
            if sep and field.isidentifier():
                message = f"--{field.replace('_', '-')}:{rest}"
        if exc.exit_code == 2:
            message += f" (see 'faceblit {command} --help')"
        typer.echo(f"faceblit: error: {message}", err=True)
        return typer.Exit(exc.exit_code)
    # A bug, not bad input: say what it was in one line, never hide it.
    typer.echo(
        f"faceblit: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; please report it)",
        err=True,
    )
    return typer.Exit(7)


def _print_exemplar_warnings(before=None) -> None:
    """Print each :class:`~faceblit_core.exemplar_check.ExemplarWarning` as one line,
    ``faceblit: warning: …``, on stderr (also with ``-q``: it is about the input, like an
    error); other warnings keep Python's format. ``before`` runs first (clears the status line)."""
    from faceblit_core.exemplar_check import ExemplarWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ExemplarWarning):
            if before is not None:
                before()
            typer.echo(f"faceblit: warning: {message}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.simplefilter("always", ExemplarWarning)
    warnings.showwarning = show


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"faceblit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of an error instead of the one-line reason."),
) -> None:
    global _DEBUG
    _DEBUG = debug


# --------------------------------------------------------------------------------- stylize
#: Help panels of the tunables (``stylize --help``), by topic; a field not named here
#: lands in "Tunables", so a new field is never hidden. On/off switches get their own
#: panel: their ``--x/--no-x`` column would squeeze every other panel's help text.
_PANELS = {
    "What stays of the input": ("keep", "strength"),
    "Synthesis (StyleBlit, voting, lookup table)": ("threshold", "lambda_pos", "lambda_app", "lambda_temp", "levels", "seed", "boil",
                                                    "blend_radius", "lut_radius", "style_max_side"),
    "Guides and motion": ("mls_alpha", "mls_grid", "temporal_blur", "mask_feather", "margin", "synthesis_space", "flow_follow", "keep_tolerance"),
    "Faces": ("faces", "landmarks", "max_faces", "detect_every", "smooth_min_cutoff", "smooth_beta", "fade_frames", "scene_cut"),
    "Device and encoding": ("device", "codec", "crf", "preset"),
}


def _short_help(doc: str) -> str:
    """The help text of a tunable: its documentation without the parenthesised remarks
    (references, FaceBlit's values), which the README and the dataclass keep."""
    short = doc
    while True:
        # Not a formula's brackets, such as "(2r+1)^2" or "|^(2 alpha)": only a remark before punctuation or the end.
        shorter = re.sub(r" \([^()]*\)(?=[;,.:]|$)", "", short)
        if shorter == short:
            return short
        short = shorter


def _config_parameters(names: tuple[str, ...] | None = None, panel: str | None = None) -> list[inspect.Parameter]:
    """One CLI option per StylizeConfig field (only those in ``names`` when given, all in
    ``panel`` when given), so the CLI and the dataclass never drift apart."""
    from faceblit_core.config import StylizeConfig

    docs = StylizeConfig.describe()
    panel_of = {name: panel for panel, names in _PANELS.items() for name in names}
    if panel is not None:
        panel_of = dict.fromkeys(names or (), panel)
    params = []
    for f in fields(StylizeConfig):
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            decls = [f"{flag}/--no-{f.name.replace('_', '-')}"]
            panel = "Switches"
        else:
            decls = [flag]
            panel = panel_of.get(f.name, "Tunables")
        help_text = _short_help(docs[f.name])
        if f.name == "landmarks":
            from faceblit_core.faces import backend_names

            help_text = f"landmark backend: {' | '.join(backend_names())} | FILE.json (per-frame landmarks)"
        option = typer.Option(f.default, *decls, help=help_text, rich_help_panel=panel)
        params.append((panel, inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=type(f.default))))
    order = [*_PANELS, panel, "Switches", "Tunables"]  # panels appear in the help in the order of their first option
    return [p for _, p in sorted(params, key=lambda item: order.index(item[0]))]


def _stylize(
    inputs: List[str] = typer.Argument(..., metavar="INPUT...", help="Input video(s) or image(s); '-' reads standard input."),
    style: List[str] = typer.Option(..., "--style", "-s", metavar="IMAGE|ID=IMAGE",
                                    help="The style exemplar: one painted portrait (png/jpg) for every face; ID=IMAGE (repeatable) paints face ID (see 'faceblit faces') with its own."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE", help="Output file ('-' = standard output, MP4). One input only; not with --out-dir."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", metavar="DIR", help="Folder for the outputs, NAME-STYLE.EXT (default: next to each input). Not for '-'."),
    style_landmarks: Optional[Path] = typer.Option(None, "--style-landmarks", metavar="FILE", help="68 landmarks of the exemplar (68 lines 'x y', or JSON); default: NAME.lm.txt beside the style, else detected."),
    fan_weights: Optional[Path] = typer.Option(None, "--fan-weights", metavar="FILE", help="Weights file of the 'fan' landmark backend (2DFAN4-11f355bf06.pth.tar)."),
    frames: Optional[str] = typer.Option(None, "--frames", metavar="START:END", help="Only these frames (0-based, END exclusive), for previews and regression renders."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Write input | output side by side, for review."),
    save_guides: Optional[Path] = typer.Option(None, "--save-guides", metavar="DIR", help="Write each frame's guides as PNGs into this folder."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", metavar="DIR", help="Style cache folder (default $FACEBLIT_CACHE_DIR, $XDG_CACHE_HOME/faceblit or ~/.cache/faceblit)."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, no summary lines (errors still)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per input on stdout (stderr when a video goes to stdout)."),
    chunk_seconds: Optional[float] = typer.Option(None, "--chunk-seconds", metavar="S", rich_help_panel="Long renders and Ray",
                                                  help="Render a longer video as chunks of about S seconds in a work folder beside the output (.NAME.faceblit-work), resumable, joined at the end; 0 = one piece. Default: 10 (a clip up to 15 s stays one piece; chunks meet without seams); one piece with --style ID=S or --faces. Every render has a key frame each S seconds of the clip (10 with 0), where chunks are cut."),
    chunk_warmup: Optional[int] = typer.Option(None, "--chunk-warmup", metavar="N", rich_help_panel="Long renders and Ray",
                                               help="Frames each chunk renders and discards before its first frame, so chunks meet without seams (default 120: the carried state's memory plus the landmark smoothing's settling)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", rich_help_panel="Long renders and Ray",
                                help="Reuse the finished chunks of an interrupted run with the same input, style and options (default); --no-resume starts afresh."),
    engine: str = typer.Option("local", "--engine", metavar="local|ray", rich_help_panel="Long renders and Ray",
                               help="Where chunks render: this process, or Ray tasks (pip install 'faceblit\\[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDR", rich_help_panel="Long renders and Ray",
                                              help="Ray cluster for --engine ray: 'auto', HOST:PORT or ray://HOST:10001; default: a local Ray instance."),
    force: bool = typer.Option(False, "--force", help="Use a style exemplar that the exemplar check finds hopeless (tiny face, head turned, face outside the picture)."),
    **tunables,
) -> None:
    """Stylize the faces of videos or images with one style exemplar."""
    status = _Status(enabled=not quiet)
    status("loading")  # the imports below take seconds on a cold start
    from faceblit_core.batch import stylize_batch
    from faceblit_core.pipeline import parse_frame_range

    # Where a video goes to stdout, the JSON lines go to stderr.
    json_to_stderr = output == "-" or (output is None and "-" in inputs)

    def emit(record: dict) -> None:
        typer.echo(json.dumps({**record, "style": style[0] if len(style) == 1 else style, "version": __version__}), err=json_to_stderr)

    def done(summary) -> None:
        status.clear()
        if as_json:
            emit({"input": summary.input, "status": "written", **summary.to_dict()})
        elif not quiet:
            typer.echo(summary.describe(), err=True)

    def failed(path: str, exc) -> None:
        status.clear()
        message = _report_input_error(path, exc, batch=len(inputs) > 1)
        if as_json:
            emit({"input": path, "status": "failed", "error": message, "exit_code": exc.exit_code})

    try:
        from faceblit_core.config import StylizeConfig

        _terminate_as_interrupt()
        _print_exemplar_warnings(status.clear)
        config = StylizeConfig(**tunables)
        summaries, failures = stylize_batch(
            inputs,
            style,
            output=output,
            out_dir=out_dir,
            config=config,
            style_landmarks=style_landmarks,
            fan_weights=fan_weights,
            frames=parse_frame_range(frames) if frames else None,
            side_by_side=side_by_side,
            save_guides=save_guides,
            cache_dir=cache_dir,
            overwrite=overwrite,
            progress=not quiet,
            chunk_seconds=chunk_seconds,
            chunk_warmup=chunk_warmup,
            resume=resume,
            engine=engine,
            ray_address=ray_address,
            on_error=failed,
            on_done=done,
            on_status=status,
            started=_STARTED,
            force_style=force,
        )
    except BaseException as exc:  # noqa: BLE001 - _fail re-raises with --debug and never hides a bug
        status.clear()
        if isinstance(exc, typer.Exit):
            raise
        raise _fail(exc, "stylize")
    status.clear()
    if failures:
        if len(inputs) > 1:  # one input: its one-line error above says it all
            typer.echo(f"faceblit: {len(failures)} of {len(inputs)} input(s) failed", err=True)
        raise typer.Exit(failures[0].exit_code if len(inputs) == 1 else 1)


def _report_input_error(path: str, exc: BaseException, *, batch: bool) -> str:
    """One line per failed input. In a batch it names the input (once: most messages start with it).

    Returns the message printed (without the ``faceblit: error:`` prefix).
    """
    if _DEBUG:
        import traceback

        traceback.print_exception(exc)
    message = getattr(exc, "message", str(exc))
    if batch and path not in message:
        message = f"{path}: {message}"
    typer.echo(f"faceblit: error: {message}", err=True)
    return message


class _Status:
    """A one-line status on stderr for the first seconds of a command (imports, style
    preparation), before the progress bar: only on a terminal, so logs and pipes stay clean."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.shown = False

    def __call__(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r\033[Kfaceblit: {text}…")
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


def _terminate_as_interrupt() -> None:
    """SIGTERM stops a command like Ctrl-C from its start, not only while a video is being
    written, so every temporary file (style cache entry, ``.partial`` output) is removed by
    the code that made it; exit 143. A SIGTERM ignored by the parent stays ignored."""
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_signal_interrupt)


def _with_tunables(func, names: tuple[str, ...] | None = None, panel: str | None = None):
    """``func`` whose ``**tunables`` become one option per StylizeConfig field (see :func:`_config_parameters`)."""
    sig = inspect.signature(func)
    base = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params = _config_parameters(names, panel)
    func.__signature__ = sig.replace(parameters=base + params)
    func.__annotations__ = {**{p.name: p.annotation for p in base}, **{p.name: p.annotation for p in params}}
    return func


# -------------------------------------------------------------------------------- preview
#: Tunables preview has no use for: it encodes nothing (codec, crf, preset), and it paints
#: every face with the one exemplar (faces: a start mid-clip numbers the faces afresh).
_NOT_FOR_PREVIEW = ("codec", "crf", "preset", "faces")


def _preview(
    input: str = typer.Argument(..., metavar="INPUT", help="Input video."),
    style: List[str] = typer.Option(..., "--style", "-s", metavar="IMAGE", help="The style exemplar: one painted portrait (png/jpg), for every face."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE", help="The picture (png/jpg/...); default NAME-STYLE-preview.png next to the input."),
    frames: int = typer.Option(6, "--frames", "-n", metavar="N", help="How many frames, spread evenly over the clip."),
    # The library's PREVIEW_WARMUP (not imported here: it would load the media, chunk and style modules at every start; a test keeps them equal).
    warmup: int = typer.Option(10, "--warmup", metavar="N", help="Frames rendered and discarded before each shown frame, so it looks as in the full render."),
    style_landmarks: Optional[Path] = typer.Option(None, "--style-landmarks", metavar="FILE", help="68 landmarks of the exemplar; default NAME.lm.txt beside it, else detected."),
    fan_weights: Optional[Path] = typer.Option(None, "--fan-weights", metavar="FILE", help="Weights file of the 'fan' landmark backend."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", metavar="DIR", help="Style cache folder (default as stylize's)."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace an existing picture."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, no summary line (errors still)."),
    force: bool = typer.Option(False, "--force", help="Use a style exemplar that the exemplar check finds hopeless."),
    **tunables,
) -> None:
    """Render a few frames spread over a clip, as the full render would show them, on one picture (input above, output below)."""
    status = _Status(enabled=not quiet)
    status("loading")
    try:
        from faceblit_core.config import StylizeConfig
        from faceblit_core.pipeline import default_output_path
        from faceblit_core.preview import preview

        _terminate_as_interrupt()
        _print_exemplar_warnings(status.clear)
        config = StylizeConfig(**tunables)
        # As stylize reads them, so that ID=STYLE (or two of them) is refused as such, not taken for a file name.
        style = style[0] if len(style) == 1 and "=" not in style[0] else list(style)
        if output is None:
            made = default_output_path(input, style if isinstance(style, str) else "style")
            output = str(made.with_name(f"{made.stem}-preview.png"))
        result = preview(input, style, output, frames=frames, warmup=warmup, config=config,
                         style_landmarks=style_landmarks, fan_weights=fan_weights, cache_dir=cache_dir, overwrite=overwrite,
                         force_style=force, progress=not quiet)
    except BaseException as exc:  # noqa: BLE001
        status.clear()
        raise _fail(exc, "preview")
    status.clear()
    if not quiet:
        typer.echo(result.describe(), err=True)


_registered = False


def _register_stylize() -> None:
    """Add ``stylize`` and ``faces`` with one option per tunable; done on first use so ``--version`` stays light."""
    global _registered
    if not _registered:
        app.command("stylize", cls=_Command, no_args_is_help=True)(_with_tunables(_stylize))
        # After stylize (the help lists commands in this order); like it, on first use: the
        # --landmarks help names the backends, which imports the faces package (OpenCV, dlib).
        app.command("faces", cls=_Command, no_args_is_help=True)(_with_tunables(_faces, _FACE_TUNABLES, "Face options (as for stylize)"))
        from faceblit_core.config import StylizeConfig

        shown = tuple(f.name for f in fields(StylizeConfig) if f.name not in _NOT_FOR_PREVIEW)
        app.command("preview", cls=_Command, no_args_is_help=True)(_with_tunables(_preview, shown))
        _registered = True


# --------------------------------------------------------------------------- prepare-style
#: The tunables a style's guides and lookup table are built with (its cache key holds
#: them, faceblit_core.style): ``prepare-style``'s options, made from StylizeConfig like stylize's.
_STYLE_TUNABLES = ("lambda_pos", "lambda_app", "lut_radius", "temporal_blur", "style_max_side")


def _prepare_style(
    style: Path = typer.Argument(..., help="The style exemplar image."),
    style_landmarks: Optional[Path] = typer.Option(None, "--style-landmarks", help="68 landmarks of the exemplar; default NAME.lm.txt beside it, else detected."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Style cache folder."),
    force: bool = typer.Option(False, "--force", help="Use an exemplar that the exemplar check finds hopeless (tiny face, head turned, face outside the picture)."),
    **tunables,
) -> None:
    """Build (or load from the cache) a style's guides and lookup table, check the exemplar, and say what was made."""
    try:
        from faceblit_core.config import StylizeConfig
        from faceblit_core.style import prepare_style_report

        _terminate_as_interrupt()
        _print_exemplar_warnings()
        cfg = StylizeConfig(**tunables)
        report = prepare_style_report(style, landmarks=style_landmarks, config=cfg, cache_dir=cache_dir, force=force)
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc, "prepare-style")
    typer.echo(report.describe())
    typer.echo(f"exemplar check: {report.check.describe()}")


# Registered at import (not on first use like stylize): these fields need only faceblit_core.config, which is light.
app.command("prepare-style", cls=_Command, no_args_is_help=True)(_with_tunables(_prepare_style, _STYLE_TUNABLES, "Style tunables"))


# ---------------------------------------------------------------------------------- cache
@app.command("cache", cls=_Command)
def cache_cmd(
    clear: bool = typer.Option(False, "--clear", help="Remove every entry (those in use by a running faceblit are kept)."),
    prune: bool = typer.Option(False, "--prune", help="Remove least recently used entries until the cache fits its limit."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Style cache folder (default as stylize's)."),
) -> None:
    """Show where the style cache is and what it holds (entries, sizes, last use, total vs limit).

    The limit is $FACEBLIT_CACHE_MAX_BYTES (e.g. 500M, 8G; 0 = none), default 2 GiB.
    """
    import datetime

    try:
        from faceblit_core import cache
        from faceblit_core.errors import ConfigError

        if clear and prune:
            raise ConfigError("--clear and --prune: give one of them")
        folder = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder}: --cache-dir is a file, not a folder")
        limit = cache.max_bytes()
        if clear or prune:
            done = cache.prune(folder, 0 if clear else None)
            kept = f"; {len(done.busy)} in use kept" if done.busy else ""
            typer.echo(f"removed {len(done.removed)} entr{'y' if len(done.removed) == 1 else 'ies'} ({cache.format_bytes(done.bytes_before - done.bytes_after)}){kept}")
        entries = cache.list_entries(folder)
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc, "cache")
    source = f"${cache.MAX_BYTES_ENV}" if os.environ.get(cache.MAX_BYTES_ENV, "").strip() else "default"
    typer.echo(f"cache: {folder}{'' if folder.is_dir() else ' (not created yet)'}")
    for e in reversed(entries):  # most recently used first
        used = datetime.datetime.fromtimestamp(e.last_used).isoformat(" ", "seconds")
        typer.echo(f"  {e.key[:16]}  {cache.format_bytes(e.size):>10}  last used {used}{'  (in use)' if e.in_use else ''}")
    total = sum(e.size for e in entries)
    typer.echo(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {cache.format_bytes(total)} of "
               f"{cache.format_bytes(limit) + ' (' + source + ')' if limit else 'no limit ($' + cache.MAX_BYTES_ENV + '=0)'}")


# ------------------------------------------------------------------------------ landmarks
@app.command("landmarks", cls=_Command, no_args_is_help=True)
def landmarks_cmd(
    image: Path = typer.Argument(..., help="An image (photo or painted portrait)."),
    draw: Optional[Path] = typer.Option(None, "--draw", help="Write the image with the numbered points drawn on it (PNG)."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the points: .txt (FaceBlit's 68 lines 'x y') or .json."),
    backend: str = typer.Option("dlib", "--landmarks", help="Landmark backend (dlib, fan)."),
    fan_weights: Optional[Path] = typer.Option(None, "--fan-weights", help="Weights of the 'fan' backend."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace existing --draw/--save files."),
) -> None:
    """Detect the 68 landmarks of the faces in an image, to check or correct them."""
    try:
        from cli.landmarks_drawing import landmarks_of_image

        result = landmarks_of_image(image, backend=backend, fan_weights=fan_weights, draw=draw, save=save, overwrite=overwrite)
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc, "landmarks")
    typer.echo(result.describe())


# ---------------------------------------------------------------------------------- faces
#: The options of ``faces``: those that decide which faces the tracker sees and their ids,
#: made from StylizeConfig like stylize's (give them as to the render, for the same ids).
_FACE_TUNABLES = ("landmarks", "max_faces", "detect_every", "scene_cut", "fade_frames", "device")


def _faces(
    input: str = typer.Argument(..., metavar="INPUT", help="A video or image; '-' reads standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the contact sheet (one thumbnail per face id) to this image."),
    frames: Optional[str] = typer.Option(None, "--frames", metavar="START:END", help="Only these frames, as for stylize --frames (ids follow the frames tracked)."),
    fan_weights: Optional[Path] = typer.Option(None, "--fan-weights", metavar="FILE", help="Weights file of the 'fan' landmark backend."),
    as_json: bool = typer.Option(False, "--json", help="Print the listing as one JSON object."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", help="Replace an existing contact sheet."),
    **tunables,
) -> None:
    """List the tracked faces of a clip (id, frames, size), the ids stylize's --style ID=IMAGE and --faces take."""
    try:
        from faceblit_core.config import StylizeConfig
        from faceblit_core.faces.listing import list_faces
        from faceblit_core.pipeline import parse_frame_range
        from faceblit_core.setup import resolve_device

        _terminate_as_interrupt()
        config = StylizeConfig(**tunables)
        listing = list_faces(input, config=config, fan_weights=fan_weights, frames=parse_frame_range(frames) if frames else None,
                             sheet=output, overwrite=overwrite, device=resolve_device(config.device))
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc, "faces")
    typer.echo(listing.to_json() if as_json else listing.describe())




# -------------------------------------------------------------------------------- compare
@app.command("compare", cls=_Command, no_args_is_help=True)
def compare_cmd(
    a: Path = typer.Argument(..., help="First video or image."),
    b: Path = typer.Argument(..., help="Second video or image."),
    min_psnr: Optional[float] = typer.Option(None, "--min-psnr", help="Exit 1 when any frame's PSNR (dB) is below this."),
    as_json: bool = typer.Option(False, "--json", help="Print per-frame scores as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line: only the exit code (and the line saying which frame is below --min-psnr)."),
) -> None:
    """Per-frame PSNR and SSIM of two videos or images (for CI regression renders)."""
    try:
        from faceblit_core.quality import compare_media

        scores = compare_media(a, b)
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc, "compare")
    psnrs = [s.psnr for s in scores]
    ssims = [s.ssim for s in scores]
    worst = min(psnrs)
    below = [s for s in scores if min_psnr is not None and s.psnr < min_psnr]
    if as_json:
        finite = lambda v: v if v != float("inf") else None  # noqa: E731 - JSON has no Infinity: identical frames give null
        frames_json = [{**s.__dict__, "psnr": finite(s.psnr)} for s in scores]
        typer.echo(json.dumps({"frames": frames_json, "min_psnr": finite(worst), "below": len(below)}, default=float))
    elif not quiet:
        finite_psnrs = [p for p in psnrs if p != float("inf")]
        mean_psnr = sum(finite_psnrs) / len(finite_psnrs) if finite_psnrs else float("inf")  # all identical → inf
        typer.echo(f"frames={len(scores)} psnr_min={worst:.2f} psnr_mean={mean_psnr:.2f} ssim_min={min(ssims):.4f} ssim_mean={sum(ssims) / len(ssims):.4f}")
    if below:
        typer.echo(f"faceblit: {len(below)} frame(s) below --min-psnr {min_psnr} (first: frame {below[0].index}, {below[0].psnr:.2f} dB)", err=True)
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point. ``--version`` answers before anything heavy is imported.

    Usage errors (unknown option, missing argument) print one line,
    ``faceblit: error: …``, like every other error, and exit 2.
    """
    if sys.argv[1:] == ["--version"]:
        print(f"faceblit {__version__}")
        return
    from typer._click import exceptions as click_exceptions

    _register_stylize()
    try:
        code = app(standalone_mode=False, prog_name="faceblit")
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show()
        code = 2
    except click_exceptions.ClickException as exc:
        ctx = getattr(exc, "ctx", None)  # usage errors know their command: point to its own help
        where = ctx.command_path if ctx is not None else "faceblit"
        # Click ends some messages with a full stop; the pointer to the help follows as one sentence.
        print(f"faceblit: error: {exc.format_message().rstrip('.')} (see '{where} --help')", file=sys.stderr)
        code = exc.exit_code
    except typer.Abort:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
