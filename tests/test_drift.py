"""The drift engine reproduces Evidently's per-column verdicts; the report shows exactly the decision."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelgate.datasets.churn import generate_day
from modelgate.drift import DriftError, column_drift, compare, compute_drift
from modelgate.spec import parse_spec
from tests.conftest import REPO_ROOT, SHARED_DATA

SPEC = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())


def _days(start: dt.date, n: int, drift: dt.date | None = None) -> pd.DataFrame:
    return pd.concat(
        [generate_day(start + dt.timedelta(days=i), drift_start=drift) for i in range(n)], ignore_index=True
    )


def _evidently_verdicts(spec, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[float, bool]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=spec.numeric_features, categorical_columns=spec.categorical_features)
    snapshot = Report([DataDriftPreset(columns=spec.feature_names)]).run(
        Dataset.from_pandas(current[spec.feature_names], data_definition=definition),
        Dataset.from_pandas(reference[spec.feature_names], data_definition=definition),
    )
    out = {}
    for m in snapshot.dict()["metrics"]:
        config = m.get("config", {})
        if "ValueDrift" in str(m.get("metric_name")) and config.get("column"):
            threshold, value = float(config["threshold"]), float(m["value"])
            out[config["column"]] = (value, value >= threshold)
    return out


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    reference = _days(dt.date(2026, 1, 1), 10)
    stable = _days(dt.date(2026, 2, 1), 7)
    drifted = _days(dt.date(2026, 3, 1), 7, drift=dt.date(2026, 3, 1))
    return reference, stable, drifted


def test_engine_matches_evidently_on_full_frames(frames) -> None:
    reference, stable, drifted = frames
    for current in (stable, drifted):
        ours = compute_drift(SPEC, reference, current)
        theirs = _evidently_verdicts(SPEC, reference, current)
        for column in ours.columns:
            score, verdict = theirs[column.column]
            assert column.score == pytest.approx(score, rel=1e-6, abs=1e-9), column.column
            assert column.drifted == verdict, column.column


def test_stable_window_has_no_drift_and_drifted_window_does(frames) -> None:
    reference, stable, drifted = frames
    assert compute_drift(SPEC, reference, stable).drifted_columns == []
    result = compute_drift(SPEC, reference, drifted)
    assert {"monthly_charges", "internet_service", "support_tickets"} <= set(result.drifted_columns)
    assert result.dataset_drift and result.share >= SPEC.drift.drift_share


def test_report_shows_the_decision(frames, tmp_path: Path) -> None:
    reference, _, drifted = frames
    result = compare(SPEC, reference, drifted, report_path=tmp_path / "drift.html")
    html = Path(result.report_path or "").read_text()
    assert "(full data)" in html  # the engine's tests, not Evidently's own on the sample
    assert len(html) > 10_000


def test_a_report_leaves_evidentlys_registry_as_it_found_it(frames, tmp_path: Path) -> None:
    from evidently.legacy.calculations.stattests import registry

    reference, _, drifted = frames
    compare(SPEC, reference, drifted, report_path=tmp_path / "warm.html")  # Evidently registers its own once
    before = (set(registry._registered_stat_tests), len(registry._impls), len(registry._registered_stat_test_funcs))
    for i in range(2):
        compare(SPEC, reference, drifted, report_path=tmp_path / f"drift-{i}.html")
    after = (set(registry._registered_stat_tests), len(registry._impls), len(registry._registered_stat_test_funcs))
    assert after == before


def test_small_reference_uses_p_value_tests() -> None:
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(0, 1, 500))
    assert column_drift("x", "numeric", ref, pd.Series(rng.normal(0, 1, 500)), None).method == "ks"
    shifted = column_drift("x", "numeric", ref, pd.Series(rng.normal(1, 1, 500)), None)
    assert shifted.method == "ks" and shifted.drifted and shifted.score < 0.05
    cats = column_drift("c", "categorical", pd.Series(["a", "b", "c"] * 100), pd.Series(["a"] * 300), None)
    assert cats.method == "chisquare" and cats.drifted
    binary = column_drift("b", "categorical", pd.Series(["y", "n"] * 100), pd.Series(["y", "n"] * 100), None)
    assert binary.method == "z" and not binary.drifted


def test_unusable_columns_are_clear_errors(frames) -> None:
    reference, stable, _ = frames
    with pytest.raises(DriftError, match="features missing for drift: contract"):
        compute_drift(SPEC, reference, stable.drop(columns=["contract"]))
    with pytest.raises(DriftError, match="'monthly_charges' is empty \\(all null\\) in the current window"):
        compute_drift(SPEC, reference, stable.assign(monthly_charges=np.nan))
    with pytest.raises(DriftError, match="the current window has no rows"):
        compute_drift(SPEC, reference, stable.iloc[0:0])
    words = stable.assign(tenure_months=stable["tenure_months"].astype(object))
    words.loc[words.index[3], "tenure_months"] = "twelve"
    with pytest.raises(DriftError, match="numeric feature 'tenure_months' holds values that are not numbers"):
        compute_drift(SPEC, reference, words)


@pytest.mark.skipif(not (SHARED_DATA / "weather.csv").is_file(), reason="shared/data/weather.csv is absent")
def test_weather_decades_drift_like_evidently_says() -> None:
    spec = parse_spec((REPO_ROOT / "include" / "models" / "weather_rain.yaml").read_text())
    weather = pd.read_csv(SHARED_DATA / "weather.csv")
    reference, current = weather.iloc[:3650], weather.iloc[-3650:]
    ours = {c.column: c.drifted for c in compute_drift(spec, reference, current).columns}
    theirs = {k: v[1] for k, v in _evidently_verdicts(spec, reference, current).items()}
    assert ours == theirs


def _stream_spec(alarm: str = "calibrated"):
    features = "\n".join(f"  - {{name: x{i}, type: numeric}}" for i in range(6))
    return parse_spec(
        f"""
name: stream
source: {{kind: files, path: x.csv}}
time_column: t
id_column: id
target: y
features:
{features}
estimator: {{name: logistic_regression}}
drift: {{alarm: {alarm}, drift_share: 0.3}}
"""
    )


def _normal_frame(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({f"x{i}": rng.normal(shift if i < 3 else 0.0, 1.0, rows) for i in range(6)})


def test_calibrated_alarms_keep_their_false_alarm_rate_on_stationary_data() -> None:
    """1,008-row reference against 336-row windows of the same distribution, 50 windows: the issue's setup."""
    calibrated, evidently = _stream_spec(), _stream_spec("evidently")
    rng = np.random.default_rng(2026)
    alarms = {"calibrated": 0, "evidently": 0}
    for _ in range(50):
        reference, current = _normal_frame(rng, 1008), _normal_frame(rng, 336)
        alarms["calibrated"] += compute_drift(calibrated, reference, current).dataset_drift
        alarms["evidently"] += compute_drift(evidently, reference, current).dataset_drift
    assert alarms["calibrated"] <= 1  # the family-wise rate is 1% a window
    assert alarms["evidently"] > 5 * max(alarms["calibrated"], 1)  # the fixed distance threshold is noise here


def test_calibrated_alarms_still_catch_a_real_shift() -> None:
    rng = np.random.default_rng(7)
    result = compute_drift(_stream_spec(), _normal_frame(rng, 1008), _normal_frame(rng, 336, shift=0.5))
    assert result.dataset_drift and set(result.drifted_columns) == {"x0", "x1", "x2"}
    assert all(c.p_value < 1e-6 for c in result.columns if c.column in {"x0", "x1", "x2"})
    assert result.scores()["x0"]["evidently_drifted"] is True and result.scores()["x0"]["alarm"] is True


def test_constant_columns_do_not_dilute_the_share() -> None:
    rng = np.random.default_rng(1)
    reference, current = _normal_frame(rng, 2000), _normal_frame(rng, 500, shift=0.6)
    for frame in (reference, current):
        frame["x3"] = frame["x4"] = frame["x5"] = 1.0  # three columns that never change
    result = compute_drift(_stream_spec(), reference, current)
    assert [c.informative for c in result.columns] == [True] * 3 + [False] * 3
    assert result.share == 1.0 and result.dataset_drift


def test_holm_adjustment() -> None:
    from modelgate.drift import holm

    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_ks_from_the_merge_matches_scipy() -> None:
    from scipy import stats

    from modelgate.drift import ks_p_value, wasserstein_ks

    rng = np.random.default_rng(5)
    u, v = rng.normal(0, 1, 3000), rng.normal(0.05, 1, 700).round(1)  # ties in v
    distance, ks = wasserstein_ks(u.copy(), v.copy())
    expected = stats.ks_2samp(u, v, method="asymp")
    assert ks == pytest.approx(expected.statistic, abs=1e-12)
    assert distance == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-9)
    assert ks_p_value(ks, len(u), len(v)) == pytest.approx(expected.pvalue, rel=0.1)
