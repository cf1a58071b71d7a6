"""A seeded generator of telco-like customer rows, written to a real Postgres table.

Rows for a day depend only on (seed, day), so writing a range twice changes nothing. From `drift_start`
on, the population shifts (more fibre, higher charges) and so does the churn mechanism (support tickets
and fibre matter more): an old champion decays and a model trained on the new window does better.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from modelgate.registry.connection import normalize_url

if TYPE_CHECKING:
    import pandas as pd

TABLE = "churn_events"
CONTRACTS = ["month-to-month", "one-year", "two-year"]
INTERNET = ["dsl", "fiber", "none"]
PAYMENT = ["electronic_check", "mailed_check", "bank_transfer", "credit_card"]
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
    churned integer
);
CREATE INDEX IF NOT EXISTS ix_{TABLE}_event_time ON {TABLE} (event_time);
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
        }
    )


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
    import pandas as pd

    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            for statement in DDL.strip().split(";"):
                if statement.strip():
                    conn.execute(sa.text(statement))
        frames = []
        day = start
        while day < end:
            frames.append(generate_day(day, rows=rows_per_day, seed=seed, drift_start=drift_start))
            day += dt.timedelta(days=1)
        if not frames:
            return 0
        frame = pd.concat(frames, ignore_index=True)
        table = sa.table(TABLE, *[sa.column(c) for c in frame.columns])
        from sqlalchemy.dialects.postgresql import insert

        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        count = sa.text(f"SELECT count(*) FROM {TABLE}")
        with engine.begin() as conn:
            before = conn.execute(count).scalar_one()
            for offset in range(0, len(records), 5000):
                stmt = insert(table).values(records[offset : offset + 5000])
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["customer_id"]))
            inserted = conn.execute(count).scalar_one() - before
    finally:
        engine.dispose()
    return inserted
