"""Point-in-time reads: the champion as of a moment comes from the audit log, whatever was promoted since;
the evaluation holdout never holds rows a model was fitted on; drift-triggered runs judge the interval that
drifted; what the Models card says of the last verdict is true now."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modelgate.airflow.ordering import OutOfOrder, earlier_interval_wait
from modelgate.registry import ANY_CHAMPION, Registry
from modelgate.registry.entities import RunRef
from modelgate.spec import parse_spec
from tests.conftest import REPO_ROOT
from tests.helpers import draft

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 10, 4, tzinfo=dt.UTC)


def _at(days: int) -> dt.datetime:
    return T0 + days * DAY


@pytest.mark.integration
def test_champion_at_follows_the_audit_log_by_data_time(registry: Registry) -> None:
    for run in ("r1", "r2", "r3", "r4"):
        registry.register("churn", draft(run))
    # the scheduler's catch-up: intervals ending on days 7, 14, 21 ran one after another today
    registry.promote("churn", 1, expected_champion=None, actor="dag", run=RunRef("d", "s1", "promote", _at(7)))
    registry.promote("churn", 2, expected_champion=1, actor="dag", run=RunRef("d", "s2", "promote", _at(14)))
    registry.promote("churn", 3, expected_champion=2, actor="dag", run=RunRef("d", "s3", "promote", _at(21)))
    # then a human rolls back (recorded as of now), and a backfill of day 10 records history only
    registry.rollback("churn", actor="ops", reason="bad v3")
    registry.record_event("churn", "hold", actor="dag", to_version=4, run=RunRef("d", "b1", "hold", _at(10)))
    table = [
        (_at(0), None),  # before the first champion
        (_at(7), None),  # the run for the interval ending on day 7 does not see its own promotion
        (_at(7) + dt.timedelta(seconds=1), 1),
        (_at(10), 1),  # a backfill of day 10 judges against v1, not today's champion
        (_at(14), 1),
        (_at(15), 2),
        (_at(21), 2),
        (_at(22), 3),
        (dt.datetime.now(dt.UTC) + DAY, 2),  # today: rolled back
    ]
    for moment, expected in table:
        found = registry.champion_at("churn", moment)
        assert (found.version if found else None) == expected, moment
    assert [e.to_version for e in registry.champion_changes_after("churn", _at(10))] == [2, 3, 2]
    assert [e.to_version for e in registry.champion_changes_after("churn", _at(21))] == [2]  # the rollback
    assert registry.champion_at("nobody", _at(30)) is None  # an unknown model has no champion
    events = registry.history("churn")
    assert [e.as_of for e in events if e.kind.value == "promote"] == [_at(7), _at(14), _at(21)]
    assert registry.get_champion("churn").version == 2  # type: ignore[union-attr]


def _spec(min_rows: int = 100) -> Any:
    import yaml

    from modelgate.spec import parse_spec
    from tests.conftest import REPO_ROOT

    doc = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    doc["evaluation"]["min_holdout_rows"] = min_rows
    doc["evaluation"]["slices"] = []
    return parse_spec(yaml.safe_dump(doc))


def _window(days: int = 28, per_day: int = 100) -> pd.DataFrame:
    from modelgate.datasets.churn import generate_day

    return pd.concat(
        [generate_day((T0 + i * DAY).date(), rows=per_day) for i in range(days)], ignore_index=True
    ).sort_values("event_time", ignore_index=True)


def test_the_holdout_starts_at_the_champions_window_end_and_too_few_rows_are_insufficient_evidence() -> None:
    from modelgate.loop import fit_challenger, judge

    spec, frame = _spec(), _window()
    end = frame["event_time"].max()
    champion = fit_challenger(spec, frame.iloc[: len(frame) // 2]).served.pipeline
    challenger = fit_challenger(spec, frame).evaluation_model
    # the champion's window ended 7 days before this one: only those rows of the holdout are fair
    week_ago = (end - 7 * DAY).to_pydatetime()
    judged = judge(spec, frame, challenger, champion, champion_version=1, challenger_version=2,
                   champion_window_end=week_ago)  # fmt: skip
    assert judged.holdout["event_time"].min() >= week_ago
    assert judged.verdict.evaluation.holdout_rows == len(judged.holdout) == int((frame["event_time"] >= week_ago).sum())
    everything = judge(spec, frame, challenger, champion, champion_version=1, challenger_version=2)
    assert everything.verdict.evaluation.holdout_rows > judged.verdict.evaluation.holdout_rows  # the old, biased one
    # the champion was trained through the newest rows: nothing is left to judge on, and nothing is promoted
    late = (end - dt.timedelta(hours=1)).to_pydatetime()
    starved = judge(spec, frame, challenger, champion, champion_version=1, challenger_version=2,
                    champion_window_end=late)  # fmt: skip
    assert not starved.verdict.promote
    assert starved.verdict.reason.startswith("insufficient_evidence: ")
    assert f"at least {spec.evaluation.min_holdout_rows} are needed" in starved.verdict.reason
    assert [c.name for c in starved.verdict.checks] == ["evidence"]
    assert np.isnan(starved.verdict.evaluation.primary.challenger)
    # with no champion the challenger's whole holdout is judged against the baseline, as before
    first = judge(spec, frame, challenger, None, champion_version=None, challenger_version=1)
    assert first.verdict.evaluation.holdout_rows == everything.verdict.evaluation.holdout_rows


def test_a_drift_triggered_run_takes_the_interval_of_the_monitor_run_that_raised_it() -> None:
    from modelgate.airflow.runtime import interval_extra, run_info
    from modelgate.data import DataError, Interval

    drifted = Interval(_at(14), _at(21))
    older = Interval(_at(7), _at(14))
    now = dt.datetime(2026, 12, 1, 23, 26, tzinfo=dt.UTC)
    context = {
        "dag_run": SimpleNamespace(dag_id="modelgate_retrain__churn", run_id="asset_triggered__x",
                                   run_type="asset_triggered", run_after=now),
        "ti": SimpleNamespace(task_id="decide_retrain", try_number=1),
        "data_interval_start": now,
        "data_interval_end": now,
        "triggering_asset_events": {
            "x-modelgate://churn/drift": [SimpleNamespace(extra=interval_extra(older)),
                                          SimpleNamespace(extra=interval_extra(drifted)),
                                          SimpleNamespace(extra={"other": 1})],
        },
    }  # fmt: skip
    run = run_info(context, span_before=lambda end: 7 * DAY)
    assert run.interval == drifted  # not a window ending "now"
    context["params"] = {"interval_end": "2026-10-18"}  # named in the trigger form: it wins
    named = run_info(context, span_before=lambda end: 7 * DAY)
    assert named.interval == Interval(_at(7), _at(14))
    context["params"] = {"interval_end": "last sunday"}
    with pytest.raises(DataError, match="interval_end 'last sunday' is not an ISO date"):
        run_info(context, span_before=lambda end: 7 * DAY)
    del context["params"]
    del context["triggering_asset_events"]
    manual = run_info(context, span_before=lambda end: 7 * DAY)
    assert manual.interval.end == now
    assert manual.interval.end - manual.interval.start == 7 * DAY


@pytest.mark.integration
def test_the_card_says_what_became_of_the_last_verdict(registry: Registry) -> None:
    from markupsafe import escape

    from modelgate import ui

    for run in ("r1", "r2", "r3"):
        registry.register("churn", draft(run))
    registry.promote("churn", 1, expected_champion=None, actor="dag")
    long_reason = "roc_auc 0.8000 -> 0.8200 (improvement +0.0200); guardrail brier 0.1744 -> 0.1702 " * 3
    verdict = {"champion_version": 1, "challenger_version": 2, "run_type": "backfill"}
    registry.record_event("churn", "evaluate", actor="dag", to_version=2, reason=long_reason, verdict=verdict)
    registry.record_event("churn", "hold", actor="dag", to_version=2, verdict={"held": "backfill run"})
    index = ui.overview(registry)
    [card] = index.models
    assert card.champion == 1 and card.last_verdict is not None and card.last_verdict.to_version == 2
    assert card.verdict_state == "held: backfill run (backfill)"
    html = ui.render("models.html", index=index, prefix="/modelgate")
    assert str(escape(long_reason.strip())) in html  # never cut mid-sentence
    registry.record_event("churn", "evaluate", actor="dag", to_version=3, reason="won", verdict={"x": 1})
    registry.promote("churn", 3, expected_champion=ANY_CHAMPION, actor="dag")
    assert ui.overview(registry).models[0].verdict_state == "promoted"


@pytest.mark.integration
def test_batch_scoring_stamps_the_interval_s_own_champion_and_the_first_one_before_it(registry: Registry) -> None:
    from modelgate.data import Interval
    from modelgate.deploy.batch import scoring_champion
    from modelgate.registry.errors import ModelNotFound, NoChampion

    with pytest.raises(ModelNotFound):
        scoring_champion(registry, "churn", Interval(_at(0), _at(7)))
    registry.register("churn", draft("r1"))
    with pytest.raises(NoChampion, match="no champion to score"):
        scoring_champion(registry, "churn", Interval(_at(0), _at(7)))
    registry.register("churn", draft("r2"))
    registry.promote("churn", 1, expected_champion=None, actor="dag", run=RunRef("d", "s2", "promote", _at(14)))
    registry.promote("churn", 2, expected_champion=1, actor="dag", run=RunRef("d", "s4", "promote", _at(28)))
    stamped = {
        end: scoring_champion(registry, "churn", Interval(_at(end - 7), _at(end))).version
        for end in (7, 14, 21, 28, 35)
    }
    # before the first champion: the first one (a backfill fills those intervals in); then each its own
    assert stamped == {7: 1, 14: 1, 21: 1, 28: 1, 35: 2}


@pytest.mark.integration
def test_backfilled_history_is_marked_as_such(registry: Registry) -> None:
    from modelgate import ui

    registry.register("churn", draft("r1", tags={"run_type": "backfill"}))
    verdict = {"champion_version": None, "challenger_version": 1, "run_type": "backfill"}
    registry.record_event(
        "churn", "evaluate", actor="dag", to_version=1, reason="won", verdict=verdict,
        run=RunRef("modelgate_retrain__churn", "window:x", "evaluate", _at(7)),
    )  # fmt: skip
    html = ui.render_model_page(ui.model_page(registry, "churn"), "/modelgate")
    assert html.count('<span class="badge">backfill</span>') == 2  # the version and its verdict
    assert "2026-10-11 00:00" in html  # the verdict's data time (as of), beside when it was written


@pytest.mark.parametrize(
    ("run_type", "earlier", "state", "expected"),
    [
        ("scheduled", None, None, None),  # the first run: nothing before it
        ("backfill", "backfill__w1", "success", None),
        ("backfill", "backfill__w1", "failed", None),  # finished, however: its interval decided what it could
        ("backfill", "backfill__w1", "running", "backfill__w1) is running"),  # started 10 at once: wait
        ("scheduled", "scheduled__w1", "queued", "scheduled__w1) is queued"),
        ("manual", "scheduled__w1", "running", "scheduled__w1) is running"),
        ("backfill", "backfill__w1", "queued", OutOfOrder),  # a reversed backfill past its active-run limit
    ],
)
def test_a_retrain_run_decides_only_after_the_run_of_the_interval_before_it(
    run_type: str, earlier: str | None, state: str | None, expected: Any
) -> None:
    if expected is OutOfOrder:
        with pytest.raises(OutOfOrder, match=r"backfill__w1\) is queued behind it: .*\(without --reverse\)"):
            earlier_interval_wait(run_type, earlier, state)
        return
    waiting = earlier_interval_wait(run_type, earlier, state)
    assert waiting == (None if expected is None else f"the run for the interval before this one ({expected}")


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        ("@weekly", "2026-12-02T12:00", ("2026-11-22", "2026-11-29")),
        ("@weekly", "2026-11-29T00:00", ("2026-11-22", "2026-11-29")),  # the tick itself has ended
        ("@daily", "2026-12-02T00:00:01", ("2026-12-01", "2026-12-02")),
        ("0 6 * * 1-5", "2026-12-07T05:00", ("2026-12-03T06:00", "2026-12-04T06:00")),  # Monday before 6: Thu-Fri
    ],
)
def test_the_trigger_form_names_the_last_complete_interval(schedule: str, now: str, expected: tuple) -> None:
    raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    spec = parse_spec(yaml.safe_dump({**raw, "schedule": schedule, "retrain_schedule": None}))
    got = spec.last_complete_interval(dt.datetime.fromisoformat(now).replace(tzinfo=dt.UTC))
    assert got is not None
    assert [t.isoformat()[: len(e)] for t, e in zip(got, expected, strict=True)] == list(expected)
