"""``faceblit`` — batch video stylizer for faces (FaceBlit / StyleBlit).

The CLI only parses, calls one :mod:`faceblit_core` function, prints and sets the
exit code. Errors a user can cause print one line, ``faceblit: error: …``, and
exit with the code of :mod:`faceblit_core.errors` (documented in the README);
``--debug`` shows the traceback instead. Progress bars and summaries go to
stderr, so stdout stays free for ``-o -`` (video on stdout).
"""

from __future__ import annotations

import inspect
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import List, Optional

import typer

from faceblit_core._version import __version__

app = typer.Typer(
    name="faceblit",
    help="Repaint every face in a video with the brush strokes of ONE painted portrait (example-based: FaceBlit/StyleBlit).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_DEBUG = False


def _fail(exc: BaseException) -> "typer.Exit":
    """Print the one-line reason of a failure and return the Exit carrying its code."""
    from faceblit_core.errors import ConfigError, FaceblitError, Interrupted

    if _DEBUG:
        # The traceback first, then the usual line and exit code (scripts rely on the code).
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM (pipeline.SignalInterrupt)
        exc = Interrupted(getattr(exc, "signum", 2))
    if isinstance(exc, FaceblitError):
        message = exc.message
        if isinstance(exc, ConfigError):
            # Name the option the user typed, not the StylizeConfig field behind it.
            field, sep, rest = message.partition(":")
            if sep and field.isidentifier():
                message = f"--{field.replace('_', '-')}:{rest}"
        typer.echo(f"faceblit: error: {message}", err=True)
        return typer.Exit(exc.exit_code)
    # A bug, not bad input: say what it was in one line, never hide it.
    typer.echo(
        f"faceblit: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; please report it)",
        err=True,
    )
    return typer.Exit(7)


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
def _config_parameters() -> list[inspect.Parameter]:
    """One CLI option per StylizeConfig field, so the CLI and the dataclass never drift apart."""
    from faceblit_core.config import StylizeConfig

    docs = StylizeConfig.describe()
    params = []
    for f in fields(StylizeConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            decls = [f"{flag}/--no-{f.name.replace('_', '-')}"]
        else:
            decls = [flag]
        help_text = docs[f.name]
        if f.name == "landmarks":
            from faceblit_core.faces import backend_names

            help_text = f"landmark backend: {' | '.join(backend_names())} | FILE.json (per-frame landmarks, for reproducible renders)"
        option = typer.Option(f.default, *decls, help=help_text, rich_help_panel="Tunables")
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=type(f.default)))
    return params


def _stylize(
    inputs: List[str] = typer.Argument(..., help="Input video(s) or image(s); '-' reads standard input."),
    style: str = typer.Option(..., "--style", "-s", help="The style exemplar: one painted portrait (png/jpg)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output file ('-' = standard output, MP4). Only with one input."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for the outputs of several inputs (default: next to each input, NAME-STYLE.EXT)."),
    style_landmarks: Optional[Path] = typer.Option(None, "--style-landmarks", help="68 landmarks of the exemplar (68 lines 'x y', or JSON); default: NAME.lm.txt beside the style, else detected."),
    fan_weights: Optional[Path] = typer.Option(None, "--fan-weights", help="Weights file of the 'fan' landmark backend (2DFAN4-11f355bf06.pth.tar)."),
    frames: Optional[str] = typer.Option(None, "--frames", help="Only frames START:END (0-based, END exclusive), for previews and regression renders."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Write input | output side by side, for review."),
    save_guides: Optional[Path] = typer.Option(None, "--save-guides", help="Write each frame's guides (positional, appearance, temporal, mask) as PNGs into this folder."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Style cache folder (default $FACEBLIT_CACHE_DIR, $XDG_CACHE_HOME/faceblit or ~/.cache/faceblit)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary (to stderr when the video goes to stdout)."),
    **tunables,
) -> None:
    """Stylize the faces of videos or images with one style exemplar."""
    from faceblit_core.pipeline import parse_frame_range, stylize_batch

    try:
        from faceblit_core.config import StylizeConfig

        _terminate_as_interrupt()
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
            on_error=lambda path, exc: _report_input_error(path, exc, batch=len(inputs) > 1),
        )
    except BaseException as exc:  # noqa: BLE001 - _fail re-raises with --debug and never hides a bug
        if isinstance(exc, typer.Exit):
            raise
        raise _fail(exc)
    to_stderr = output == "-" or not as_json
    for s in summaries:
        if as_json:
            typer.echo(json.dumps(s.to_dict()), err=output == "-")
        elif not quiet:
            typer.echo(s.describe(), err=to_stderr)
    if failures:
        if len(inputs) > 1:  # one input: its one-line error above says it all
            typer.echo(f"faceblit: {len(failures)} of {len(inputs)} input(s) failed", err=True)
        raise typer.Exit(failures[0].exit_code if len(inputs) == 1 else 1)


def _report_input_error(path: str, exc: BaseException, *, batch: bool) -> None:
    """One line per failed input. In a batch it names the input (once: most messages start with it)."""
    message = getattr(exc, "message", str(exc))
    if batch and path not in message:
        message = f"{path}: {message}"
    typer.echo(f"faceblit: error: {message}", err=True)


def _terminate_as_interrupt() -> None:
    """SIGTERM stops a command like Ctrl-C from its start, not only while a video is being
    written, so every temporary file (style cache entry, ``.partial`` output) is removed by
    the code that made it; exit 143. A SIGTERM ignored by the parent stays ignored."""
    import signal

    from faceblit_core.pipeline import raise_signal_interrupt

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_signal_interrupt)


def _with_tunables(func):
    sig = inspect.signature(func)
    base = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params = _config_parameters()
    func.__signature__ = sig.replace(parameters=base + params)
    func.__annotations__ = {**{p.name: p.annotation for p in base}, **{p.name: p.annotation for p in params}}
    return func


_registered = False


def _register_stylize() -> None:
    """Add ``stylize`` with one option per tunable; done on first use so ``--version`` stays light."""
    global _registered
    if not _registered:
        app.command("stylize", no_args_is_help=True)(_with_tunables(_stylize))
        _registered = True


# --------------------------------------------------------------------------- prepare-style
@app.command("prepare-style", no_args_is_help=True)
def prepare_style_cmd(
    style: Path = typer.Argument(..., help="The style exemplar image."),
    style_landmarks: Optional[Path] = typer.Option(None, "--style-landmarks", help="68 landmarks of the exemplar; default NAME.lm.txt beside it, else detected."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Style cache folder."),
    lambda_pos: float = typer.Option(10.0, "--lambda-pos", help="Lookup-table weight of the positional guide."),
    lambda_app: float = typer.Option(2.0, "--lambda-app", help="Lookup-table weight of the appearance guide."),
    lut_radius: float = typer.Option(30.0, "--lut-radius", help="Lookup-table search radius, style px."),
    temporal_blur: float = typer.Option(6.0, "--temporal-blur", help="Blur sigma of the style's temporal guide, style px."),
    style_max_side: int = typer.Option(1024, "--style-max-side", help="Downscale an exemplar whose longer side exceeds this, px (as stylize's option)."),
) -> None:
    """Build (or load from the cache) a style's guides and lookup table, and say what was made."""
    try:
        from faceblit_core.config import StylizeConfig
        from faceblit_core.style import prepare_style_report

        _terminate_as_interrupt()
        cfg = StylizeConfig(lambda_pos=lambda_pos, lambda_app=lambda_app, lut_radius=lut_radius, temporal_blur=temporal_blur, style_max_side=style_max_side)
        report = prepare_style_report(style, landmarks=style_landmarks, config=cfg, cache_dir=cache_dir)
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc)
    typer.echo(report.describe())


# ------------------------------------------------------------------------------ landmarks
@app.command("landmarks", no_args_is_help=True)
def landmarks_cmd(
    image: Path = typer.Argument(..., help="An image (photo or painted portrait)."),
    draw: Optional[Path] = typer.Option(None, "--draw", help="Write the image with the numbered points drawn on it (PNG)."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the points: .txt (FaceBlit's 68 lines 'x y') or .json."),
    backend: str = typer.Option("dlib", "--landmarks", help="Landmark backend (dlib, fan)."),
    fan_weights: Optional[Path] = typer.Option(None, "--fan-weights", help="Weights of the 'fan' backend."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --draw/--save files."),
) -> None:
    """Detect the 68 landmarks of the faces in an image, to check or correct them."""
    try:
        from faceblit_core.faces import landmarks_of_image

        result = landmarks_of_image(image, backend=backend, fan_weights=fan_weights, draw=draw, save=save, overwrite=overwrite)
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc)
    typer.echo(result.describe())


# -------------------------------------------------------------------------------- compare
@app.command("compare", no_args_is_help=True)
def compare_cmd(
    a: Path = typer.Argument(..., help="First video or image."),
    b: Path = typer.Argument(..., help="Second video or image."),
    min_psnr: Optional[float] = typer.Option(None, "--min-psnr", help="Exit 1 when any frame's PSNR (dB) is below this."),
    as_json: bool = typer.Option(False, "--json", help="Print per-frame scores as JSON."),
) -> None:
    """Per-frame PSNR and SSIM of two videos or images (for CI regression renders)."""
    try:
        from faceblit_core.quality import compare_media

        scores = compare_media(a, b)
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc)
    psnrs = [s.psnr for s in scores]
    ssims = [s.ssim for s in scores]
    worst = min(psnrs)
    below = [s for s in scores if min_psnr is not None and s.psnr < min_psnr]
    if as_json:
        finite = lambda v: v if v != float("inf") else None  # noqa: E731 - JSON has no Infinity: identical frames give null
        frames_json = [{**s.__dict__, "psnr": finite(s.psnr)} for s in scores]
        typer.echo(json.dumps({"frames": frames_json, "min_psnr": finite(worst), "below": len(below)}, default=float))
    else:
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
        code = app(standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show()
        code = 2
    except click_exceptions.ClickException as exc:
        print(f"faceblit: error: {exc.format_message()} (see 'faceblit --help')", file=sys.stderr)
        code = exc.exit_code
    except typer.Abort:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
