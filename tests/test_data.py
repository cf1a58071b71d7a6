"""Loading windows from a Postgres source: COPY gives exactly what read_sql would; bad sources are named."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from modelgate.data import DataError, Interval, _finish, load_window
from modelgate.datasets.churn import write_days
from modelgate.spec import parse_spec
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

SPEC = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
WINDOW = Interval(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))


def test_copy_reader_matches_read_sql(registry_url: str) -> None:
    write_days(registry_url, dt.date(2026, 1, 1), dt.date(2026, 1, 4), rows_per_day=50)
    engine = sa.create_engine(registry_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # the awkward cases: NULLs, an empty string, a numeric-looking id
        conn.execute(
            sa.text(
                "UPDATE churn_events SET monthly_charges = NULL, contract = NULL WHERE customer_id = '2026-01-01-00001'"
            )
        )
        conn.execute(sa.text("UPDATE churn_events SET payment_method = '' WHERE customer_id = '2026-01-01-00002'"))
        conn.execute(sa.text("UPDATE churn_events SET customer_id = '007' WHERE customer_id = '2026-01-01-00003'"))
    columns = ", ".join([SPEC.id_column, SPEC.time_column, *SPEC.feature_names, SPEC.target])
    with engine.connect() as conn:
        expected = pd.read_sql(
            sa.text(f"SELECT {columns} FROM churn_events WHERE event_time >= :s AND event_time < :e"),
            conn,
            params={"s": WINDOW.start, "e": WINDOW.end},
        )
    engine.dispose()
    got = load_window(SPEC, WINDOW, url=registry_url)
    pd.testing.assert_frame_equal(got, _finish(SPEC, expected), check_dtype=True)
    assert len(got) == 100
    row = got.set_index("customer_id")
    assert pd.isna(row.loc["2026-01-01-00001", "monthly_charges"]) and pd.isna(row.loc["2026-01-01-00001", "contract"])
    assert row.loc["2026-01-01-00002", "payment_method"] == ""
    assert "007" in row.index


def test_missing_table_and_time_column_are_named(registry_url: str) -> None:
    with pytest.raises(DataError, match="table public.churn_events does not exist"):
        load_window(SPEC, WINDOW, url=registry_url)
    with pytest.raises(DataError, match="a Postgres source needs a database URL"):
        load_window(SPEC, WINDOW, url=None)
    with pytest.raises(DataError, match="empty interval"):
        Interval(WINDOW.end, WINDOW.start)
    with pytest.raises(DataError, match="timezone-aware"):
        Interval(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))
