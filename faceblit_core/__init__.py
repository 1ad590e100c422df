"""faceblit: example-based stylization of faces in video (FaceBlit / StyleBlit).

The package is import-light: ``faceblit_core.__version__`` needs nothing
heavy, and the pipeline entry points are loaded on first use.

Pipeline stages, one module each, data flowing one way; :mod:`faceblit_core.pipeline`
runs the job, :mod:`faceblit_core.stylizer` the per-frame part::

    media (decode) → faces (landmarks) → guides → warp → synthesis (StyleBlit, voting)
                   → warp → compositing → media (encode)

Per-style assets (guides of the exemplar, lookup table) live in
:mod:`faceblit_core.style` and :mod:`faceblit_core.lut`.
"""

from faceblit_core._version import __version__

__all__ = ["__version__", "StylizeConfig", "stylize_video", "stylize_image", "stylize_batch", "list_faces", "FaceblitError"]


def __getattr__(name: str):
    if name in ("stylize_video", "stylize_image"):
        from faceblit_core import pipeline

        return getattr(pipeline, name)
    if name == "stylize_batch":
        from faceblit_core.batch import stylize_batch

        return stylize_batch
    if name == "list_faces":
        from faceblit_core.faces.listing import list_faces

        return list_faces
    if name == "StylizeConfig":
        from faceblit_core.config import StylizeConfig

        return StylizeConfig
    if name == "FaceblitError":
        from faceblit_core.errors import FaceblitError

        return FaceblitError
    raise AttributeError(f"module 'faceblit_core' has no attribute {name!r}")
