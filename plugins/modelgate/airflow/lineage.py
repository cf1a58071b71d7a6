"""OpenLineage for modelgate's tasks, through Airflow's hook-level lineage.

Each task names what it read and what it wrote as Airflow assets with AIP-60 URIs, which the OpenLineage
provider (apache-airflow-providers-openlineage) turns into datasets on its task events, so Marquez or DataHub
shows source → model → predictions:

- the source window: `postgres://host:port/database/schema/table`, `file:///…`, `gs://…` or
  `bigquery://project/dataset/table`;
- a model version: its artifact, content-addressed (`…/sha256/ab/<sha256>.skops`), so the dataset's name
  carries the version's sha256;
- batch predictions: `postgres://host:port/database/public/batch_prediction`.

Nothing is sent unless OpenLineage is configured (`[openlineage] transport`); lineage never fails a task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelgate.spec import ModelSpec

log = logging.getLogger(__name__)


class _Modelgate:
    """What the collector files modelgate's assets under (it keys entries by the object that reported them)."""


_REPORTER = _Modelgate()


def postgres_table(url: str, schema: str, table: str) -> str:
    """The AIP-60 URI of a table in the database at SQLAlchemy `url`."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return f"postgres://{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database}/{schema}/{table}"


def source_uri(spec: ModelSpec, data_url: str | None) -> str | None:
    """Where the spec's rows come from, as an asset URI (None when it can't be named, e.g. no project)."""
    from modelgate.spec import BigQuerySource, FileSource, PostgresSource

    source = spec.source
    if isinstance(source, PostgresSource):
        return postgres_table(data_url, source.db_schema, source.table) if data_url else None
    if isinstance(source, FileSource):
        if source.path.startswith("gs://"):
            return source.path
        from modelgate.config import contained_data_path

        try:
            return contained_data_path(source.path).as_uri()
        except ValueError:
            return None
    if isinstance(source, BigQuerySource):
        project = source.project
        parts = source.table.split(".")
        if len(parts) == 3:
            return "bigquery://{}/{}/{}".format(*parts)
        return f"bigquery://{project}/{parts[0]}/{parts[1]}" if project else None
    return None


def predictions_uri(registry_url: str) -> str:
    return postgres_table(registry_url, "public", "batch_prediction")


def collecting() -> bool:
    """Whether anything reads what `report` collects (the OpenLineage provider, when it is configured)."""
    from airflow.sdk.lineage import NoOpCollector, get_hook_lineage_collector

    return not isinstance(get_hook_lineage_collector(), NoOpCollector)


def report(*, inputs: Iterable[str | None] = (), outputs: Iterable[str | None] = ()) -> None:
    """Tell Airflow's lineage collector what this task read and wrote (URIs; None entries are skipped)."""
    try:
        from airflow.sdk.lineage import get_hook_lineage_collector

        collector = get_hook_lineage_collector()
        for uri in inputs:
            if uri:
                collector.add_input_asset(context=_REPORTER, uri=uri)  # type: ignore[arg-type]
        for uri in outputs:
            if uri:
                collector.add_output_asset(context=_REPORTER, uri=uri)  # type: ignore[arg-type]
    except Exception:  # lineage is a side channel: never a reason for a task to fail
        log.warning("could not report lineage %s -> %s", list(inputs), list(outputs), exc_info=True)
