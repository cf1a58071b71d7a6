"""Whether a spec's estimator params are ones the estimator accepts, checked when the spec is loaded.

The check builds the estimator (for `estimator.factory`, by importing and calling your function) and runs
scikit-learn's own parameter validation (`_validate_params`, what `fit` runs first) on it and on every
estimator inside it, so `max_iter: -1`, `bogus_param: 3` or a factory that cannot be imported is reported as
a spec error instead of failing a training task hours later. Importing scikit-learn costs ~2 s, too much for
every DAG parse, so answers are kept in a small cache file keyed by scikit-learn's version and the
estimator's name (or factory and the sha256 of its module's source), task and params: a spec that does not
change, with a factory that does not change, is checked once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from modelgate.spec import ModelSpec

_OK = ""


def _cache_file() -> Path:
    from modelgate.config import modelgate_home

    return modelgate_home() / "cache" / "estimator-params.json"


def _key(spec: ModelSpec) -> str:
    try:
        sklearn = version("scikit-learn")
    except PackageNotFoundError:  # pragma: no cover - scikit-learn is a dependency
        sklearn = "?"
    estimator = spec.estimator
    code = None
    if estimator.factory is not None:  # your function may change while the spec does not
        from modelgate.factories import source_sha256

        code = [estimator.factory, source_sha256(estimator.factory), estimator.preprocessing]
    payload = json.dumps(
        [sklearn, estimator.name, code, spec.task.value, estimator.params], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def check_params(spec: ModelSpec) -> str | None:
    """Build the estimator and validate its params with scikit-learn; the problem in one line, or None."""
    from modelgate.factories import FactoryError, parts
    from modelgate.training import TrainingError, build_estimator

    try:
        estimator = build_estimator(spec)
        for part in parts(estimator):  # a Pipeline's steps too: what `fit` would validate first
            if hasattr(part, "_parameter_constraints"):  # scikit-learn's own (LightGBM, XGBoost have none)
                part._validate_params()
    except (TrainingError, FactoryError) as exc:
        return str(exc).split(": ", 1)[-1]
    except (TypeError, ValueError) as exc:
        return " ".join(str(exc).split())
    return None


def estimator_params_problem(spec: ModelSpec) -> str | None:
    """`check_params`, answered from the cache when this estimator, task and params were checked before."""
    if not spec.estimator.params and spec.estimator.factory is None:
        return None  # the defaults are the estimator's own
    key = _key(spec)
    path = _cache_file()
    try:
        cached: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return cached[key] or None
    problem = check_params(spec)
    cached[key] = problem or _OK
    try:  # best effort: a read-only home only costs the next parse the check again
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
            json.dump(cached, handle)
        os.replace(handle.name, path)
    except OSError:
        pass
    return problem
