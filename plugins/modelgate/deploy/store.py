"""Deployment state in the registry database: one row per deployment attempt, plus an audit event."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from modelgate.registry import schema as t
from modelgate.registry.entities import EventKind, RunRef
from modelgate.registry.store import Registry


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

    def history(self, model: str) -> list[Deployment]:
        with self._registry.db.read("deployments") as conn:
            rows = (
                conn.execute(sa.select(t.deployment).where(t.deployment.c.model == model).order_by(t.deployment.c.id))
                .mappings()
                .all()
            )
        return [_entity(r) for r in rows]


def _entity(row: Any) -> Deployment:
    return Deployment(**{k: row[k] for k in Deployment.__dataclass_fields__})
