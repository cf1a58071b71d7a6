"""The monitoring timeline in the registry database: drift per interval and retrain decisions.

Upserts keyed by (model, interval): re-running an interval rewrites its row, never adds one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

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
class DecisionRow:
    model: str
    interval_start: dt.datetime
    interval_end: dt.datetime
    retrain: bool
    reason: str
    detail: str
    inputs: dict[str, Any]


class MonitoringStore:
    """Drift timeline and retrain decisions, next to the registry (same database, same guards)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def upsert_drift(self, row: DriftRow, *, run_id: str | None = None) -> None:
        self._upsert(t.drift_result, "pk_drift_result", row.__dict__, run_id, "record drift")

    def drift_timeline(
        self, model: str, *, until: dt.datetime | None = None, limit: int | None = None
    ) -> list[DriftRow]:
        """Drift rows oldest first, those ending at or before `until`; the last `limit` of them."""
        query = sa.select(t.drift_result).where(t.drift_result.c.model == model)
        if until is not None:
            query = query.where(t.drift_result.c.interval_end <= until)
        query = query.order_by(t.drift_result.c.interval_end.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._registry._read("drift timeline") as conn:
            rows = conn.execute(query).mappings().all()
        fields = DriftRow.__dataclass_fields__
        return [DriftRow(**{k: r[k] for k in fields}) for r in reversed(rows)]

    def record_decision(self, row: DecisionRow, *, run_id: str | None = None) -> None:
        self._upsert(t.retrain_decision, "pk_retrain_decision", row.__dict__, run_id, "record retrain decision")

    def _upsert(self, table: sa.Table, constraint: str, row: dict[str, Any], run_id: str | None, action: str) -> None:
        """Insert the (model, interval) row, or overwrite it: re-running an interval never adds a row."""
        values = {**row, "run_id": run_id}
        stmt = insert(table).values(**values)
        keys = ("model", "interval_start", "interval_end")
        update = {k: stmt.excluded[k] for k in values if k not in keys}
        with self._registry._tx(action) as conn:
            self._registry.create_model_in(conn, row["model"])
            conn.execute(
                stmt.on_conflict_do_update(constraint=constraint, set_={**update, "updated_at": sa.func.now()})
            )

    def decisions(self, model: str, *, interval_end: dt.datetime | None = None) -> list[DecisionRow]:
        """The model's retrain decisions, oldest first (only the one for `interval_end` when given)."""
        query = (
            sa.select(t.retrain_decision)
            .where(t.retrain_decision.c.model == model)
            .order_by(t.retrain_decision.c.interval_end)
        )
        if interval_end is not None:
            query = query.where(t.retrain_decision.c.interval_end == interval_end)
        with self._registry._read("retrain decisions") as conn:
            rows = conn.execute(query).mappings().all()
        fields = DecisionRow.__dataclass_fields__
        return [DecisionRow(**{k: r[k] for k in fields}) for r in rows]
