"""The probe: what the deployed version must answer, checked against modelgate's own predictions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelgate.deploy.controller import DeployError
from modelgate.deploy.vertex.api import VertexApi
from modelgate.jsonable import jsonable


def serving_estimator(estimator: Any, features: Sequence[str], numeric: Sequence[str]) -> Any:
    """The estimator as the prebuilt container calls it: `predict(np.asarray(instances))`.

    modelgate's pipelines select columns by name, so rows arriving as plain arrays (in the spec's feature
    order) are turned back into a typed frame first, with steps made only of scikit-learn and pandas, which
    the container has. An estimator fitted on arrays is served as it is.
    """
    if getattr(estimator, "feature_names_in_", None) is None:
        return estimator
    import pandas as pd
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    dtypes = {f: ("float64" if f in set(numeric) else "object") for f in features}
    return Pipeline(
        [
            ("rows_to_frame", FunctionTransformer(pd.DataFrame, kw_args={"columns": list(features)})),
            ("dtypes", FunctionTransformer(pd.DataFrame.astype, kw_args={"dtype": dtypes})),
            ("model", estimator),
        ]
    )


def rows_to_instances(rows: Any, features: Sequence[str]) -> list[list[Any]]:
    """DataFrame rows as JSON-ready lists in feature order; missing values become null."""
    frame = rows[list(features)].astype(object)
    frame = frame.where(frame.notna(), None)
    return [jsonable(list(row)) for row in frame.itertuples(index=False, name=None)]


def _norm(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True)
class ProbeExpectation:
    """What the deployed version must answer for the probe rows: modelgate's own predictions of them."""

    instances: list[list[Any]]
    predictions: list[Any]
    classes: frozenset[Any] | None  # None for regression
    min_agreement: float

    @classmethod
    def build(cls, serving: Any, instances: list[list[Any]], task: str, min_agreement: float) -> ProbeExpectation:
        import numpy as np

        if not instances:
            raise DeployError("no probe rows: cannot check the new version before it takes traffic")
        try:
            local = np.asarray(serving.predict(np.asarray(instances))).tolist()
        except Exception as exc:
            raise DeployError(
                f"the serving artifact cannot score plain rows as the container sends them: {type(exc).__name__}: {exc}"
            ) from exc
        classes = None
        if task != "regression":  # a classifier answers its classes; without classes_, a binary one 0 or 1
            classes = frozenset(_norm(c) for c in getattr(serving, "classes_", (0, 1)))
        return cls(instances, [_norm(v) for v in local], classes, min_agreement)

    def check(self, predictions: list[Any], *, from_new_version: bool) -> None:
        if len(predictions) != len(self.instances):
            raise DeployError(f"probe: {len(predictions)} predictions for {len(self.instances)} rows")
        got = [_norm(p) for p in predictions]
        if self.classes is not None:
            strange = sorted({str(g) for g in got if g not in self.classes})
            if strange:
                raise DeployError(f"probe: predictions {strange[:5]} are not classes {sorted(map(str, self.classes))}")
        elif not all(isinstance(g, float) and math.isfinite(g) for g in got):
            raise DeployError("probe: non-numeric or non-finite predictions")
        if from_new_version:
            pairs = zip(got, self.predictions, strict=True)
            if self.classes is None:
                agree = sum(math.isclose(g, e, rel_tol=1e-6, abs_tol=1e-9) for g, e in pairs)
            else:
                agree = sum(g == e for g, e in pairs)
            share = agree / len(got)
            if share < self.min_agreement:
                raise DeployError(
                    f"probe: the new version agrees with the registry artifact on {share:.1%} of rows "
                    f"(needs {self.min_agreement:.0%})"
                )


def probe_endpoint(api: VertexApi, endpoint: str, new_id: str, expectation: ProbeExpectation) -> int:
    """Send the probe batch until the new deployed model has answered once; every answer must be sane."""
    for attempt in range(1, api.settings.probe_max_requests + 1):
        try:
            predictions, answered_by = api.predict(endpoint, expectation.instances)
        except Exception as exc:
            raise DeployError(f"probe request {attempt} failed: {type(exc).__name__}: {exc}") from exc
        expectation.check(predictions, from_new_version=answered_by == new_id)
        if answered_by == new_id:
            return attempt
    raise DeployError(f"probe: the new deployed model answered none of {api.settings.probe_max_requests} requests")
