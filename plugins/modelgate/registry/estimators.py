"""What a model file holds: framework, library versions, hyper-parameters and input schema."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelgate.registry.errors import ArtifactNotFound, InvalidInput

_LIBRARIES = ("scikit-learn", "numpy", "pandas", "joblib", "scipy")


@dataclass(frozen=True)
class EstimatorFacts:
    framework: str
    library_versions: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    feature_schema: dict[str, str] = field(default_factory=dict)
    task: str = "binary_classification"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a pickled scikit-learn model depends on, as installed here."""
    found: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _scalar_params(estimator: Any) -> dict[str, Any]:
    try:
        params = estimator.get_params(deep=True)
    except Exception:
        return {}
    return {k: v for k, v in params.items() if isinstance(v, str | int | float | bool) or v is None}


def describe_estimator(estimator: Any) -> EstimatorFacts:
    """Refuse objects that cannot predict; record what can be read off a fitted estimator."""
    if not callable(getattr(estimator, "predict", None)):
        raise InvalidInput(f"{type(estimator).__name__} has no predict(): not a model")
    module = type(estimator).__module__.split(".")[0]
    framework = "scikit-learn" if module == "sklearn" else module
    schema: dict[str, str] = {}
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        schema = {str(n): "any" for n in names}
    elif getattr(estimator, "n_features_in_", None) is not None:
        schema = {f"x{i}": "any" for i in range(int(estimator.n_features_in_))}
    task = "regression"
    if callable(getattr(estimator, "predict_proba", None)):
        classes = getattr(estimator, "classes_", None)
        many = classes is not None and len(classes) > 2
        task = "multiclass_classification" if many else "binary_classification"
    return EstimatorFacts(framework, library_versions(), _scalar_params(estimator), schema, task)


def describe_estimator_file(path: Path) -> EstimatorFacts:
    """Load a user's own joblib file (their file, on their disk) to check it is a model before registering."""
    import joblib

    if not path.is_file():
        raise ArtifactNotFound(f"no file at {path}")
    try:
        estimator = joblib.load(path)
    except Exception as exc:
        raise InvalidInput(f"{path} is not a readable joblib file: {type(exc).__name__}: {exc}") from exc
    return describe_estimator(estimator)
