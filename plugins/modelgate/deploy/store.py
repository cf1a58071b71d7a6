"""Deployment state in the registry database: one row per deployment attempt, plus an audit event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from modelgate.registry import schema as t
from modelgate.registry.db import translate_errors
from modelgate.registry.entities import EventKind, RunRef
from modelgate.registry.errors import RegistryError
from modelgate.registry.store import Registry


class RolloutInProgress(RegistryError):
    """Another process is rolling a version of this model out right now."""


@dataclass(frozen=True)
class Deployment:
    id: int
    model: str
    version: int
    previous_version: int | None
    target: str
    endpoint: str | None
    deployed_ids: dict[str, Any]
    traffic: dict[str, Any]
    status: str
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


class DeploymentStore:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @contextmanager
    def rollout_lock(self, model: str, *, actor: str = "modelgate") -> Iterator[list[int]]:
        """Hold the model's rollout lock (a PostgreSQL session advisory lock) for the block.

        The lock ends with its session, so a rollout whose process was killed holds none: any attempt of
        this model still `deploying` once the lock is ours is one a dead process left, and is closed as
        `abandoned` (with its `deploy` event) before the new rollout starts. Yields those attempts' ids.
        """
        key = sa.func.hashtextextended(f"modelgate-rollout:{model}", 0)
        with translate_errors("take the rollout lock"), self._registry.engine.connect() as conn:
            if not conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one():
                conn.rollback()
                raise RolloutInProgress(
                    f"another rollout of {model!r} is in progress; wait for it to finish (modelgate deployments "
                    f"{model} shows it)"
                )
            conn.commit()
            try:
                yield self._abandon_stale(model, actor)
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                conn.commit()

    def _abandon_stale(self, model: str, actor: str) -> list[int]:
        d = t.deployment.c
        with self._registry.db.transaction("close abandoned deployments") as conn:
            rows = (
                conn.execute(
                    sa.update(t.deployment)
                    .where(d.model == model, d.status == "deploying")
                    .values(
                        status="abandoned",
                        error="the process rolling it out ended mid-rollout; the next rollout took over",
                        finished_at=sa.func.now(),
                    )
                    .returning(d.id, d.version, d.previous_version, d.target)
                )
                .mappings()
                .all()
            )
            for row in rows:
                self._registry.append_event(
                    conn,
                    model,
                    EventKind.DEPLOY,
                    from_version=row["previous_version"],
                    to_version=row["version"],
                    actor=actor,
                    reason=f"{row['target']} deployment abandoned: its process ended mid-rollout",
                    verdict={"deployment_id": row["id"], "status": "abandoned"},
                    run=None,
                )
        return [int(r["id"]) for r in rows]

    def start(self, model: str, version: int, previous: int | None, target: str, run_id: str | None) -> int:
        with self._registry.db.transaction("start deployment") as conn:
            return int(
                conn.execute(
                    sa.insert(t.deployment)
                    .values(
                        model=model,
                        version=version,
                        previous_version=previous,
                        target=target,
                        status="deploying",
                        run_id=run_id,
                    )
                    .returning(t.deployment.c.id)
                ).scalar_one()
            )

    def finish(
        self,
        deployment_id: int,
        *,
        status: str,
        traffic: dict[str, Any],
        actor: str,
        endpoint: str | None = None,
        deployed_ids: dict[str, Any] | None = None,
        error: str | None = None,
        run: RunRef | None = None,
    ) -> Deployment:
        """Close the attempt and append its `deploy` event in the same transaction."""
        d = t.deployment.c
        with self._registry.db.transaction("finish deployment") as conn:
            row = (
                conn.execute(
                    sa.update(t.deployment)
                    .where(d.id == deployment_id)
                    .values(
                        status=status,
                        traffic=traffic,
                        endpoint=endpoint,
                        deployed_ids=deployed_ids or {},
                        error=error,
                        finished_at=sa.func.now(),
                    )
                    .returning(*t.deployment.c)
                )
                .mappings()
                .one()
            )
            if status == "live":
                conn.execute(
                    sa.update(t.deployment)
                    .where(d.model == row["model"], d.status == "live", d.id != deployment_id)
                    .values(status="superseded")
                )
            self._registry.append_event(
                conn,
                row["model"],
                EventKind.DEPLOY,
                from_version=row["previous_version"],
                to_version=row["version"],
                actor=actor,
                reason=f"{row['target']} deployment {status}" + (f": {error}" if error else ""),
                verdict={"deployment_id": deployment_id, "status": status, "traffic": traffic},
                run=run,
            )
        return _entity(row)

    def history(self, model: str, *, limit: int | None = None) -> list[Deployment]:
        """Deployments oldest first (the newest `limit` of them when given)."""
        query = sa.select(t.deployment).where(t.deployment.c.model == model).order_by(t.deployment.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._registry.db.read("deployments") as conn:
            rows = conn.execute(query).mappings().all()
        return [_entity(r) for r in reversed(rows)]


def _entity(row: Any) -> Deployment:
    return Deployment(**{k: row[k] for k in Deployment.__dataclass_fields__})
