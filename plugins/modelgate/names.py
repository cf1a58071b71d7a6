"""Model names: one rule, used by the spec loader and the registry alike (kept import-light for DAG parsing)."""

from __future__ import annotations

import re

MODEL_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
_NAME_RE = re.compile(MODEL_NAME_PATTERN)


class InvalidName(ValueError):
    """Base for invalid-name errors (the registry's InvalidModelName also derives from RegistryError)."""


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidName(
            f"invalid model name {name!r}: use 1-64 characters, a lowercase letter first, then lowercase "
            "letters, digits, '_' or '-'"
        )
    return name
