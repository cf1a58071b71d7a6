"""The live churn example: seeded up to a moment, drift placed relative to it and kept, idempotent top-ups."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from modelgate.datasets.churn import generate_day, last_weekly_boundary, seed_until
from tests.cli_helpers import run_cli

pytestmark = pytest.mark.integration

UTC = dt.UTC


def _rows(url: str, sql: str) -> list[sa.Row]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    finally:
        engine.dispose()


def test_last_weekly_boundary_is_where_weekly_intervals_end() -> None:
    assert last_weekly_boundary(dt.datetime(2026, 11, 29, 16, 5, tzinfo=UTC)) == dt.datetime(2026, 11, 29, tzinfo=UTC)
    assert last_weekly_boundary(dt.datetime(2026, 11, 28, 23, 59, tzinfo=UTC)) == dt.datetime(2026, 11, 22, tzinfo=UTC)


def test_seeding_covers_every_interval_up_to_now_and_keeps_its_drift(registry_url: str) -> None:
    until = dt.datetime(2026, 11, 25, 12, 30, tzinfo=UTC)  # a Wednesday afternoon
    first = seed_until(registry_url, until, history_days=30, rows_per_day=50)
    assert first.drift_start == dt.date(2026, 11, 8)  # two weekly intervals before Sunday 2026-11-22
    newest, oldest, count = _rows(registry_url, "SELECT max(event_time), min(event_time), count(*) FROM churn_events")[
        0
    ]
    assert newest < until and oldest.date() == dt.date(2026, 10, 26)
    assert count == first.inserted == first.total_rows
    assert 30 * 50 < count < 31 * 50  # 30 whole days and the part of today before 12:30

    again = seed_until(registry_url, until, history_days=30, rows_per_day=50)
    assert again.inserted == 0 and again.total_rows == count  # idempotent

    later = seed_until(registry_url, until + dt.timedelta(days=2), history_days=30, drift_weeks_ago=0)
    assert later.drift_start == first.drift_start  # the stream the first seeding started goes on
    assert later.total_rows - count == later.inserted > 50
    # the top-up writes exactly the rows the generator makes for those days
    longer = seed_until(registry_url, until + dt.timedelta(days=2), history_days=40)
    assert longer.inserted == 8 * 50  # asking for more history fills the older days
    expected = generate_day(dt.date(2026, 11, 26), rows=50, seed=7, drift_start=dt.date(2026, 11, 8))
    stored = _rows(registry_url, "SELECT customer_id FROM churn_events WHERE event_time::date = '2026-11-26'")
    assert sorted(r[0] for r in stored) == sorted(expected["customer_id"])


def test_seeding_refuses_a_naive_moment(registry_url: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        seed_until(registry_url, dt.datetime(2026, 11, 25))


def test_example_data_command(registry_url: str) -> None:
    env = {"MODELGATE_REGISTRY_URL": registry_url}
    result = run_cli("example-data", "--until", "2026-05-01", "--days", "14", "--no-drift", env=env)
    assert "churn_events: 4200 new rows from 2026-04-17 until 2026-05-01 00:00 UTC" in result.stdout
    assert "no drift" in result.stdout
    assert _rows(registry_url, "SELECT max(event_time) < '2026-05-01' FROM churn_events")[0][0] is True
    bad = run_cli("example-data", "--until", "May 1st", env=env, check=False)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: --until 'May 1st' is not an ISO date")
    other = run_cli("example-data", "weather_rain", env=env, check=False)
    assert other.returncode == 1 and "only the churn example has one" in other.stderr
