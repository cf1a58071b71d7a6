"""OpenLineage names: what each source, model artifact and the predictions table are called, as the provider
turns them into datasets (the running stack's events are checked in tests/system/test_models_ui.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgate.airflow.lineage import postgres_table, predictions_uri, report, source_uri
from modelgate.spec import parse_spec
from tests.conftest import REPO_ROOT

CHURN = (REPO_ROOT / "include" / "models" / "churn.yaml").read_text()


def _with_source(source: str) -> object:
    head, _, tail = CHURN.partition("source:")
    rest = tail.split("\ntime_column:", 1)[1]
    return parse_spec(f"{head}source: {source}\ntime_column:{rest}")


def _dataset(uri: str) -> tuple[str, str]:
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset

    found = translate_airflow_asset(Asset(uri=uri), None)
    assert found is not None, f"the OpenLineage provider cannot name {uri}"
    return found.namespace, found.name


def test_sources_models_and_predictions_are_named_as_openlineage_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+psycopg://writer:secret@db.internal:6543/modelgate"
    table = source_uri(parse_spec(CHURN), url)
    assert table == "postgres://db.internal:6543/modelgate/public/churn_events"  # no password in a name
    assert _dataset(table) == ("postgres://db.internal:6543", "modelgate.public.churn_events")
    assert _dataset(predictions_uri(url)) == ("postgres://db.internal:6543", "modelgate.public.batch_prediction")
    assert postgres_table("postgresql://localhost/x", "s", "t") == "postgres://localhost:5432/x/s/t"

    monkeypatch.setenv("MODELGATE_DATA_ROOTS", str(tmp_path))
    (tmp_path / "rows.parquet").write_bytes(b"")
    local = source_uri(_with_source(f"{{kind: files, path: {tmp_path / 'rows.parquet'}}}"), None)  # type: ignore[arg-type]
    assert _dataset(local) == ("file", str(tmp_path / "rows.parquet"))  # type: ignore[arg-type]
    assert source_uri(_with_source("{kind: files, path: /elsewhere/rows.csv}"), None) is None  # type: ignore[arg-type]
    gcs = source_uri(_with_source("{kind: files, path: 'gs://bucket/churn/rows.parquet'}"), None)  # type: ignore[arg-type]
    assert _dataset(gcs) == ("gs://bucket", "churn/rows.parquet")  # type: ignore[arg-type]
    bq = source_uri(_with_source("{kind: bigquery, table: my-project.sales.churn}"), None)  # type: ignore[arg-type]
    assert _dataset(bq) == ("bigquery", "my-project.sales.churn")  # type: ignore[arg-type]
    assert source_uri(_with_source("{kind: bigquery, table: sales.churn}"), None) is None  # type: ignore[arg-type]

    sha = "ab" * 32
    assert _dataset(f"file:///srv/artifacts/sha256/ab/{sha}.skops") == ("file", f"/srv/artifacts/sha256/ab/{sha}.skops")


def test_report_hands_the_assets_to_airflow_s_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a task reports lands in Airflow's hook-lineage collector (the one the OpenLineage provider reads
    when a transport is configured: the system suite checks the events end to end). Whether this process has
    OpenLineage on was decided when its plugin was first imported, so the collector is Airflow's own here."""
    from airflow.sdk import lineage

    collector = lineage.HookLineageCollector()
    monkeypatch.setattr(lineage, "get_hook_lineage_collector", lambda: collector)
    report(inputs=["postgres://h:5432/db/public/t", None], outputs=["postgres://h:5432/db/public/batch_prediction"])
    collected = collector.collected_assets
    assert [i.asset.uri for i in collected.inputs] == ["postgres://h:5432/db/public/t"]
    assert [o.asset.uri for o in collected.outputs] == ["postgres://h:5432/db/public/batch_prediction"]
    report(inputs=["not a uri at all: ://"])  # refused by Airflow: logged, never raised
