"""The monitoring timeline in the registry database: drift per interval and retrain decisions.

Upserts keyed by (model, interval): re-running an interval rewrites its row, never adds one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on, insert

from modelgate.registry import schema as t
from modelgate.registry.store import Registry


@dataclass(frozen=True)
class DriftRow:
    model: str
    interval_start: dt.datetime
    interval_end: dt.datetime
    champion_version: int | None
    scores: dict[str, Any]
    share: float
    drifted: bool
    reference_rows: int
    current_rows: int
    report_uri: str | None


@dataclass(frozen=True)
class DriftCells:
    """One drift run as the heatmap needs it: per feature (sorted), distance over threshold and the alarm."""

    interval_end: dt.datetime
    features: list[str]
    ratios: list[float | None]
    alarms: list[bool]


_DRIFT_CELLS = sa.text(
    """
    SELECT d.interval_end,
           array_agg(e.key ORDER BY e.key) AS features,
           array_agg(
               CASE WHEN jsonb_typeof(e.value -> 'score') = 'number' THEN round((
                   (e.value ->> 'score')::float8 / CASE WHEN jsonb_typeof(e.value -> 'threshold') = 'number'
                       AND (e.value ->> 'threshold')::float8 > 0 THEN (e.value ->> 'threshold')::float8 ELSE 1 END
               )::numeric, 3)::float8 END ORDER BY e.key) AS ratios,
           array_agg(coalesce(e.value ->> 'drifted' = 'true', false) ORDER BY e.key) AS alarms
    FROM (SELECT interval_start, interval_end, scores FROM drift_result WHERE model = :model
          ORDER BY interval_end DESC LIMIT :limit) d
    CROSS JOIN LATERAL jsonb_each(d.scores) e
    WHERE jsonb_typeof(e.value) = 'object'
    GROUP BY d.interval_start, d.interval_end
    ORDER BY d.interval_end
    """
)


@dataclass(frozen=True)
class DecisionRow:
    model: str
    interval_start: dt.datetime
    interval_end: dt.datetime
    retrain: bool
    reason: str
    detail: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class BacktestRow:
    """One backtest of a model's history (`modelgate.backtest.BacktestResult`, as the registry keeps it)."""

    model: str
    run_id: str
    first_start: dt.datetime
    split_at: dt.datetime
    last_end: dt.datetime
    intervals: int
    recommended: str
    why: str
    diff: str
    result: dict[str, Any]
    report_uri: str | None = None
    created_at: dt.datetime | None = None


class MonitoringStore:
    """Drift timeline and retrain decisions, next to the registry (same database, same guards)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def upsert_drift(self, row: DriftRow, *, run_id: str | None = None) -> None:
        self._upsert(t.drift_result, "pk_drift_result", row.__dict__, run_id, "record drift")

    def drift_timeline(
        self,
        model: str,
        *,
        until: dt.datetime | None = None,
        limit: int | None = None,
        champion_version: int | None = None,
    ) -> list[DriftRow]:
        """Drift rows oldest first, those ending at or before `until` (of `champion_version` when given); the
        last `limit` of them."""
        query = sa.select(t.drift_result).where(t.drift_result.c.model == model)
        if until is not None:
            query = query.where(t.drift_result.c.interval_end <= until)
        if champion_version is not None:
            query = query.where(t.drift_result.c.champion_version == champion_version)
        query = query.order_by(t.drift_result.c.interval_end.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._registry.db.read("drift timeline") as conn:
            rows = conn.execute(query).mappings().all()
        return [_drift_row(r) for r in reversed(rows)]

    def drift_cells(self, model: str, *, limit: int = 365) -> list[DriftCells]:
        """The newest `limit` drift runs' per-feature cells, oldest first, flattened in the database."""
        with self._registry.db.read("drift cells") as conn:
            rows = conn.execute(_DRIFT_CELLS, {"model": model, "limit": limit}).all()
        return [DriftCells(end, list(names), list(ratios), list(alarms)) for end, names, ratios, alarms in rows]

    def drift_count(self, model: str) -> int:
        query = sa.select(sa.func.count()).select_from(t.drift_result).where(t.drift_result.c.model == model)
        with self._registry.db.read("count drift runs") as conn:
            return int(conn.execute(query).scalar_one())

    def record_decision(self, row: DecisionRow, *, run_id: str | None = None) -> None:
        self._upsert(t.retrain_decision, "pk_retrain_decision", row.__dict__, run_id, "record retrain decision")

    def _upsert(self, table: sa.Table, constraint: str, row: dict[str, Any], run_id: str | None, action: str) -> None:
        """Insert the (model, interval) row, or overwrite it: re-running an interval never adds a row."""
        values = {**row, "run_id": run_id}
        stmt = insert(table).values(**values)
        keys = ("model", "interval_start", "interval_end")
        update = {k: stmt.excluded[k] for k in values if k not in keys}
        with self._registry.db.transaction(action) as conn:
            self._registry.create_model_in(conn, row["model"])
            conn.execute(
                stmt.on_conflict_do_update(constraint=constraint, set_={**update, "updated_at": sa.func.now()})
            )

    def decisions(
        self, model: str, *, interval_end: dt.datetime | None = None, limit: int | None = None
    ) -> list[DecisionRow]:
        """The model's retrain decisions, oldest first (only the one for `interval_end` when given; the newest
        `limit` when given)."""
        query = (
            sa.select(t.retrain_decision)
            .where(t.retrain_decision.c.model == model)
            .order_by(t.retrain_decision.c.interval_end.desc())
        )
        if interval_end is not None:
            query = query.where(t.retrain_decision.c.interval_end == interval_end)
        if limit is not None:
            query = query.limit(limit)
        with self._registry.db.read("retrain decisions") as conn:
            rows = conn.execute(query).mappings().all()
        return [_decision_row(r) for r in reversed(rows)]

    def latest_drift(self, models: list[str]) -> dict[str, DriftRow]:
        """Each model's newest drift run, in one query (a page of the Models index)."""
        r = t.drift_result.c
        query = (
            sa.select(t.drift_result)
            .where(r.model.in_(models))
            .ext(distinct_on(r.model))
            .order_by(r.model, r.interval_end.desc())
        )
        with self._registry.db.read("drift timeline") as conn:
            rows = conn.execute(query).mappings().all()
        return {row["model"]: _drift_row(row) for row in rows}

    def decisions_within(
        self,
        model: str,
        *,
        end: dt.datetime,
        since: dt.datetime,
        champion_window: tuple[dt.datetime, dt.datetime] | None,
    ) -> list[DecisionRow]:
        """The decisions a decision ending at `end` reads (`loop.DecisionReach`), oldest first, in one query:
        those ending in (`since`, `end`], those ending in `champion_window` and the one before it, and the
        newest decision, retrain and drift-triggered retrain before `end`."""
        d = t.retrain_decision.c
        before = sa.and_(d.model == model, d.interval_end < end)

        def newest(*where: Any) -> sa.ScalarSelect[Any]:
            return sa.select(sa.func.max(d.interval_end)).where(before, *where).scalar_subquery()

        wanted = [
            d.interval_end > since,
            d.interval_end == newest(),
            d.interval_end == newest(d.retrain.is_(True)),
            d.interval_end == newest(d.retrain.is_(True), d.reason == "drift"),
        ]
        if champion_window is not None:
            start, stop = champion_window
            first = sa.func.coalesce(newest(d.interval_end < start), start)
            wanted.append(sa.and_(d.interval_end >= first, d.interval_end <= stop))
        query = (
            sa.select(t.retrain_decision)
            .where(d.model == model, d.interval_end <= end, sa.or_(*wanted))
            .order_by(d.interval_end)
        )
        with self._registry.db.read("retrain decisions") as conn:
            rows = conn.execute(query).mappings().all()
        return [_decision_row(r) for r in rows]

    def first_clean_drift(
        self, model: str, *, champion_version: int, after: dt.datetime, until: dt.datetime
    ) -> DriftRow | None:
        """The first drift run of `champion_version` without drift ending in (`after`, `until`]."""
        r = t.drift_result.c
        query = (
            sa.select(t.drift_result)
            .where(
                r.model == model,
                r.champion_version == champion_version,
                r.drifted.is_(False),
                r.interval_end > after,
                r.interval_end <= until,
            )
            .order_by(r.interval_end)
            .limit(1)
        )
        with self._registry.db.read("drift timeline") as conn:
            found = conn.execute(query).mappings().first()
        return None if found is None else _drift_row(found)

    def record_backtest(self, row: BacktestRow) -> None:
        """Keep a backtest against its model; the same run again overwrites its row."""
        values = {k: v for k, v in row.__dict__.items() if k != "created_at"}
        stmt = insert(t.backtest_run).values(**values)
        update = {k: stmt.excluded[k] for k in values if k not in ("model", "run_id")}
        with self._registry.db.transaction("record backtest") as conn:
            self._registry.create_model_in(conn, row.model)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["model", "run_id"], set_={**update, "created_at": sa.func.now()}
                )
            )

    def latest_backtest(self, model: str) -> BacktestRow | None:
        query = (
            sa.select(t.backtest_run)
            .where(t.backtest_run.c.model == model)
            .order_by(t.backtest_run.c.created_at.desc())
            .limit(1)
        )
        with self._registry.db.read("latest backtest") as conn:
            found = conn.execute(query).mappings().first()
        return None if found is None else BacktestRow(**{k: found[k] for k in BacktestRow.__dataclass_fields__})


def _drift_row(row: Any) -> DriftRow:
    return DriftRow(**{k: row[k] for k in DriftRow.__dataclass_fields__})


def _decision_row(row: Any) -> DecisionRow:
    return DecisionRow(**{k: row[k] for k in DecisionRow.__dataclass_fields__})
