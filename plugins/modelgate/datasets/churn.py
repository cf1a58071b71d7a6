"""A seeded generator of telco-like customer rows, written to a real Postgres table.

Rows for a day depend only on (seed, day, drift start), so writing a range twice changes nothing. From
`drift_start` on, the population shifts (more fibre, higher charges) and so does the churn mechanism
(support tickets and fibre matter more): an old champion decays and a model trained on the new window
does better.

For a running Airflow the example is *live*: `seed_until(url, until)` writes every row with an event time
before `until`, placing the drift relative to the first seeding (weeks before "now") and remembering it in
`churn_events_meta`, so later top-ups (the example-data DAG, `modelgate example-data`) continue the same stream.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from modelgate.registry.connection import normalize_url

if TYPE_CHECKING:
    import pandas as pd

TABLE = "churn_events"
META_TABLE = "churn_events_meta"
WEEK = dt.timedelta(days=7)
CONTRACTS = ["month-to-month", "one-year", "two-year"]
INTERNET = ["dsl", "fiber", "none"]
PAYMENT = ["electronic_check", "mailed_check", "bank_transfer", "credit_card"]
PLAN_CHANGES = ["none", "upgrade", "downgrade"]  # the multiclass example's target (plan_change.yaml)
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    customer_id text PRIMARY KEY,
    event_time timestamptz NOT NULL,
    tenure_months integer,
    monthly_charges double precision,
    total_charges double precision,
    support_tickets integer,
    senior_citizen integer,
    contract text,
    internet_service text,
    payment_method text,
    churned integer,
    plan_change text
);
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS plan_change text;
CREATE INDEX IF NOT EXISTS ix_{TABLE}_event_time ON {TABLE} (event_time);
CREATE TABLE IF NOT EXISTS {META_TABLE} (
    id integer PRIMARY KEY CHECK (id = 1),
    drift_start date,
    seed integer NOT NULL,
    rows_per_day integer NOT NULL
);
"""


def generate_day(day: dt.date, *, rows: int = 300, seed: int = 7, drift_start: dt.date | None = None) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, day.toordinal()])
    drifted = drift_start is not None and day >= drift_start
    tenure = rng.integers(0, 72, rows)
    contract_p = [0.45, 0.3, 0.25] if not drifted else [0.65, 0.2, 0.15]
    internet_p = [0.4, 0.4, 0.2] if not drifted else [0.2, 0.7, 0.1]
    contract = rng.choice(CONTRACTS, rows, p=contract_p)
    internet = rng.choice(INTERNET, rows, p=internet_p)
    payment = rng.choice(PAYMENT, rows, p=[0.35, 0.2, 0.25, 0.2])
    charges = rng.normal(65 if not drifted else 85, 20, rows).clip(18, 150)
    tickets = rng.poisson(1.2 if not drifted else 2.0, rows)
    senior = (rng.random(rows) < 0.16).astype(int)
    month_to_month = contract == "month-to-month"
    fiber = internet == "fiber"
    if not drifted:
        logit = -1.2 - 0.035 * tenure + 0.015 * (charges - 65) + 1.1 * month_to_month + 0.2 * tickets
        logit += 0.3 * fiber + 0.3 * senior + 0.4 * (payment == "electronic_check")
    else:  # the mechanism changes: tickets and fibre now dominate, contract matters less
        logit = -1.6 - 0.02 * tenure + 0.005 * (charges - 85) + 0.2 * month_to_month + 0.9 * (tickets - 2)
        logit += 1.3 * fiber * (tickets >= 2) - 0.8 * (internet == "none") + 0.3 * senior
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    seconds = np.sort(rng.integers(0, 86_400, rows))
    start = pd.Timestamp(day, tz="UTC")
    # what the customer does to their plan next (drawn last: the columns above are as they always were)
    dsl = internet == "dsl"
    if not drifted:
        upgrade = -1.3 + 0.02 * tenure - 0.02 * (charges - 65) + 0.9 * dsl - 0.25 * tickets
        downgrade = -1.6 + 0.03 * (charges - 65) + 0.45 * tickets + 0.7 * (payment == "mailed_check")
    else:  # fibre offers drive upgrades; high bills, not tickets, drive downgrades
        upgrade = -0.9 + 1.4 * fiber - 0.01 * tenure + 0.3 * senior
        downgrade = -1.4 + 0.05 * (charges - 85) + 0.1 * tickets - 0.6 * fiber
    weights = np.exp(np.stack([np.zeros(rows), upgrade, downgrade], axis=1))
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    plan_change = np.array(PLAN_CHANGES)[(rng.random(rows)[:, None] > cumulative[:, :2]).sum(axis=1)]
    return pd.DataFrame(
        {
            "customer_id": [f"{day.isoformat()}-{i:05d}" for i in range(rows)],
            "event_time": start + pd.to_timedelta(seconds, unit="s"),
            "tenure_months": tenure,
            "monthly_charges": charges.round(2),
            "total_charges": (charges * np.maximum(tenure, 1)).round(2),
            "support_tickets": tickets,
            "senior_citizen": senior,
            "contract": contract,
            "internet_service": internet,
            "payment_method": payment,
            "churned": churned,
            "plan_change": plan_change,
        }
    )


def _ensure_tables(conn: sa.Connection) -> None:
    for statement in DDL.strip().split(";"):
        if statement.strip():
            conn.execute(sa.text(statement))


def _insert(conn: sa.Connection, frame: pd.DataFrame) -> int:
    """Insert the rows that are not there yet (by customer id); returns how many were inserted.

    The rows go through one COPY into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING: bulk
    speed (millions of rows for the benchmarks) under the same skip-what-exists rule.
    """
    import io

    if frame.empty:
        return 0
    conn.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS _incoming (LIKE {TABLE}) ON COMMIT DROP"))
    conn.execute(sa.text("TRUNCATE _incoming"))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%dT%H:%M:%S%z")
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    driver = conn.connection.driver_connection
    assert driver is not None
    copy_in = f"COPY _incoming ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
    with driver.cursor() as cursor, cursor.copy(copy_in) as copy:
        copy.write(buffer.getvalue())
    inserted = conn.execute(
        sa.text(f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM _incoming ON CONFLICT (customer_id) DO NOTHING")
    )
    return int(inserted.rowcount)


def _frames(start: dt.date, end: dt.date, *, rows_per_day: int, seed: int, drift_start: dt.date | None) -> pd.DataFrame:
    import pandas as pd

    frames = []
    day = start
    while day < end:
        frames.append(generate_day(day, rows=rows_per_day, seed=seed, drift_start=drift_start))
        day += dt.timedelta(days=1)
    return pd.concat(frames, ignore_index=True) if frames else generate_day(start, rows=0)


def write_days(
    url: str,
    start: dt.date,
    end: dt.date,
    *,
    rows_per_day: int = 300,
    seed: int = 7,
    drift_start: dt.date | None = None,
) -> int:
    """Insert the rows of days [start, end) that are not there yet; returns how many were inserted."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            _ensure_tables(conn)
            inserted, day = 0, start
            while day < end:  # a day at a time: memory holds one day's rows
                inserted += _insert(conn, generate_day(day, rows=rows_per_day, seed=seed, drift_start=drift_start))
                day += dt.timedelta(days=1)
            return inserted
    finally:
        engine.dispose()


def last_weekly_boundary(moment: dt.datetime) -> dt.datetime:
    """The most recent Sunday 00:00 UTC at or before `moment`: where `@weekly` intervals end."""
    day = moment.astimezone(dt.UTC).date()
    sunday = day - dt.timedelta(days=(day.weekday() + 1) % 7)
    return dt.datetime.combine(sunday, dt.time(), tzinfo=dt.UTC)


@dataclass(frozen=True)
class SeedResult:
    inserted: int
    first_day: dt.date
    until: dt.datetime
    drift_start: dt.date | None
    total_rows: int


def seed_until(
    url: str,
    until: dt.datetime,
    *,
    history_days: int = 84,
    drift_weeks_ago: int | None = 2,
    drift_start: dt.date | None = None,
    rows_per_day: int = 300,
    seed: int = 7,
) -> SeedResult:
    """Write every example row with an event time before `until` (from `history_days` before it).

    The drift start is fixed by the first seeding of a database: `drift_start` when given, else
    `drift_weeks_ago` weekly intervals before the last weekly boundary before `until` (None: no drift), and
    kept in `churn_events_meta` so that later calls (a later `until`) extend the same stream. Idempotent:
    rows already there are left as they are, so calling it again or concurrently inserts nothing twice.
    """
    if until.tzinfo is None:
        raise ValueError("until must be timezone-aware")
    if history_days < 1:
        raise ValueError(f"history_days must be at least 1, got {history_days}")
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            _ensure_tables(conn)
            conn.execute(sa.text(f"LOCK TABLE {META_TABLE} IN EXCLUSIVE MODE"))  # one seeder at a time
            meta = conn.execute(sa.text(f"SELECT drift_start, seed, rows_per_day FROM {META_TABLE}")).first()
            if meta is None:
                if drift_start is None and drift_weeks_ago is not None:
                    drift_start = (last_weekly_boundary(until) - drift_weeks_ago * WEEK).date()
                conn.execute(
                    sa.text(f"INSERT INTO {META_TABLE} VALUES (1, :drift, :seed, :rows)"),
                    {"drift": drift_start, "seed": seed, "rows": rows_per_day},
                )
            else:
                drift_start, seed, rows_per_day = meta.drift_start, meta.seed, meta.rows_per_day
            first_day = until.astimezone(dt.UTC).date() - dt.timedelta(days=history_days)
            oldest, newest = conn.execute(sa.text(f"SELECT min(event_time), max(event_time) FROM {TABLE}")).one()
            start_day = first_day
            if oldest is not None and oldest.astimezone(dt.UTC).date() <= first_day:
                # the history is there: a top-up generates from the newest stored day on (rows depend on the day)
                start_day = max(first_day, newest.astimezone(dt.UTC).date())
            frame = _frames(
                start_day,
                until.astimezone(dt.UTC).date() + dt.timedelta(days=1),
                rows_per_day=rows_per_day,
                seed=seed,
                drift_start=drift_start,
            )
            frame = frame[frame["event_time"] < until]
            inserted = _insert(conn, frame)
            total = conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one()
    finally:
        engine.dispose()
    return SeedResult(inserted, first_day, until, drift_start, int(total))
