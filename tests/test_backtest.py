"""`modelgate backtest`: candidates around the spec, a choice made on the first two thirds only, a replay cache
that changes no outcome, and the command a user runs (a table, --json, one-line errors)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelgate import backtest
from modelgate.backtest import BacktestError, Candidate, CandidateResult, Score, recommend
from modelgate.datasets.streams import START, synthetic, synthetic_spec
from modelgate.replay import ReplayCache, intervals, replay
from modelgate.spec import ModelSpec, parse_spec
from tests.cli_helpers import run_cli
from tests.conftest import REPO_ROOT

WEEK = dt.timedelta(days=7)


def _spec(**changes: Any) -> ModelSpec:
    raw = synthetic_spec().model_dump(by_alias=True, mode="json")
    raw["evaluation"]["bootstrap_samples"] = 200  # a quick test; the choice logic is the same
    raw.update(changes)
    return ModelSpec.model_validate(raw)


def test_the_grid_changes_one_knob_at_a_time_around_the_spec_s_own_values() -> None:
    spec = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    found = backtest.candidates(spec, WEEK)
    names = [c.name for c in found]
    assert names[:4] == ["never", "every", "label_rule", "spec"]
    assert {
        "window_days=14",
        "window_days=56",
        "max_window_days=28",
        "drift_runs=1/1",
        "max_age_days=off",
        "calibration_check=off",
        "decay_on_accuracy=off",
    } <= set(names)
    assert {n for n in names if n.startswith("decay_tolerance=")} == {
        "decay_tolerance=0.025",
        "decay_tolerance=0.1",
        "decay_tolerance=off",
    }
    base = spec.model_dump(mode="json")
    for candidate in found:
        variant = candidate.spec_for(spec).model_dump(mode="json")  # every variant is a valid spec
        changed = {
            f"{k}.{kk}" if isinstance(base[k], dict) else k
            for k in base
            for kk in (base[k] if isinstance(base[k], dict) else [None])
            if (base[k][kk] if kk is not None else base[k]) != (variant[k][kk] if kk is not None else variant[k])
        }
        assert changed == {field for field, _ in candidate.changes}, candidate.name
    with pytest.raises(BacktestError, match=r"unknown policies sometimes: choose from never, every"):
        backtest.candidates(spec, WEEK, only=["spec", "sometimes"])
    assert [c.name for c in backtest.candidates(spec, WEEK, only=["every", "grid"])][:2] == ["every", "window_days=14"]


def _result(name: str, primary: float, retrains: int, kind: str = "modelgate") -> CandidateResult:
    tune = Score(30, primary, 0.8, retrains, retrains, 0.0, 1.0)  # 30 tuning intervals: enough evidence
    held = Score(15, math.nan, math.nan, 0, 0, 0.0, 0.0)  # the choice must not need these
    changes = () if name == "spec" or kind != "modelgate" else (("window_days", 14),)
    return CandidateResult(Candidate(name, kind, changes), tune, held)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rows", "expected", "why"),
    [
        # a change must beat the spec's policy by more than the margin
        ([("every", 0.80, 30, "every"), ("spec", 0.78, 5), ("a", 0.7815, 4)], "spec", "no change beat"),
        ([("every", 0.80, 30, "every"), ("spec", 0.78, 5), ("a", 0.79, 6)], "a", "0.7900 vs the spec's 0.7800"),
        # ... within a third of retrain-every's retrains
        ([("every", 0.80, 30, "every"), ("spec", 0.78, 5), ("a", 0.82, 11)], "spec", "no change beat"),
        # ties between changes go to fewer retrains
        ([("every", 0.80, 30, "every"), ("spec", 0.70, 5), ("a", 0.75, 9), ("b", 0.75, 3)], "b", "3 retrains vs 5"),
        # the spec's own policy over budget: the best within it, when no worse
        ([("every", 0.80, 9, "every"), ("spec", 0.78, 8), ("a", 0.7795, 2)], "a", "2 retrains vs 8"),
        # baselines are yardsticks, never recommended
        ([("every", 0.95, 30, "every"), ("label_rule", 0.9, 2, "label_rule"), ("spec", 0.7, 5)], "spec", "no change"),
        # nothing within the budget at all: the best, said so
        ([("every", 0.80, 3, "every"), ("spec", 0.70, 5), ("a", 0.75, 4)], "a", "no candidate stayed within 33%"),
    ],
)
def test_the_recommendation_reads_the_tuning_part_only(rows: list[tuple], expected: str, why: str) -> None:
    chosen = recommend([_result(*row) for row in rows])
    assert chosen.name == expected
    assert why in chosen.why


def test_a_gain_from_one_lucky_interval_is_not_recommended() -> None:
    from modelgate.backtest import Point

    def with_series(result: CandidateResult, values: list[float]) -> CandidateResult:
        points = tuple(
            Point(dt.datetime(2026, 1, 1 + i, tzinfo=dt.UTC), 100, v, False, False) for i, v in enumerate(values)
        )
        return dataclasses.replace(result, series=points, tune=dataclasses.replace(result.tune, intervals=len(values)))

    spec = with_series(_result("spec", 0.780, 5), [0.78] * 12)
    lucky = with_series(_result("a", 0.790, 5), [0.74] * 6 + [0.78] * 5 + [1.0])  # one interval carries it
    steady = with_series(_result("b", 0.790, 5), [0.79] * 12)
    every = _result("every", 0.80, 30, "every")
    assert recommend([every, spec, lucky]).name == "spec"
    assert recommend([every, spec, lucky, steady]).name == "b"
    assert "weak evidence" not in recommend([every, spec, steady]).why
    short = [with_series(r, [0.78] * 6) for r in (spec, steady)]
    assert "only 6 tuning intervals: weak evidence" in recommend([every, *short]).why


def test_a_spec_policy_over_the_budget_stays_only_by_winning_steadily() -> None:
    from modelgate.backtest import Point

    def with_series(result: CandidateResult, values: list[float]) -> CandidateResult:
        points = tuple(
            Point(dt.datetime(2026, 1, 1 + i, tzinfo=dt.UTC), 100, v, False, False) for i, v in enumerate(values)
        )
        return dataclasses.replace(result, series=points, tune=dataclasses.replace(result.tune, intervals=len(values)))

    every = _result("every", 0.80, 30, "every")  # a budget of 10 retrains
    cheap = with_series(_result("a", 0.780, 6), [0.78] * 12)
    lucky = with_series(_result("spec", 0.790, 12), [0.74] * 6 + [0.78] * 5 + [1.0])  # ahead by one interval
    steady = with_series(_result("spec", 0.790, 12), [0.79] * 12)
    chosen = recommend([every, lucky, cheap])
    assert chosen.name == "a" and "6 retrains vs 12; the spec's policy is over the budget of 10" in chosen.why
    kept = recommend([every, steady, cheap])
    assert kept.name == "spec" and "takes 12 retrains on the tuning part, over the budget of 10" in kept.why


def test_a_lower_is_better_metric_is_recommended_the_other_way() -> None:
    rows = [_result("every", 0.20, 30, "every"), _result("spec", 0.20, 5), _result("a", 0.15, 5)]
    assert recommend(rows, higher=False).name == "a"
    assert recommend(rows, higher=True).name == "spec"


def test_the_spec_change_is_a_yaml_diff_of_the_spec_file() -> None:
    text = (REPO_ROOT / "include" / "models" / "churn.yaml").read_text()
    diff = backtest.spec_diff(text, [("window_days", 14), ("retrain.decay_tolerance", 0.1)], "churn.yaml")
    assert diff.startswith("--- a/churn.yaml\n+++ b/churn.yaml\n")
    assert "-window_days: 28\n+window_days: 14\n" in diff
    assert "+  decay_tolerance: 0.1\n" in diff
    assert backtest.spec_diff(text, []) == ""
    changed = yaml.safe_load(text)
    changed["window_days"] = 14
    changed["retrain"]["decay_tolerance"] = 0.1
    assert parse_spec(yaml.safe_dump(changed)).window_days == 14  # what the diff says is a valid spec


def test_intervals_follow_the_retrain_schedule_from_one_window_after_the_first_row() -> None:
    spec = _spec()
    first = dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC)  # a Thursday
    steps = backtest.schedule_intervals(spec, first, dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
    assert steps[0].start == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)  # the first Sunday 28 days on
    assert steps[-1].end == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)  # the last complete week
    assert all(b.start == a.end and b.end - b.start == WEEK for a, b in zip(steps, steps[1:], strict=False))


def test_candidates_that_follow_the_spec_s_window_share_a_worker() -> None:
    spec = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    found = backtest.candidates(spec, WEEK)
    split = backtest.buckets(found, 2)
    family = {"spec", "decay_tolerance=0.025", "decay_tolerance=0.1", "decay_tolerance=off", "drift_runs=1/1",
              "max_age_days=off", "calibration_check=off", "decay_on_accuracy=off"}  # fmt: skip
    assert len(split) == 2 and any(family <= {c.name for c in b} for b in split)  # together, in one process
    assert sorted(c.name for b in split for c in b) == sorted(c.name for c in found)  # each exactly once
    windows = [b for b in split if not family & {c.name for c in b}]
    assert [sorted(c.name for c in b) for b in windows] == [["max_window_days=28", "window_days=14", "window_days=56"]]
    assert backtest.buckets(found, 1) == [found]


def test_a_shared_cache_changes_no_outcome() -> None:
    spec = _spec()
    frame = synthetic("abrupt", seed=1, weeks=20, rows_per_week=150)
    steps = intervals(START + 4 * WEEK, START + 20 * WEEK, WEEK)
    cache = ReplayCache()
    variants = [spec] + [
        Candidate("d", changes=(("retrain.decay_tolerance", tolerance),)).spec_for(spec) for tolerance in (0.1, 0.01)
    ]  # which look decays, and whether accuracy is read, depend on the tolerance: a lower one must not reuse
    for variant in variants:  # the looks a higher one chose
        alone = replay(variant, frame, steps, "modelgate")
        shared = replay(variant, frame, steps, "modelgate", cache=cache)
        assert [(o.reason, o.trained, o.promoted, o.correct, o.alarm) for o in shared.outcomes] == [
            (o.reason, o.trained, o.promoted, o.correct, o.alarm) for o in alone.outcomes
        ]
        assert shared.primary("roc_auc") == alone.primary("roc_auc")
    assert cache.hits > 0  # the second policy reused the first one's fits and measurements


def test_the_naive_label_rule_retrains_when_accuracy_drops() -> None:
    spec = _spec()
    frame = synthetic("abrupt", seed=2, weeks=24, rows_per_week=200)
    steps = intervals(START + 4 * WEEK, START + 24 * WEEK, WEEK)
    result = replay(spec, frame, steps, "label_rule")
    reasons = [o.end for o in result.outcomes if o.trained]
    assert reasons[0] == steps[0].end  # the first model
    assert any(end > START + 12 * WEEK for end in reasons[1:])  # the concept moved at week 12: it noticed
    assert result.retrains < len(steps) / 2
    assert 0.5 < result.primary("roc_auc") <= 1


def _backtested(frame: Any, spec: ModelSpec, **kwargs: Any) -> backtest.BacktestResult:
    return backtest.run(spec, frame, spec_text=yaml.safe_dump(spec.model_dump(mode="json")), jobs=1, **kwargs)


def test_nothing_of_the_last_third_informs_the_choice() -> None:
    spec = _spec()
    frame = synthetic("gradual", seed=4, weeks=22, rows_per_week=150)
    policies = ["never", "every", "spec", "decay_tolerance=off"]
    honest = _backtested(frame, spec, policies=policies)
    assert honest.intervals == 16 and honest.split < honest.last
    spoiled = frame.copy()
    late = spoiled["t"] > honest.split
    spoiled.loc[late, "y"] = 1 - spoiled.loc[late, "y"]  # the last third's labels flipped
    flipped = _backtested(spoiled, spec, policies=policies)
    assert flipped.recommendation == honest.recommendation
    untimed = lambda score: dataclasses.replace(score, train_seconds=0.0)  # noqa: E731  (seconds vary by run)
    assert [untimed(r.tune) for r in flipped.results] == [untimed(r.tune) for r in honest.results]
    assert [untimed(r.held_out) for r in flipped.results] != [untimed(r.held_out) for r in honest.results]
    every = honest.result("every")
    assert every.tune.retrains + every.held_out.retrains == honest.intervals
    assert every.held_out.intervals == honest.intervals - every.tune.intervals == 5


def test_too_short_a_history_or_the_wrong_task_is_one_line_error() -> None:
    frame = synthetic("abrupt", seed=0, weeks=8, rows_per_week=100)
    with pytest.raises(BacktestError, match=r"stream: 2 complete intervals .* needs at least 6 \(load more history\)"):
        _backtested(frame, _spec())
    with pytest.raises(BacktestError, match=r"the backtest scores classifiers \(regression is not yet\)"):
        _backtested(frame, _spec(task="regression", evaluation={"primary_metric": "rmse"}))


@pytest.mark.integration
def test_the_command_prints_the_held_out_table_and_the_recommended_change(tmp_path: Path) -> None:
    frame = synthetic("recurring", seed=5, weeks=18, rows_per_week=120)
    frame.to_parquet(tmp_path / "stream.parquet")
    raw = _spec().model_dump(by_alias=True, mode="json", exclude_defaults=True)
    raw["source"] = {"kind": "files", "path": str(tmp_path / "stream.parquet")}
    (tmp_path / "stream.yaml").write_text(yaml.safe_dump(raw))
    env = {"OMP_NUM_THREADS": "1", "MODELGATE_DATA_ROOTS": str(tmp_path)}
    shown = run_cli("backtest", "stream", "--spec", str(tmp_path / "stream.yaml"), "--jobs", "2",
                    "--policies", "never,every,label_rule,spec,window_days=14", env=env).stdout  # fmt: skip
    assert "stream: 12 intervals from" in shown
    for name in ("never", "every", "label_rule", "spec", "window_days=14"):
        assert f"\n  {name}" in shown
    assert "recommended (*): " in shown and (" *  " in shown)
    assert ("no spec change" in shown) or ("+++ b/stream.yaml" in shown)
    bad = run_cli("backtest", "stream", "--spec", str(tmp_path / "stream.yaml"), "--policies", "often",
                  env=env, check=False)  # fmt: skip
    assert (
        bad.returncode == 1
        and bad.stderr.strip().splitlines() == [bad.stderr.strip()]
        and "unknown policies often" in bad.stderr
    )


@pytest.mark.integration
def test_the_backtest_dag_s_task_keeps_its_result_and_report_against_the_model(
    registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelgate import ui
    from modelgate.config import DATA_ROOTS_ENV
    from modelgate.data import Interval
    from modelgate.pipeline import RunInfo, Services, backtest_model
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.registry.monitoring import MonitoringStore
    from modelgate.report_store import ReportStore
    from modelgate.spec import FileSource

    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    frame = synthetic("abrupt", seed=6, weeks=16, rows_per_week=120)
    frame.to_parquet(tmp_path / "stream.parquet")
    spec = _spec().model_copy(update={"source": FileSource(kind="files", path=str(tmp_path / "stream.parquet"))})
    services = Services(
        registry=registry,
        data_url=None,
        artifacts=ArtifactStore(str(tmp_path / "artifacts")),
        reports=ReportStore(str(tmp_path / "reports")),
    )
    until = frame["t"].max().to_pydatetime() + dt.timedelta(days=1)
    run = RunInfo("modelgate_backtest__stream", "manual__1", "backtest_history", Interval(until - WEEK, until))
    policies = ["never", "every", "spec"]
    first = backtest_model(spec, run, services, spec_text="window_days: 28\n", policies=policies)
    again = backtest_model(spec, run, services, spec_text="window_days: 28\n", policies=policies)  # a retry
    assert first["recommended"] == again["recommended"] == "spec"
    kept = MonitoringStore(registry).latest_backtest("stream")
    assert kept is not None and kept.run_id == "manual__1" and kept.recommended == "spec"
    assert [r["candidate"]["name"] for r in kept.result["results"]] == policies
    assert kept.intervals == 10 and kept.first_start < kept.split_at < kept.last_end <= until
    with registry.db.read("count") as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM backtest_run").scalar_one() == 1  # overwritten
    page = Path(first["report"]).read_text()
    assert "how often should it retrain?" in page and "Recommended: spec" in page
    assert page.count('class="plotly-graph-div"') == 1 and (Path(first["report"]).parent / "plotly.min.js").is_file()
    assert f'href="/modelgate/models/{spec.name}" target="_top"' in page  # the way back to the model page
    shown = ui.render_model_page(ui.model_page(registry, "stream"), "/modelgate", url_of=lambda p: f"/r/{Path(p).name}")
    assert "recommended <b>spec</b>" in shown and 'href="/r/manual__1.html"' in shown
