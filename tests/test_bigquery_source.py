"""The `bigquery` source kind: the provider's real BigQueryHook and client against a fake BigQuery at the wire.

The same churn rows are loaded from Postgres and from the fake; the windows, and the scores batch
prediction stamps, must be the same. The query goes out as standard SQL with typed parameters, pages
stream, and every failure is a one-line DataError naming the table.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from modelgate.data import DataError, Interval, load_window
from modelgate.datasets.churn import generate_day, write_days
from modelgate.spec import BigQuerySource, InvalidSpec, ModelSpec, parse_spec
from tests.conftest import REPO_ROOT
from tests.fakes.bigquery import FakeBigQuery, patch_bigquery_hook

PROJECT = "test-project"
TABLE = f"{PROJECT}.sales.churn_events"
POSTGRES_SPEC = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
WINDOW = Interval(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 4, tzinfo=dt.UTC))


def _spec(**source: str) -> ModelSpec:
    raw = POSTGRES_SPEC.model_dump(mode="json", by_alias=True, exclude_unset=True)
    raw["source"] = {"kind": "bigquery", "table": "sales.churn_events", **source}
    return parse_spec(yaml.safe_dump(raw))


SPEC = _spec()


def _rows(days: int = 4, rows_per_day: int = 120) -> pd.DataFrame:
    return pd.concat(
        [generate_day(dt.date(2026, 1, 1) + dt.timedelta(days=d), rows=rows_per_day) for d in range(days)],
        ignore_index=True,
    )


@pytest.fixture
def bigquery(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBigQuery]:
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"project": PROJECT}}),
    )
    fake = FakeBigQuery(project=PROJECT)
    patch_bigquery_hook(monkeypatch, fake.start(), PROJECT)
    yield fake
    fake.stop()


def test_table_names_are_checked_when_the_spec_loads() -> None:
    assert SPEC.source == BigQuerySource(kind="bigquery", table="sales.churn_events")
    assert isinstance(SPEC.source, BigQuerySource)
    assert SPEC.source.table_id("billing-project") == "billing-project.sales.churn_events"
    assert _spec(table="other-project.sales.t").source.table_id("billing-project") == "other-project.sales.t"  # type: ignore[union-attr]
    assert _spec(table="example.com:my-project.ds.t").source.table_id("x") == "example.com:my-project.ds.t"  # type: ignore[union-attr]
    for bad in ("churn_events", "a.b.c.d", "sales.churn`; DROP TABLE x", "Bad_Project.ds.t", ""):
        with pytest.raises(InvalidSpec, match="is not a BigQuery table"):
            _spec(table=bad)


@pytest.mark.integration
def test_a_window_from_bigquery_equals_the_same_rows_from_postgres(bigquery: FakeBigQuery, registry_url: str) -> None:
    write_days(registry_url, dt.date(2026, 1, 1), dt.date(2026, 1, 5), rows_per_day=120)
    engine = sa.create_engine(registry_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # NULLs in a float and a text column, an empty string, a numeric-looking id
        conn.execute(
            sa.text(
                "UPDATE churn_events SET monthly_charges = NULL, contract = NULL WHERE customer_id = '2026-01-02-00001'"
            )
        )
        conn.execute(sa.text("UPDATE churn_events SET payment_method = '' WHERE customer_id = '2026-01-02-00002'"))
        conn.execute(sa.text("UPDATE churn_events SET customer_id = '007' WHERE customer_id = '2026-01-02-00003'"))
        stored = pd.read_sql(sa.text("SELECT * FROM churn_events"), conn)
    engine.dispose()
    bigquery.put_table(TABLE, stored)

    expected = load_window(POSTGRES_SPEC, WINDOW, url=registry_url)
    got = load_window(SPEC, WINDOW)
    # text NULLs: COPY's CSV gives NaN, Arrow gives None; both are missing, and nothing else may differ
    pd.testing.assert_frame_equal(got.fillna(np.nan), expected.fillna(np.nan), check_dtype=True)
    assert len(got) == 240 and "007" in set(got.customer_id)
    assert got.set_index("customer_id").loc["2026-01-02-00002", "payment_method"] == ""

    query = next(c for c in bigquery.calls if c.route == "jobs.query").body
    assert query["useLegacySql"] is False
    assert "2026" not in query["query"] and "@start" in query["query"] and "@end" in query["query"]
    assert {p["name"]: p["parameterType"]["type"] for p in query["queryParameters"]} == {
        "start": "TIMESTAMP",
        "end": "TIMESTAMP",
    }


@pytest.mark.integration
def test_batch_prediction_streams_bigquery_pages_and_scores_as_from_postgres(
    bigquery: FakeBigQuery, registry_url: str, tmp_path: Path
) -> None:
    from modelgate.deploy.batch import batch_predict, score_frame
    from modelgate.registry import ArtifactStore, Registry, Source, VersionDraft
    from modelgate.registry.connection import create_registry_engine
    from modelgate.training import train

    rows = _rows()
    bigquery.put_table(TABLE, rows)
    registry = Registry(create_registry_engine(registry_url))
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    frame = load_window(SPEC, WINDOW)
    stored = artifacts.save(train(SPEC, frame).pipeline)
    version = registry.register(SPEC.name, VersionDraft(stored.uri, stored.sha256, stored.size, Source("t", "r", "x")))
    registry.promote(SPEC.name, version.version, expected_champion=None, actor="tests")
    model = artifacts.load(stored.uri, stored.sha256)
    expected = pd.Series(score_frame(SPEC, model, frame), index=frame[SPEC.id_column].astype(str))

    before = len(bigquery.calls)
    result = batch_predict(SPEC, WINDOW, registry=registry, artifacts=artifacts, data_url=None, chunk_rows=50)
    assert result.rows == 240
    pages = [c for c in bigquery.calls[before:] if c.route == "jobs.getQueryResults" and "pageToken" in c.query]
    assert len(pages) == 4  # 240 rows in pages of 50: the first comes with the query, four more follow
    assert all(c.query["maxResults"] == ["50"] for c in pages)
    selected = next(c for c in bigquery.calls[before:] if c.route == "jobs.query").body["query"]
    assert SPEC.target not in selected  # scoring reads ids and features only
    with registry.engine.connect() as conn:
        scored = pd.read_sql(sa.text("SELECT row_id, score FROM batch_prediction"), conn).set_index("row_id")
    np.testing.assert_allclose(scored.loc[expected.index, "score"].to_numpy(), expected.to_numpy(), rtol=1e-12)
    registry.close()


def test_datetime_time_columns_and_empty_windows(bigquery: FakeBigQuery) -> None:
    rows = _rows(days=2)
    rows["event_time"] = rows["event_time"].dt.tz_localize(None)  # a civil DATETIME column, read as UTC
    bigquery.put_table(TABLE, rows)
    window = load_window(SPEC, Interval(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC)))
    assert len(window) == 120 and str(window.event_time.dtype) == "datetime64[ns, UTC]"
    assert window.event_time.min() >= pd.Timestamp("2026-01-02", tz="UTC")
    assert next(c for c in bigquery.calls if c.route == "jobs.query").body["queryParameters"][0]["parameterType"] == {
        "type": "DATETIME"
    }
    empty = load_window(SPEC, Interval(dt.datetime(2030, 1, 1, tzinfo=dt.UTC), dt.datetime(2030, 1, 2, tzinfo=dt.UTC)))
    assert empty.empty and list(empty.columns) == list(rows.columns.drop("plan_change"))  # the spec's columns


def test_a_missing_column_is_left_to_the_quality_gate(bigquery: FakeBigQuery) -> None:
    bigquery.put_table(TABLE, _rows(days=3).drop(columns=["support_tickets"]))
    window = load_window(SPEC, WINDOW)
    assert "support_tickets" not in window and len(window) == 240


def test_bigquery_failures_are_one_line_data_errors(bigquery: FakeBigQuery) -> None:
    with pytest.raises(DataError, match=r"^churn: BigQuery table sales.churn_events does not exist$"):
        load_window(SPEC, WINDOW)
    bigquery.put_table(TABLE, _rows(days=2).assign(event_time="yesterday"))
    with pytest.raises(DataError, match="time column 'event_time' of BigQuery table .* is STRING, not TIMESTAMP"):
        load_window(SPEC, WINDOW)
    bigquery.put_table(TABLE, _rows(days=2).drop(columns=["event_time"]))
    with pytest.raises(DataError, match="time column 'event_time' missing from BigQuery table sales.churn_events"):
        load_window(SPEC, WINDOW)
    bigquery.put_table(TABLE, _rows(days=2))
    bigquery.fail_next("jobs.query", 403, "accessDenied", "Access Denied: User does not have bigquery.jobs.create")
    with pytest.raises(DataError) as failed:
        load_window(SPEC, WINDOW)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("churn: reading BigQuery table sales.churn_events failed: 403")
    assert "Access Denied" in message
