"""One running Airflow for the whole system suite: the stack `make airflow` and docker-compose run.

CeleryExecutor with two workers on Redis, Airflow's metadata and the registry in their own databases on the
test PostgreSQL, the api-server on a free port. Tests drive it only as users do: the REST API v2 with a JWT,
and the `airflow` CLI. Each test works on its own model (its own spec file), so none depends on another's
runs; all models read the one seeded `churn_events` table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from modelgate.datasets.churn import last_weekly_boundary, seed_until
from modelgate.registry.connection import create_registry_engine
from modelgate.registry.store import Registry
from modelgate.stack import AirflowClient, Stack, StackConfig, prepare, redis_answers
from tests.conftest import REPO_ROOT, _admin, _db_url

REDIS_URL = os.environ.get("MODELGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SYSTEM_MODELS = (
    "churn_ui",
    "churn_approval",
    "churn_sched",
    "churn_backfill",
    "churn_ordered",
    "churn_faults",
    "churn_promote",
    "churn_restart",
    "churn_timeout",
    "churn_browser",
    "churn_rebuild",
    "churn_ab",
)

# A platform's worth of models beside them, never scheduled: 200 specs over SHARDS DAG files, and one broken
# spec, whose error must name its own file only and cost no other model its DAGs.
BULK_MODELS = tuple(f"bulk_{k:03d}" for k in range(200))
BULK_STAGES = ("monitor", "retrain", "batch_predict", "backtest")
BROKEN_SPEC = "broken_window.yaml"
SHARDS = 4


@dataclass(frozen=True)
class RunningAirflow:
    stack: Stack
    api: AirflowClient
    registry: Registry
    registry_url: str
    now: dt.datetime  # when the example rows were seeded up to
    boundary: dt.datetime  # the last weekly interval end before `now`
    password: str  # the admin's, for logging in through the UI
    lineage_file: Path  # OpenLineage events, one JSON object a line (the provider's file transport)

    def airflow_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The Airflow CLI as the README has an operator run it: `modelgate airflow-cli …`, from a shell that
        knows only where the stack's Airflow home is (none of its settings)."""
        import sys

        shell = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MODELGATE_"))}
        shell["AIRFLOW_HOME"] = str(self.stack.config.airflow_home)
        return subprocess.run(
            [str(Path(sys.executable).with_name("modelgate")), "airflow-cli", *args],
            env=shell,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spec(name: str, **changes: object) -> dict:
    spec = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    spec.update(
        name=name,
        start_date="2025-01-05",
        catchup=False,
        paused_upon_creation=True,
        deploy={"target": "none"},
        notifiers=[{"name": "log"}],
        tags=["system-test"],
    )
    spec["evaluation"]["bootstrap_samples"] = 200
    spec.update(changes)
    return spec


def _write_specs(include: Path) -> None:
    (include / "models").mkdir(parents=True)
    (include / "expectations").mkdir()
    specs = {name: _spec(name) for name in SYSTEM_MODELS}
    specs["churn_sched"].update(start_date="-6w", catchup=True)  # the scheduler catches up the last weeks
    specs["churn_browser"]["quality"] = {**specs["churn_browser"]["quality"], "min_rows": 50}  # a day's rows
    specs["churn_timeout"].update(approval="required", approval_timeout="20s", approvers=[{"id": "admin"}])
    # an A/B experiment: served locally, looked at on demand (a yearly schedule keeps the DAG and its idle run)
    specs["churn_ab"].update(deploy={"target": "local", "canary_steps": [100]})
    specs["churn_ab"]["ab"] = {"min_labelled": 50, "schedule": "0 0 1 1 *"}
    for name in ("churn_ui", "churn_approval", "churn_faults", "churn_promote", "churn_timeout", "churn_browser",
                 "churn_ab"):  # fmt: skip
        specs[name].update(schedule=None)  # run on demand (and on drift) only: unpausing schedules nothing
    for name in ("churn_backfill", "churn_ordered", "churn_restart", "churn_rebuild"):
        specs[name].update(start_date="2030-01-06")  # unpaused for their backfills, never scheduled meanwhile
    for name in BULK_MODELS:  # run on demand only; a day's rows when they do
        specs[name] = _spec(name, schedule=None, tags=["system-test", "bulk"])
        specs[name]["quality"] = {**specs[name]["quality"], "min_rows": 50}
    for name, spec in specs.items():
        (include / "models" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    broken = _spec("broken_window", window_days=0)
    (include / "models" / BROKEN_SPEC).write_text(yaml.safe_dump(broken, sort_keys=False))


def _lay_out_dags(dags: Path) -> None:
    """The repository's DAG files, the models split over SHARDS copies (`modelgate dags shard`)."""
    from modelgate.catalog import lay_out_shards

    dags.mkdir()
    for source in (REPO_ROOT / "dags").glob("*.py"):
        shutil.copyfile(source, dags / source.name)
    lay_out_shards(dags, SHARDS)


def _require_services() -> None:
    if not redis_answers(REDIS_URL):
        message = f"Redis (the Celery broker) not reachable at {REDIS_URL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def airflow_stack(postgres_available: None) -> Iterator[RunningAirflow]:
    _require_services()
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    tag = uuid.uuid4().hex[:8]
    meta_db, registry_db = f"mg_sys_af_{tag}", f"mg_sys_reg_{tag}"
    root = Path(tempfile.mkdtemp(prefix="modelgate-system-"))
    include = root / "include"
    _write_specs(include)
    _lay_out_dags(root / "dags")
    registry_url = _db_url(registry_db).replace("postgresql://", "postgresql+psycopg://", 1)
    config = StackConfig(
        airflow_home=root / "airflow",
        metadata_url=_db_url(meta_db),
        registry_url=registry_url,
        modelgate_home=root / "modelgate",
        repo_root=REPO_ROOT,
        include_dir=include,
        dags_dir=root / "dags",
        executor="celery",
        celery_workers=2,
        broker_url=REDIS_URL,
        port=_free_port(),
        log_server_port=_free_port(),  # beside any other Airflow on this host
        trigger_log_server_port=_free_port(),
        parallelism=2,
        extra_env={
            # every task's OpenLineage events, as Marquez would receive them
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(root / "openlineage.jsonl"), "append": True}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "modelgate-system-tests",
            # a second user who may read but not edit DAGs: the Models view's actions are refused to her
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "MODELGATE_RETRY_DELAY_SECONDS": "2",
            "MODELGATE_CODE_VERSION": "system-tests",
            # a worker killed mid-task is noticed within ~30 s, and its task retried elsewhere
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # the spec files never change during the suite: parse each DAG file once, not every 30 s (211
            # specs over 5 files would take a core's fifth from the tests' own runs)
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "900",
        },
    )
    password = prepare(config)
    now = dt.datetime.now(dt.UTC)
    seed_until(registry_url, now, history_days=150, drift_weeks_ago=2, rows_per_day=200)
    stack = Stack(config)
    registry = Registry(create_registry_engine(registry_url))
    try:
        stack.start()
        stack.wait_ready(timeout=240)
        api = AirflowClient(config.base_url, config.username, password)
        expected = {f"modelgate_{s}__{m}" for m in SYSTEM_MODELS for s in ("monitor", "retrain")}
        _wait_for_dags(api, expected | {f"modelgate_{s}__{m}" for m in BULK_MODELS for s in BULK_STAGES}, timeout=300)
        yield RunningAirflow(
            stack, api, registry, registry_url, now, last_weekly_boundary(now), password, root / "openlineage.jsonl"
        )
    finally:
        for name in stack.processes:
            if stack.processes[name].poll() is not None:
                print(f"--- {name} exited; its log ends:\n{stack.tail(name)}")
        stack.stop()
        registry.close()
        with _admin() as conn:
            for db in (meta_db, registry_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_dags(api: AirflowClient, expected: set[str], timeout: float = 180) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not expected <= api.dag_ids():
        if time.monotonic() > deadline:
            raise TimeoutError(f"DAGs not parsed after {timeout} s: {sorted(expected - api.dag_ids())}")
        time.sleep(1)


def events(registry: Registry, model: str) -> list:
    return registry.history(model) if _exists(registry, model) else []  # oldest first


def _exists(registry: Registry, model: str) -> bool:
    return any(m.name == model for m in registry.list_models())


def champion(registry: Registry, model: str) -> object:
    return registry.get_champion(model) if _exists(registry, model) else None


def versions(registry: Registry, model: str) -> list:
    return registry.list_versions(model) if _exists(registry, model) else []


def sa_count(url: str, sql: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()
