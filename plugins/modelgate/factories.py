"""Your own estimator by import path: `estimator.factory: my_models.churn:build` in a spec.

The factory is a function you write that returns an unfitted scikit-learn-compatible estimator or `Pipeline`;
it is called with the spec's `estimator.params`. Its module is imported from the include folder
($MODELGATE_INCLUDE_DIR, else the project's `include/`, which every Airflow component mounts) or from the
environment. A version records what made it: the factory's path, the sha256 of its module's source, and the
installed versions of the packages its estimator's classes come from.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

from modelgate.config import importable_include, include_dir


class FactoryError(ValueError):
    """The factory cannot be imported or called, or did not return an estimator; the message names the way out."""


def _split(path: str) -> tuple[str, str]:
    module, _, function = path.partition(":")
    return module, function


def resolve(path: str) -> Callable[..., Any]:
    """The function `package.module:function` names (FactoryError: the one thing wrong, in one line)."""
    module_name, function = _split(path)
    importable_include()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise FactoryError(
                f"estimator.factory {path}: no module {exc.name!r} in {include_dir()} or the environment"
            ) from None
        raise FactoryError(f"estimator.factory {path}: importing it failed: {exc}") from None
    except Exception as exc:  # the user's module raised while importing: say what, not a traceback
        why = f"{type(exc).__name__}: {_line(exc)}"
        raise FactoryError(f"estimator.factory {path}: importing it failed: {why}") from None
    found = getattr(module, function, None)
    if found is None:
        raise FactoryError(f"estimator.factory {path}: module {module_name!r} has no {function!r}")
    if not callable(found):
        raise FactoryError(f"estimator.factory {path}: {function!r} is a {type(found).__name__}, not a function")
    return found


def build(path: str, params: dict[str, Any]) -> Any:
    """Call the factory with `params`; the unfitted estimator it returns, checked to be one."""
    factory = resolve(path)
    try:
        estimator = factory(**params)
    except TypeError as exc:
        raise FactoryError(f"estimator.factory {path} does not take these params: {_line(exc)}") from None
    except Exception as exc:  # your function raised: what it said, in one line
        raise FactoryError(f"estimator.factory {path} failed: {type(exc).__name__}: {_line(exc)}") from None
    missing = [m for m in ("fit", "get_params", "set_params") if not callable(getattr(estimator, m, None))]
    if missing:
        raise FactoryError(
            f"estimator.factory {path} returned a {type(estimator).__name__}, which has no {', '.join(missing)}(): "
            "return an unfitted scikit-learn-compatible estimator or Pipeline"
        )
    return estimator


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def source_sha256(path: str) -> str | None:
    """The sha256 of the factory's module source, found without running it (None when it has no source file)."""
    module_name, _ = _split(path)
    importable_include()
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.has_location:
        return None
    try:
        with open(spec.origin, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def parts(estimator: Any) -> Iterator[Any]:
    """The estimator and every estimator inside it (a Pipeline's steps, a ColumnTransformer's transformers...)."""
    yield estimator
    try:
        params = estimator.get_params(deep=True)
    except Exception:
        return
    for value in params.values():
        if callable(getattr(value, "fit", None)) or callable(getattr(value, "transform", None)):
            yield value


def package_versions(estimator: Any) -> dict[str, str]:
    """The installed versions of the distributions the estimator's classes (and its parts') come from."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for part in parts(estimator):
        top = type(part).__module__.split(".")[0]
        for distribution in owners.get(top, []):
            try:
                found[distribution] = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                continue
    return dict(sorted(found.items()))
