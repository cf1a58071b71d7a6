"""Estimators by name, and `train()`: a reproducible challenger from a window of rows.

Refuses garbage before fitting: an empty window, a single-class target, an all-NaN feature, a feature of the
wrong type. Unseen categories at scoring time are handled by the encoders (ignored / unknown value).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.spec import ModelSpec, Task, label_text

if TYPE_CHECKING:
    import pandas as pd


class TrainingError(ValueError):
    """The window cannot produce a trustworthy model; the message names why."""


@dataclass
class TrainedModel:
    pipeline: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    train_rows: int
    holdout_rows: int
    seed: int
    feature_schema: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def code_version() -> str:
    """$MODELGATE_CODE_VERSION, else the git commit of the checkout, else the package version."""
    configured = os.environ.get("MODELGATE_CODE_VERSION")
    if configured:
        return configured
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if commit:
        return f"git:{commit}"
    from modelgate import __version__

    return f"modelgate-{__version__}"


def build_pipeline(spec: ModelSpec) -> Any:
    """The spec's named estimator behind per-type preprocessing, seeded."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    est = spec.estimator
    if est.preprocessing == "none":  # your own Pipeline takes the raw feature columns
        return build_estimator(spec)
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if est.numeric_preprocessing == "standard":
        numeric_steps.append(("scale", StandardScaler()))
    if est.categorical_preprocessing == "onehot":
        encoder: Any = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    else:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    categorical = Pipeline(
        [("impute", SimpleImputer(strategy="constant", fill_value="__missing__")), ("encode", encoder)]
    )
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.numeric_features:
        transformers.append(("numeric", Pipeline(numeric_steps), spec.numeric_features))
    if spec.categorical_features:
        transformers.append(("categorical", categorical, spec.categorical_features))
    pre = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", pre), ("model", build_estimator(spec))])


def build_estimator(spec: ModelSpec) -> Any:
    """The spec's unfitted estimator (TrainingError when its params are not the estimator's)."""
    params = dict(spec.estimator.params)
    if spec.estimator.factory is not None:
        from modelgate.factories import FactoryError, build

        try:
            return _seeded(spec, build(spec.estimator.factory, params))
        except FactoryError as exc:
            raise TrainingError(f"{spec.name}: {exc}") from exc
    seeded = {"random_state": spec.seed}
    classification = spec.task.classifier
    name = spec.estimator.name
    try:
        if name == "logistic_regression":
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(**{"max_iter": 1000, **seeded, **params})
        if name == "hist_gradient_boosting":
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

            cls: Any = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
            return cls(**{**seeded, **params})
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(**{"n_estimators": 200, "n_jobs": training_threads(spec), **seeded, **params})
    except TypeError as exc:
        raise TrainingError(f"{spec.name}: bad estimator params for {name}: {exc}") from exc


def _seeded(spec: ModelSpec, estimator: Any) -> Any:
    """Your estimator with the spec's seed wherever a `random_state` was left unset, so a fit is reproducible.
    (Threads need nothing here: `train` limits OpenMP and BLAS around every fit, and scikit-learn's `n_jobs`
    left unset is one job.)"""
    fills = {
        k: spec.seed
        for k, v in estimator.get_params(deep=True).items()
        if v is None and k.rsplit("__", 1)[-1] == "random_state"
    }
    if fills:
        estimator.set_params(**fills)
    return estimator


@dataclass(frozen=True)
class Provenance:
    """What code made a version, besides modelgate's own: for `estimator.factory`, the factory's path and its
    module's sha256 (tags) and the installed versions of the packages its estimator's classes come from."""

    tags: dict[str, str] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)


def code_provenance(spec: ModelSpec, pipeline: Any) -> Provenance:
    if spec.estimator.factory is None:
        return Provenance()
    from modelgate.factories import package_versions, source_sha256

    factory = spec.estimator.factory
    tags = {"factory": factory, "factory_sha256": source_sha256(factory) or "unknown"}
    return Provenance(tags, package_versions(pipeline))


def model_step(spec: ModelSpec, pipeline: Any) -> Any:
    """The estimator inside what `build_pipeline` made (the whole of it when the spec brings its own)."""
    return pipeline if spec.estimator.preprocessing == "none" else pipeline.named_steps["model"]


THREADS_ENV = "MODELGATE_TRAINING_THREADS"


def training_threads(spec: ModelSpec) -> int:
    """Threads one fit may use: the spec's `estimator.threads`, else $MODELGATE_TRAINING_THREADS, else 1."""
    if spec.estimator.threads is not None:
        return spec.estimator.threads
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= 256:
        raise TrainingError(f"${THREADS_ENV} is {raw[:20]!r}: give a whole number of threads from 1 to 256")
    return int(raw)


def check_trainable(spec: ModelSpec, frame: pd.DataFrame) -> list[str]:
    """Raise TrainingError for windows that would give a model trained on garbage; return warnings."""
    import pandas as pd

    if frame.empty:
        raise TrainingError(f"{spec.name}: the training window is empty")
    missing = [c for c in [*spec.feature_names, spec.target] if c not in frame]
    if missing:
        raise TrainingError(f"{spec.name}: columns missing from the window: {', '.join(missing)}")
    target = frame[spec.target]
    if target.isna().any():
        raise TrainingError(f"{spec.name}: target {spec.target!r} has {int(target.isna().sum())} null values")
    if spec.task is Task.BINARY:
        classes = sorted(pd.unique(target).tolist())
        if len(classes) < 2:
            raise TrainingError(f"{spec.name}: target {spec.target!r} has a single class ({classes[0]!r})")
        if not set(classes) <= {0, 1}:
            raise TrainingError(f"{spec.name}: binary target {spec.target!r} must be 0/1, found {classes[:5]!r}")
    if spec.task is Task.MULTICLASS:
        seen = sorted({label_text(v) for v in pd.unique(target)})
        _refuse_unknown(spec, seen)
        if len(seen) < 2:
            raise TrainingError(f"{spec.name}: target {spec.target!r} has a single class ({seen[0]!r})")
    warnings = []
    for feature in spec.features:
        column = frame[feature.name]
        if column.isna().all():
            raise TrainingError(f"{spec.name}: feature {feature.name!r} is entirely null in the window")
        if feature.type == "numeric" and not pd.api.types.is_numeric_dtype(column):
            raise TrainingError(f"{spec.name}: feature {feature.name!r} should be numeric, found dtype {column.dtype}")
        if feature.type == "categorical" and column.dtype == object:
            kinds = sorted({type(v).__name__ for v in column.dropna().head(100_000)})
            if len(kinds) > 1:
                raise TrainingError(
                    f"{spec.name}: categorical feature {feature.name!r} mixes value types ({', '.join(kinds)}): "
                    "cast the column to one type (text) in the source"
                )
        share = float(column.isna().mean())
        if share > 0.2:
            warnings.append(f"feature {feature.name!r} is {share:.0%} null")
    return warnings


def train(spec: ModelSpec, train_frame: pd.DataFrame, *, params: dict[str, Any] | None = None) -> TrainedModel:
    """Fit the spec's pipeline on `train_frame`; deterministic for the same rows, spec and seed."""
    import numpy as np

    warnings = check_trainable(spec, train_frame)
    pipeline = build_pipeline(spec)
    if params:
        model_step(spec, pipeline).set_params(**params)
    x = train_frame[spec.feature_names]
    y = train_frame[spec.target]
    if spec.task is not Task.MULTICLASS:  # a multiclass model learns the labels themselves, and answers them
        y = y.astype(int if spec.task is Task.BINARY else float)
    np.random.seed(spec.seed)  # belt and braces for estimators that ignore random_state
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(limits=training_threads(spec)):  # OpenMP (HistGradientBoosting) and BLAS
            pipeline.fit(x, y)
    except Exception as exc:  # what the estimator says of the rows, in one line (your own one may raise anything)
        if spec.estimator.factory is None and not isinstance(exc, ValueError | TypeError):
            raise
        raise TrainingError(f"{spec.name}: fitting failed: {' '.join(str(exc).split())[:300]}") from exc
    train_scores = predict_scores(spec, pipeline, train_frame)
    from modelgate.evaluation import DEFAULT_METRICS, metric

    truth = target_values(spec, train_frame)
    metrics = {f"train_{m}": metric(m, truth, train_scores) for m in DEFAULT_METRICS[spec.task]}
    model_params = {
        k: v
        for k, v in model_step(spec, pipeline).get_params(deep=spec.estimator.preprocessing == "none").items()
        if isinstance(v, str | int | float | bool) or v is None
    }
    schema: dict[str, str] = {f.name: str(f.type) for f in spec.features}
    return TrainedModel(pipeline, model_params, metrics, len(train_frame), 0, spec.seed, schema, warnings)


def predict_scores(spec: ModelSpec, pipeline: Any, frame: pd.DataFrame) -> Any:
    """Positive-class probability for binary classifiers, each class's probability (n, K, in the spec's
    `classes` order) for multiclass ones, the prediction for regressors."""
    x = frame[spec.feature_names]
    if spec.task is Task.BINARY:
        return pipeline.predict_proba(x)[:, 1]
    if spec.task is Task.MULTICLASS:
        return class_probabilities(spec, pipeline, x)
    return pipeline.predict(x)


def class_probabilities(spec: ModelSpec, model: Any, x: Any) -> Any:
    """The model's probabilities as columns in the spec's `classes` order (0 for a class the model never saw
    in its window); a model that knows a class the spec does not list is refused."""
    import numpy as np

    raw = np.asarray(model.predict_proba(x), dtype=float)
    index = spec.class_index()
    learned = [label_text(c) for c in getattr(model, "classes_", [])]
    unknown = [c for c in learned if c not in index]
    if unknown or len(learned) != raw.shape[1]:
        raise TrainingError(
            f"{spec.name}: the model's classes ({', '.join(learned[:6]) or 'none'}) are not the spec's "
            f"({', '.join(index)})"
        )
    out = np.zeros((raw.shape[0], len(index)))
    out[:, [index[c] for c in learned]] = raw
    return out


def _refuse_unknown(spec: ModelSpec, labels: Iterable[str]) -> None:
    """A TrainingError naming the labels (as text) that are not among the spec's classes, if any."""
    known = spec.class_index()
    unknown = sorted({label for label in labels if label not in known})
    if unknown:
        raise TrainingError(
            f"{spec.name}: target {spec.target!r} has values outside the spec's classes: "
            f"{', '.join(unknown[:5])}; add them to classes or fix the rows"
        )


def target_values(spec: ModelSpec, frame: pd.DataFrame) -> Any:
    """The target as floats for metrics: the label (0/1) or value, or for multiclass the class's position in
    `classes` (NaN where unlabelled; a label outside them is a TrainingError naming it)."""
    import numpy as np

    column = frame[spec.target]
    if spec.task is not Task.MULTICLASS:
        return column.to_numpy(dtype=float)
    index = spec.class_index()
    present = column.notna().to_numpy()
    texts = column[present].map(label_text)
    codes = texts.map(index)
    if codes.isna().any():
        _refuse_unknown(spec, texts[codes.isna()])
    out = np.full(len(column), np.nan)
    out[present] = codes.to_numpy(dtype=float)
    return out


def reference_sample(spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The drift reference stored with a version: a seeded sample of its training rows, features + target."""
    columns = [spec.time_column, *spec.feature_names, spec.target]
    size = min(len(frame), spec.drift.reference_sample_size)
    return frame[columns].sample(n=size, random_state=spec.seed).sort_values(spec.time_column).reset_index(drop=True)
