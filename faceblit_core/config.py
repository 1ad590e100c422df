"""All tunables of faceblit in one validated dataclass.

Like ebsynth's header, every field documents its unit, range and default. The
CLI options of ``faceblit stylize`` map one to one onto these fields (dashes for
underscores); a Python user passes the same object to
:func:`faceblit_core.pipeline.stylize_video`.

Units: "8-bit guide units" are the units of FaceBlit's 8-bit guides — the
positional guide quantised to 256 steps across the style width/height, the
appearance guide as stored (0–255). Pixel sizes are in pixels of the image
they apply to (style px or frame px as stated).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

from faceblit_core.errors import ConfigError
from faceblit_core.geometry import KEEP_REGIONS

#: Choices of ``device``: ``auto`` picks CUDA when available, else the CPU.
DEVICE_CHOICES = ("auto", "cpu", "cuda")

#: Presets of libx264/libx265, checked before any work starts.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


def _f(default: Any, lo: float | None = None, hi: float | None = None, *, doc: str, choices: tuple | None = None,
       subset_of: tuple | None = None):
    """A field with its range, documentation, and either ``choices`` (one of them) or
    ``subset_of`` (a comma-separated list of some of them, "" = none)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "doc": doc, "choices": choices, "subset_of": subset_of})


@dataclass(frozen=True)
class StylizeConfig:
    """Tunables of the whole pipeline (FaceBlit, Texler et al. 2021; StyleBlit, Sýkora et al. 2019).

    Every field is keyword-settable; :meth:`validate` (called by ``__post_init__``)
    raises :class:`~faceblit_core.errors.ConfigError` naming the field, its
    range and the value given. ``dataclasses.replace(cfg, field=value)`` makes
    a changed copy.
    """

    # --- StyleBlit synthesis (DESIGN §6) -------------------------------------------------
    threshold: float = _f(50.0, 0.0, 100000.0, doc="StyleBlit acceptance threshold on the guide error, 8-bit guide units (FaceBlit CPU: 50, GPU: 40)")
    lambda_pos: float = _f(10.0, 0.0, 1000.0, doc="weight of the positional guide, per 8-bit unit of |dx|+|dy| (lookup table and StyleBlit error; FaceBlit: 10)")
    lambda_app: float = _f(2.0, 0.0, 1000.0, doc="weight of the appearance guide, per 8-bit unit (lookup table and StyleBlit error; FaceBlit: 2)")
    lambda_temp: float = _f(1.0, 0.0, 1000.0, doc="weight of the temporal guide, per 8-bit unit of mean |dR|,|dG|,|dB| (FaceStyle); 0 disables it")
    levels: int = _f(6, 0, 9, doc="coarsest seed level L; seed spacing 2^l px for l = L..0 (StyleBlit/FaceBlit: 6)")
    seed: int = _f(0, 0, 2**31 - 1, doc="seed of the jitter table; same seed and input give the same output")
    boil: float = _f(0.0, 0.0, 120.0, doc="re-seed the jitter table this many times per second of video (hand-drawn 'boil'); 0 = fixed chunks")
    # --- voting (DESIGN §6, Blending/voting) -----------------------------------------------
    blend_radius: int = _f(1, 0, 8, doc="voting window radius r, (2r+1)^2 votes per pixel (StyleBlit demo: 1)")
    denoise_nnf: bool = _f(True, doc="replace each NNF offset by the most frequent offset in the voting window before voting (FaceBlit)")
    # --- lookup table (DESIGN §5) ------------------------------------------------------------
    lut_radius: float = _f(30.0, 1.0, 512.0, doc="search radius of the lookup table around the positional-guide position, style px (FaceBlit: 30)")
    style_max_side: int = _f(1024, 256, 4096, doc="a style exemplar whose longer side exceeds this is downscaled to it before use, style px (synthesis time grows with the exemplar's face area; FaceBlit's exemplars: 768x1024)")
    # --- guides (DESIGN §4) ------------------------------------------------------------------
    mls_alpha: float = _f(1.0, 0.1, 4.0, doc="MLS weight exponent alpha, w_i = 1/|p_i - v|^(2 alpha) (Schaefer et al. 2006)")
    mls_grid: int = _f(10, 1, 64, doc="spacing of the grid on which MLS is evaluated exactly, frame px (FaceBlit: 10)")
    temporal_blur: float = _f(6.0, 0.5, 64.0, doc="Gaussian sigma of the temporal-guide blur, style px (same kernel on style and previous output)")
    mask_feather: int = _f(20, 0, 200, doc="box-blur size feathering the face mask, frame px (FaceBlit: 20)")
    margin: float = _f(0.1, 0.0, 2.0, doc="margin added around the face mask outline for the region worked on (guides, flow, compositing), fraction of its size; must hold the feathered mask, more only costs time")
    synthesis_space: str = _f("face", doc="where StyleBlit runs: 'face' = in the exemplar's frame (target warped onto it, result warped back: chunks stick to the face, steady video); 'frame' = in the video frame (FaceBlit's original)", choices=("face", "frame"))
    flow_follow: float = _f(0.99, 0.0, 0.999, doc="share of last frame's positional guide carried along the input's optical flow (rest: this frame's landmarks); 0 = landmarks only")
    flow_bound: float = _f(0.03, 0.0, 1.0, doc="the flow-carried positional guide stays within this distance of this frame's landmark-based one, fraction of the exemplar's inter-ocular distance (bounded residual: carried state cannot drift; what it holds is structure error on a moving head); 0 = landmarks only")
    keep_previous: bool = _f(True, doc="face space: a pixel keeps the exemplar pixel it showed in the previous frame while that still meets the threshold (steady chunks); only the other pixels are synthesized again (fast)")
    keep_tolerance: float = _f(8.0, 0.0, 100.0, doc="while pixels keep their exemplar pixel (--keep-previous): a pixel keeps last frame's exemplar pixel while its error on this frame's guides is below threshold × this (re-tested every frame; lower follows changes sooner, higher is steadier; every kept pixel is re-synthesized at least once per 60 frames whatever this is, so kept texture cannot drift from the face)")
    mouth_interior: bool = _f(True, doc="paint the target's open mouth (lips and interior) in its own colours moved onto the exemplar's palette, with the exemplar's lip texture (segmentation guide, FaceStyle): the exemplar's closed mouth is not stretched over it")
    background: bool = _f(False, doc="also stylize the rest of the frame from the positional guide (FaceBlit's background mode)")
    # --- what of the stylized face is shown (compositing) ---------------------------------------
    keep: str = _f("", doc="face parts where the target's own pixels are kept, comma-separated: any of " + ", ".join(KEEP_REGIONS) + "; feathered, following the landmarks every frame, so eye colour and teeth stay the person's; empty = none", subset_of=tuple(KEEP_REGIONS))
    strength: float = _f(1.0, 0.0, 1.0, doc="blend of the stylized face with the original: 1 = fully stylized, 0 = the input unchanged (linear in between)")
    # --- faces (DESIGN §3) -------------------------------------------------------------------
    landmarks: str = _f("dlib", doc="landmark backend name (see faceblit_core.faces.BACKENDS) or a per-frame JSON file")
    max_faces: int = _f(8, 1, 64, doc="at most this many faces per frame (largest first)")
    detect_every: int = _f(10, 1, 10000, doc="re-run the full face detector every N frames while tracking")
    smooth_min_cutoff: float = _f(1.0, 0.0, 100.0, doc="One Euro filter min cutoff of the landmarks' face shape (head pose: 10 Hz, after following the head's optical-flow motion), Hz (lower = steadier, more lag); 0 disables smoothing")
    landmark_bound: float = _f(0.01, 0.0, 10.0, doc="smoothed eye and mouth landmarks stay within this distance of each frame's raw fit, fraction of the inter-ocular distance (jitter below it is smoothed, a fast expression change is followed at once); 10 = no bound")
    smooth_beta: float = _f(2.0, 0.0, 100.0, doc="One Euro filter speed coefficient beta, Hz per inter-ocular distance per second (higher = less lag on fast motion)")
    fade_frames: int = _f(6, 0, 120, doc="a face whose evidence is poor (head turned past the exemplar, half out of the frame, jumping landmarks, tiny) fades toward the original over this many frames and back in when it returns (faceblit_core.faces.confidence); 0 = always stylize fully")
    keep_occluders: bool = _f(False, doc="leave out of the face mask what moves in front of the face against the landmarks' motion (a hand passing), so it stays in front (faceblit_core.occlusion); off by default: on fast heads with glasses it also cuts flickering holes")
    scene_cut: float = _f(40.0, 0.0, 255.0, doc="mean |frame - previous| of 64x64 thumbnails, 8-bit units, above which a scene cut resets tracking and the temporal guide; 0 disables")
    faces: str = _f("all", doc="which faces are stylized: all | largest (in each shot, the face with the largest median box; shots split at scene cuts) | ID[,ID...] (the ids 'faceblit faces' lists); the others are written unchanged")
    # --- compute -------------------------------------------------------------------------------
    device: str = _f("auto", doc="auto | cpu | cuda | cuda:N; auto uses CUDA when available")
    # --- encoding (DESIGN §7) ----------------------------------------------------------------
    codec: str = _f("libx264", doc="ffmpeg video encoder")
    crf: int = _f(18, 0, 63, doc="constant rate factor of the encoder (lower = better, bigger)")
    preset: str = _f("medium", doc="encoder preset (libx264: ultrafast … veryslow)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field against its documented type and range.

        Raises
        ------
        ConfigError
            ``"<field>: expected <range>, got <value>"`` for the first bad field.
        """
        # Every field's type and range first, then the choices: the first error reported stays the same.
        for f in fields(self):
            _check_type_range(f, getattr(self, f.name))
        for f in fields(self):
            _check_choice(f, getattr(self, f.name))
        if self.codec in ("libx264", "libx265") and self.preset not in X264_PRESETS:
            raise ConfigError(f"preset: expected one of {', '.join(X264_PRESETS)} for {self.codec}, got {self.preset!r}")
        parse_face_selection(self.faces)
        dev = self.device
        if not (dev in DEVICE_CHOICES or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"device: expected one of auto, cpu, cuda, cuda:N, got {dev!r}")

    @classmethod
    def check_field(cls, name: str, value: Any) -> None:
        """Check one value against a field's documented type, range and choices, as :meth:`validate` does.

        For callers that take a few of the tunables on their own (e.g.
        :func:`faceblit_core.style.prepare_style`) without building a whole config.

        Parameters
        ----------
        name : str
            A field name.
        value : Any
            The value to check.

        Raises
        ------
        ConfigError
            ``"<field>: expected <range>, got <value>"``.
        KeyError
            ``name`` is not a field (a programming error).
        """
        f = {f.name: f for f in fields(cls)}[name]
        _check_type_range(f, value)
        _check_choice(f, value)

    @property
    def keep_regions(self) -> tuple[str, ...]:
        """The face parts of ``keep`` as a tuple of :data:`~faceblit_core.geometry.KEEP_REGIONS` names (no repeats)."""
        return tuple(dict.fromkeys(_split_list(self.keep)))

    def replace(self, **changes: Any) -> "StylizeConfig":
        """Return a validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Field name → one-line documentation (unit, range), for ``--help`` texts (which add the default)."""
        out = {}
        for f in fields(cls):
            m = f.metadata
            rng = f"; range [{m['lo']}, {m['hi']}]" if m.get("lo") is not None else ""
            out[f.name] = f"{m['doc']}{rng}"
        return out


def parse_face_selection(text: str) -> str | frozenset[int]:
    """The ``faces`` field read: ``"all"``, ``"largest"`` or the set of face ids it names.

    Parameters
    ----------
    text : str
        ``all``, ``largest`` or comma-separated ids ``ID[,ID...]`` (whole numbers ≥ 0,
        the ids of :func:`faceblit_core.faces.listing.list_faces`).

    Raises
    ------
    ConfigError
        Anything else, or an id given twice (``0,0``, ``1,01``: a typo for another
        id more likely than a wish, so not merged silently) (exit 2).
    """
    value = text.strip().lower() if isinstance(text, str) else text
    if value in ("all", "largest"):
        return value
    parts = value.split(",") if isinstance(value, str) else []
    if not parts or not all(p.strip().isascii() and p.strip().isdigit() and len(p.strip()) <= 6 for p in parts):
        raise ConfigError(f"faces: expected all, largest or face ids such as 0,2 (see 'faceblit faces'), got {text!r}")
    ids = [int(p) for p in parts]
    repeated = next((fid for i, fid in enumerate(ids) if fid in ids[:i]), None)
    if repeated is not None:
        raise ConfigError(f"faces: face {repeated} is given twice in {text!r}; give each id once")
    return frozenset(ids)


def _check_type_range(f: dataclasses.Field, value: Any) -> None:
    """Raise ConfigError when ``value`` has not the type of ``f``'s default or lies outside its ``lo``/``hi``."""
    meta = f.metadata
    if isinstance(f.default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{f.name}: expected true or false, got {value!r}")
        return
    if isinstance(f.default, (int, float)):
        kind = int if isinstance(f.default, int) else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            want = "an integer" if kind is int else "a number"
            raise ConfigError(f"{f.name}: expected {want}, got {value!r}")
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{f.name}: expected a value in [{lo}, {hi}], got {value!r}")
    elif isinstance(f.default, str):
        if not isinstance(value, str) or (not value and meta.get("subset_of") is None):
            raise ConfigError(f"{f.name}: expected a non-empty string, got {value!r}")


def _check_choice(f: dataclasses.Field, value: Any) -> None:
    """Raise ConfigError when ``f`` has ``choices`` and ``value`` is not one of them."""
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{f.name}: expected one of {', '.join(choices)}, got {value!r}")
    subset_of = f.metadata.get("subset_of")
    if subset_of:
        unknown = [item for item in _split_list(value) if item not in subset_of]
        if unknown or (value.strip() and not _split_list(value)):
            raise ConfigError(f"{f.name}: expected a comma-separated list of {', '.join(subset_of)}, got {value!r}"
                              + (f" ({unknown[0]!r} is not one of them)" if unknown else ""))


def _split_list(value: str) -> list[str]:
    """``"eyes, mouth"`` → ``["eyes", "mouth"]``: items of a comma-separated list, stripped, empty ones dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]
