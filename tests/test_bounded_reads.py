"""A decision reads what it needs, not the model's whole past: the bounded reads give the loop's functions
the same answers as the whole history (random histories on real Postgres)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from modelgate.datasets.streams import synthetic_spec
from modelgate.loop import (
    DecisionMark,
    DriftMark,
    decision_reach,
    growth_lost,
    last_drift_retrain,
    live_drift_flags,
    shorter_window,
    training_span,
    unsettled_change,
)
from modelgate.policy import RetrainReason
from modelgate.registry.monitoring import DecisionRow, DriftRow, MonitoringStore
from modelgate.registry.store import Registry

pytestmark = pytest.mark.integration

T0 = dt.datetime(2020, 1, 6, tzinfo=dt.UTC)
WEEK = dt.timedelta(weeks=1)
R = RetrainReason
REASONS = [R.SKIP.value] * 6 + [
    R.DRIFT.value,
    R.DECAY.value,
    R.DECAY.value,
    R.SETTLED.value,
    R.GROWN.value,
    R.SLID.value,
    R.STALENESS.value,
]
CHANGE = (R.DRIFT.value, R.DECAY.value)


def _history(rng: random.Random, weeks: int) -> list[DecisionMark]:
    """Weekly decisions with runs of change-triggered retrains, and a few skipped weeks (no run)."""
    out = [DecisionMark(T0, T0 + WEEK, True, R.NO_CHAMPION.value)]
    for k in range(1, weeks):
        if rng.random() < 0.05:
            continue
        reason = rng.choice(REASONS)
        if out[-1].reason in CHANGE and rng.random() < 0.5:
            reason = out[-1].reason  # a chain of change-triggered retrains
        start = T0 + k * WEEK
        out.append(DecisionMark(start, start + WEEK, reason != R.SKIP.value, reason))
    return out


def _record(monitoring: MonitoringStore, model: str, marks: list[DecisionMark]) -> None:
    for m in marks:
        monitoring.record_decision(DecisionRow(model, m.interval_start, m.interval_end, m.retrain, m.reason, "", {}))


def _marks(rows: list[DecisionRow]) -> list[DecisionMark]:
    return [DecisionMark(r.interval_start, r.interval_end, r.retrain, r.reason) for r in rows]


@pytest.mark.parametrize("max_window_days", [None, 42])
def test_the_bounded_decisions_answer_as_the_whole_history(registry: Registry, max_window_days: int | None) -> None:
    spec = synthetic_spec().model_copy(update={"max_window_days": max_window_days})
    monitoring = MonitoringStore(registry)
    rng = random.Random(7)
    history = _history(rng, 160)
    _record(monitoring, spec.name, history)
    retrains = [m for m in history if m.retrain]
    checked = 0
    for _ in range(120):
        end = rng.choice(history).interval_end
        prior_full = [m for m in history if m.interval_end < end]
        through_full = [m for m in history if m.interval_end <= end]
        trained = [m for m in retrains if m.interval_end < end] or retrains[:1]
        champion_end = rng.choice(trained).interval_end
        champion_start = champion_end - dt.timedelta(days=rng.choice([28, 35, 56, 112]))
        reach = decision_reach(spec, end, (champion_start, champion_end))
        rows = monitoring.decisions_within(
            spec.name, end=reach.end, since=reach.since, champion_window=reach.champion_window
        )
        through = _marks(rows)
        prior = [m for m in through if m.interval_end < end]
        assert set(through) <= set(through_full)
        assert len(rows) <= 12 + 2 * 16 + 3  # the longest window's weeks, the champion's, three more
        assert training_span(spec, prior, end) == training_span(spec, prior_full, end)
        assert training_span(spec, through, end) == training_span(spec, through_full, end)
        assert shorter_window(spec, through, end) == shorter_window(spec, through_full, end)
        fixed = end - dt.timedelta(days=spec.window_days)
        for window in (dt.timedelta(days=28), dt.timedelta(days=7)):
            kwargs = {"champion_window": (champion_start, champion_end), "window_start": fixed, "window": window}
            assert unsettled_change(prior, **kwargs) == unsettled_change(prior_full, **kwargs)  # type: ignore[arg-type]
        for rejected in (True, False):
            assert growth_lost(prior, newest_rejected=rejected) == growth_lost(prior_full, newest_rejected=rejected)
        assert last_drift_retrain(prior) == last_drift_retrain(prior_full)
        assert (prior[-1] if prior else None) == (prior_full[-1] if prior_full else None)
        checked += 1
    assert checked == 120
    # the history chains change-triggered retrains, so `unsettled_change` found some changes to settle
    found = 0
    for m in retrains:
        end = m.interval_end + 5 * WEEK
        prior_full = [d for d in history if d.interval_end < end]
        found += (
            unsettled_change(
                prior_full,
                champion_window=(m.interval_end - dt.timedelta(days=28), m.interval_end),
                window_start=end - dt.timedelta(days=28),
                window=dt.timedelta(days=28),
            )
            is not None
        )
    assert found > 0


def test_the_drift_runs_a_decision_reads_answer_as_the_whole_timeline(registry: Registry, tmp_path) -> None:
    from modelgate.pipeline import Services, _drift_marks
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.registry.entities import ModelVersion
    from modelgate.report_store import ReportStore

    spec = synthetic_spec()
    spec = spec.model_copy(update={"retrain": spec.retrain.model_copy(update={"drift_runs_n": 3})})
    services = Services(registry, None, ArtifactStore(str(tmp_path / "a")), ReportStore(str(tmp_path / "r")))
    rng = random.Random(3)
    timeline = []
    for k in range(150):
        start = T0 + k * WEEK
        mark = DriftMark(start + WEEK, rng.random() < 0.7, 1 + k // 40)
        timeline.append(mark)
        services.monitoring.upsert_drift(
            DriftRow(spec.name, start, start + WEEK, mark.champion_version, {}, 0.5, mark.drifted, 10, 10, None)
        )
    for _ in range(150):
        end = rng.choice(timeline).interval_end
        version = rng.choice([1, 2, 3, 4])
        window_end = T0 + (40 * (version - 1)) * WEEK
        rearmed = rng.choice([None, T0 + rng.randrange(150) * WEEK])
        champion = _version(ModelVersion, spec.name, version, window_end)
        kwargs = {
            "champion_version": version,
            "champion_window_end": window_end,
            "last_drift_retrain": rearmed,
            "runs": 3,
        }
        full = [m for m in timeline if m.interval_end <= end]
        bounded = _drift_marks(services, spec, champion, rearmed, end)
        assert len(bounded) <= 4
        assert live_drift_flags(bounded, **kwargs) == live_drift_flags(full, **kwargs)  # type: ignore[arg-type]


def _version(cls: type, model: str, version: int, window_end: dt.datetime):  # type: ignore[no-untyped-def]
    """A champion as `_drift_marks` reads it: its number and the end of its window."""
    import dataclasses

    fields = {f.name: None for f in dataclasses.fields(cls)}
    return cls(**{**fields, "model": model, "version": version, "window_end": window_end})


def test_newest_trained_and_last_rescored_read_one_row(registry: Registry, tmp_path) -> None:
    from modelgate.registry.entities import EventKind, RunRef
    from tests.helpers import draft

    name = "bounded"
    for week in range(1, 5):
        registry.register(name, draft(f"r{week}", window_start=T0, window_end=T0 + week * WEEK, row_count=100))
    assert registry.newest_trained(name, from_version=2, until=T0 + 3 * WEEK).version == 3  # type: ignore[union-attr]
    assert registry.newest_trained(name, from_version=4, until=T0 + 3 * WEEK) is None
    assert registry.last_rescored(name, 2, before=T0 + 10 * WEEK) is None

    def verdict(kind: EventKind, champion: int, window_end: dt.datetime, as_of: dt.datetime) -> None:
        window = [(window_end - WEEK).isoformat(), window_end.isoformat()]
        registry.record_event(
            name,
            kind,
            actor="test",
            to_version=4,
            verdict={"champion_version": champion, "window": window},
            run=RunRef("d", f"run-{kind.value}-{as_of:%Y%m%d}", "evaluate", as_of),
        )

    verdict(EventKind.EVALUATE, 2, T0 + 5 * WEEK, T0 + 5 * WEEK)
    verdict(EventKind.REJECT, 2, T0 + 7 * WEEK, T0 + 7 * WEEK)
    verdict(EventKind.HOLD, 3, T0 + 9 * WEEK, T0 + 9 * WEEK)  # another champion's
    registry.record_event(name, EventKind.REJECT, actor="test", to_version=4, verdict={"champion_version": 2})
    assert registry.last_rescored(name, 2, before=T0 + 10 * WEEK) == T0 + 7 * WEEK
    assert registry.last_rescored(name, 2, before=T0 + 7 * WEEK) == T0 + 5 * WEEK  # as of then
    assert registry.last_rescored(name, 3, before=T0 + 10 * WEEK) == T0 + 9 * WEEK


def test_what_lies_outside_the_windows_is_still_read(registry: Registry) -> None:
    """The two reads a plain "since" misses: a retrain long ago (the champion has served quietly since), and
    the chain of change-triggered retrains reaching back past the champion's window across a skipped week."""
    spec = synthetic_spec()
    monitoring = MonitoringStore(registry)
    w = T0 + 20 * WEEK
    history = [
        DecisionMark(T0, T0 + WEEK, True, R.NO_CHAMPION.value),
        DecisionMark(w - WEEK, w, True, R.DRIFT.value),
        # the week from w is skipped (no run)
        DecisionMark(w + WEEK, w + 2 * WEEK, True, R.DRIFT.value),  # trained the champion
    ]
    quiet = [DecisionMark(w + k * WEEK, w + (k + 1) * WEEK, False, R.SKIP.value) for k in range(2, 60)]
    quiet[28] = DecisionMark(w + 30 * WEEK, w + 31 * WEEK, True, R.GROWN.value)  # rejected; then quiet weeks
    history += quiet
    _record(monitoring, spec.name, history)

    def bounded(end: dt.datetime, champion: tuple[dt.datetime, dt.datetime]) -> list[DecisionMark]:
        reach = decision_reach(spec, end, champion)
        return [
            m
            for m in _marks(
                monitoring.decisions_within(
                    spec.name, end=reach.end, since=reach.since, champion_window=reach.champion_window
                )
            )
            if m.interval_end < end
        ]

    champion = (w + dt.timedelta(days=3), w + 2 * WEEK)  # its window starts inside the skipped week
    end = w + 20 * WEEK  # the longest window (16 weeks) starts after the chain
    full = [m for m in history if m.interval_end < end]
    kwargs = {"champion_window": champion, "window_start": end - dt.timedelta(days=28), "window": 4 * WEEK}
    assert unsettled_change(full, **kwargs) is None  # type: ignore[arg-type]
    assert unsettled_change(bounded(end, champion), **kwargs) is None  # type: ignore[arg-type]
    end = w + 55 * WEEK
    full = [m for m in history if m.interval_end < end]
    assert growth_lost(full, newest_rejected=True)
    assert growth_lost(bounded(end, champion), newest_rejected=True)
    assert last_drift_retrain(full) == last_drift_retrain(bounded(end, champion)) == w + 2 * WEEK
