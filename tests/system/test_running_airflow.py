"""modelgate in a running Airflow (CeleryExecutor, two workers), driven through the REST API v2 and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelgate.registry import EventKind, VersionStatus
from tests.system.conftest import (
    BROKEN_SPEC,
    BULK_MODELS,
    BULK_STAGES,
    SHARDS,
    SYSTEM_MODELS,
    RunningAirflow,
    champion,
    events,
    versions,
)

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.slow]

WEEK = dt.timedelta(days=7)


def _day(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def test_dags_parse_and_the_plugin_serves_reports_behind_auth(airflow_stack: RunningAirflow) -> None:
    api = airflow_stack.api
    dag_ids = api.dag_ids()
    for model in SYSTEM_MODELS:
        assert {f"modelgate_{stage}__{model}" for stage in ("monitor", "retrain", "batch_predict")} <= dag_ids
    plugins = {p["name"]: p for p in api.get("/plugins")["plugins"]}
    assert plugins["modelgate"]["fastapi_apps"][0]["url_prefix"] == "/modelgate"
    assert plugins["modelgate"]["operator_extra_links"]
    anonymous = httpx.get(f"{api.base_url}/modelgate/reports/x.html")
    assert anonymous.status_code == 401
    assert httpx.get(f"{api.base_url}/modelgate/models/x").status_code == 401
    library = httpx.get(f"{api.base_url}/modelgate/reports/churn/evaluation/plotly.min.js")  # no login needed
    assert library.status_code == 200 and library.headers["content-type"].startswith("text/javascript")
    assert b"plotly" in library.content[:2000].lower()
    for path in ("/docs", "/redoc", "/openapi.json"):  # no such pages: was 200 (docs) and 500 (openapi.json)
        assert httpx.get(f"{api.base_url}/modelgate{path}").status_code in (401, 404), path
    signed_in = {"Authorization": f"Bearer {api.token}"}
    for path in ("/docs", "/redoc", "/openapi.json", "/models/NOPE", "/models/a..b/versions/1", "/models/x/versions/1"):
        response = httpx.get(f"{api.base_url}/modelgate{path}", headers=signed_in)
        assert response.status_code == 404, (path, response.status_code)  # was a 500 for invalid names
        assert response.headers["x-content-type-options"] == "nosniff"
    index = httpx.get(f"{api.base_url}/modelgate/", headers=signed_in)
    assert index.status_code == 200 and "script-src 'nonce-" in index.headers["content-security-policy"]


def test_two_hundred_models_and_a_broken_spec_cost_only_its_own_dags(airflow_stack: RunningAirflow) -> None:
    """200 specs over 4 shard files and one invalid spec: every DAG listed, one import error naming only the
    broken file, and a task of one model runs (in the modelgate pool) beside the others."""
    api = airflow_stack.api
    dag_ids = api.dag_ids()
    bulk = {f"modelgate_{stage}__{m}" for m in BULK_MODELS for stage in BULK_STAGES}
    assert len(bulk) == 800 and bulk <= dag_ids
    assert not any("broken_window" in d for d in dag_ids)
    errors = api.get("/importErrors", limit=100)
    assert errors["total_entries"] == 1, errors
    [error] = errors["import_errors"]
    assert Path(error["filename"]).name == "modelgate_spec_check.py", error["filename"]
    assert BROKEN_SPEC in error["stack_trace"] and "window_days" in error["stack_trace"], error["stack_trace"]
    assert not any(f"{m}.yaml" in error["stack_trace"] for m in (*BULK_MODELS, *SYSTEM_MODELS))
    files = {d["fileloc"].rsplit("/", 1)[-1] for d in api.get("/dags", limit=1000, tags=["bulk"])["dags"]}
    assert files == {"modelgate_dags.py", *(f"modelgate_dags_{k}.py" for k in range(1, SHARDS))}, files

    dag_id = "modelgate_monitor__bulk_123"
    api.set_paused(dag_id, False)
    run_id = api.trigger(dag_id)
    run = api.wait_run(dag_id, run_id, timeout=300)
    assert run["state"] == "success", api.task_states(dag_id, run_id)
    quality = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/data_quality")
    assert quality["state"] == "success" and quality["pool"] == "modelgate"
    assert api.get("/pools/modelgate")["slots"] >= 1


def test_ui_trigger_with_params_and_the_report_link_opens(airflow_stack: RunningAirflow) -> None:
    """A run triggered the way the UI's form sends it: conf with force, dry_run, approval and window_days."""
    api, model = airflow_stack.api, "churn_ui"
    dag_id = f"modelgate_retrain__{model}"
    api.set_paused(dag_id, False)
    run_id = api.trigger(dag_id, {"force": True, "dry_run": True, "approval": "auto", "window_days": 21})
    run = api.wait_run(dag_id, run_id, timeout=300)
    states = api.task_states(dag_id, run_id)
    assert run["state"] == "success", states
    assert run["run_type"] == "manual"
    assert states["train_challenger"] == "success" and states["promote_champion"] == "skipped"
    [version] = versions(airflow_stack.registry, model)
    assert version.window_end - version.window_start == dt.timedelta(days=21)
    assert version.status is VersionStatus.CHALLENGER  # dry run: evaluated and recorded, never promoted
    assert airflow_stack.registry.get_champion(model) is None

    links = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/evaluate_challenger/links")["extra_links"]
    url = links["modelgate report"]
    assert url.startswith(f"{api.base_url}/modelgate/reports/{model}/evaluation/"), url
    logged = str(api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/evaluate_challenger/logs/1?full_content=true"))
    assert f"modelgate report: {url}" in logged  # in the task's log too, where users look first
    page = httpx.get(url, headers={"Authorization": f"Bearer {api.token}"})
    assert page.status_code == 200 and f"v{version.version}" in page.text
    escape = httpx.get(
        f"{api.base_url}/modelgate/reports/..%2F..%2Fairflow%2Fairflow.cfg",
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert escape.status_code == 404


def _trained(airflow_stack: RunningAirflow, dag_id: str, run_id: str) -> int:
    """The version train_challenger registered in this run (its return value)."""
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train_challenger/xcomEntries/return_value"
    return int(airflow_stack.api.get(path)["value"])


def _approval_run(airflow_stack: RunningAirflow, answer: str, *, from_models_view: bool = False) -> tuple[str, str]:
    api = airflow_stack.api
    dag_id = "modelgate_retrain__churn_approval"
    api.set_paused(dag_id, False)
    run_id = api.trigger(dag_id, {"force": True, "approval": "required"})
    api.wait_task(dag_id, run_id, "approve", {"awaiting_input", "deferred"}, timeout=300)
    detail = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails")
    assert detail["options"] == ["Approve", "Reject"]
    if from_models_view:  # the model page's form: its token, then the answer as the page posts it
        auth = {"Authorization": f"Bearer {api.token}"}
        page = httpx.get(f"{api.base_url}/modelgate/models/churn_approval", headers=auth).text
        assert f'name="run_id" value="{run_id}"' in page  # the waiting run is offered
        token = re.search(r'name="token" value="([^"]+)"', page)[1]  # type: ignore[index]
        posted = httpx.post(
            f"{api.base_url}/modelgate/models/churn_approval/approvals",
            headers=auth,
            data={"token": token, "run_id": run_id, "answer": answer},
        )
        assert posted.status_code == 303 and "done=answered" in posted.headers["location"], posted.headers
    else:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
        api.patch(path, {"chosen_options": [answer]})
    api.wait_run(dag_id, run_id, timeout=300)
    return dag_id, run_id


def test_approval_answered_through_the_api_and_the_models_view(airflow_stack: RunningAirflow) -> None:
    """No champion yet, so each forced challenger passes its verdict and waits for a human: no through
    Airflow's REST API, then yes from the model page."""
    registry, model = airflow_stack.registry, "churn_approval"
    dag_id, run_id = _approval_run(airflow_stack, "Reject")
    states = airflow_stack.api.task_states(dag_id, run_id)
    assert states["promote_champion"] == "skipped" and states["record_human_rejection"] == "success", states
    rejected = registry.get_version(model, _trained(airflow_stack, dag_id, run_id))
    assert rejected.status is VersionStatus.REJECTED
    assert registry.get_champion(model) is None
    rejection = [e for e in events(registry, model) if e.kind is EventKind.REJECT][-1]
    assert rejection.actor == "admin" and rejection.reason.startswith("rejected by approver admin")

    dag_id, run_id = _approval_run(airflow_stack, "Approve", from_models_view=True)
    states = airflow_stack.api.task_states(dag_id, run_id)
    champion = registry.get_champion(model)
    assert states["promote_champion"] == "success", states
    assert champion is not None and champion.version == _trained(airflow_stack, dag_id, run_id)
    promotion = [e for e in events(registry, model) if e.kind is EventKind.PROMOTE][-1]
    assert promotion.actor == "admin" and promotion.reason.startswith("approved by admin")


def test_an_unanswered_approval_times_out_closed(airflow_stack: RunningAirflow) -> None:
    """The scheduler's timeout sweep answers with the default, Reject: the challenger is rejected as timed out."""
    api, registry, model = airflow_stack.api, airflow_stack.registry, "churn_timeout"
    dag_id = f"modelgate_retrain__{model}"
    api.set_paused(dag_id, False)
    run_id = api.trigger(dag_id, {"force": True})
    api.wait_task(dag_id, run_id, "approve", {"awaiting_input", "deferred"}, timeout=300)
    detail = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails")
    assert detail["defaults"] == ["Reject"] and [u["id"] for u in detail["assigned_users"]] == ["admin"]
    api.wait_run(dag_id, run_id, timeout=300)  # nobody answers: 20 s, then the sweep (every 15 s)
    states = api.task_states(dag_id, run_id)
    assert states["promote_champion"] == "skipped" and states["record_human_rejection"] == "success", states
    assert registry.get_version(model, _trained(airflow_stack, dag_id, run_id)).status is VersionStatus.REJECTED
    rejection = [e for e in events(registry, model) if e.kind is EventKind.REJECT][-1]
    assert rejection.actor == "approval timed out"
    assert rejection.reason.startswith("no approval within 20s: rejected, failing closed")


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f} s")
        time.sleep(2)


def _decision_table(registry: Any, model: str) -> list[tuple]:
    """Per decided interval: (end, reason, retrain, versions trained for it with their window start, verdict
    kinds, champion right after the interval): what rebuilding history must reproduce."""
    from modelgate.registry.monitoring import MonitoringStore

    found = versions(registry, model)
    history = events(registry, model)
    table = []
    for d in MonitoringStore(registry).decisions(model):
        trained = [v for v in found if v.window_end == d.interval_end]
        ids = {v.version for v in trained}
        verdicts = sorted(
            {e.kind.value for e in history if e.kind.value in ("evaluate", "reject") and e.to_version in ids}
        )
        after = registry.champion_at(model, d.interval_end + dt.timedelta(seconds=1))
        table.append(
            (
                d.interval_end,
                d.reason,
                d.retrain,
                tuple((v.version, v.window_start) for v in trained),
                tuple(verdicts),
                after.version if after else None,
            )
        )
    return table


def _quiet(api: Any, dag_id: str) -> bool:
    """No run of the DAG is queued or running, and none failed."""
    runs = api.runs(dag_id)
    failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
    assert not failed, f"{dag_id}: failed runs {failed}"
    return all(r["state"] == "success" for r in runs)


@pytest.mark.timeout(2400)  # six weeks scheduled, six rebuilt, three reprocessed: ~20 runs of the retrain DAG
def test_history_is_point_in_time_whichever_way_airflow_runs_it(airflow_stack: RunningAirflow) -> None:
    """(a) a scheduled catch-up over six weeks, with drift two weeks ago and its drift-triggered runs, and a
    backfill of the same weeks on a second, fresh model make the same decision table; (b) a backfill of three
    of those weeks after a newer champion exists decides as before and promotes nothing; (c) a drift event
    for an interval the schedule already decided changes nothing; (d) no verdict scored the champion on rows
    it was fitted on, where the old holdout rule would have."""
    api, registry, model = airflow_stack.api, airflow_stack.registry, "churn_sched"
    monitor, retrain = f"modelgate_monitor__{model}", f"modelgate_retrain__{model}"
    api.set_paused(retrain, False)
    # the monitor measures drift against a champion: unpaused together, its quick catch-up could run every
    # interval before the first retrain made one (no champion: nothing to drift from, no drift-triggered run)
    _wait(lambda: champion(registry, model) is not None, 600, "the first scheduled retrain made no champion")
    api.set_paused(monitor, False)

    def done(dag_id: str, run_type: str, count: int) -> bool:
        runs = [r for r in api.runs(dag_id) if r["run_type"] == run_type]
        return _quiet(api, dag_id) and len(runs) >= count

    _wait(lambda: done(monitor, "scheduled", 6) and done(retrain, "scheduled", 6), 1500, "catchup not finished")
    _wait(lambda: _quiet(api, retrain) and _quiet(api, monitor), 600, "drift-triggered runs not finished")
    api.set_paused(monitor, True)

    for dag_id in (monitor, retrain):
        scheduled = [r for r in api.runs(dag_id) if r["run_type"] == "scheduled"]
        ends = [r["data_interval_end"] for r in scheduled]
        assert len(set(ends)) == len(ends) == 6  # one run per interval
        by_start = sorted(scheduled, key=lambda r: r["start_date"])
        assert [r["data_interval_end"] for r in by_start] == sorted(ends), f"{dag_id} ran out of interval order"
        assert dt.datetime.fromisoformat(max(ends)) == airflow_stack.boundary
    scheduled_ends = sorted(
        dt.datetime.fromisoformat(r["data_interval_end"]) for r in api.runs(retrain) if r["run_type"] == "scheduled"
    )
    assert any(r["run_type"] == "asset_triggered" for r in api.runs(retrain)), "drift raised no retrain run"
    table = _decision_table(registry, model)
    # (c) drift-triggered runs judged the interval that drifted: no decision or window ends "now", and every
    # interval has one decision and at most one challenger, whichever run came first
    assert [row[0] for row in table] == scheduled_ends
    assert all(len(row[3]) <= 1 for row in table), table
    # the weeks since the drift retrain for a change in the data; which change is named first (decay is checked
    # before drift) depends on how the labelled rows fall, but the drift must not pass as staleness or new data
    changed = [row for row in table if row[0] > airflow_stack.boundary - 3 * WEEK]
    from modelgate.policy import RetrainReason

    change = {RetrainReason.DRIFT, RetrainReason.DECAY, RetrainReason.MISCALIBRATED, RetrainReason.SETTLED}
    assert any(row[2] and row[1] in change for row in changed), [(r[0].date(), r[1], r[2]) for r in table]
    promotions = [e for e in events(registry, model) if e.kind is EventKind.PROMOTE]
    assert promotions, "the first scheduled interval makes a first champion"

    # (c) a drift event for the last interval, after its scheduled run: the same decision, nothing new
    asset = api.get("/assets", uri_pattern=f"x-modelgate://{model}/drift")["assets"][0]
    last = scheduled_ends[-1]
    extra = {"modelgate_interval_start": (last - WEEK).isoformat(), "modelgate_interval_end": last.isoformat()}
    before_versions, before_events = len(versions(registry, model)), len(events(registry, model))
    triggered = len([r for r in api.runs(retrain) if r["run_type"] == "asset_triggered"])
    api.post("/assets/events", {"asset_id": asset["id"], "extra": extra})
    _wait(
        lambda: (
            len([r for r in api.runs(retrain) if r["run_type"] == "asset_triggered"]) > triggered
            and _quiet(api, retrain)
        ),
        600,
        "the drift event started no retrain run",
    )
    assert _decision_table(registry, model) == table
    assert len(versions(registry, model)) == before_versions
    assert [e for e in events(registry, model)[before_events:] if e.kind is EventKind.PROMOTE] == []

    # (d) every verdict against a champion held out only rows from the champion's window end on
    judged = [e for e in events(registry, model) if e.kind.value in ("evaluate", "reject") and e.verdict]
    against = [e.verdict for e in judged if e.verdict.get("champion_window_end") and e.verdict.get("holdout_from")]
    assert against, "no verdict against a champion"
    for verdict in against:
        assert verdict["holdout_from"] >= verdict["champion_window_end"], verdict

    # (a) the same weeks rebuilt by a backfill on a fresh model: the same decision table
    rebuild = "modelgate_retrain__churn_rebuild"
    api.set_paused(rebuild, False)
    created = airflow_stack.airflow_cli(
        "backfill",
        "create",
        "--dag-id",
        rebuild,
        "--from-date",
        _day(scheduled_ends[0] - WEEK),
        "--to-date",
        _day(scheduled_ends[-1] - WEEK),
        "--dag-run-conf",
        json.dumps({"promote_on_backfill": True}),
    )  # fmt: skip: the backfill's own default, up to 10 runs at once: each waits for the one before it
    assert created.returncode == 0, created.stderr[-2000:]
    _wait_backfill(airflow_stack, rebuild, timeout=1500)
    assert _quiet(api, rebuild)
    assert _decision_table(registry, "churn_rebuild") == table

    # (b) three of the weeks again, by a backfill, now that newer champions exist: decided as before,
    # judged against their own champions, promoted over nothing
    champion_now = registry.get_champion(model)
    events_before = len(events(registry, model))
    api.post(
        "/backfills",
        {
            "dag_id": retrain,
            "from_date": (scheduled_ends[1] - WEEK).isoformat(),
            "to_date": (scheduled_ends[3] - WEEK).isoformat(),
            "reprocess_behavior": "completed",
        },
    )
    _wait_backfill(airflow_stack, retrain)
    assert _quiet(api, retrain)
    assert _decision_table(registry, model) == table
    assert registry.get_champion(model) == champion_now
    newer = events(registry, model)[events_before:]
    assert [e for e in newer if e.kind is EventKind.PROMOTE] == []
    by_version = {v.version: v for v in versions(registry, model)}
    for e in newer:  # whatever they recorded mentions no version trained after their interval
        for key in ("champion_version", "challenger_version", "champion_seen"):
            mentioned = (e.verdict or {}).get(key)
            if mentioned:
                assert by_version[mentioned].window_end <= e.as_of, (e.kind, e.as_of, key, mentioned)

    # (d) the overlap reproduced, then fixed: a challenger forced for the days since the champion's window
    # ended. The old rule (the newest holdout_fraction of its window) reaches back into the rows the refit
    # champion was fitted on; the holdout now starts at the champion's window end
    current = registry.get_champion(model)
    assert current is not None and current.window_end is not None
    until = airflow_stack.now.replace(microsecond=0)  # the rows are seeded up to `now`
    run_id = api.trigger(retrain, {"force": True, "interval_end": until.isoformat()})
    assert api.wait_run(retrain, run_id, timeout=600)["state"] == "success"
    verdicts = [e for e in events(registry, model) if e.kind.value in ("evaluate", "reject") and e.verdict]
    [judged] = [e for e in verdicts if dt.datetime.fromisoformat(e.verdict["window"][1]) == until]
    assert judged.verdict is not None and judged.verdict["champion_window_end"] == current.window_end.isoformat()
    start, end = (dt.datetime.fromisoformat(x) for x in judged.verdict["window"])
    old_rule = start + (end - start) * 0.7  # the newest holdout_fraction (0.3) of the challenger's window
    assert old_rule < current.window_end  # reproduced: the old holdout held rows the champion was fitted on
    if judged.verdict.get("holdout_from"):  # fixed: only rows after them (or, within hours of it, too few)
        assert dt.datetime.fromisoformat(judged.verdict["holdout_from"]) >= current.window_end
    else:
        assert (judged.reason or "").startswith("insufficient_evidence: "), judged.reason
    api.set_paused(retrain, True)


def _backfill_range(airflow_stack: RunningAirflow) -> tuple[dt.datetime, dt.datetime]:
    """Six weekly intervals, all before the drift: logical dates (interval starts) 12 to 7 weeks back."""
    return airflow_stack.boundary - 12 * WEEK, airflow_stack.boundary - 7 * WEEK


def _wait_backfill(airflow_stack: RunningAirflow, dag_id: str, timeout: float = 900) -> dict:
    api = airflow_stack.api

    def backfill() -> dict:
        found = api.get("/backfills", dag_id=dag_id, limit=100)["backfills"]
        return max(found, key=lambda b: b["id"])

    _wait(lambda: backfill()["completed_at"] is not None, timeout, f"{dag_id}: backfill not completed")
    return backfill()


def test_backfill_from_the_cli_then_reprocessed_through_the_api(airflow_stack: RunningAirflow) -> None:
    api, registry, model = airflow_stack.api, airflow_stack.registry, "churn_backfill"
    dag_id = f"modelgate_retrain__{model}"
    api.set_paused(dag_id, False)  # a paused DAG's runs, backfills included, never start
    first, last = _backfill_range(airflow_stack)
    created = airflow_stack.airflow_cli(
        "backfill", "create", "--dag-id", dag_id, "--from-date", _day(first), "--to-date", _day(last)
    )
    assert created.returncode == 0, created.stderr[-2000:]
    _wait_backfill(airflow_stack, dag_id)

    runs = api.runs(dag_id)
    assert len(runs) == 6 and {r["run_type"] for r in runs} == {"backfill"}
    assert {r["state"] for r in runs} == {"success"}, [(r["dag_run_id"], r["state"]) for r in runs]
    trained = versions(registry, model)
    expected_ends = {first + (i + 1) * WEEK for i in range(6)}
    assert {v.window_end for v in trained} == expected_ends  # one challenger per interval
    assert len(trained) == 6
    assert registry.get_champion(model) is None  # backfills record verdicts, never promote
    assert all(v.status is VersionStatus.CHALLENGER for v in trained)
    assert all(e.kind is not EventKind.PROMOTE for e in events(registry, model))
    before = events(registry, model)

    api.post(
        "/backfills",
        {
            "dag_id": dag_id,
            "from_date": first.isoformat(),
            "to_date": last.isoformat(),
            "reprocess_behavior": "completed",
            "max_active_runs": 3,
        },
    )
    _wait_backfill(airflow_stack, dag_id)
    reruns = api.runs(dag_id)
    assert len(reruns) == 6 and {r["state"] for r in reruns} == {"success"}
    assert [v.version for v in versions(registry, model)] == [v.version for v in trained]  # nothing new
    assert [e.id for e in events(registry, model)] == [e.id for e in before]  # no new event either


def test_backfill_with_promote_on_backfill_promotes_in_interval_order(airflow_stack: RunningAirflow) -> None:
    api, registry, model = airflow_stack.api, airflow_stack.registry, "churn_ordered"
    dag_id = f"modelgate_retrain__{model}"
    api.set_paused(dag_id, False)  # a paused DAG's runs, backfills included, never start
    first, last = _backfill_range(airflow_stack)
    api.post(
        "/backfills",
        {
            "dag_id": dag_id,
            "from_date": first.isoformat(),
            "to_date": last.isoformat(),
            "dag_run_conf": {"promote_on_backfill": True, "force": True},
        },  # the backfill's default max_active_runs (10): all six start at once, and still decide in order
    )
    _wait_backfill(airflow_stack, dag_id)
    runs = api.runs(dag_id)
    assert {r["state"] for r in runs} == {"success"}
    decided = sorted(runs, key=lambda r: _task_start(api, dag_id, r["dag_run_id"], "training_data_quality"))
    assert [r["data_interval_end"] for r in decided] == sorted(r["data_interval_end"] for r in runs)
    by_version = {v.version: v for v in versions(registry, model)}
    promoted = [by_version[e.to_version] for e in events(registry, model) if e.kind is EventKind.PROMOTE]
    assert promoted, "the first interval's challenger becomes the first champion"
    ends = [v.window_end for v in promoted]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)
    champion = registry.get_champion(model)
    assert champion is not None and champion.version == promoted[-1].version


def _task_start(api: Any, dag_id: str, run_id: str, task_id: str) -> str:
    """When a run's task started (ISO text, so sortable)."""
    return str(api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")["start_date"])


def _worker_of(stack: object, pid: int) -> str | None:
    """Which worker component runs the process `pid`: walk up its parents to a component's leader."""
    leaders = {proc.pid: name for name, proc in stack.processes.items()}  # type: ignore[attr-defined]
    while pid > 1:
        if pid in leaders:
            return leaders[pid]
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state is the parent's pid
    return None


def test_worker_killed_during_training_is_retried_on_the_other_worker(airflow_stack: RunningAirflow) -> None:
    api, registry, stack = airflow_stack.api, airflow_stack.registry, airflow_stack.stack
    dag_id = "modelgate_retrain__churn_faults"
    api.set_paused(dag_id, False)
    run_id = api.trigger(dag_id, {"force": True})
    api.wait_task(dag_id, run_id, "train_challenger", {"running"}, timeout=300)
    ti_path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train_challenger"
    _wait(lambda: api.get(ti_path).get("pid"), 60, "the running task has no pid")
    victim = _worker_of(stack, int(api.get(ti_path)["pid"]))
    assert victim is not None and victim.startswith("worker-"), victim
    stack.kill(victim)  # kill -9 the worker with its task process
    try:
        run = api.wait_run(dag_id, run_id, timeout=600)
        assert run["state"] == "success", api.task_states(dag_id, run_id)
        retry = api.get(ti_path)["try_number"]
        assert retry >= 2  # the killed try was noticed and retried
        survivor = next(name for name in stack.processes if name.startswith("worker-") and name != victim)
        executed = (stack.config.log_dir / f"{survivor}.log").read_text(errors="replace")
        assert f"run_id={run_id}/task_id=train_challenger/attempt={retry}.log" in executed  # on the other worker
        trained = _trained(airflow_stack, dag_id, run_id)
        window = registry.get_version("churn_faults", trained).source.run_id  # the registration's key
        assert [v.version for v in versions(registry, "churn_faults") if v.source.run_id == window] == [trained]
    finally:
        stack.start([victim])


def test_registry_connections_killed_during_promotion(airflow_stack: RunningAirflow) -> None:
    """The promotion's transaction waits on a lock and its backends are terminated: retried, one champion."""
    import psycopg

    api, registry, model = airflow_stack.api, airflow_stack.registry, "churn_promote"
    dag_id = f"modelgate_retrain__{model}"
    conninfo = airflow_stack.registry_url.replace("postgresql+psycopg://", "postgresql://", 1)
    assert champion(registry, model) is None  # so the challenger is promoted: the first champion
    api.set_paused(dag_id, False)
    waiting: list[int] = []

    def promotion_waits() -> bool:
        with psycopg.connect(conninfo, autocommit=True) as probe:
            rows = probe.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'modelgate' "
                "AND wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchall()
        waiting[:] = [r[0] for r in rows]
        return bool(waiting)

    with psycopg.connect(conninfo) as blocker:
        # SHARE lets every reader through and stops the only writer of model_alias: a promotion
        blocker.execute("LOCK TABLE model_alias IN SHARE MODE")
        run_id = api.trigger(dag_id, {"force": True, "approval": "auto"})
        api.wait_task(dag_id, run_id, "promote_champion", {"running"}, timeout=300)
        _wait(promotion_waits, 120, "the promotion never reached the lock")
        with psycopg.connect(conninfo, autocommit=True) as killer:
            for pid in waiting:
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        blocker.rollback()
    run = api.wait_run(dag_id, run_id, timeout=300)
    assert run["state"] == "success", api.task_states(dag_id, run_id)
    assert api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/promote_champion")["try_number"] >= 2
    promotions = [e for e in events(registry, model) if e.kind is EventKind.PROMOTE]
    assert len(promotions) == 1 and promotions[0].run.run_id == run_id
    champions = [v for v in versions(registry, model) if v.status is VersionStatus.CHAMPION]
    assert len(champions) == 1 and champions[0] == registry.get_champion(model)
    assert champions[0].version == promotions[0].to_version


def test_scheduler_killed_and_restarted_during_a_backfill(airflow_stack: RunningAirflow) -> None:
    api, registry, stack, model = airflow_stack.api, airflow_stack.registry, airflow_stack.stack, "churn_restart"
    dag_id = f"modelgate_retrain__{model}"
    api.set_paused(dag_id, False)  # a paused DAG's runs, backfills included, never start
    first, last = _backfill_range(airflow_stack)
    api.post(
        "/backfills",
        {"dag_id": dag_id, "from_date": first.isoformat(), "to_date": last.isoformat(), "max_active_runs": 2},
    )
    _wait(lambda: len(versions(registry, model)) >= 2, 600, "the backfill did not get going")
    stack.kill("scheduler")  # kill -9, mid-backfill
    time.sleep(5)
    stack.start(["scheduler"])
    _wait_backfill(airflow_stack, dag_id)
    runs = api.runs(dag_id)
    assert len(runs) == 6 and {r["state"] for r in runs} == {"success"}, [(r["dag_run_id"], r["state"]) for r in runs]
    trained = versions(registry, model)
    assert len(trained) == 6 and len({v.window_end for v in trained}) == 6  # no duplicate challengers
    kinds = [e.kind for e in events(registry, model)]
    assert kinds.count(EventKind.REGISTER) == 6 and kinds.count(EventKind.EVALUATE) == 6
    assert json.dumps(api.get("/monitor/health")["scheduler"]["status"]) == '"healthy"'
