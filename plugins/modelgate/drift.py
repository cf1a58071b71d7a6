"""Drift of a window against the champion's training reference.

Decision and report are one computation. A vectorized engine applies, on the *full* frames, exactly the
tests Evidently's DataDriftPreset picks by default (normed Wasserstein and Jensen-Shannon above 1,000
reference rows; KS, chi-square and Z below), with Evidently's thresholds. Evidently then draws the HTML
report on bounded, time-stratified samples, but every column's test in that report is a registered
Evidently StatTest that returns the engine's full-data score and verdict: the report cannot disagree with
the decision on any column, and the decision does not depend on a sample.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
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
    """One column: Evidently's default test and verdict (`drifted`), and the calibrated test's p-value.

    `p_value` is a two-sample test valid at the sizes compared (Kolmogorov-Smirnov for numeric columns,
    chi-square of homogeneity for categories); `alarm` is set once the p-values of all features are known
    (Holm's correction), see `calibrate`.
    """

    column: str
    kind: str  # numeric | categorical
    method: str
    score: float
    threshold: float
    drifted: bool
    p_value: float = 1.0
    informative: bool = True  # False when the column holds one value in both frames
    alarm: bool = False


@dataclass
class DriftResult:
    columns: list[ColumnDrift]
    drift_share_threshold: float
    reference_rows: int
    current_rows: int
    report_path: str | None = None
    alarm_mode: str = "evidently"

    @property
    def drifted_columns(self) -> list[str]:
        """The columns that alarm under the configured rule (calibrated, or Evidently's default verdict)."""
        if self.alarm_mode == "calibrated":
            return [c.column for c in self.columns if c.alarm]
        return [c.column for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        """Drifted share; the calibrated rule counts only informative columns (not constant in both frames)."""
        if self.alarm_mode == "calibrated":
            informative = [c for c in self.columns if c.informative]
            return len(self.drifted_columns) / len(informative) if informative else 0.0
        return len(self.drifted_columns) / len(self.columns) if self.columns else 0.0

    @property
    def evidently_share(self) -> float:
        return sum(c.drifted for c in self.columns) / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        """Drifted share at or above the threshold (Evidently's dataset rule, on the configured columns)."""
        return bool(self.drifted_columns) and self.share >= self.drift_share_threshold

    def scores(self) -> dict[str, dict[str, Any]]:
        return {
            c.column: {
                "method": c.method,
                "score": c.score,
                "threshold": c.threshold,
                "drifted": c.alarm if self.alarm_mode == "calibrated" else c.drifted,
                "evidently_drifted": c.drifted,
                "p_value": c.p_value,
                "alarm": c.alarm,
            }
            for c in self.columns
        }


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: the family-wise error rate is controlled at any level."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def calibrate(columns: list[ColumnDrift], significance: float) -> list[ColumnDrift]:
    """Alarm where the test is significant after Holm's correction and Evidently's distance says it matters.

    Significance alone alarms on negligible shifts of large samples; the distance alone alarms on sampling
    noise of small ones (normed Wasserstein at 0.1 is crossed by chance at a few hundred rows). Together the
    false-alarm rate of a window is at most `significance`, whatever the sizes.
    """
    from dataclasses import replace

    adjusted = holm([c.p_value for c in columns])
    out = []
    for column, p_adj in zip(columns, adjusted, strict=True):
        large = column.drifted if column.method not in P_VALUE_METHODS else True
        out.append(replace(column, alarm=bool(column.informative and p_adj < significance and large)))
    return out


def _clean(values: pd.Series, numeric: bool) -> np.ndarray:
    import numpy as np

    try:
        arr = values.to_numpy(dtype=float if numeric else object, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DriftError(f"numeric feature {values.name!r} holds values that are not numbers ({exc})") from None
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
    """Share of each value present in either sample (pandas counts categorical codes, not strings)."""
    import pandas as pd

    ref_series = ref if isinstance(ref, pd.Series) else pd.Series(ref)
    cur_series = cur if isinstance(cur, pd.Series) else pd.Series(cur)
    ref_counts = ref_series.value_counts(dropna=True)
    cur_counts = cur_series.value_counts(dropna=True)
    ref_counts = ref_counts[ref_counts > 0]
    cur_counts = cur_counts[cur_counts > 0]
    keys = list(set(ref_counts.index) | set(cur_counts.index))
    ref_share = ref_counts.reindex(keys, fill_value=0).to_numpy(dtype=float) / int(ref_counts.sum())
    cur_share = cur_counts.reindex(keys, fill_value=0).to_numpy(dtype=float) / int(cur_counts.sum())
    return ref_share, cur_share, keys


def wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """Exact first Wasserstein distance (scipy.stats.wasserstein_distance), ~3x faster on large samples."""
    return wasserstein_ks(u, v)[0]


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Two-sample Kolmogorov-Smirnov p-value, asymptotic with Stephens' small-sample correction."""
    from scipy.special import kolmogorov

    en = math.sqrt(n * m / (n + m))
    return float(kolmogorov((en + 0.12 + 0.11 / en) * statistic)) if statistic > 0 else 1.0


def wasserstein_ks(u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """(Wasserstein distance, KS statistic) of two samples in one merge.

    Integrates |F_u - F_v| over the merged sorted values; the CDFs come from running counts over one stable
    merge of the two individually sorted samples, instead of re-sorting and binary-searching 2n values.
    """
    import numpy as np

    n, m = len(u), len(v)
    merged = np.empty(n + m)
    merged[:n] = u
    merged[n:] = v
    merged[:n].sort()
    merged[n:].sort()
    seen_u = np.cumsum(np.argsort(merged, kind="stable") < n, dtype=np.int32)[:-1]  # merge of two sorted runs
    merged.sort(kind="stable")  # the same merge, in place: the pooled values in order
    # F_u - F_v at the k-th pooled value = seen_u/n - (k - seen_u)/m = seen_u (1/n + 1/m) - k/m
    gap = seen_u * (1 / n + 1 / m)
    gap -= np.arange(1, n + m, dtype=np.float64) / m
    np.abs(gap, out=gap)
    steps = np.diff(merged)
    # the KS statistic from the same pass: |F_u - F_v| where the pooled values change (not inside ties)
    ks = float(gap[steps > 0].max(initial=0.0))
    return float(np.dot(gap, steps)), ks


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """scipy.spatial.distance.jensenshannon (natural log) without importing SciPy on the hot path."""
    import numpy as np

    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(np.sqrt(max((left.sum() + right.sum()) / 2, 0.0)))


def _jensenshannon(ref: np.ndarray, cur: np.ndarray, numeric: bool) -> float:
    import numpy as np

    if numeric and len(np.unique(np.asarray(ref)[:50_000])) > 20:
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        ref_share = np.histogram(ref, bins)[0] / len(ref)
        cur_share = np.histogram(cur, bins)[0] / len(cur)
    else:
        ref_share, cur_share, _ = _shares(ref, cur)
    return js_distance(ref_share, cur_share)


def _z_test(ref: np.ndarray, cur: np.ndarray) -> float:
    import numpy as np

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
    return math.erfc(abs((p1 - p2) / denom) / math.sqrt(2))  # two-sided normal p-value


def _chisquare(ref: np.ndarray, cur: np.ndarray) -> float:
    from scipy.stats import chisquare

    ref_share, cur_share, _ = _shares(ref, cur)
    expected = ref_share * len(cur)
    observed = cur_share * len(cur)
    return float(chisquare(observed, expected)[1])


@dataclass(frozen=True)
class ColumnPlan:
    """Which test a column gets and its threshold: known before any score is computed."""

    column: str
    kind: str
    method: str
    threshold: float


def _non_null(values: pd.Series, numeric: bool) -> Any:
    if numeric:
        return _clean(values, True)
    return values.dropna()


def plan_column(
    column: str, kind: str, reference: pd.Series, current: pd.Series, threshold: float | None
) -> ColumnPlan:
    """Evidently's default test for this column's type and size (its `_get_default_stattest` rules)."""
    import numpy as np

    numeric = kind == "numeric"
    ref = _non_null(reference, numeric)
    cur = _non_null(current, numeric)
    if len(ref) == 0:
        raise DriftError(f"column {column!r} is empty (all null) in the reference")
    if len(cur) == 0:
        raise DriftError(f"column {column!r} is empty (all null) in the current window")
    if numeric:
        n_values = _few_unique(ref, cur, 5)
    else:
        n_values = len(set(np.asarray(ref.unique()).tolist()) | set(np.asarray(cur.unique()).tolist()))
    if len(ref) <= SMALL_REFERENCE:
        method = ("chisquare" if n_values > 2 else "z") if (not numeric or n_values <= 5) else "ks"
    elif numeric and n_values > 5:
        method = "wasserstein"
    else:
        method = "jensenshannon"
    return ColumnPlan(column, kind, method, DEFAULT_THRESHOLDS[method] if threshold is None else threshold)


def score_column(plan: ColumnPlan, reference: pd.Series, current: pd.Series) -> ColumnDrift:
    """The planned test on the full columns."""
    import numpy as np

    numeric = plan.kind == "numeric"
    ref = _non_null(reference, numeric)
    cur = _non_null(current, numeric)
    method = plan.method
    p_value: float | None = None
    if method == "wasserstein":
        norm = max(float(np.std(ref)), 0.001)
        distance, ks = wasserstein_ks(ref, cur)
        score = distance / norm
        p_value = ks_p_value(ks, len(ref), len(cur))
    elif method == "jensenshannon":
        score = _jensenshannon(ref, cur, numeric)
    elif method == "ks":
        from scipy import stats

        score = float(stats.ks_2samp(ref, cur)[1])
        p_value = score
    elif method == "chisquare":
        score = _chisquare(ref, cur)
    else:
        score = _z_test(np.asarray(ref), np.asarray(cur))
        p_value = score
    if p_value is None:  # counts of values: chi-square test of homogeneity
        p_value = _homogeneity(ref, cur)
    drifted = score < plan.threshold if method in P_VALUE_METHODS else score >= plan.threshold
    informative = _informative(ref, cur, numeric)
    return ColumnDrift(plan.column, plan.kind, method, score, plan.threshold, bool(drifted), p_value, informative)


def _informative(ref: Any, cur: Any, numeric: bool) -> bool:
    """False for a column holding one and the same value in both frames: it can say nothing about drift."""
    import numpy as np

    if numeric:
        return not (ref.min() == ref.max() == cur.min() == cur.max())
    values = set(np.asarray(ref.unique()).tolist()) | set(np.asarray(cur.unique()).tolist())
    return len(values) > 1


def _homogeneity(ref: Any, cur: Any) -> float:
    """Chi-square test that both samples come from one categorical distribution (2 x k contingency)."""
    import numpy as np
    from scipy.stats import chi2

    ref_share, cur_share, _ = _shares(ref, cur)
    counts = np.vstack([ref_share * len(ref), cur_share * len(cur)])
    if counts.shape[1] < 2:
        return 1.0
    expected = counts.sum(axis=1, keepdims=True) * counts.sum(axis=0, keepdims=True) / counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = float(np.nansum((counts - expected) ** 2 / expected))
    return float(chi2.sf(statistic, counts.shape[1] - 1))


def column_drift(
    column: str, kind: str, reference: pd.Series, current: pd.Series, threshold: float | None
) -> ColumnDrift:
    """One column, with Evidently's default test for its type and size."""
    return score_column(plan_column(column, kind, reference, current, threshold), reference, current)


def _check_columns(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame) -> None:
    missing = [c for c in spec.feature_names if c not in current or c not in reference]
    if missing:
        raise DriftError(f"{spec.name}: features missing for drift: {', '.join(missing)}")
    if current.empty:
        raise DriftError(f"{spec.name}: the current window has no rows")


def predicted_column(spec: ModelSpec) -> str:
    """The column a multiclass champion's predicted class is measured in, beside the features."""
    return f"predicted_{spec.target}"


def _plans(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame) -> list[ColumnPlan]:
    """One plan per feature, and for the predicted class when both frames carry it (a multiclass champion)."""
    _check_columns(spec, reference, current)
    plans = [
        plan_column(f.name, f.type, reference[f.name], current[f.name], spec.drift.threshold) for f in spec.features
    ]
    predicted = predicted_column(spec)
    if predicted in reference and predicted in current and predicted not in spec.feature_names:
        plans.append(
            plan_column(predicted, "categorical", reference[predicted], current[predicted], spec.drift.threshold)
        )
    return plans


def _pool(spec: ModelSpec, *, spare_cores: int = 0) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    # numpy's sorts release the GIL: columns are scored in parallel on the cores not kept for the report.
    cores = (os.cpu_count() or 1) - spare_cores
    return ThreadPoolExecutor(max_workers=max(1, min(len(spec.features), cores)))


def compute_drift(spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame) -> DriftResult:
    """Per-feature drift on the full frames: the decision."""
    plans = _plans(spec, reference, current)
    with _pool(spec) as pool:
        columns = list(pool.map(lambda p: score_column(p, reference[p.column], current[p.column]), plans))
    return _result(spec, columns, reference, current)


def _result(spec: ModelSpec, columns: list[ColumnDrift], reference: Any, current: Any) -> DriftResult:
    return DriftResult(
        calibrate(columns, spec.drift.significance),
        spec.drift.drift_share,
        len(reference),
        len(current),
        alarm_mode=spec.drift.alarm,
    )


def stratified_sample(frame: pd.DataFrame, size: int, time_column: str | None) -> pd.DataFrame:
    """Evenly spaced rows in time order: every part of the window is represented (no copy of the frame)."""
    import numpy as np

    if len(frame) <= size:
        return frame
    positions = np.linspace(0, len(frame) - 1, size).round().astype(int)
    if time_column and time_column in frame:
        times = frame[time_column]
        keys = times.values if hasattr(times, "dt") else times.to_numpy()  # datetime64, not Timestamp objects
        order = np.argsort(keys, kind="stable")
        positions = order[positions]
    return frame.iloc[positions]


_REGISTER_LOCK = threading.Lock()


@contextmanager
def _precomputed_tests(plans: list[ColumnPlan], results: dict[str, Future[ColumnDrift]]) -> Iterator[dict[str, str]]:
    """Per column, an Evidently StatTest that answers with the engine's full-data result, registered only for
    the duration of one report: Evidently's registry is process-wide and has no unregister, so the entries
    this call added are removed from it again on the way out."""
    from evidently.legacy.calculations.stattests import registry

    added = {p.column: _precomputed_test(p, results[p.column]) for p in plans}
    with _REGISTER_LOCK:
        for stat_test, impl in added.values():
            registry.register_stattest(stat_test, default_impl=impl)
    try:
        yield {column: stat_test.name for column, (stat_test, _) in added.items()}
    finally:
        with _REGISTER_LOCK:
            for stat_test, impl in added.values():
                registry._registered_stat_tests.pop(stat_test.name, None)
                registry._impls.pop(stat_test, None)
                registry._registered_stat_test_funcs.pop(impl, None)


def _precomputed_test(plan: ColumnPlan, result: Future[ColumnDrift]) -> tuple[Any, Callable[..., tuple[float, bool]]]:
    """The StatTest for one column and its implementation; the report may run while the engine still
    computes, so the implementation waits for its column's result."""
    from evidently.legacy.calculations.stattests.registry import StatTest
    from evidently.legacy.core import ColumnType

    stat_test = StatTest(
        name=f"modelgate_{plan.method}_{uuid.uuid4().hex[:10]}",
        display_name=f"{DISPLAY[plan.method]} (full data)",
        allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
        default_threshold=plan.threshold,
    )

    def precomputed(reference: Any, current: Any, feature_type: Any, threshold: float) -> tuple[float, bool]:
        column = result.result()
        return column.score, column.drifted

    return stat_test, precomputed


def write_report(
    spec: ModelSpec,
    plans: list[ColumnPlan],
    results: dict[str, Future[ColumnDrift]],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    path: Path,
) -> Any:
    """Evidently's DataDriftPreset HTML, drawn on samples, with the engine's per-column results."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    per_column_threshold = {p.column: p.threshold for p in plans}
    columns = [p.column for p in plans]  # the features, and a multiclass champion's predicted class
    extra = [c for c in columns if c not in spec.feature_names]
    definition = DataDefinition(
        numerical_columns=spec.numeric_features, categorical_columns=[*spec.categorical_features, *extra]
    )
    size = spec.drift.report_sample_size
    ref_sample = stratified_sample(reference, size, spec.time_column)[columns]
    cur_sample = stratified_sample(current, size, spec.time_column)[columns]
    with _precomputed_tests(plans, results) as per_column_method:
        report = Report(
            [
                DataDriftPreset(
                    columns=columns,
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
        path.write_text(html_safe_report(snapshot.get_html_str(as_iframe=False)), encoding="utf-8")
    return snapshot


_DASHBOARD_ID = re.compile(r"window\.drawDashboard\((metric_[0-9a-f]{32}),")


def html_safe_report(html: str) -> str:
    """Evidently's page with its data block re-serialised HTML-safe.

    Evidently embeds the report's data (category values, feature names) in a `<script>` with plain
    `json.dumps`, so a value `</script><script>…` ends the block and runs as script. The block is two JSON
    values after `var <id> = ` and `var additional_graphs_<id> = `, where <id> is a random name chosen at
    render time (data cannot spell it); each is decoded and written again with `<`, `>`, `&` and the line
    separators escaped, which JavaScript reads as the same strings.
    """
    from jinja2.utils import htmlsafe_json_dumps

    found = _DASHBOARD_ID.search(html)
    if found is None:
        raise DriftError("the Evidently report has no dashboard block: cannot make it safe to serve")
    name = found.group(1)
    decoder = json.JSONDecoder()
    out = html
    for variable in (f"var {name} = ", f"var additional_graphs_{name} = "):
        start = out.find(variable)
        if start < 0:
            raise DriftError(f"the Evidently report lacks {variable.strip()}: cannot make it safe to serve")
        begin = start + len(variable)
        value, end = decoder.raw_decode(out, begin)
        safe = str(htmlsafe_json_dumps(value))  # ASCII only: U+2028/2029 come out escaped too
        out = out[:begin] + safe + out[end:]
    return out


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


def compare(
    spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame, *, report_path: Path | None = None
) -> DriftResult:
    """The decision on the full frames and, optionally, the Evidently report showing that same decision.

    Engine and report run concurrently: the report's per-column tests wait for the engine's results.
    """
    plans = _plans(spec, reference, current)
    with _pool(spec, spare_cores=1 if report_path is not None else 0) as pool:
        futures: dict[str, Future[ColumnDrift]] = {
            p.column: pool.submit(score_column, p, reference[p.column], current[p.column]) for p in plans
        }
        snapshot = None
        if report_path is not None:
            snapshot = write_report(spec, plans, futures, reference, current, report_path)
        columns = [futures[p.column].result() for p in plans]
    result = _result(spec, columns, reference, current)
    if snapshot is not None and report_path is not None:
        verdicts = report_verdicts(snapshot)
        disagreements = sorted(c.column for c in columns if verdicts.get(c.column) != c.drifted)
        if disagreements:  # cannot happen by construction; refuse to publish a contradicting report
            report_path.unlink(missing_ok=True)
            raise DriftError(f"drift report disagrees with the decision on {disagreements}")
        _append_calibrated_verdicts(report_path, result)
        result.report_path = str(report_path)
    return result


def _append_calibrated_verdicts(path: Path, result: DriftResult) -> None:
    """Put modelgate's calibrated verdict beside Evidently's default one, at the top of the report."""
    from jinja2 import Environment

    template = Environment(autoescape=True).from_string(CALIBRATED_TABLE)
    table = template.render(result=result, fmt=lambda v: f"{v:.4g}")
    html = path.read_text(encoding="utf-8")
    marker = "<body>" if "<body>" in html else "<body"
    head, sep, tail = html.partition(marker)
    if sep == "<body>":
        path.write_text(head + sep + table + tail, encoding="utf-8")
    else:
        path.write_text(table + html, encoding="utf-8")


CALIBRATED_TABLE = """
<section style="font-family:system-ui,sans-serif;margin:1rem 2rem">
<h2>modelgate's verdict ({{ result.alarm_mode }}): {{ 'DRIFT' if result.dataset_drift else 'no drift' }}
({{ result.drifted_columns|length }} of the informative columns alarm, share {{ fmt(result.share) }})</h2>
<p>Evidently's default verdict below flags a column when its distance passes a fixed threshold; at small
sample sizes sampling noise alone crosses it. modelgate's calibrated alarm also needs the column's two-sample
test (Kolmogorov-Smirnov, or chi-square for categories) to be significant after Holm's correction over the
features, which bounds the window's false-alarm rate.</p>
<table style="border-collapse:collapse">
<tr><th>column</th><th>method</th><th>distance</th><th>Evidently verdict</th><th>p-value</th>
<th>modelgate alarm</th></tr>
{% for c in result.columns %}<tr><td>{{ c.column }}</td><td>{{ c.method }}</td><td>{{ fmt(c.score) }}</td>
<td>{{ 'drift' if c.drifted else '-' }}</td><td>{{ fmt(c.p_value) }}</td>
<td>{{ 'ALARM' if c.alarm else ('constant' if not c.informative else '-') }}</td></tr>{% endfor %}
</table></section>
"""
