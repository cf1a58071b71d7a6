"""Run-time glue: Airflow context -> RunInfo, Connections -> Services. Called inside tasks only."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelgate.config import REGISTRY_CONN_ID, artifact_root
from modelgate.data import Interval
from modelgate.pipeline import RunInfo, Services
from modelgate.report_store import ReportStore
from modelgate.spec import ModelSpec, PostgresSource

log = logging.getLogger(__name__)

REPORTS_DIR_ENV = "MODELGATE_REPORTS_DIR"


def connection_url(conn_id: str) -> str | None:
    """A SQLAlchemy URL for a Postgres Airflow Connection, built by the provider's PostgresHook (so its
    extras, IAM tokens and Unix-socket hosts mean what they mean elsewhere in Airflow); None if undefined."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        url = PostgresHook(postgres_conn_id=conn_id).sqlalchemy_url
    except AirflowNotFoundException:
        return None
    # the defaults libpq would not pick: the registry's own user and database when the Connection names none
    url = url.set(username=url.username or "postgres", database=url.database or "postgres")
    if url.host and url.host.startswith("/"):  # a socket directory travels as ?host=, as libpq expects
        url = url.update_query_dict({"host": url.host})._replace(host=None)
    return url.render_as_string(hide_password=False)


def registry_url() -> str:
    """The `modelgate_registry` connection, else $MODELGATE_REGISTRY_URL; never a throwaway embedded server.

    The embedded PostgreSQL is for the CLI and the demo: inside Airflow it would start on whichever worker
    ran the task, and each worker would keep its own registry.
    """
    from modelgate.config import REGISTRY_URL_ENV
    from modelgate.registry.connection import normalize_url
    from modelgate.registry.errors import RegistryNotConfigured

    url = connection_url(REGISTRY_CONN_ID)
    if url:
        return url
    configured = os.environ.get(REGISTRY_URL_ENV)
    if configured:
        log.info("no Airflow connection %r: using $%s", REGISTRY_CONN_ID, REGISTRY_URL_ENV)
        return normalize_url(configured)
    raise RegistryNotConfigured(
        f"no registry configured for this task: define the Airflow connection {REGISTRY_CONN_ID!r} "
        f"(AIRFLOW_CONN_{REGISTRY_CONN_ID.upper()}) or set ${REGISTRY_URL_ENV} on the workers"
    )


def report_store() -> ReportStore:
    """$MODELGATE_REPORTS_DIR (a folder, or gs://bucket/prefix), else $MODELGATE_HOME/reports."""
    return ReportStore.from_env()


def data_url(spec: ModelSpec, registry: str) -> str | None:
    """The URL of the database a Postgres-sourced spec reads from (None for file sources)."""
    if not isinstance(spec.source, PostgresSource):
        return None
    url = registry if spec.source.conn_id == REGISTRY_CONN_ID else connection_url(spec.source.conn_id)
    if url is None:
        raise RuntimeError(f"{spec.name}: Airflow connection {spec.source.conn_id!r} is not defined")
    return url


def services_for(spec: ModelSpec, include_dir: Path) -> Services:
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.registry.store import Registry

    url = registry_url()
    return Services(
        registry=Registry.connect(url),
        data_url=data_url(spec, url),
        artifacts=ArtifactStore(artifact_root()),
        reports=report_store(),
        expectations_dir=include_dir / "expectations",
    )


INTERVAL_EXTRA = ("modelgate_interval_start", "modelgate_interval_end")  # in the drift asset event's extra


def interval_extra(interval: Interval) -> dict[str, str]:
    """The data interval an asset event was emitted for, as its `extra` carries it."""
    return dict(zip(INTERVAL_EXTRA, (interval.start.isoformat(), interval.end.isoformat()), strict=True))


def triggering_interval(context: Any) -> Interval | None:
    """The data interval of the newest monitor run whose drift event triggered this run, if one did."""
    found = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events or []:
            extra = getattr(event, "extra", None) or {}
            if all(key in extra for key in INTERVAL_EXTRA):
                start, end = (dt.datetime.fromisoformat(str(extra[key])) for key in INTERVAL_EXTRA)
                found.append(Interval(_utc(start), _utc(end)))
    return max(found, key=lambda i: i.end, default=None)


def run_info(context: Any, *, span_before: Callable[[dt.datetime], dt.timedelta]) -> RunInfo:
    """The run's data interval: the scheduled one; for a run triggered by a drift event, the interval of the
    monitor run that raised it (carried in the event's extra), so it judges the interval that drifted; a
    manual run without an interval ends at `run_after` and spans one schedule interval (`span_before(end)`,
    the spec's cron walked by croniter)."""
    dag_run = context["dag_run"]
    ti = context["ti"]
    end = context.get("data_interval_end") or dag_run.run_after
    start = context.get("data_interval_start")
    triggered = triggering_interval(context)
    named = (context.get("params") or {}).get("interval_end")
    if named:
        end = _named_end(str(named))
        start = end - span_before(end)
    elif triggered is not None:
        start, end = triggered.start, triggered.end
    elif start is None or start >= end:
        start = end - span_before(_utc(end))
    run_type = getattr(dag_run.run_type, "value", str(dag_run.run_type))
    return RunInfo(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        task_id=ti.task_id,
        interval=Interval(_utc(start), _utc(end)),
        run_type=run_type,
        try_number=getattr(ti, "try_number", None),
    )


def _named_end(text: str) -> dt.datetime:
    """The `interval_end` param as a UTC datetime (a date alone is its midnight); one-line error otherwise."""
    from modelgate.data import DataError

    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"interval_end {text[:40]!r} is not an ISO date or date-time (e.g. 2026-11-29)") from None
    return _utc(value)


def _utc(value: dt.datetime) -> dt.datetime:
    """A plain stdlib UTC datetime (pendulum's drop a stdlib tzinfo on arithmetic)."""
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(aware.timestamp(), tz=dt.UTC)
