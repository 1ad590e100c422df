"""One small helper for argument checks whose errors give expected and actual values."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def check(condition: bool, what: str, expected: Any, actual: Any, *, exc: type[Exception] = ValueError) -> None:
    """Raise ``exc("<what>: expected <expected>, got <actual>")`` unless ``condition``.

    Parameters
    ----------
    condition : bool
        The property that must hold.
    what : str
        Name of the checked thing, e.g. ``"style landmarks shape"``.
    expected, actual : Any
        Rendered with ``str`` in the message.
    exc : type of Exception, keyword-only
        Exception class to raise (default ``ValueError``).

    Raises
    ------
    exc
        When ``condition`` is false.
    """
    if not condition:
        raise exc(f"{what}: expected {expected}, got {actual}")


def check_array(
    array: Any,
    what: str,
    *,
    shape: Sequence[int | None] | None = None,
    dtype: Any | Sequence[Any] | None = None,
    exc: type[Exception] = ValueError,
) -> None:
    """Check the shape (``None`` = any size on that axis) and dtype of a numpy array or torch tensor.

    Raises
    ------
    exc
        With the expected and actual shape or dtype.
    """
    actual_shape = tuple(array.shape)
    if shape is not None:
        ok = len(actual_shape) == len(shape) and all(s is None or s == a for s, a in zip(shape, actual_shape))
        spec = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        check(ok, f"{what} shape", spec, actual_shape, exc=exc)
    if dtype is not None:
        allowed = tuple(dtype) if isinstance(dtype, (list, tuple)) else (dtype,)
        actual = array.dtype
        ok = any(_same_dtype(actual, d) for d in allowed)
        check(ok, f"{what} dtype", " or ".join(map(str, allowed)), actual, exc=exc)


def _same_dtype(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, np.dtype):
        return actual == np.dtype(wanted)
    return actual == wanted
