"""The one JSON sanitiser: what the CLI prints, JSONB columns store and Vertex AI is sent all go through it."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python


def jsonable(value: Any) -> Any:
    """JSON-ready data: dataclasses, enums, datetimes and numpy values converted; NaN and ±inf become null.

    JSONB and strict JSON parsers refuse NaN, so a missing metric is stored as null rather than failing a
    whole promotion; anything else without a JSON form is written as its str().
    """
    return to_jsonable_python(value, inf_nan_mode="null", fallback=_fallback)


def _fallback(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return jsonable(tolist())
    return str(value)
