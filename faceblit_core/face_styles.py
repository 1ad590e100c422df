"""Which exemplar paints which face: ``--style S``, ``--style ID=S`` and ``--faces`` (issue 16).

``--style S`` paints every face with S; ``--style ID=S`` (repeatable) paints face
``ID`` with S, ids being the tracker's (``faceblit faces``,
:mod:`faceblit_core.faces.listing`); ``--faces all|largest|ID[,ID…]``
(``StylizeConfig.faces``) selects the faces stylized, the others are written
unchanged. :class:`FaceStyles` holds the exemplars, :meth:`FaceStyles.check`
refuses contradictions before anything is read, :meth:`FaceStyles.resolve` turns
them and a clip's listing into what :class:`~faceblit_core.stylizer.FrameStylizer`
takes (:class:`FacePlan`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from faceblit_core.config import StylizeConfig, parse_face_selection
from faceblit_core.errors import InputError, UsageError
from faceblit_core.faces.listing import FaceListing
from faceblit_core.style import StyleAsset

__all__ = ["FaceStyles", "FacePlan", "as_style", "needs_ids"]

#: ``ID=S``: what precedes the first ``=`` when it is not a path (no ``/``, no ``.``).
_MAPPING = re.compile(r"^([^=/.]*)=(.*)$")


@dataclass(frozen=True)
class FacePlan:
    """What a :class:`~faceblit_core.stylizer.FrameStylizer` gets: ``style``, ``face_styles``, ``only``."""

    default: Any
    by_id: Mapping[int, Any]
    only: frozenset[int] | None


@dataclass(frozen=True)
class FaceStyles:
    """The exemplars of a run: one for every face and/or one per face id.

    Attributes
    ----------
    every : path, StyleAsset or None
        The exemplar of every face not in ``by_id``.
    by_id : dict of int to (path or StyleAsset)
        The exemplar of each given face id.
    """

    every: Any = None
    by_id: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, values: Sequence[str]) -> "FaceStyles":
        """The CLI's ``--style`` values: ``S`` (every face, once at most) and ``ID=S`` (each ID once).

        A value naming an existing file is a path even if it contains ``=``.

        Raises
        ------
        UsageError
            An id that is not a whole number ≥ 0, an id or the every-face style given
            twice, an empty path (exit 2).
        """
        every, by_id = None, {}
        for value in values:
            value = os.fspath(value)
            match = _MAPPING.match(value)
            if match is None or Path(value).exists():
                if every is not None:
                    raise UsageError(f"--style {value}: one exemplar for every face is given already ({every}); give the others as ID=STYLE")
                every = value
                continue
            key, path = match.group(1).strip(), match.group(2)
            if not (key.isascii() and key.isdigit() and len(key) <= 6):
                raise UsageError(f"--style {value}: expected ID=STYLE with ID a face id (a whole number >= 0, see 'faceblit faces'), got id {key!r}")
            if not path:
                raise UsageError(f"--style {value}: expected ID=STYLE, the exemplar's file after '='")
            if int(key) in by_id:
                raise UsageError(f"--style {value}: face {int(key)} has an exemplar already ({by_id[int(key)]})")
            by_id[int(key)] = path
        if every is None and not by_id:
            raise UsageError("--style: give an exemplar (STYLE for every face, or ID=STYLE)")
        return cls(every, by_id)

    @classmethod
    def of(cls, style: Any) -> "FaceStyles":
        """Any form the Python API takes: a path or StyleAsset (every face), a FaceStyles, a
        mapping ``{id: style}`` (key None = every face) or the CLI's strings.

        Raises
        ------
        UsageError
            A bad id or a value given twice (as :meth:`parse`).
        """
        if isinstance(style, FaceStyles):
            return style
        if isinstance(style, (str, os.PathLike, StyleAsset)):
            return cls(style, {})
        if isinstance(style, Mapping):
            by_id = {}
            for key, value in style.items():
                if key is None:
                    continue
                if isinstance(key, bool) or not isinstance(key, int) or key < 0:
                    raise UsageError(f"style: face ids are whole numbers >= 0, got {key!r}")
                by_id[key] = value
            if style.get(None) is None and not by_id:
                raise UsageError("style: give an exemplar")
            return cls(style.get(None), by_id)
        return cls.parse(list(style))

    @property
    def plain(self) -> bool:
        """One exemplar for every face and no per-id exemplar (the run of before issue 16)."""
        return not self.by_id

    @property
    def name(self) -> str:
        """The exemplars' file names without extension joined by ``+`` (default output names)."""
        items = ([self.every] if self.every is not None else []) + [self.by_id[k] for k in sorted(self.by_id)]
        stems = []
        for item in items:
            stem = Path(str(getattr(item, "path", None) or "style") if isinstance(item, StyleAsset) else os.fspath(item)).stem
            if stem not in stems:
                stems.append(stem)
        return "+".join(stems)

    def prepared(self, load: Callable[[Any], StyleAsset]) -> "FaceStyles":
        """The same with every exemplar loaded by ``load`` (each distinct path or asset once)."""
        done: dict = {}

        def one(item):
            key = item if isinstance(item, StyleAsset) else os.path.realpath(os.fspath(item))
            if isinstance(item, StyleAsset):
                return item
            if key not in done:
                done[key] = load(item)
            return done[key]

        return FaceStyles(one(self.every) if self.every is not None else None, {k: one(v) for k, v in self.by_id.items()})

    def check(self, config: StylizeConfig) -> None:
        """Refuse what contradicts itself before anything is read (exit 2).

        Raises
        ------
        UsageError
            An exemplar for a face ``--faces ID,…`` does not select; a selected face
            without an exemplar; ``background`` with exemplars per id or a selection.
        ConfigError
            A bad ``faces`` value.
        """
        selection = parse_face_selection(config.faces)
        if config.background and (self.by_id or selection != "all"):
            # The background is painted in one piece with the largest face (FaceBlit's
            # background mode): neither a face of its own exemplar nor one left unchanged.
            raise UsageError("--background paints the whole picture with one exemplar: not with --style ID=STYLE or --faces other than all")
        if isinstance(selection, frozenset):
            for fid in sorted(self.by_id):
                if fid not in selection:
                    raise UsageError(f"--style {fid}={self.by_id[fid]}: face {fid} is not selected by --faces {config.faces}")
            if self.every is None:
                for fid in sorted(selection):
                    if fid not in self.by_id:
                        raise UsageError(f"--faces {config.faces}: face {fid} has no exemplar; give --style STYLE (every face) or --style {fid}=STYLE")

    def resolve(self, config: StylizeConfig, listing: FaceListing | None) -> FacePlan:
        """The plan of one clip: which face gets which exemplar.

        Parameters
        ----------
        config : StylizeConfig
            ``faces`` is read.
        listing : FaceListing or None
            The clip's faces (:func:`faceblit_core.faces.listing.track_faces` over the
            frames rendered); needed when :func:`needs_ids`.

        Raises
        ------
        InputError
            A face id given (``ID=S`` or ``--faces``) never appears in the clip (exit 3).
        UsageError
            With ``--faces largest``: an exemplar for a face that is not the largest of its
            shot, or none for one that is (exit 2).
        """
        self.check(config)
        selection = parse_face_selection(config.faces)
        if listing is None:
            return FacePlan(self.every, dict(self.by_id), None)
        found = set(listing.ids)
        asked = set(self.by_id) | (selection if isinstance(selection, frozenset) else set())
        missing = sorted(asked - found)
        if missing:
            seen = f"the faces found are {', '.join(map(str, sorted(found)))}" if found else "no face was found"
            raise InputError(f"{listing.input}: face {missing[0]} never appears in the {'frames rendered' if listing.start else 'clip'} "
                             f"({seen}; see 'faceblit faces {listing.input}')")
        only: frozenset[int] | None = selection if isinstance(selection, frozenset) else None
        if selection == "largest":
            # The largest face of each shot (FaceListing.largest): ids do not cross scene cuts.
            largest = listing.largest()
            only = frozenset(largest)
            which = f"face {largest[0]}" if len(largest) == 1 else f"faces {', '.join(map(str, largest))} (one per shot)"
            for fid in sorted(self.by_id):
                if fid not in only:
                    raise UsageError(f"--style {fid}={self.by_id[fid]}: face {fid} is not selected: --faces largest is {which} in {listing.input}")
            for fid in largest:
                if self.every is None and fid not in self.by_id:
                    raise UsageError(f"--faces largest: face {fid} (the largest of a shot of {listing.input}) has no exemplar")
        return FacePlan(self.every, dict(self.by_id), only)


def as_style(style: Any) -> Any:
    """``style`` as the pipeline takes it: a path or StyleAsset when one exemplar paints every
    face, else a :class:`FaceStyles` (parsed and checked for syntax)."""
    if isinstance(style, (str, os.PathLike, StyleAsset)):
        return style
    styles = FaceStyles.of(style)
    return styles.every if styles.plain else styles


def needs_ids(style: Any, config: StylizeConfig) -> bool:
    """Whether a run must know the clip's face ids first (a pre-pass of tracking): an
    exemplar per id, or a selection other than ``all``."""
    return isinstance(style, FaceStyles) or parse_face_selection(config.faces) != "all"
