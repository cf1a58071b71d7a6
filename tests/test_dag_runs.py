"""The monitor and retrain DAGs end to end through dag.test(), on real Postgres and real Airflow.

The DAGs are parsed once for the module. Every scenario gets its own registry database, cloned from one of
three templates built once over weekly intervals of generated data whose drift starts on 2026-03-01:
`data` (no model yet), `first_champion` (the retrain of 2026-02-01 promoted v1) and `drift_champion` (then
the monitor and retrain of 2026-03-15 promoted v2). Scenarios depend on a template, never on each other:
(a) no champion -> trained, promoted        (f) the same interval again -> nothing new
(b) no drift -> skipped with its reason     (c) drift -> retrained, challenger wins, promoted
(d) challenger trained on degraded labels -> rejected, champion kept
(g) backfill-typed run -> challenger registered, verdict recorded, champion unchanged
(h) approval required -> waits; the approver is recorded
(e) quality failures (null targets, a missing column) -> the task fails naming them, nothing registered
(k) the same rows read from BigQuery (a fake at the wire) -> the same window, model and verdict
(n) a multiclass model (plan_change) -> promoted over the class prior, deployed, drift on its predicted class
    mix, retrained after the drift with per-class slices in the verdict, batch scores with their class
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from modelgate.datasets.churn import write_days
from modelgate.registry import EventKind, Registry, VersionStatus
from modelgate.registry.connection import create_registry_engine
from modelgate.registry.entities import RunRef
from modelgate.registry.monitoring import MonitoringStore
from tests.conftest import REPO_ROOT
from tests.helpers import dags_for

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.slow]

UTC = dt.UTC
DRIFT_START = dt.date(2026, 3, 1)


def sunday(month: int, day: int) -> dt.datetime:
    value = dt.datetime(2026, month, day, tzinfo=UTC)
    assert value.weekday() == 6, value
    return value


def _freeze(database: str) -> str:
    """A template database holding `database` as it is now (its other sessions are closed first)."""
    from tests.conftest import _admin, _new_database

    with _admin() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
    return _new_database(database)


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory, template_db: str, airflow_db: Path) -> Iterator[dict[str, Any]]:
    """The DAGs parsed once, and the three database templates the scenarios start from."""
    from tests.conftest import _db_url, _drop_database, _new_database

    root = tmp_path_factory.mktemp("dagruns")
    work = _new_database(template_db)
    url = _db_url(work)
    write_days(url, dt.date(2025, 12, 1), dt.date(2026, 4, 27), rows_per_day=200, drift_start=DRIFT_START)

    include = root / "include"
    (include / "models").mkdir(parents=True)
    (include / "expectations").mkdir()
    spec = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    notes = root / "notifications.log"
    spec["notifiers"] = [{"name": "tests.notifiers.FileNotifier", "params": {"path": str(notes)}}]
    spec["evaluation"]["bootstrap_samples"] = 400
    spec.update(start_date="2025-11-01", catchup=False)  # the shipped spec's start is relative (live example)
    spec["ab"] = {"min_labelled": 100}  # modelgate_ab__churn
    spec["deploy"]["keep_predictions"] = "90d"  # batch_predict prunes the prediction log after scoring
    (include / "models" / "churn.yaml").write_text(yaml.safe_dump(spec))
    vertex_spec = {
        **spec,
        "name": "churn_vertex",
        "deploy": {
            "target": "vertex",
            "project": "test-project",
            "region": "us-central1",
            "gcs_prefix": "gs://mg-bucket/serving",
            "serving_container_image_uri": "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-5:latest",
            "canary_steps": [25, 100],
            "rollback_registry_on_failure": True,
            "batch_prediction_job": True,
        },
    }
    (include / "models" / "churn_vertex.yaml").write_text(yaml.safe_dump(vertex_spec))
    bigquery_spec = {**spec, "name": "churn_bq", "source": {"kind": "bigquery", "table": "test-project.crm.churn"}}
    (include / "models" / "churn_bq.yaml").write_text(yaml.safe_dump(bigquery_spec))
    multiclass = yaml.safe_load((REPO_ROOT / "include" / "models" / "plan_change.yaml").read_text())
    multiclass.update(start_date="2025-11-01", catchup=False, notifiers=spec["notifiers"])
    multiclass["estimator"]["params"]["max_iter"] = 40  # three trees an iteration: kept short for the suite
    multiclass["evaluation"]["bootstrap_samples"] = 400
    (include / "models" / "plan_change.yaml").write_text(yaml.safe_dump(multiclass))

    with dags_for(url, include, root, "modelgate_dags_under_test") as dags:
        templates = {"data": _freeze(work)}
        building = {"dags": dags}
        assert run_dag(building, "modelgate_retrain__churn", sunday(2, 1))["promote_champion"] == "success"
        templates["first_champion"] = _freeze(work)
        assert run_dag(building, "modelgate_monitor__churn", sunday(3, 15))["signal_drift"] == "success"
        assert run_dag(building, "modelgate_retrain__churn", sunday(3, 15))["promote_champion"] == "success"
        templates["drift_champion"] = _freeze(work)
        _drop_database(work)
        yield {"dags": dags, "templates": templates, "notes": notes, "include": include, "root": root}
    for name in templates.values():
        _drop_database(name)


def _world(stage: dict[str, Any], template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A registry database of this scenario's own, cloned from `template`; the tasks are pointed at it."""
    from tests.conftest import _db_url, _drop_database, _new_database
    from tests.helpers import registry_connection

    name = _new_database(stage["templates"][template])
    url = _db_url(name)
    monkeypatch.setenv("AIRFLOW_CONN_MODELGATE_REGISTRY", registry_connection(url))
    monkeypatch.setenv("MODELGATE_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MODELGATE_SERVING_DIR", str(tmp_path / "serving"))
    notes_path: Path = stage["notes"]
    registry = Registry(create_registry_engine(url))
    yield {
        "dags": stage["dags"],
        "registry": registry,
        "monitoring": MonitoringStore(registry),
        "url": url,
        "notes": notes_path,
        "notes_from": notes_path.stat().st_size if notes_path.exists() else 0,
        "reports": tmp_path / "reports",
        "serving": tmp_path / "serving",
        "include": stage["include"],
    }
    registry.close()
    _drop_database(name)


@pytest.fixture
def fresh_world(stage: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Data, and no model yet."""
    yield from _world(stage, "data", tmp_path, monkeypatch)


@pytest.fixture
def world(stage: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """v1 is the champion, trained on the four weeks to 2026-02-01 by the retrain DAG."""
    yield from _world(stage, "first_champion", tmp_path, monkeypatch)


@pytest.fixture
def drifted_world(stage: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """v2 is the champion, retrained after the drift of 2026-03-15; v1 is archived."""
    yield from _world(stage, "drift_champion", tmp_path, monkeypatch)


DEFAULT_PARAMS = {
    "force": False,
    "window_days": None,
    "dry_run": False,
    "approval": "spec",
    "promote_on_backfill": False,
    "interval_end": None,
}


def run_dag(world: dict[str, Any], dag_id: str, logical_date: dt.datetime, conf: dict | None = None) -> dict[str, str]:
    """One dag.test() run; task states by id. Retrain runs get every param, since in-process dag.test()
    lets one run's conf linger in the shared task params (a real worker parses the DAG afresh)."""
    full = {**DEFAULT_PARAMS, **(conf or {})} if "retrain" in dag_id else {}
    dag_run = world["dags"][dag_id].test(logical_date=logical_date, run_conf=full)
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    states["__run__"] = str(getattr(dag_run.state, "value", dag_run.state))
    return states


def snapshot(world: dict[str, Any]) -> tuple[int, int, int, int]:
    """(versions, events, drift rows, decisions): what a repeated interval must leave unchanged."""
    registry: Registry = world["registry"]
    with registry.engine.connect() as conn:
        counts = [
            conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("model_version", "registry_event", "drift_result", "retrain_decision")
        ]
    return counts[0], counts[1], counts[2], counts[3]


def report_link(dag_id: str, task_id: str) -> str | None:
    """The URL the task's 'modelgate report' extra link resolved to, as the worker stored it."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            sa.select(XComModel)
            .where(
                XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == "_link_ModelgateReportLink"
            )
            .order_by(XComModel.timestamp.desc())
        ).first()
        if row is None:
            return None
        try:
            return json.loads(row.value)
        except (TypeError, ValueError):
            return str(row.value)


def decision_for(world: dict[str, Any], end: dt.datetime) -> Any:
    return next(d for d in world["monitoring"].decisions("churn") if d.interval_end == end)


def champion_version(world: dict[str, Any]) -> int | None:
    champion = world["registry"].get_champion("churn")
    return None if champion is None else champion.version


def notes(world: dict[str, Any]) -> str:
    """What the notifier wrote during this scenario."""
    path: Path = world["notes"]
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(world["notes_from"])
        return fh.read().decode()


def test_a_no_champion_trains_and_promotes(fresh_world: dict[str, Any]) -> None:
    world = fresh_world
    states = run_dag(world, "modelgate_retrain__churn", sunday(2, 1))
    assert states["__run__"] == "success"
    assert states["decide_retrain"] == "success" and states["skip_retrain"] == "skipped"
    assert states["auto_approve"] == "success" and states["promote_champion"] == "success"
    assert states["approve"] == "skipped" and states["notify_rejection"] == "skipped"
    assert decision_for(world, sunday(1, 25) + dt.timedelta(days=7)).reason == "no_champion"
    champion = world["registry"].get_champion("churn")
    assert champion is not None and champion.version == 1
    assert champion.window_start == sunday(1, 4) and champion.window_end == sunday(2, 1)
    # the quality gate ran before the decision, on the window it started from (up to four windows: nothing
    # decided yet); no champion then anchored the training window at four weeks. The tag finds its Data Docs.
    assert champion.tags["quality_window"] == f"{sunday(2, 1) - dt.timedelta(days=112):%Y%m%dT%H%M}-20260201T0000"
    from modelgate.report_store import ReportStore
    from modelgate.ui import version_reports

    links = version_reports(world["registry"], champion, lambda path: path, ReportStore.from_env())
    assert any(link.what == "training data quality (Data Docs)" for link in links)
    assert champion.reference_uri and champion.data_fingerprint and champion.code_version == "tests"
    promote = world["registry"].history("churn", kinds=["promote"])[-1]
    assert promote.run.dag_id == "modelgate_retrain__churn" and promote.verdict["decision"] == "promote"
    assert "v1 is the champion" in notes(world)


def test_f_the_same_interval_twice_adds_nothing(world: dict[str, Any]) -> None:
    before = snapshot(world)
    states = run_dag(world, "modelgate_retrain__churn", sunday(2, 1))
    assert states["__run__"] == "success" and states["promote_champion"] == "skipped"  # a no-op, no asset event
    assert snapshot(world) == before
    assert champion_version(world) == 1


def test_b_no_drift_skips_with_its_reason(world: dict[str, Any]) -> None:
    monitor = run_dag(world, "modelgate_monitor__churn", sunday(2, 8))
    assert monitor["data_quality"] == "success" and monitor["detect_drift"] == "success"
    assert monitor["signal_drift"] == "skipped"
    row = world["monitoring"].drift_timeline("churn")[-1]
    assert row.interval_end == sunday(2, 8) and not row.drifted and row.champion_version == 1
    assert Path(row.report_uri or "").is_file()
    served = "http://localhost:8080/modelgate/reports/"  # the api-server serves the reports directory
    relative = Path(row.report_uri or "").relative_to(world["reports"]).as_posix()
    assert report_link("modelgate_monitor__churn", "detect_drift") == served + relative
    docs = report_link("modelgate_monitor__churn", "data_quality") or ""
    assert docs.startswith(served) and docs.endswith(".html")
    assert (world["reports"] / docs.removeprefix(served)).is_file()
    before = snapshot(world)
    monitor_again = run_dag(world, "modelgate_monitor__churn", sunday(2, 8))
    assert monitor_again["__run__"] == "success" and snapshot(world) == before  # upserted, not appended

    states = run_dag(world, "modelgate_retrain__churn", sunday(2, 8))
    assert states["skip_retrain"] == "success" and states["train_challenger"] == "skipped"
    decision = decision_for(world, sunday(2, 8))
    assert not decision.retrain and decision.reason == "no_trigger"
    assert decision.detail.startswith("no trigger: drift in 0 of the last 1 runs")


def test_c_drift_retrains_and_the_challenger_wins(world: dict[str, Any]) -> None:
    monitor = run_dag(world, "modelgate_monitor__churn", sunday(3, 15))
    assert monitor["signal_drift"] == "success"  # emits x-modelgate://churn/drift
    row = world["monitoring"].drift_timeline("churn")[-1]
    assert row.drifted and {"monthly_charges", "internet_service"} <= {c for c, s in row.scores.items() if s["drifted"]}
    assert "drift: share" in notes(world)

    states = run_dag(world, "modelgate_retrain__churn", sunday(3, 15))
    assert states["__run__"] == "success" and states["promote_champion"] == "success"
    assert decision_for(world, sunday(3, 15)).reason == "drift"
    assert champion_version(world) == 2
    assert world["registry"].get_version("churn", 1).status is VersionStatus.ARCHIVED
    verdict = world["registry"].history("churn", kinds=["promote"])[-1].verdict
    assert verdict["champion_seen"] == 1 and verdict["primary"]["challenger"] > verdict["primary"]["champion"]
    assert Path(verdict["report"]).is_file() and "ROC on the holdout" in Path(verdict["report"]).read_text()
    relative = Path(verdict["report"]).relative_to(world["reports"]).as_posix()
    assert (
        report_link("modelgate_retrain__churn", "evaluate_challenger")
        == f"http://localhost:8080/modelgate/reports/{relative}"
    )


def test_c_the_retrain_decides_alike_before_the_monitor_has_run(world: dict[str, Any]) -> None:
    """The scheduler may run the retrain of an interval before its monitor: the decision measures the
    interval's drift itself, and the monitor's later run only adds its report."""
    assert not [r for r in world["monitoring"].drift_timeline("churn") if r.interval_end == sunday(3, 15)]
    states = run_dag(world, "modelgate_retrain__churn", sunday(3, 15))
    assert states["__run__"] == "success" and states["promote_champion"] == "success"
    assert decision_for(world, sunday(3, 15)).reason == "drift"  # as when the monitor ran first (test_c)
    [measured] = [r for r in world["monitoring"].drift_timeline("churn") if r.interval_end == sunday(3, 15)]
    assert measured.drifted and measured.report_uri is None and measured.champion_version == 1
    run_dag(world, "modelgate_monitor__churn", sunday(3, 15))
    [reported] = [r for r in world["monitoring"].drift_timeline("churn") if r.interval_end == sunday(3, 15)]
    assert reported.drifted and reported.report_uri and reported.scores == measured.scores
    assert reported.champion_version == 1  # the champion that served the interval, not the one promoted at its end


def test_d_degraded_challenger_is_rejected_and_champion_kept(drifted_world: dict[str, Any]) -> None:
    world = drifted_world
    engine = sa.create_engine(world["url"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # labels of the training part become coin flips; the holdout stays clean
        conn.execute(
            sa.text(
                "UPDATE churn_events SET churned = (hashtext(customer_id) & 1) "
                "WHERE event_time >= '2026-03-01' AND event_time < '2026-03-20'"
            )
        )
    engine.dispose()
    states = run_dag(world, "modelgate_retrain__churn", sunday(3, 29), {"force": True})
    assert states["__run__"] == "success"
    assert states["notify_rejection"] == "success" and states["promote_champion"] == "skipped"
    assert champion_version(world) == 2
    rejected = world["registry"].list_versions("churn", status="rejected")
    assert [v.version for v in rejected] == [3]
    event = world["registry"].history("churn", kinds=["reject"])[-1]
    assert event.to_version == 3 and event.verdict["decision"] == "reject" and event.verdict["champion_version"] == 2
    assert "rejected" in notes(world)


def test_g_backfill_registers_and_records_but_never_promotes(
    drifted_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = drifted_world
    # dag.test() can only create manual runs; make this one backfill-typed, as `airflow backfill create` would.
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.utils.types import DagRunType

    original = SerializedDAG.create_dagrun

    def as_backfill(self: Any, **kwargs: Any) -> Any:
        kwargs["run_type"] = DagRunType.BACKFILL_JOB
        return original(self, **kwargs)

    monkeypatch.setattr(SerializedDAG, "create_dagrun", as_backfill)
    states = run_dag(world, "modelgate_retrain__churn", sunday(4, 5), {"force": True, "window_days": 14})
    monkeypatch.undo()
    assert states["__run__"] == "success"
    # a passing verdict is held (the backfill never promotes), a failing one rejected; both are recorded
    assert "success" in (states["hold_promotion"], states["notify_rejection"]), states
    assert states["promote_champion"] == "skipped"
    assert champion_version(world) == 2
    newest = world["registry"].list_versions("churn")[-1]
    assert newest.tags["run_type"] == "backfill"
    recorded = [e for e in world["registry"].history("churn") if e.to_version == newest.version]
    kinds = {e.kind for e in recorded}
    assert EventKind.REGISTER in kinds and (EventKind.EVALUATE in kinds or EventKind.REJECT in kinds)
    assert EventKind.PROMOTE not in kinds


class _Approver:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_id(self) -> str:
        return self.name

    def get_name(self) -> str:
        return self.name


def _approve_when_asked(dag_id: str, approver: str, done: threading.Event, choice: str = "Approve") -> None:
    """Answer the HITL request through the same function the REST API and the UI's Required Actions use."""
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    deadline = time.monotonic() + 300
    while not done.is_set() and time.monotonic() < deadline:
        with contextlib.suppress(Exception), create_session() as session:
            ti = session.scalars(
                sa.select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.task_id == "approve",
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                )
            ).first()
            if ti is not None:
                update_hitl_detail(
                    dag_id=dag_id,
                    dag_run_id=ti.run_id,
                    task_id="approve",
                    update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[choice]),
                    user=_Approver(approver),
                    session=session,
                )
                done.set()
                return
        time.sleep(0.5)


def _as_of(interval_end: dt.datetime) -> RunRef:
    """A change a test makes by hand, recorded as of just before the interval it then runs."""
    return RunRef("tests", "by-hand", "rollback", interval_end - dt.timedelta(days=1))


def test_h_approval_waits_then_records_the_approver(drifted_world: dict[str, Any]) -> None:
    world = drifted_world
    # A weak (pre-drift) champion, so that the verdict says promote whichever window the challenger trains on
    # (recorded as of the day before the interval it runs next, so that interval judges against it)
    world["registry"].rollback(
        "churn", 1, actor="tests", reason="weak champion for the approval test", run=_as_of(sunday(4, 19))
    )
    done = threading.Event()
    responder = threading.Thread(target=_approve_when_asked, args=("modelgate_retrain__churn", "alice", done))
    responder.start()
    states = run_dag(world, "modelgate_retrain__churn", sunday(4, 19), {"force": True, "approval": "required"})
    done.set()
    responder.join(timeout=30)
    assert states["__run__"] == "success"
    assert states["approve"] == "success" and states["auto_approve"] == "skipped"
    assert states["promote_champion"] == "success"
    promote = world["registry"].history("churn", kinds=["promote"])[-1]
    assert promote.actor == "alice" and promote.reason.startswith("approved by alice:")
    assert promote.verdict["approver"] == "alice"
    assert champion_version(world) == promote.to_version
    assert states["record_human_rejection"] == "skipped"


def test_h_an_approver_saying_no_rejects_the_challenger(drifted_world: dict[str, Any]) -> None:
    world = drifted_world
    # A weak (pre-drift) champion, so that the verdict says promote and the approver is asked.
    world["registry"].rollback(
        "churn", 1, actor="tests", reason="weak champion for the approval test", run=_as_of(sunday(4, 26))
    )
    champion_before = champion_version(world)
    assert champion_before == 1
    done = threading.Event()
    responder = threading.Thread(target=_approve_when_asked, args=("modelgate_retrain__churn", "bob", done, "Reject"))
    responder.start()
    states = run_dag(
        world, "modelgate_retrain__churn", sunday(4, 26), {"force": True, "approval": "required", "window_days": 21}
    )
    done.set()
    responder.join(timeout=30)
    assert states["approve"] == "success" and states["promote_champion"] == "skipped"
    assert states["record_human_rejection"] == "success"
    assert champion_version(world) == champion_before
    event = world["registry"].history("churn", kinds=["reject"])[-1]
    assert event.actor == "bob" and event.reason.startswith("rejected by approver bob")
    assert world["registry"].get_version("churn", event.to_version or 0).status is VersionStatus.REJECTED


def test_i_deploy_and_batch_predict_the_champion(drifted_world: dict[str, Any]) -> None:
    world = drifted_world
    from modelgate.deploy.local import LocalTarget

    champion = champion_version(world)
    states = run_dag(world, "modelgate_deploy__churn", sunday(4, 19))
    assert states["deploy_champion"] == "success"
    state = LocalTarget(world["serving"]).read_state("churn")
    assert state is not None and state.stable.version == champion and state.canary is None
    deploy = world["registry"].history("churn", kinds=["deploy"])[-1]
    assert deploy.to_version == champion and deploy.verdict["status"] == "live"

    scored = run_dag(world, "modelgate_batch_predict__churn", sunday(4, 19))
    assert scored["score_interval"] == "success"
    again = run_dag(world, "modelgate_batch_predict__churn", sunday(4, 19))
    assert again["score_interval"] == "success"
    with world["registry"].engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT count(*), min(model_version), max(model_version) FROM batch_prediction "
                "WHERE interval_end = '2026-04-19'"
            )
        ).one()
    assert rows == (7 * 200, champion, champion)  # one set of rows per interval, stamped with the version
    from modelgate.registry.experiments import ExperimentStore, LoggedPrediction

    aged = dt.datetime(2026, 1, 1, tzinfo=UTC)  # over 90 days before the interval's end: pruned by the next run
    ExperimentStore(world["registry"]).log_predictions([LoggedPrediction("churn", "aged", 1, 0.5, "serve", None, aged)])
    assert run_dag(world, "modelgate_batch_predict__churn", sunday(4, 19))["score_interval"] == "success"
    assert "aged" not in {p.request_key for p in ExperimentStore(world["registry"]).predictions("churn")}


def test_j_deploy_dag_rolls_out_to_vertex_and_rolls_the_registry_back_on_failure(
    drifted_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The vertex deploy DAG through dag.test(): the provider's hooks talk to the fake Vertex AI over gRPC."""
    world = drifted_world
    from modelgate.deploy.store import DeploymentStore
    from modelgate.registry import ANY_CHAMPION, Source
    from tests.fakes.gcs import FakeGCS, patch_gcs_hook
    from tests.fakes.vertex import FakeVertex, patch_vertex_hooks

    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "google_cloud_platform"}))
    gcs = FakeGCS(tmp_path / "gcs")
    fake = FakeVertex(gcs)
    patch_vertex_hooks(monkeypatch, fake.start())
    patch_gcs_hook(monkeypatch, gcs)
    registry: Registry = world["registry"]
    versions = [v for v in registry.list_versions("churn") if v.reference_uri][-2:]
    assert len(versions) == 2
    for source in versions:  # two trained churn versions, registered again under the vertex-targeted spec
        copy = dataclasses.replace(_draft_of(source), source=Source("tests", f"vertex-{source.version}", "train"))
        registry.register("churn_vertex", copy)
    registry.promote("churn_vertex", 1, expected_champion=ANY_CHAMPION, actor="tests")

    try:
        states = run_dag(world, "modelgate_deploy__churn_vertex", sunday(4, 19))
        assert states["deploy_champion"] == "success"
        assert fake.traffic("modelgate-churn_vertex") == {"churn_vertex-v1": 100}
        assert "champion" in fake.aliases("modelgate-churn_vertex")["1"]

        registry.promote("churn_vertex", 2, expected_champion=1, actor="tests")
        fake.fail_operation("DeployModel")
        failed = run_dag(world, "modelgate_deploy__churn_vertex", sunday(4, 26))
        assert failed["deploy_champion"] == "failed"
        assert fake.traffic("modelgate-churn_vertex") == {"churn_vertex-v1": 100}
        assert registry.get_champion("churn_vertex").version == 1  # the spec asks for a registry rollback
        last = DeploymentStore(registry).history("churn_vertex")[-1]
        assert last.status == "failed" and "injected: the operation failed" in (last.error or "")
        assert registry.history("churn_vertex", kinds=["rollback"])[-1].reason == "deployment of v2 failed"

        scored = run_dag(world, "modelgate_batch_predict__churn_vertex", sunday(4, 19))
        assert scored["score_interval"] == "success"
        assert len(fake.requests("CreateBatchPredictionJob")) == 1
        with registry.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT count(*), min(model_version), max(model_version) FROM batch_prediction "
                    "WHERE model = 'churn_vertex' AND interval_end = '2026-04-19'"
                )
            ).one()
        assert rows == (7 * 200, 1, 1)
    finally:
        fake.stop()


def test_k_a_bigquery_source_trains_on_the_same_window_as_postgres(
    fresh_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrain DAG of a spec whose rows live in BigQuery: the provider's BigQueryHook, resolved from the
    Airflow connection inside the task, queries the fake over REST; the window it reads is the Postgres one."""
    import pandas as pd

    from tests.fakes.bigquery import FakeBigQuery, patch_bigquery_hook

    world = fresh_world
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"project": "billing-project"}}),
    )
    fake = FakeBigQuery(project="billing-project")
    patch_bigquery_hook(monkeypatch, fake.start(), "billing-project")
    try:
        with world["registry"].engine.connect() as conn:
            fake.put_table("test-project.crm.churn", pd.read_sql(sa.text("SELECT * FROM churn_events"), conn))
        for model in ("churn", "churn_bq"):
            states = run_dag(world, f"modelgate_retrain__{model}", sunday(2, 1))
            assert states["__run__"] == "success" and states["promote_champion"] == "success", states
    finally:
        fake.stop()
    from_postgres = world["registry"].get_champion("churn")
    from_bigquery = world["registry"].get_champion("churn_bq")
    assert from_bigquery is not None and from_postgres is not None
    assert from_bigquery.data_fingerprint == from_postgres.data_fingerprint  # the same rows, types and order
    assert from_bigquery.metrics == from_postgres.metrics  # hence the same model, scored the same
    queries = [c for c in fake.calls if c.route == "jobs.query"]
    assert queries and all(c.path == "/projects/billing-project/queries" for c in queries)
    assert all("`test-project`.`crm`.`churn`" in c.body["query"] for c in queries)


def _draft_of(version: Any) -> Any:
    from modelgate.registry import VersionDraft

    fields = {f: getattr(version, f) for f in VersionDraft.__dataclass_fields__ if hasattr(version, f)}
    return VersionDraft(**fields)


def test_e_quality_failures_stop_the_run_and_name_the_expectations(drifted_world: dict[str, Any]) -> None:
    world = drifted_world
    engine = sa.create_engine(world["url"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE churn_events SET churned = NULL WHERE event_time >= '2026-04-19' AND event_time < '2026-04-20'"
            )
        )
    before = snapshot(world)
    monitor = run_dag(world, "modelgate_monitor__churn", sunday(4, 26))
    assert monitor["data_quality"] == "failed" and monitor["detect_drift"] == "upstream_failed"
    assert "expect_column_values_to_not_be_null(churned): observed 200 unexpected" in notes(world)
    failed_docs = report_link("modelgate_monitor__churn", "data_quality") or ""
    assert "/quality/monitor/20260419T0000-20260426T0000/" in failed_docs  # the Data Docs of the failure

    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE churn_events RENAME COLUMN contract TO contract_type"))
    try:
        states = run_dag(world, "modelgate_retrain__churn", sunday(4, 26), {"force": True})
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE churn_events RENAME COLUMN contract_type TO contract"))
        engine.dispose()
    assert states["training_data_quality"] == "failed" and states["train_challenger"] == "upstream_failed"
    assert "expect_column_to_exist(contract): observed column missing" in notes(world)
    assert snapshot(world)[0] == before[0]  # nothing registered


def test_l_the_ab_dag_promotes_the_challenger_that_wins_on_live_outcomes(drifted_world: dict[str, Any]) -> None:
    """Champion served, a challenger started on half the keys, predictions logged with their arms, outcomes
    loaded: the A/B DAG's look promotes the challenger through the compare-and-swap, announces the champion
    and serves it alone; the interval again changes nothing."""
    import dataclasses
    import random

    from modelgate import ab
    from modelgate.catalog import load_spec
    from modelgate.deploy.local import LocalTarget
    from modelgate.experiments import assign
    from modelgate.registry import Source
    from modelgate.registry.experiments import ExperimentStore, LoggedPrediction

    world = drifted_world
    registry: Registry = world["registry"]
    champion = champion_version(world)
    assert champion is not None
    assert run_dag(world, "modelgate_deploy__churn", sunday(4, 19))["deploy_champion"] == "success"
    source = registry.get_version("churn", champion)
    draft = dataclasses.replace(_draft_of(source), source=Source("tests", "ab-challenger", "train"))
    challenger = registry.register("churn", draft).version
    spec = load_spec(world["include"] / "models" / "churn.yaml")
    experiment = ab.start(registry, spec, challenger=challenger, split=50, actor="tests", serving_root=world["serving"])
    state = LocalTarget(world["serving"]).read_state("churn")
    assert state is not None and state.canary is not None and state.canary.version == challenger
    assert state.experiment_id == experiment.id and state.canary_percent == 50

    store = ExperimentStore(registry)
    rng = random.Random(3)
    now = dt.datetime.now(dt.UTC)
    predictions, outcomes = [], []
    for i in range(3000):
        key = f"customer-{i}"
        version = challenger if assign(key, experiment.salt, 50) else champion
        truth = float(rng.random() < 0.3)
        right = rng.random() < (0.85 if version == challenger else 0.7)
        predictions.append(LoggedPrediction("churn", key, version, 0.8 if (truth == 1) == right else 0.2, "serve",
                                            experiment.id, now))  # fmt: skip
        outcomes.append((key, truth, now + dt.timedelta(milliseconds=1)))
    store.log_predictions(predictions)
    store.load_outcomes("churn", outcomes, source="tests")

    today = now.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)  # the interval ending then
    states = run_dag(world, "modelgate_ab__churn", today)
    assert states["analyse_experiment"] == "success" and states["announce_champion"] == "success", states
    assert champion_version(world) == challenger
    assert store.get(experiment.id).status == "promoted"
    served = LocalTarget(world["serving"]).read_state("churn")
    assert served is not None and served.stable.version == challenger and served.canary is None
    look = store.looks(experiment.id)[-1]
    assert look.action == "promote" and look.look["champion"]["labelled"] + look.look["challenger"]["labelled"] == 3000

    again = run_dag(world, "modelgate_ab__churn", today)  # the same interval: the same look, nothing acted on
    assert again["analyse_experiment"] == "success" and again["announce_champion"] == "skipped", again
    assert [e.actor for e in registry.history("churn", kinds=["promote"])].count("modelgate ab") == 1


def test_m_a_challenger_forced_hours_after_the_champion_is_insufficient_evidence(
    drifted_world: dict[str, Any],
) -> None:
    """Too few holdout rows since the champion's window ended: nothing compared, the challenger rejected as
    insufficient evidence, and the run goes on (the verdict, with no challenger score, crosses to routing)."""
    world = drifted_world
    champion = world["registry"].get_champion("churn")
    assert champion is not None and champion.window_end is not None
    end = champion.window_end + dt.timedelta(hours=2, minutes=27)
    conf = {**DEFAULT_PARAMS, "force": True, "interval_end": end.isoformat()}
    dag_run = world["dags"]["modelgate_retrain__churn"].test(logical_date=end, run_conf=conf)
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    assert states["route_verdict"] == "success" and states["notify_rejection"] == "success", states
    assert states["promote_champion"] == "skipped", states
    rejected = world["registry"].history("churn", kinds=["reject"])[-1]
    assert (rejected.reason or "").startswith("insufficient_evidence: "), rejected.reason
    assert champion_version(world) == champion.version
    judged = [
        e
        for e in world["registry"].history("churn", kinds=["evaluate", "reject"])
        if e.verdict and e.verdict.get("window") and dt.datetime.fromisoformat(e.verdict["window"][1]) == end
    ]  # what the system test reads: the verdict names its window and the champion's window end
    assert len(judged) == 1 and judged[0].verdict["champion_window_end"] == champion.window_end.isoformat(), judged


def test_n_a_multiclass_model_runs_the_whole_loop(fresh_world: dict[str, Any]) -> None:
    """plan_change (none / upgrade / downgrade) from the same table: every DAG, as for a binary model."""
    world = fresh_world
    registry: Registry = world["registry"]
    states = run_dag(world, "modelgate_retrain__plan_change", sunday(2, 1))
    assert states["promote_champion"] == "success", states
    verdict = registry.history("plan_change", kinds=["evaluate"])[-1].verdict  # the whole verdict
    assert verdict["decision"] == "promote" and verdict["evaluation"]["baseline"].startswith("class prior (none 0.")
    assert verdict["evaluation"]["primary"]["metric"] == "macro_f1"
    per_class = {s["value"]: s for s in verdict["evaluation"]["slices"] if s["column"] == "plan_change"}
    assert set(per_class) == {"none", "upgrade", "downgrade"} and all(s["metric"] == "f1" for s in per_class.values())
    assert sum(s["rows"] for s in per_class.values()) == verdict["evaluation"]["holdout_rows"]
    champion = registry.get_champion("plan_change")
    assert champion is not None and champion.tags["task"] == "multiclass_classification"
    assert {"holdout_macro_f1", "holdout_log_loss", "holdout_balanced_accuracy"} <= set(champion.metrics)

    deployed = run_dag(world, "modelgate_deploy__plan_change", sunday(2, 1))
    assert deployed["deploy_champion"] == "success"
    from modelgate.deploy.local import LocalTarget

    state = LocalTarget(world["serving"]).read_state("plan_change")
    assert state is not None and state.task == "multiclass_classification" and state.stable.version == 1

    monitor = run_dag(world, "modelgate_monitor__plan_change", sunday(3, 15))
    assert monitor["detect_drift"] == "success"
    row = world["monitoring"].drift_timeline("plan_change")[-1]
    assert "predicted_plan_change" in row.scores  # the class mix the champion predicts, beside the features
    assert row.scores["predicted_plan_change"]["alarm"], row.scores["predicted_plan_change"]  # fibre upgrades
    assert Path(row.report_uri or "").is_file()

    retrain = run_dag(world, "modelgate_retrain__plan_change", sunday(3, 15))
    assert retrain["__run__"] == "success"
    decision = next(d for d in world["monitoring"].decisions("plan_change") if d.interval_end == sunday(3, 15))
    assert decision.retrain, decision
    judged = registry.get_version("plan_change", 2)
    assert judged.status in (VersionStatus.CHAMPION, VersionStatus.REJECTED)
    reports = list((world["reports"] / "plan_change").rglob("*.html"))
    assert any("predicted class per true class" in p.read_text() for p in reports)

    scored = run_dag(world, "modelgate_batch_predict__plan_change", sunday(3, 22))
    assert scored["score_interval"] == "success"
    with registry.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT predicted_class, label, score FROM batch_prediction "
                "WHERE model = 'plan_change' AND interval_end = '2026-03-22'"
            )
        ).all()
    assert len(rows) == 7 * 200
    names = ["none", "upgrade", "downgrade"]
    assert all(names[int(label)] == cls and 1 / 3 <= score <= 1 for cls, label, score in rows)
    assert len({cls for cls, _, _ in rows}) >= 2
    from modelgate.ui import compare_page, model_page, render, render_model_page

    page = render_model_page(model_page(registry, "plan_change"), "/modelgate")  # the Models view, as served
    assert "macro_f1" in page and "predicted_plan_change" in page
    compared = render("compare.html", page=compare_page(registry, "plan_change", [1, 2]), prefix="/modelgate")
    assert "holdout_macro_f1" in compared
