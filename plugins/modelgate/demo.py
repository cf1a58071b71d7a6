"""`make demo`: the churn example end to end, on the embedded PostgreSQL and a temporary Airflow home.

Generates telco-like rows into a real table (drift starts on 2026-03-01), then runs the real monitor and
retrain DAGs through dag.test() week after week, printing per interval the quality result, drift share,
retrain decision, verdict and champion; then the registry history through the CLI and the report paths.
Airflow's own logs go to a file so the summary stays readable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEMO_DATABASE = "modelgate_demo"
DRIFT_START = dt.date(2026, 3, 1)
FIRST_WEEK = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
WEEKS = 12


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send everything written to fds 1 and 2 (Airflow's logs included) to a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _say(text: str = "") -> None:
    print(text, flush=True)


def _demo_database(admin_url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{DEMO_DATABASE}"'))
    engine.dispose()
    return admin_url.replace("/modelgate?", f"/{DEMO_DATABASE}?")


def _airflow_env(home: Path, root: Path, url: str, state: Path) -> dict[str, str]:
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    socket_dir = parsed.query["host"]
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_MODELGATE_REGISTRY": json.dumps(
            {"conn_type": "postgres", "host": socket_dir, "login": "postgres", "schema": DEMO_DATABASE}
        ),
        "MODELGATE_ARTIFACT_ROOT": str(state / "artifacts"),
        "MODELGATE_REPORTS_DIR": str(state / "reports"),
        "MODELGATE_RETRY_DELAY_SECONDS": "5",
    }


def _demo_include(root: Path, state: Path) -> Path:
    """The checkout's include/ with the churn spec pinned to the demo's dates (it ships a live, relative start)."""
    import yaml

    include = state / "include"
    shutil.copytree(root / "include", include)
    path = include / "models" / "churn.yaml"
    spec = yaml.safe_load(path.read_text())
    spec.update(start_date=f"{FIRST_WEEK - dt.timedelta(days=7):%Y-%m-%d}", catchup=False)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return include


def _run(dag: Any, logical_date: dt.datetime, conf: dict[str, Any] | None, log_path: Path) -> dict[str, str]:
    with _quiet(log_path):
        dag_run = dag.test(logical_date=logical_date, run_conf=conf or {})
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    states["__run__"] = str(getattr(dag_run.state, "value", dag_run.state))
    return states


def _interval_summary(
    registry: Any, monitoring: Any, end: dt.datetime, monitor: dict[str, str], retrain: dict[str, str]
) -> list[str]:
    drift = next((r for r in monitoring.drift_timeline("churn") if r.interval_end == end), None)
    decision = next((d for d in monitoring.decisions("churn") if d.interval_end == end), None)
    trained = [v for v in registry.list_versions("churn") if v.window_end == end]
    champion = registry.get_champion("churn")
    quality = "passed" if monitor.get("data_quality") == "success" else "FAILED"
    if drift is None:
        drift_text = "n/a (no champion yet)"
    else:
        drift_text = f"{drift.share:.2f}{' DRIFT' if drift.drifted else ''}"
    verdict = "-"
    if trained:
        version = trained[-1]
        events = [e for e in registry.history("churn") if e.to_version == version.version and e.verdict]
        reason = events[-1].reason if events else ""
        verdict = f"v{version.version} {version.status.value}: {reason}"
    return [
        f"{end:%Y-%m-%d}",
        quality,
        drift_text,
        f"{decision.reason}" if decision else "-",
        verdict,
        f"v{champion.version}" if champion else "-",
    ]


def main() -> None:
    from modelgate.config import modelgate_home, project_root
    from modelgate.registry.embedded import start_embedded

    root = project_root()
    if root is None:
        raise SystemExit("make demo runs from a modelgate checkout (it needs dags/ and include/)")
    started = time.perf_counter()
    state = modelgate_home() / "demo"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    log_path = state / "airflow.log"
    _say("modelgate demo: churn, weekly intervals, drift from 2026-03-01")
    url = _demo_database(start_embedded())
    _say(f"  registry: embedded PostgreSQL, database {DEMO_DATABASE}")
    airflow_home = Path(tempfile.mkdtemp(prefix="modelgate-demo-airflow-"))
    os.environ.update(_airflow_env(airflow_home, root, url, state))
    migrate = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True, text=True, check=False
    )
    if migrate.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{migrate.stderr[-2000:]}")
    _say(f"  airflow: temporary AIRFLOW_HOME {airflow_home} (logs: {log_path})")

    from modelgate.datasets.churn import write_days
    from modelgate.registry.connection import create_registry_engine
    from modelgate.registry.migrate import upgrade
    from modelgate.registry.monitoring import MonitoringStore
    from modelgate.registry.store import Registry

    engine = create_registry_engine(url)
    upgrade(engine)
    rows = write_days(url, dt.date(2025, 12, 28), dt.date(2026, 4, 27), drift_start=DRIFT_START)
    _say(f"  data: {rows} customer rows in table churn_events")
    registry = Registry(engine)
    monitoring = MonitoringStore(registry)

    os.environ["MODELGATE_INCLUDE_DIR"] = str(_demo_include(root, state))
    module_spec = importlib.util.spec_from_file_location("modelgate_demo_dags", root / "dags" / "modelgate_dags.py")
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    with _quiet(log_path):
        module_spec.loader.exec_module(module)
    monitor_dag = module._dags["modelgate_monitor__churn"]
    retrain_dag = module._dags["modelgate_retrain__churn"]
    defaults = {"force": False, "window_days": None, "dry_run": False, "approval": "spec", "promote_on_backfill": False}

    header = ["interval end", "quality", "drift share", "retrain decision", "verdict", "champion"]
    _say("")
    _say(" | ".join(header))
    for week in range(WEEKS):
        end = FIRST_WEEK + dt.timedelta(days=7 * week)
        monitor = _run(monitor_dag, end, None, log_path)
        retrain = _run(retrain_dag, end, defaults, log_path)
        _say(" | ".join(_interval_summary(registry, monitoring, end, monitor, retrain))[:300])

    _say("\n$ modelgate history churn")
    script = shutil.which("modelgate") or str(Path(sys.executable).with_name("modelgate"))
    history = subprocess.run(
        [script, "--registry-url", url, "history", "churn"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    sys.stdout.write(history.stdout or history.stderr)
    reports = state / "reports" / "churn"
    _say("\nreports:")
    for kind in ("evaluation", "drift"):
        for path in sorted((reports / kind).glob("*.html"))[-3:]:
            _say(f"  {kind}: {path}")
    docs = sorted((reports / "quality").glob("**/validations/**/*.html"))
    if docs:
        _say(f"  Great Expectations Data Docs: {docs[-1]}")
    _say(f"\ndemo finished in {time.perf_counter() - started:.0f} s; Airflow logs in {log_path}")
    registry.close()
    shutil.rmtree(airflow_home, ignore_errors=True)


if __name__ == "__main__":
    main()
