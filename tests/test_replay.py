"""The in-memory replay makes the decisions the real DAGs make, and the policy has the shape it promises."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelgate.datasets.churn import write_days
from modelgate.datasets.streams import FEATURES, START, shuffled, synthetic, synthetic_spec
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
        trained = {v.window_end: v for v in registry.list_versions("churn")}
        versions = {end: v.version for end, v in trained.items()}
        promoted = {e.to_version for e in registry.history("churn") if e.kind is EventKind.PROMOTE}
        dags = [(decisions[e].reason, e in versions, versions.get(e) in promoted) for e in ends]
        starts = [trained[e].window_start if e in trained else None for e in ends]
    finally:
        registry.close()

    spec = load_spec(dag_world["include"] / "models" / "churn.yaml")
    frame = load_window(spec, Interval(ends[0] - dt.timedelta(days=spec.window_days), ends[-1]), url=dag_world["url"])
    fast = replay(spec, frame, [Interval(e - WEEK, e) for e in ends], "modelgate")
    assert [(o.reason, o.trained, o.promoted) for o in fast.outcomes] == dags
    assert [o.trained_from for o in fast.outcomes] == starts  # the same windows, chosen or grown
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


class _Threshold:
    """A fitted model whose probability is a steep function of `x0 - shift`: it ranks rows by `x0` whatever the
    shift, so its ROC AUC never moves, while its decisions at 0.5 follow the shift."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def predict_proba(self, x: Any) -> Any:
        import numpy as np

        p = 1 / (1 + np.exp(-8 * (x["x0"].to_numpy(dtype=float) - self.shift)))
        return np.column_stack([1 - p, p])


def _threshold_rows(cut: float, *, start: dt.datetime, rows: int = 400, seed: int = 0) -> Any:
    """Rows labelled `x0 > cut`, one an hour from `start`."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["t"] = [start + dt.timedelta(hours=i) for i in range(rows)]
    frame["y"] = (frame["x0"] > cut).astype(int)
    return frame


@pytest.mark.parametrize(
    ("watch", "majority", "metric", "decayed", "looks"),
    [
        (True, 0.5, "accuracy", True, 4),  # its decisions went wrong while it ranks as well as ever
        (False, 0.5, "roc_auc", False, 2),  # the ranking metric alone cannot see it
        (True, 0.96, "roc_auc", False, 2),  # decisions barely better than the commonest class: accuracy not read
    ],
)
def test_decay_watches_the_decisions_a_ranking_metric_cannot_see(
    watch: bool, majority: float, metric: str, decayed: bool, looks: int
) -> None:
    """The labels moved their cut from x0 > 0 to x0 > 0.8: the champion still ranks every row right (ROC AUC 1)
    but a quarter of its decisions are now wrong. `decay_on_accuracy` sees it, at the level shared by four
    looks; without it, or when the champion's accuracy was never far above always answering the commonest
    class (a low-signal, imbalanced target), the decay test reads the ranking metric only, at half the level."""
    from modelgate.loop import ChampionScore, decay_evidence

    spec = synthetic_spec()
    spec = spec.model_copy(update={"retrain": spec.retrain.model_copy(update={"decay_on_accuracy": watch})})
    tolerance, level = spec.retrain.decay_tolerance, spec.retrain.decay_significance
    assert tolerance is not None
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    frame = _threshold_rows(0.8, start=start)
    newest = start + dt.timedelta(hours=200)
    reference = ChampionScore(1.0, start, accuracy=0.99, majority=majority)
    found = decay_evidence(spec, _Threshold(0.0), reference, frame, newest)
    assert found is not None
    assert (found.metric, found.decayed(tolerance), found.alpha) == (metric, decayed, level / looks)
    if metric == "accuracy":
        assert found.observed < 0.85 and found.reference == 0.99
    else:
        assert found.observed == 1.0  # the order of the scores held


def test_decay_evidence_depends_on_the_tolerance_so_replays_share_only_the_resamples() -> None:
    """At a tolerance of 0.5 the champion's 0.99 holdout accuracy, halved, is below always answering the
    commonest class (0.5): accuracy is not read and ROC AUC is returned, not the accuracy look that decays at
    0.05. Replays sharing a cache (the backtest's) share the looks' resamples, measured once, and must still
    reach each tolerance's own evidence from them (its looks, its level)."""
    from modelgate.backtest import Candidate
    from modelgate.loop import ChampionScore, decay_evidence, decay_plan, decay_samples, decided_decay, scored_since

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    frame = _threshold_rows(0.8, start=start)
    reference = ChampionScore(1.0, start, accuracy=0.99, majority=0.5)
    spec = synthetic_spec()
    loose = Candidate("loose", changes=(("retrain.decay_tolerance", 0.5),)).spec_for(spec)
    newest = start + dt.timedelta(hours=200)
    found = {
        s.retrain.decay_tolerance: decay_evidence(s, _Threshold(0.0), reference, frame, newest) for s in (spec, loose)
    }
    assert {t: e.metric for t, e in found.items() if e is not None} == {0.05: "accuracy", 0.5: "roc_auc"}
    plan, loose_plan = decay_plan(spec, reference, newest), decay_plan(loose, reference, newest)
    assert plan is not None and loose_plan is not None
    assert (plan.metrics, loose_plan.metrics, loose_plan.alpha) == (
        ("roc_auc", "accuracy"),
        ("roc_auc",),
        2 * plan.alpha,
    )
    once = decay_samples(spec, scored_since(spec, _Threshold(0.0), frame, plan.starts[0]), plan.starts, plan.metrics)
    assert len(once) == 4  # two metrics, two looks
    assert decided_decay(spec, plan, once) == found[0.05]
    assert decided_decay(loose, loose_plan, once) == found[0.5]


def test_a_champion_s_holdout_metrics_name_what_always_answering_the_commonest_class_scores() -> None:
    from modelgate.loop import holdout_metrics

    rows = _threshold_rows(0.8, start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    measured = holdout_metrics(synthetic_spec(), _Threshold(0.8), rows)
    assert measured["holdout_majority_accuracy"] == pytest.approx(max(rows["y"].mean(), 1 - rows["y"].mean()))
    assert measured["holdout_accuracy"] == 1.0


class _Constant:
    """A fitted model that predicts `p` for every row (the calibration test reads only its probabilities)."""

    def __init__(self, p: float) -> None:
        self.p = p

    def predict_proba(self, x: Any) -> Any:
        import numpy as np

        return np.column_stack([np.full(len(x), 1 - self.p), np.full(len(x), self.p)])


def test_calibration_evidence_sees_a_moved_base_rate_that_persists_and_not_one_that_swings_back() -> None:
    """The champion's predicted rate against the labels, since its window end and in the newest week: a rate
    that moved and stayed is a shift; one week's swing, or a rate within the tolerance, is not."""
    import numpy as np
    import pandas as pd

    from modelgate.loop import calibration_evidence

    spec = synthetic_spec()
    rng = np.random.default_rng(0)

    def weeks(*rates: float) -> Any:
        parts = []
        for i, rate in enumerate(rates):
            part = synthetic("abrupt", seed=0, weeks=1).assign(t=lambda f, i=i: f["t"] + dt.timedelta(weeks=i))
            labels = (np.arange(len(part)) < round(rate * len(part))).astype(int)  # the rate exactly
            parts.append(part.assign(y=rng.permutation(labels)))
        return pd.concat(parts, ignore_index=True)

    def evidence(p: float, *rates: float) -> Any:
        frame = weeks(*rates)
        return calibration_evidence(spec, _Constant(p), frame, START, START + dt.timedelta(weeks=len(rates) - 1))

    moved = evidence(0.4, 0.55, 0.55, 0.56)
    assert moved is not None and moved.shifted()
    assert [look.rows for look in moved.looks] == [3 * 336, 336]
    assert moved.tolerance == pytest.approx(spec.retrain.decay_tolerance * 0.4)  # of the rarer class's rate
    assert all(look.z > moved.critical for look in moved.looks)
    assert not evidence(0.4, 0.40, 0.41, 0.40).shifted()  # calibrated
    assert not evidence(0.4, 0.30, 0.30, 0.55).shifted()  # the newest week swung the other way from the ones before
    assert not evidence(0.4, 0.45, 0.45, 0.20).shifted()  # the newest week alone: the longer look is within it
    assert not evidence(0.4, 0.41, 0.41, 0.41).shifted()  # within the tolerance
    off = spec.model_copy(update={"retrain": spec.retrain.model_copy(update={"calibration_check": False})})
    assert calibration_evidence(off, _Constant(0.4), weeks(0.6, 0.6), START, START + dt.timedelta(weeks=1)) is None
    # nothing before the newest interval since the champion's window: no second look to confirm it with
    assert calibration_evidence(spec, _Constant(0.4), weeks(0.6), START, START) is None


def _week(n: int) -> dt.datetime:
    return START + dt.timedelta(weeks=n)


def _mark(week: int, reason: str) -> Any:  # the decision of the interval ending at `week`
    from modelgate.loop import DecisionMark

    return DecisionMark(_week(week - 1), _week(week), reason != "no_trigger", reason)


@pytest.mark.parametrize(
    ("history", "end", "expected"),
    [
        ([_mark(10, "performance_decay")], 10, None),  # one week since the change: too few to stand alone
        ([_mark(10, "performance_decay")], 11, 9),  # two weeks: half of the 28-day window
        ([_mark(10, "performance_decay")], 12, 9),
        ([_mark(10, "performance_decay")], 13, None),  # four weeks: the window holds only them anyway
        ([_mark(10, "performance_decay"), _mark(11, "drift")], 12, 9),  # drift does not move the change
        ([_mark(10, "performance_decay"), _mark(12, "performance_decay")], 13, 11),  # the newest decay counts
        ([_mark(10, "no_champion")], 12, None),  # a first champion is no change, and the window has not grown
        ([_mark(10, "performance_decay")], 15, 11),  # grown to six weeks: weighed against its last four
        ([_mark(1, "no_champion")], 20, 16),  # grown to its cap
        ([_mark(10, "performance_decay")], 9, 5),  # decisions after `end` are not seen: nothing bounds it
    ],
)
def test_shorter_window_offers_the_rows_since_a_decay_or_the_last_window_of_a_grown_one(
    history: list[Any], end: int, expected: int | None
) -> None:
    from modelgate.data import Interval
    from modelgate.loop import shorter_window

    found = shorter_window(synthetic_spec(), history, _week(end))
    assert found == (None if expected is None else Interval(_week(expected), _week(end)))


def test_choose_window_trains_on_the_rows_since_a_real_change_and_keeps_the_whole_window_otherwise() -> None:
    from modelgate.data import Interval
    from modelgate.loop import choose_window

    spec = synthetic_spec()
    whole = Interval(_week(38), _week(42))
    since = Interval(_week(40), _week(42))  # the concept changes at week 40

    def rows(frame: Any) -> Any:
        return frame[(frame["t"] >= whole.start) & (frame["t"] < whole.end)].reset_index(drop=True)

    changed = choose_window(spec, rows(synthetic("abrupt", seed=0, weeks=80)), whole, since)
    assert changed.span == since
    assert changed.detail.startswith("the rows since 2024-10-13 00:00 alone (roc_auc on the newest 168 rows: ")

    stationary = rows(shuffled(synthetic("abrupt", seed=0, weeks=80), "t", seed=0))
    kept = choose_window(spec, stationary, whole, since)
    assert kept.span == whole and kept.detail.startswith("kept the whole window (roc_auc on the newest 168 rows")

    assert choose_window(spec, stationary, whole, None) == choose_window(spec, stationary, whole, None)
    assert choose_window(spec, stationary, whole, None).span == whole
    few = choose_window(spec, stationary[stationary["t"] < _week(40) + dt.timedelta(hours=20)], whole, since)
    assert few.span == whole and few.detail.startswith("kept the whole window: ")


@pytest.mark.integration
def test_the_retrain_task_trains_and_is_judged_on_the_rows_since_a_change(
    tmp_path: Path, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tasks as the replay: after a decay, `choose_window` picks the rows since it, the version records
    that window, and evaluation holds out that window's newest rows (never rows the challenger trained on)."""
    from modelgate.config import DATA_ROOTS_ENV
    from modelgate.data import Interval
    from modelgate.pipeline import RetrainParams, RunInfo, Services, evaluate_challenger, train_challenger
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.registry.monitoring import DecisionRow
    from modelgate.report_store import ReportStore
    from modelgate.spec import FileSource

    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    synthetic("abrupt", seed=0, weeks=80).to_parquet(tmp_path / "stream.parquet")  # the change: week 40
    spec = synthetic_spec().model_copy(
        update={"source": FileSource(kind="files", path=str(tmp_path / "stream.parquet"))}
    )
    services = Services(
        registry=registry,
        data_url=None,
        artifacts=ArtifactStore(str(tmp_path / "artifacts")),
        reports=ReportStore(str(tmp_path / "reports")),
    )
    # the labels showed the change in the interval ending at week 41; the run ending at week 42 retrains
    services.monitoring.record_decision(
        DecisionRow(
            model=spec.name,
            interval_start=_week(40),
            interval_end=_week(41),
            retrain=True,
            reason="performance_decay",
            detail="",
            inputs={},
        )
    )
    run = RunInfo("modelgate_retrain__stream", "manual__1", "train_challenger", Interval(_week(41), _week(42)))
    version = registry.get_version(spec.name, train_challenger(spec, run, services, RetrainParams()))
    assert (version.window_start, version.window_end) == (_week(40), _week(42))
    assert version.tags["window_choice"].startswith(
        "the rows since 2024-10-13 00:00 alone (roc_auc on the newest 168 rows"
    )
    assert version.row_count == 2 * 336

    evaluate_challenger(spec, run, services, RetrainParams(), version.version)
    judged = [e.verdict for e in registry.history(spec.name) if e.verdict and "window" in e.verdict]
    assert [v["window"] for v in judged] == [[_week(40).isoformat(), _week(42).isoformat()]]


def test_a_shortened_window_restarts_the_window_for_later_retrains_but_not_its_own_rerun() -> None:
    from modelgate.data import Interval
    from modelgate.loop import DecisionMark, training_span

    spec = synthetic_spec()
    first = _mark(1, "no_champion")
    grown = DecisionMark(_week(11), _week(12), True, "window_grown", shortened_to=_week(8))
    assert training_span(spec, [first, grown], _week(12)) == Interval(_week(0), _week(12))  # its own re-run
    assert training_span(spec, [first, grown], _week(13)) == Interval(_week(8), _week(13))
    assert training_span(spec, [first, grown], _week(20)) == Interval(_week(8), _week(20))  # grown from there
    unshortened = DecisionMark(_week(11), _week(12), True, "window_grown")
    assert training_span(spec, [first, unshortened], _week(13)) == Interval(_week(0), _week(13))
