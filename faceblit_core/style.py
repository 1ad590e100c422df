"""The style exemplar's assets — guides and lookup table — built once and cached on disk.

Everything the synthesis needs from the exemplar depends only on the image, its
68 landmarks and five tunables, so it is computed once per combination
(DESIGN §2 "Per style") and stored in a cache folder:

* ``image`` — the exemplar, RGB, downscaled (area interpolation) so its longer
  side is at most ``style_max_side`` px (default 1024; given landmarks are
  scaled with it): the synthesis runs at the exemplar's resolution;
* ``landmarks`` — its 68 points: a file given by the user, else a sibling file
  ``NAME.lm.txt`` next to ``NAME.png`` (same folder, same stem), else detected
  (:func:`faceblit_core.faces.detect_style_landmarks`);
* ``app`` — appearance guide, contrast-stretched, and ``app_cdf``, its CDF for
  histogram-matching the targets;
* ``temp`` — temporal guide (the exemplar blurred with ``temporal_blur``);
* ``lut`` — the 256³ lookup table (:mod:`faceblit_core.lut`).

Cache
-----
Folder: ``cache_dir`` if given, else ``$FACEBLIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/faceblit``, else ``~/.cache/faceblit``. One file per entry
(~66 MiB for a 768×1024 exemplar, nearly all of it the table), named
``<key>.fbstyle`` (a renamed copy of a style finds its entry). The key is a SHA-256 over a format
version, the faceblit version, the style file's BYTES, the landmark VALUES (or
"detected"), and every parameter (``lambda_pos``, ``lambda_app``, ``lut_radius``,
``temporal_blur``, ``style_max_side``): any change makes a new entry, never a stale hit.

The file layout and its reading and writing: :mod:`faceblit_core.style_asset`.
The folder is kept under a size limit, least recently used entries evicted,
and an entry in use by another run is never removed: :mod:`faceblit_core.cache`.

References
----------
Texler et al. 2021, "FaceBlit: Instant Real-time Example-based Style Transfer to
Facial Videos", §3–4 (guides and lookup table of the exemplar). Fišer et al.
2017, "Example-Based Synthesis of Stylized Facial Animations" (temporal guide).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceblit_core import cache as _cache
from faceblit_core.cache import default_cache_dir
from faceblit_core import faces, media
from faceblit_core import lut as _lut
from faceblit_core._version import __version__
from faceblit_core.checks import check_array
from faceblit_core.config import StylizeConfig
from faceblit_core.errors import InputError, StyleError
from faceblit_core.exemplar_check import ExemplarReport, ExemplarWarning, check_exemplar
from faceblit_core.faces.io import check_points_inside, load_landmarks
from faceblit_core.guides.appearance import app_cdf, appearance_guide, stretch_contrast
from faceblit_core.guides.temporal import temporal_guide
from faceblit_core.style_asset import FORMAT_VERSION, StyleAsset, load_entry, save_entry

__all__ = ["StyleAsset", "PrepareReport", "prepare_style", "prepare_style_report", "resolve_landmarks", "default_cache_dir", "style_key", "FORMAT_VERSION"]

#: Suffix of the landmark file looked up next to a style image (``NAME.png`` → ``NAME.lm.txt``).
SIBLING_LANDMARKS_SUFFIX = ".lm.txt"

#: The tunables a style asset is built with, and their defaults: those of :class:`StylizeConfig`.
_DEFAULTS = {f.name: f.default for f in fields(StylizeConfig) if f.name in ("lambda_pos", "lambda_app", "lut_radius", "temporal_blur")}


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare_style_report` did: the asset, where it came from and how long it took.

    Attributes
    ----------
    asset : StyleAsset
    cache_hit : bool
        Loaded from the cache (nothing was computed).
    seconds : float
        Wall time of the whole call, s.
    stage_s : dict of str to float
        Wall time per stage, s (``hash``, ``load``, ``read``, ``landmarks``,
        ``guides``, ``lut``, ``save``; the stages that ran).
    cache_file : Path or None
        The entry used or written; None when the cache could not be written.
    landmarks_source : str
        ``"file PATH"``, ``"array"``, ``"sibling PATH"``, ``"detected"``, or
        ``"cache"`` on a hit.
    note : str
        Why the cache was not used or written (empty when all went normally).
    check : ExemplarReport or None
        The exemplar check (:func:`faceblit_core.exemplar_check.check_exemplar`) of
        the prepared image and landmarks.
    """

    asset: StyleAsset
    cache_hit: bool
    seconds: float
    stage_s: dict
    cache_file: Path | None
    landmarks_source: str
    note: str = ""
    check: ExemplarReport | None = None

    def describe(self) -> str:
        """One line for ``faceblit prepare-style``."""
        a = self.asset
        name = Path(a.path).name if a.path else "style"
        if self.cache_hit:
            what = f"loaded from the cache {self.cache_file} in {self.seconds:.2f} s"
        else:
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in self.stage_s.items() if k in ("landmarks", "guides", "lut"))
            what = f"built guides and lookup table in {self.seconds:.2f} s ({parts}); landmarks: {self.landmarks_source}"
            what += f"; cached as {self.cache_file}" if self.cache_file else "; not cached"
        note = f" ({self.note})" if self.note else ""
        return f"{name}: {a.width}x{a.height}, key {a.key[:12]}: {what}{note}"


def style_key(image_bytes: bytes, landmarks: np.ndarray | None, params: dict, *, max_side: int | None = None) -> str:
    """Cache key of a style asset: SHA-256 (hex) of everything it is built from.

    Parameters
    ----------
    image_bytes : bytes
        The style file's content.
    landmarks : (68, 2) float array or None
        The landmark values used; None when they are to be detected.
    params : dict
        ``lambda_pos``, ``lambda_app``, ``lut_radius``, ``temporal_blur`` (floats).
    max_side : int, optional, keyword-only
        The ``style_max_side`` the exemplar is downscaled to (px); None leaves it out of the key.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    h.update(f"faceblit-style format={FORMAT_VERSION} faceblit={__version__}\n".encode())
    h.update(hashlib.sha256(image_bytes).digest())
    if landmarks is None:
        # Detection is a deterministic function of the image (and of the faceblit
        # version, also hashed), so the detected points need not be known to look up.
        h.update(b"landmarks=detected\n")
    else:
        h.update(b"landmarks=")
        h.update(np.ascontiguousarray(landmarks, dtype="<f4").tobytes())
    for name in sorted(_DEFAULTS):
        h.update(f"\n{name}={float(params[name])!r}".encode())
    if max_side is not None:
        h.update(f"\nmax_side={int(max_side)}".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------- preparing
def prepare_style(
    path: str | os.PathLike,
    *,
    landmarks: str | os.PathLike | np.ndarray | None = None,
    lambda_pos: float | None = None,
    lambda_app: float | None = None,
    lut_radius: float | None = None,
    temporal_blur: float | None = None,
    max_side: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    config: Any = None,
    force: bool = False,
) -> StyleAsset:
    """Build (or load from the on-disk cache) the guides and lookup table of a style exemplar.

    Same as :func:`prepare_style_report` but returns only the asset.

    Parameters
    ----------
    path, landmarks, lambda_pos, lambda_app, lut_radius, temporal_blur, max_side, cache_dir, config, force
        As :func:`prepare_style_report`.

    Returns
    -------
    StyleAsset
        Image ``(Hs, Ws, 3) uint8``, landmarks ``(68, 2) float32``, guides and the
        ``(256, 256, 256) int32`` lookup table.

    Raises
    ------
    StyleError, ConfigError
        As :func:`prepare_style_report`.

    References
    ----------
    Texler et al. 2021, §3–4; DESIGN §2 "Per style".
    """
    return prepare_style_report(
        path,
        landmarks=landmarks,
        lambda_pos=lambda_pos,
        lambda_app=lambda_app,
        lut_radius=lut_radius,
        temporal_blur=temporal_blur,
        max_side=max_side,
        cache_dir=cache_dir,
        config=config,
        force=force,
    ).asset


def prepare_style_report(
    path: str | os.PathLike,
    *,
    landmarks: str | os.PathLike | np.ndarray | None = None,
    lambda_pos: float | None = None,
    lambda_app: float | None = None,
    lut_radius: float | None = None,
    temporal_blur: float | None = None,
    max_side: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    config: Any = None,
    force: bool = False,
) -> PrepareReport:
    """Build (or load from the on-disk cache) a style asset and say what was done and how long it took.

    Parameters
    ----------
    path : str or path-like
        The style exemplar: any image OpenCV decodes, any size up to 2^24 pixels
        (e.g. 200×260 to 3000×4000); it need not match the video's size.
    landmarks : path, (68, 2) float array, or None, keyword-only
        The exemplar's 68 points (style px): a FaceBlit text / JSON file, or the
        values. None: use ``NAME.lm.txt`` next to ``NAME.ext`` if it exists,
        else detect them.
    lambda_pos, lambda_app : float, keyword-only
        Lookup-table weights (8-bit guide units); default from ``config``, else 10 and 2.
    lut_radius : float, keyword-only
        Lookup-table search radius, style px; default from ``config``, else 30.
    temporal_blur : float, keyword-only
        Gaussian sigma of the temporal guide, style px; default from ``config``, else 6.
    max_side : int, keyword-only
        An exemplar whose longer side exceeds this many px is downscaled to it
        (area interpolation; given landmarks are scaled with it) before the guides
        and the table are built: the face-space synthesis runs at the exemplar's
        resolution, so a 3000×4000 exemplar would cost ~15x a 768×1024 one per
        frame for no visible gain on video. ``lut_radius`` and ``temporal_blur``
        then apply to the downscaled exemplar. Default from ``config``
        (``style_max_side``), else 1024.
    cache_dir : str or path-like, keyword-only
        Cache folder; default :func:`default_cache_dir`. Created when missing. If
        it cannot be written the asset is still returned (``cache_file`` None).
        After an entry is written, least recently used entries are evicted down
        to :func:`faceblit_core.cache.max_bytes` (said in ``note``).
    config : StylizeConfig, optional, keyword-only
        Source of the four parameters not given explicitly.
    force : bool, keyword-only
        Use an exemplar that the exemplar check
        (:func:`faceblit_core.exemplar_check.check_exemplar`, run on the prepared
        image and landmarks, cache hits included) finds hopeless; its problems
        are then issued as warnings. Landmarks outside the picture stay an error.

    Returns
    -------
    PrepareReport
        ``asset``, ``cache_hit``, ``seconds``, ``stage_s``, ``cache_file``,
        ``check`` (the exemplar check's report) ...

    Warns
    -----
    ExemplarWarning
        One per call whose exemplar check says ``warn`` (or ``error`` with ``force``):
        the problems in one line.

    Raises
    ------
    StyleError
        The style file is missing, unreadable, not an image, or over 2^24
        pixels; the landmark file is missing or bad; landmarks lie outside the
        image; no face is found when detecting; the exemplar check finds the
        exemplar hopeless (face under 80 px wide, head turned beyond 35°, a
        quarter of the face outside the picture) and ``force`` is not set.
    ConfigError
        A parameter is outside its range (see :class:`faceblit_core.config.StylizeConfig`),
        or ``$FACEBLIT_CACHE_MAX_BYTES`` is malformed.

    References
    ----------
    Texler et al. 2021, §3–4; DESIGN §2 "Per style", §5.
    """
    t_start = time.perf_counter()
    stages: dict[str, float] = {}
    params = _resolve_params(config, lambda_pos=lambda_pos, lambda_app=lambda_app, lut_radius=lut_radius, temporal_blur=temporal_blur)
    max_side = _resolve_max_side(config, max_side)
    _cache.max_bytes()  # a malformed $FACEBLIT_CACHE_MAX_BYTES fails now, not after the build
    style_path = Path(os.fspath(path))
    name = os.fspath(path)

    t = time.perf_counter()
    data = _read_style_bytes(style_path, name)
    points, lm_source = resolve_landmarks(style_path, landmarks)
    key = style_key(data, points, params, max_side=max_side)
    stages["hash"] = time.perf_counter() - t

    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    entry = folder / f"{key}{_cache.ENTRY_SUFFIX}"
    note = ""
    if entry.exists():
        t = time.perf_counter()
        try:
            asset = load_entry(entry, key, path=name, params=params)
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is rebuilt, never fatal
            note = f"cache entry unreadable ({type(exc).__name__}), rebuilt"
        else:
            stages["load"] = time.perf_counter() - t
            report = _check(asset.image, asset.landmarks, name, force=force)
            _warn(report, name)
            return PrepareReport(asset, True, time.perf_counter() - t_start, stages, entry, "cache", check=report)

    asset, scaled, report = _build(data, style_path, name, points, lm_source, key, params, max_side, stages, force=force)
    notes = [note] if note else []
    if scaled:
        notes.append(scaled)
    t = time.perf_counter()
    try:
        save_entry(entry, asset)
    except OSError as exc:
        entry = None
        notes.append(f"cache not written: {exc.strerror or exc}")
    else:
        try:
            pruned = _cache.prune(folder, keep=[entry])
        except OSError as exc:  # a full or read-only folder must not fail the run
            notes.append(f"cache not pruned: {exc.strerror or exc}")
        else:
            if pruned.removed:
                notes.append(f"evicted {len(pruned.removed)} least recently used cache entr{'y' if len(pruned.removed) == 1 else 'ies'} "
                             f"({_cache.format_bytes(pruned.bytes_before - pruned.bytes_after)})")
    note = "; ".join(notes)
    stages["save"] = time.perf_counter() - t
    _warn(report, name)
    return PrepareReport(asset, False, time.perf_counter() - t_start, stages, entry, lm_source, note, check=report)


def _check(image: np.ndarray, points: np.ndarray, name: str, *, force: bool) -> ExemplarReport:
    """Run the exemplar check; raise :class:`StyleError` on a hopeless exemplar unless ``force``."""
    report = check_exemplar(image, points)
    if report.verdict == "error" and not force:
        raise StyleError(f"style image {name}: unusable exemplar: {report.message()} (--force uses it anyway)")
    return report


def _warn(report: ExemplarReport, name: str) -> None:
    """One :class:`ExemplarWarning` for a poor (or forced hopeless) exemplar, attributed to the caller."""
    if report.verdict != "ok":
        warnings.warn(f"style image {name}: {report.message()}", ExemplarWarning, stacklevel=3)


#: Mean distance (per inter-ocular distance) between given and detected landmarks above which
#: the given ones are taken to belong to another picture. Hand-corrected files of the shared
#: exemplars lie 0.01-0.15 from detection; a file of the 480x640 version used with the
#: 768x1024 one lies ~1.
ELSEWHERE_NME = 0.5


def _warn_if_elsewhere(points: np.ndarray, image: np.ndarray, name: str, source: str) -> None:
    """Warn when landmarks from a file lie far from the face the detector finds in the exemplar.

    Points inside the image can still belong to another one (the file of another size of the
    same painting), and the synthesis would paint a melted face without any error. Where no
    face is detected (paintings, often the reason for a file) there is nothing to compare.
    Run once per preparation (a cache hit does not repeat it).
    """
    try:
        found = faces.detect_style_landmarks(image)
    except StyleError:
        return
    distance = float(np.linalg.norm(points - found, axis=1).mean()) / max(faces.inter_ocular(found), 1.0)
    if distance > ELSEWHERE_NME:
        warnings.warn(f"style image {name}: the given landmarks ({source}) lie far from the face found in the image "
                      f"(on average {distance:.1f} x its eye distance): a file of another size of the picture, or of another one? "
                      f"Compare with the face found: 'faceblit landmarks {name} --draw check.png'", ExemplarWarning, stacklevel=4)


def _resolve_params(config: Any, **given: float | None) -> dict:
    values = {}
    for name, value in given.items():
        if value is None:
            value = getattr(config, name) if config is not None else _DEFAULTS[name]
        StylizeConfig.check_field(name, value)  # type and range, with the same messages as the CLI options
        values[name] = float(value)
    return values


def _resolve_max_side(config: Any, max_side: int | None) -> int:
    if max_side is None:
        max_side = getattr(config, "style_max_side", None) if config is not None else None
    if max_side is None:
        return int(StylizeConfig.style_max_side)  # the documented default
    StylizeConfig.check_field("style_max_side", max_side)  # like the CLI option
    return int(max_side)


def _downscaled(image: np.ndarray, points: np.ndarray | None, max_side: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Shrink ``image`` (H, W, 3) so its longer side is ``max_side`` px; scale ``points`` (68, 2) alike.

    Pixel centres sit at integer coordinates (ARCHITECTURE), so a point maps as
    ``x' = (x + 0.5) * W'/W - 0.5``.
    """
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    if points is not None:
        points = (np.asarray(points, np.float64) + 0.5) * [nw / w, nh / h] - 0.5
        points = np.clip(points, -0.5, [nw - 0.5, nh - 0.5]).astype(np.float32)  # float rounding at the edges
    return np.ascontiguousarray(small), points


def _read_style_bytes(p: Path, name: str) -> bytes:
    if not p.exists():
        raise StyleError(f"style image {name}: no such file")
    if p.is_dir():
        raise StyleError(f"style image {name}: is a directory, not an image")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise StyleError(f"style image {name}: cannot read ({exc.strerror or exc})") from None


def resolve_landmarks(
    style_path: str | os.PathLike,
    style_landmarks: str | os.PathLike | np.ndarray | None = None,
    *,
    image_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray | None, str]:
    """Where a style exemplar's 68 landmarks come from, and their values when a file or array holds them.

    The one rule for pipeline (through :func:`prepare_style`), :mod:`faceblit_core.evaluation`
    and this module: the values given; else the file given; else the sibling file
    ``NAME.lm.txt`` beside ``NAME.ext`` (same folder, same stem; FaceBlit's convention);
    else they are to be detected on the decoded image
    (:func:`faceblit_core.faces.detect_style_landmarks`), which the caller does: it may
    first downscale the image, and the cache key is computed before decoding.

    Parameters
    ----------
    style_path : str or path-like
        The style image (only its name is used here).
    style_landmarks : path, (68, 2) float array, sequence of 68 (x, y), or None
        Given landmarks (style px) or their file (FaceBlit text or JSON).
    image_size : (width, height) of int, optional, keyword-only
        When given, the points must lie inside an image of that size, px.

    Returns
    -------
    points : ndarray, shape (68, 2), float32, or None
        ``(x, y)`` style px; None when they are to be detected.
    source : str
        ``"array"``, ``"file PATH"``, ``"sibling PATH"`` or ``"detected"``.

    Raises
    ------
    StyleError
        The file is missing, unreadable or malformed; NaN or infinite values; a point
        outside ``image_size``.
    ValueError
        An array of another shape than (68, 2).

    References
    ----------
    Texler et al. 2021, FaceBlit, Sec. 4 (the exemplars' landmark files).
    """
    if style_landmarks is None:
        path = Path(os.fspath(style_path))
        sibling = path.with_name(path.stem + SIBLING_LANDMARKS_SUFFIX)
        if not sibling.is_file():
            return None, "detected"
        style_landmarks, source = sibling, f"sibling {sibling}"
    elif isinstance(style_landmarks, np.ndarray) or (isinstance(style_landmarks, (list, tuple)) and len(style_landmarks) == 68):
        pts = np.asarray(style_landmarks, dtype=np.float32)
        check_array(pts, "style landmarks", shape=(68, 2))
        if not np.isfinite(pts).all():
            raise StyleError("style landmarks: NaN or infinite values")
        source = "array"
    else:
        source = f"file {os.fspath(style_landmarks)}"
    if source != "array":
        try:
            pts = load_landmarks(style_landmarks)
        except InputError as exc:  # a missing/unreadable landmark file is a style problem (exit 4)
            raise StyleError(f"style landmarks: {exc.message}") from None
    if image_size is not None:
        check_points_inside(pts, image_size, source=f"style landmarks ({source})")
    return pts, source


def _build(data: bytes, style_path: Path, name: str, points, lm_source: str, key: str, params: dict, max_side: int, stages: dict,
           *, force: bool) -> tuple[StyleAsset, str, ExemplarReport]:
    t = time.perf_counter()
    try:
        image = media.read_image(style_path)
    except InputError as exc:
        raise StyleError(f"style image {exc.message}") from None
    # The key hashes the bytes read before decoding; make sure they are what was decoded.
    if _read_style_bytes(style_path, name) != data:
        raise StyleError(f"style image {name}: the file changed while it was being read; run again")
    scaled = ""
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        if points is not None:  # checked against the image the user made them for
            check_points_inside(np.asarray(points, np.float32), (w, h), source=f"style landmarks ({lm_source})")
        image, points = _downscaled(image, points, max_side)
        scaled = f"downscaled from {w}x{h} to {image.shape[1]}x{image.shape[0]} (style_max_side {max_side})"
        h, w = image.shape[:2]
    if h * w > _lut.MAX_STYLE_PIXELS:
        raise StyleError(
            f"style image {name}: {w}x{h} = {h * w} px is over the {_lut.MAX_STYLE_PIXELS} px (2^24) the lookup table addresses; downscale it"
        )
    stages["read"] = time.perf_counter() - t

    t = time.perf_counter()
    if points is None:
        try:
            points = faces.detect_style_landmarks(image)
        except StyleError as exc:  # name the file: in a batch or a script the user may not know which
            raise StyleError(f"style image {name}: {exc.message}") from None
    points = np.ascontiguousarray(points, dtype=np.float32)
    # Given points outside the image belong to another image (say so); for detected ones
    # the check comes first: "half the face is outside the picture" says more than "point 3 is outside".
    inside = lambda: check_points_inside(points, (w, h), source=f"style landmarks ({lm_source})")  # noqa: E731
    if lm_source != "detected":
        inside()
        _warn_if_elsewhere(points, image, name, lm_source)
    report = _check(image, points, name, force=force)
    inside()
    stages["landmarks"] = time.perf_counter() - t

    t = time.perf_counter()
    app = stretch_contrast(appearance_guide(image))
    cdf = app_cdf(app)
    temp = temporal_guide(image, sigma=params["temporal_blur"])
    stages["guides"] = time.perf_counter() - t

    t = time.perf_counter()
    table = _lut.build_lookup_table(app, lambda_pos=params["lambda_pos"], lambda_app=params["lambda_app"], radius=params["lut_radius"])
    stages["lut"] = time.perf_counter() - t
    return StyleAsset(image=image, landmarks=points, app=app, app_cdf=cdf, temp=temp, lut=table, key=key, path=name, params=dict(params)), scaled, report
