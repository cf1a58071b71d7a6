"""Drift of a window against the champion's training reference.

Decision and report are one computation. A vectorized engine applies, on the *full* frames, exactly the
tests Evidently's DataDriftPreset picks by default (normed Wasserstein and Jensen-Shannon above 1,000
reference rows; KS, chi-square and Z below), with Evidently's thresholds. Evidently then draws the HTML
report on bounded, time-stratified samples, but every column's test in that report is a registered
Evidently StatTest that returns the engine's full-data score and verdict: the report cannot disagree with
the decision on any column, and the decision does not depend on a sample.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

SMALL_REFERENCE = 1000  # Evidently switches from p-value tests to distances above this many rows
DEFAULT_THRESHOLDS = {"wasserstein": 0.1, "jensenshannon": 0.1, "ks": 0.05, "chisquare": 0.05, "z": 0.05}
DISPLAY = {
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
}
P_VALUE_METHODS = {"ks", "chisquare", "z"}


class DriftError(ValueError):
    """Frames that cannot be compared (a column missing, empty after dropping nulls, wrong type)."""


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # numeric | categorical
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    columns: list[ColumnDrift]
    drift_share_threshold: float
    reference_rows: int
    current_rows: int
    report_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted_columns) / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        """Evidently's dataset-level rule: drifted share at or above the threshold."""
        return bool(self.columns) and self.share >= self.drift_share_threshold

    def scores(self) -> dict[str, dict[str, Any]]:
        return {
            c.column: {"method": c.method, "score": c.score, "threshold": c.threshold, "drifted": c.drifted}
            for c in self.columns
        }


def _clean(values: pd.Series, numeric: bool) -> np.ndarray:
    import numpy as np

    arr = values.to_numpy(dtype=float if numeric else object, na_value=np.nan)
    if numeric:
        return arr[np.isfinite(arr)]
    mask = values.notna().to_numpy()
    return arr[mask]


def _few_unique(ref: np.ndarray, cur: np.ndarray, limit: int) -> int:
    """Number of distinct values of ref+cur when it is <= limit, else limit+1 (cheap for large frames)."""
    import numpy as np

    probe = np.unique(np.concatenate([ref[:20_000], cur[:20_000]]))
    if len(probe) > limit:
        return limit + 1
    return len(np.unique(np.concatenate([np.unique(ref), np.unique(cur)])))


def _shares(ref: Any, cur: Any) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    import numpy as np
    import pandas as pd

    ref_counts = pd.Series(ref).value_counts()
    cur_counts = pd.Series(cur).value_counts()
    keys = list(set(ref_counts.index) | set(cur_counts.index))
    ref_share = np.array([ref_counts.get(k, 0) for k in keys], dtype=float) / len(ref)
    cur_share = np.array([cur_counts.get(k, 0) for k in keys], dtype=float) / len(cur)
    return ref_share, cur_share, keys


def _jensenshannon(ref: np.ndarray, cur: np.ndarray, numeric: bool) -> float:
    import numpy as np
    from scipy.spatial import distance

    if numeric and len(np.unique(ref[:50_000])) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        ref_share = np.histogram(ref, bins)[0] / len(ref)
        cur_share = np.histogram(cur, bins)[0] / len(cur)
    else:
        ref_share, cur_share, _ = _shares(ref, cur)
    return float(distance.jensenshannon(ref_share, cur_share))


def _z_test(ref: np.ndarray, cur: np.ndarray) -> float:
    import numpy as np
    from scipy.stats import norm

    keys = sorted(set(np.unique(ref).tolist()) | set(np.unique(cur).tolist()), key=str)
    if len(keys) == 1:
        return 1.0
    p1 = float(np.mean(ref == keys[0]))
    p2 = float(np.mean(cur == keys[0]))
    n1, n2 = len(ref), len(cur)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    denom = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if denom == 0:
        return 1.0
    return float(2 * (1 - norm.cdf(abs((p1 - p2) / denom))))


def _chisquare(ref: np.ndarray, cur: np.ndarray) -> float:
    from scipy.stats import chisquare

    ref_share, cur_share, _ = _shares(ref, cur)
    expected = ref_share * len(cur)
    observed = cur_share * len(cur)
    return float(chisquare(observed, expected)[1])


def column_drift(
    column: str, kind: str, reference: pd.Series, current: pd.Series, threshold: float | None
) -> ColumnDrift:
    """One column, with Evidently's default test for its type and size."""
    import numpy as np
    from scipy import stats

    numeric = kind == "numeric"
    ref = _clean(reference, numeric)
    cur = _clean(current, numeric)
    if len(ref) == 0:
        raise DriftError(f"column {column!r} is empty (all null) in the reference")
    if len(cur) == 0:
        raise DriftError(f"column {column!r} is empty (all null) in the current window")
    n_values = _few_unique(ref, cur, 5)
    if len(ref) <= SMALL_REFERENCE:
        method = ("chisquare" if n_values > 2 else "z") if (not numeric or n_values <= 5) else "ks"
    elif numeric and n_values > 5:
        method = "wasserstein"
    else:
        method = "jensenshannon"
    limit = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    if method == "wasserstein":
        norm = max(float(np.std(ref)), 0.001)
        score = float(stats.wasserstein_distance(ref, cur) / norm)
    elif method == "jensenshannon":
        score = _jensenshannon(ref, cur, numeric)
    elif method == "ks":
        score = float(stats.ks_2samp(ref, cur)[1])
    elif method == "chisquare":
        score = _chisquare(ref, cur)
    else:
        score = _z_test(ref, cur)
    drifted = score < limit if method in P_VALUE_METHODS else score >= limit
    return ColumnDrift(column, kind, method, score, limit, bool(drifted))


def compute_drift(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame) -> DriftResult:
    """Per-feature drift on the full frames; the decision."""
    missing = [c for c in spec.feature_names if c not in current or c not in reference]
    if missing:
        raise DriftError(f"{spec.name}: features missing for drift: {', '.join(missing)}")
    if current.empty:
        raise DriftError(f"{spec.name}: the current window has no rows")
    columns = [
        column_drift(f.name, f.type, reference[f.name], current[f.name], spec.drift.threshold) for f in spec.features
    ]
    return DriftResult(columns, spec.drift.drift_share, len(reference), len(current))


def stratified_sample(frame: pd.DataFrame, size: int, time_column: str | None) -> pd.DataFrame:
    """Evenly spaced rows in time order: every part of the window is represented."""
    import numpy as np

    if len(frame) <= size:
        return frame
    ordered = frame.sort_values(time_column, kind="mergesort") if time_column and time_column in frame else frame
    positions = np.linspace(0, len(ordered) - 1, size).round().astype(int)
    return ordered.iloc[positions]


_REGISTER_LOCK = threading.Lock()


def _register_precomputed(result: ColumnDrift) -> str:
    """An Evidently StatTest that answers with the engine's full-data result for this one column."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    name = f"modelgate_{result.method}_{uuid.uuid4().hex[:10]}"
    stat_test = StatTest(
        name=name,
        display_name=f"{DISPLAY[result.method]} (full data)",
        allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
        default_threshold=result.threshold,
    )

    def precomputed(reference: Any, current: Any, feature_type: Any, threshold: float) -> tuple[float, bool]:
        return result.score, result.drifted

    with _REGISTER_LOCK:
        register_stattest(stat_test, default_impl=precomputed)
    return name


def write_report(
    spec: ModelSpec, result: DriftResult, reference: pd.DataFrame, current: pd.DataFrame, path: Path
) -> Path:
    """Evidently's DataDriftPreset HTML, drawn on samples, with the engine's per-column results."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    per_column_method = {c.column: _register_precomputed(c) for c in result.columns}
    per_column_threshold = {c.column: c.threshold for c in result.columns}
    definition = DataDefinition(numerical_columns=spec.numeric_features, categorical_columns=spec.categorical_features)
    size = spec.drift.report_sample_size
    ref_sample = stratified_sample(reference, size, spec.time_column)[spec.feature_names]
    cur_sample = stratified_sample(current, size, spec.time_column)[spec.feature_names]
    report = Report(
        [
            DataDriftPreset(
                columns=spec.feature_names,
                drift_share=spec.drift.drift_share,
                per_column_method=per_column_method,
                per_column_threshold=per_column_threshold,
            )
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(cur_sample, data_definition=definition),
        Dataset.from_pandas(ref_sample, data_definition=definition),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    verdicts = report_verdicts(snapshot)
    disagreements = {c.column for c in result.columns if verdicts.get(c.column) != c.drifted}
    if disagreements:  # cannot happen by construction; refuse to publish a contradicting report
        raise DriftError(f"drift report disagrees with the decision on {sorted(disagreements)}")
    return path


def report_verdicts(snapshot: Any) -> dict[str, bool]:
    """Per-column drift verdicts as the Evidently snapshot states them."""
    verdicts: dict[str, bool] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        column = config.get("column")
        if column is None or "ValueDrift" not in str(metric.get("metric_name", "")):
            continue
        threshold = float(config.get("threshold"))
        value = float(metric["value"])
        method = str(config.get("method", ""))
        p_value = "p_value" in method
        verdicts[column] = value < threshold if p_value else value >= threshold
    return verdicts


def prefetch_evidently() -> threading.Thread:
    """Start importing Evidently (several seconds) in the background while the engine computes."""

    def _import() -> None:
        try:
            import evidently.presets  # noqa: F401
        except Exception:  # the report step will raise it properly
            log.debug("background import of evidently failed", exc_info=True)

    thread = threading.Thread(target=_import, name="evidently-import", daemon=True)
    thread.start()
    return thread


def compare(
    spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame, *, report_path: Path | None = None
) -> DriftResult:
    """Decision on the full frames, then (optionally) the Evidently report showing that same decision."""
    importer = prefetch_evidently() if report_path is not None else None
    result = compute_drift(spec, reference, current)
    if report_path is not None:
        assert importer is not None
        importer.join()
        result.report_path = str(write_report(spec, result, reference, current, report_path))
    return result
