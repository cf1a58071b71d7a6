"""The in-memory replay makes the decisions the real DAGs make, and the policy has the shape it promises."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelgate.datasets.churn import write_days
from modelgate.datasets.streams import START, shuffled, synthetic, synthetic_spec
from modelgate.replay import intervals, replay
from tests.conftest import REPO_ROOT
from tests.helpers import dags_for

UTC = dt.UTC
WEEK = dt.timedelta(days=7)


def test_replay_baselines_and_stationary_copy() -> None:
    spec = synthetic_spec()
    frame = synthetic("abrupt", seed=3, weeks=24, rows_per_week=200)
    steps = intervals(START + 4 * WEEK, START + 24 * WEEK, WEEK)
    never, every = replay(spec, frame, steps, "never"), replay(spec, frame, steps, "every")
    assert never.retrains == 1 and every.retrains == len(steps) == 20
    assert every.accuracy(never.scored) > never.accuracy(never.scored)  # the concept moved at week 12
    stationary = replay(spec, shuffled(frame, "t", seed=3), steps, "modelgate")
    assert stationary.alarms <= 1
    assert stationary.outcomes[0].reason == "no_champion" and stationary.outcomes[0].promoted
    assert stationary.retrains <= 3


# ------------------------------------------------------------------ the same decisions as the DAGs


@pytest.fixture
def dag_world(tmp_path: Path, registry_url: str, airflow_db: Path) -> Iterator[dict[str, Any]]:
    write_days(
        registry_url, dt.date(2025, 12, 1), dt.date(2026, 3, 30), rows_per_day=150, drift_start=dt.date(2026, 3, 1)
    )
    include = tmp_path / "include"
    (include / "models").mkdir(parents=True)
    (include / "expectations").mkdir()
    spec = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    spec.update(start_date="2025-11-01", catchup=False, deploy={"target": "none"}, notifiers=[{"name": "log"}])
    spec["evaluation"].update(bootstrap_samples=300, absolute_thresholds={})
    spec["retrain"] = {}  # the defaults: label-aware decay, calibrated drift 1 of 1
    (include / "models" / "churn.yaml").write_text(yaml.safe_dump(spec))
    with dags_for(registry_url, include, tmp_path, "modelgate_dags_replay") as dags:
        yield {"dags": dags, "url": registry_url, "include": include}


@pytest.mark.airflow
@pytest.mark.integration
@pytest.mark.slow
def test_dag_runs_and_the_fast_replay_decide_alike(dag_world: dict[str, Any]) -> None:
    """Six weekly intervals across the churn example's drift, through dag.test() and through the replay."""
    from modelgate.catalog import load_spec
    from modelgate.data import Interval, load_window
    from modelgate.registry import EventKind
    from modelgate.registry.connection import create_registry_engine
    from modelgate.registry.monitoring import MonitoringStore
    from modelgate.registry.store import Registry

    ends = [dt.datetime(2026, 2, 15, tzinfo=UTC) + i * WEEK for i in range(6)]  # drift from 2026-03-01
    params = {"force": False, "window_days": None, "dry_run": False, "approval": "spec", "promote_on_backfill": False}
    for end in ends:
        dag_world["dags"]["modelgate_monitor__churn"].test(logical_date=end)
        dag_world["dags"]["modelgate_retrain__churn"].test(logical_date=end, run_conf=params)

    registry = Registry(create_registry_engine(dag_world["url"]))
    try:
        decisions = {d.interval_end: d for d in MonitoringStore(registry).decisions("churn")}
        versions = {v.window_end: v.version for v in registry.list_versions("churn")}
        promoted = {e.to_version for e in registry.history("churn") if e.kind is EventKind.PROMOTE}
        dags = [(decisions[e].reason, e in versions, versions.get(e) in promoted) for e in ends]
    finally:
        registry.close()

    spec = load_spec(dag_world["include"] / "models" / "churn.yaml")
    frame = load_window(spec, Interval(ends[0] - dt.timedelta(days=spec.window_days), ends[-1]), url=dag_world["url"])
    fast = replay(spec, frame, [Interval(e - WEEK, e) for e in ends], "modelgate")
    assert [(o.reason, o.trained, o.promoted) for o in fast.outcomes] == dags
    assert dags[0] == ("no_champion", True, True)
    assert any(reason in ("drift", "performance_decay") for reason, _, _ in dags[2:])  # the drift is answered


def test_live_drift_flags_spend_an_episode_once() -> None:
    from modelgate.loop import DriftMark, live_drift_flags

    def at(week: int) -> dt.datetime:
        return START + week * WEEK

    timeline = [DriftMark(at(w), drifted, 1) for w, drifted in enumerate([False, True, True, True, False, True])]
    common = {"champion_version": 1, "runs": 1}
    # no drift retrain yet: the newest run counts
    assert live_drift_flags(timeline[:4], champion_window_end=at(0), last_drift_retrain=None, **common) == [True]
    # a drift retrain at week 2 kept this champion: week 3 is the same episode, not a new trigger
    assert live_drift_flags(timeline[:4], champion_window_end=at(0), last_drift_retrain=at(2), **common) == []
    # after a clean run (week 4) new drift (week 5) counts again
    assert live_drift_flags(timeline, champion_window_end=at(0), last_drift_retrain=at(2), **common) == [True]
    # a champion promoted by that retrain starts afresh after it
    promoted = [DriftMark(at(3), True, 2)]
    assert live_drift_flags(
        promoted, champion_window_end=at(2), last_drift_retrain=at(2), champion_version=2, runs=1
    ) == [True]


def test_unsettled_change_retrains_once_when_the_window_has_left_the_change_behind() -> None:
    from modelgate.loop import DecisionMark, unsettled_change

    def at(week: int) -> dt.datetime:
        return START + week * WEEK

    def mark(week: int, reason: str) -> DecisionMark:  # the decision of the interval ending at `week`
        return DecisionMark(at(week - 1), at(week), reason != "no_trigger", reason)

    span = 4 * WEEK
    # decay at weeks 10 and 11, drift at 12: the champion promoted at 12 trained on weeks 8..12
    history = [mark(9, "no_trigger"), mark(10, "performance_decay"), mark(11, "performance_decay"), mark(12, "drift")]
    champion = (at(12) - span, at(12))

    def due(now: int, extra: list[DecisionMark] | None = None) -> dt.datetime | None:
        return unsettled_change(
            history + (extra or []), champion_window=champion, window_start=at(now) - span, window=span
        )

    assert due(12) is None  # the window still holds rows from before the change (which began at week 9's end)
    assert due(13) == at(9)  # weeks 9..13: only rows since the change
    assert due(14, [mark(13, "change_settled")]) is None  # settled once, whatever that retrain's verdict
    assert due(14, [mark(13, "no_trigger")]) == at(9)
    # a champion promoted for another reason, or one trained only on rows after the change, is not unsettled
    assert (
        unsettled_change(
            [*history[:-1], mark(12, "champion_stale")],
            champion_window=champion,
            window_start=at(13) - span,
            window=span,
        )
        is None
    )
    assert unsettled_change(history, champion_window=(at(9), at(12)), window_start=at(13) - span, window=span) is None


def test_the_absolute_threshold_reads_the_fixed_window_not_the_grown_one() -> None:
    """`performance_threshold` is measured on the holdout of the last `window_days`, however far the window grew."""
    from modelgate.data import Interval, training_window
    from modelgate.loop import absolute_performance
    from modelgate.training import train

    spec = synthetic_spec().model_copy(
        update={
            "retrain": synthetic_spec().retrain.model_copy(
                update={"performance_metric": "accuracy", "performance_threshold": 0.6}
            )
        }
    )
    frame = synthetic("abrupt", seed=0, weeks=80)
    model = train(spec, frame[frame["t"] < START + dt.timedelta(weeks=20)]).pipeline
    end = START + dt.timedelta(weeks=80)
    grown = frame[frame["t"] >= end - dt.timedelta(weeks=16)]
    fixed = training_window(spec, end)
    on_fixed = absolute_performance(spec, model, grown, fixed)
    alone = absolute_performance(spec, model, grown[grown["t"] >= fixed.start], Interval(fixed.start, fixed.end))
    on_grown = absolute_performance(spec, model, grown, Interval(grown["t"].min(), end))
    assert on_fixed is not None and on_grown is not None
    assert on_fixed == alone  # the rows before the fixed window are not read
    assert on_fixed != on_grown


def test_decay_is_tested_on_the_newest_interval_alone_as_well_at_half_the_level() -> None:
    """An abrupt decay shows in the newest week before it shows in the weeks since the champion was trained;
    each of the two looks is tested at half of `decay_significance`, so stationary rows alarm no more."""
    from modelgate.loop import ChampionScore, decay_evidence, decay_metric, fit_challenger

    spec = synthetic_spec()
    frame = synthetic("abrupt", seed=0, weeks=80)  # the concept changes at week 40

    def week(n: int) -> dt.datetime:
        return START + dt.timedelta(weeks=n)

    fitted = fit_challenger(spec, frame[(frame["t"] >= week(28)) & (frame["t"] < week(32))])
    champion = fitted.served.pipeline
    reference = ChampionScore(fitted.holdout_metrics[f"holdout_{decay_metric(spec)}"], week(32))
    tolerance = spec.retrain.decay_tolerance
    assert tolerance is not None
    level = spec.retrain.decay_significance

    # weeks 32..40 since training, the newest (week 40) after the change: only the newest look shows it
    rows = frame[(frame["t"] >= week(32)) & (frame["t"] < week(41))]
    newest = decay_evidence(spec, champion, reference, rows, week(40))
    assert newest is not None and newest.decayed(tolerance)
    assert (newest.since, newest.alpha, newest.rows) == (week(40), level / 2, 336)

    # before the change: no look decays, and the longer one is recorded
    calm = decay_evidence(spec, champion, reference, frame[frame["t"] < week(39)], week(38))
    assert calm is not None and not calm.decayed(tolerance)
    assert (calm.since, calm.alpha) == (week(32), level / 2)

    # the newest interval is all the champion has not seen: one look, at the whole level
    alone = decay_evidence(spec, champion, reference, rows[rows["t"] >= week(40)], week(32))
    assert alone is not None and (alone.since, alone.alpha) == (week(32), level)
