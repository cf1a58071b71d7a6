"""The model registry on Postgres: registration, atomic promotion and rollback, audit log, reads.

Every write is one transaction that locks the model's row first, so concurrent writers for the same model
queue up instead of racing; the database's keys (one `champion` alias row per model, a partial unique index
on status) make a second champion impossible whatever a caller does.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from modelgate.names import InvalidName, check_model_name
from modelgate.registry import schema as t
from modelgate.registry.connection import create_registry_engine, resolve_target
from modelgate.registry.db import Database, translate_errors
from modelgate.registry.entities import (
    CHAMPION_ALIAS,
    Comparison,
    EventKind,
    ModelVersion,
    RegisteredModel,
    RegistryEvent,
    RunRef,
    Source,
    VersionDraft,
    VersionStatus,
)
from modelgate.registry.errors import (
    InvalidInput,
    InvalidModelName,
    InvalidTransition,
    ModelNotFound,
    NoChampion,
    NotServable,
    PromotionConflict,
    VersionNotFound,
)
from modelgate.registry.migrate import ensure_current, upgrade

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_VERSION = 2**31 - 1


class _AnyChampion:
    def __repr__(self) -> str:
        return "ANY_CHAMPION"


ANY_CHAMPION: Final = _AnyChampion()
"""Pass as `expected_champion` to skip the compare-and-swap (a human override, not for automation)."""

ExpectedChampion = int | None | _AnyChampion


@dataclass(frozen=True)
class ChampionChange:
    """Outcome of promote/rollback: `changed` is False when the version already was champion (a no-op)."""

    model: str
    version: int
    previous_version: int | None
    changed: bool
    event_id: int | None


def _seen(champion: int | None) -> str:
    return "no champion" if champion is None else f"v{champion}"


def _compare_and_swap(model: str, expected: ExpectedChampion, current: int | None, outcome: str) -> None:
    """PromotionConflict unless the champion is still the one the caller read (ANY_CHAMPION: no check)."""
    if not isinstance(expected, _AnyChampion) and current != expected:
        raise PromotionConflict(
            f"champion of {model!r} changed since it was read: expected {_seen(expected)}, found "
            f"{_seen(current)}; {outcome}"
        )


def validate_model_name(name: str) -> str:
    try:
        return check_model_name(name)
    except InvalidName as exc:
        raise InvalidModelName(str(exc)) from exc


class Registry:
    """The registry API. Returns plain entities; raises only `RegistryError` subclasses."""

    def __init__(self, engine: sa.Engine, *, check_schema: bool = True) -> None:
        self.db = Database(engine)
        """The transaction layer the other stores (monitoring, deployments, batch output) share."""
        if check_schema:
            with translate_errors("schema check"):
                ensure_current(engine)

    @classmethod
    def connect(cls, url: str | None = None, *, pool_size: int = 5) -> Registry:
        """Explicit URL, else $MODELGATE_REGISTRY_URL, else the embedded server (migrated on first use)."""
        target = resolve_target(url)
        engine = create_registry_engine(target.url, pool_size=pool_size)
        if target.embedded:
            with translate_errors("embedded schema upgrade"):
                upgrade(engine)
        return cls(engine)

    @property
    def engine(self) -> sa.Engine:
        return self.db.engine

    def close(self) -> None:
        self.db.dispose()

    # ------------------------------------------------------------------ models

    def create_model(self, name: str, description: str | None = None) -> RegisteredModel:
        """Create the model if missing (idempotent) and return it."""
        validate_model_name(name)
        with self.db.transaction("create model") as conn:
            self._ensure_model(conn, name, description)
        return self.get_model(name)

    def get_model(self, name: str) -> RegisteredModel:
        validate_model_name(name)
        with self.db.read("get model") as conn:
            models = self._models(conn, name)
        if not models:
            raise ModelNotFound(f"model {name!r} is not registered")
        return models[0]

    def list_models(
        self, *, search: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[RegisteredModel]:
        """Models by name; `search` keeps those whose name or description holds it (any case), `limit` and
        `offset` page them (the Models index reads one page, not a thousand models)."""
        with self.db.read("list models") as conn:
            return self._models(conn, None, search=search, limit=limit, offset=offset)

    def count_models(self, *, search: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(t.registered_model)
        if search:
            query = query.where(_matches(search))
        with self.db.read("count models") as conn:
            return int(conn.execute(query).scalar_one())

    # ------------------------------------------------------------------ versions

    def register(self, model: str, draft: VersionDraft, *, description: str | None = None) -> ModelVersion:
        """Register a challenger; the same source key (dag_id, run_id, task_id) returns the existing version."""
        validate_model_name(model)
        _validate_draft(draft)
        with self.db.transaction("register") as conn:
            self._ensure_model(conn, model, description)
            self._lock_model(conn, model)
            existing = self._version_by_source(conn, model, draft.source)
            if existing is not None:
                return existing
            version = conn.execute(
                sa.update(t.registered_model)
                .where(t.registered_model.c.name == model)
                .values(last_version=t.registered_model.c.last_version + 1)
                .returning(t.registered_model.c.last_version)
            ).scalar_one()
            conn.execute(
                sa.insert(t.model_version).values(
                    model=model,
                    version=version,
                    status=VersionStatus.CHALLENGER.value,
                    description=draft.description,
                    created_by=draft.created_by,
                    **_version_columns(draft),
                )
            )
            self.append_event(
                conn,
                model,
                EventKind.REGISTER,
                to_version=version,
                actor=draft.created_by or draft.source.dag_id,
                reason=None,
                verdict=None,
                run=RunRef(draft.source.dag_id, draft.source.run_id, draft.source.task_id),
            )
            created = self._version(conn, model, version)
        return created

    def find_by_source(self, model: str, source: Source) -> ModelVersion | None:
        """The version registered from this source key; None if none is (or the model does not exist yet)."""
        validate_model_name(model)
        with self.db.read("find version by source") as conn:
            return self._version_by_source(conn, model, source)

    def get_version(self, model: str, version: int) -> ModelVersion:
        validate_model_name(model)
        with self.db.read("get version") as conn:
            self._require_model(conn, model)
            return self._version(conn, model, version)

    def servable_version(self, model: str, version: int) -> ModelVersion:
        """The version, if it may take traffic: the champion, or a former champion (for rollbacks).

        A rejected version never serves; a challenger serves only once promoted.
        """
        validate_model_name(model)
        with self.db.read("get servable version") as conn:
            self._require_model(conn, model)
            entry = self._version(conn, model, version)
            if entry.status is VersionStatus.CHAMPION:
                return entry
            was_champion = conn.execute(
                sa.select(sa.literal(1))
                .where(
                    t.registry_event.c.model == model,
                    t.registry_event.c.to_version == version,
                    t.registry_event.c.kind.in_([EventKind.PROMOTE.value, EventKind.ROLLBACK.value]),
                )
                .limit(1)
            ).first()
        if entry.status is VersionStatus.REJECTED:
            raise NotServable(f"v{version} of {model!r} was rejected and never serves; deploy the champion instead")
        if entry.status is VersionStatus.CHALLENGER:
            raise NotServable(
                f"v{version} of {model!r} is a challenger that was never promoted; promote it first "
                f"(modelgate promote {model} {version})"
            )
        if was_champion is None:
            raise NotServable(f"v{version} of {model!r} was archived without ever being champion and cannot serve")
        return entry

    def get_champion(self, model: str) -> ModelVersion | None:
        validate_model_name(model)
        with self.db.read("get champion") as conn:
            self._require_model(conn, model)
            current = self._champion_version(conn, model)
            return None if current is None else self._version(conn, model, current)

    def champion_at(self, model: str, moment: Any) -> ModelVersion | None:
        """The champion that served just before `moment`, from the audit log: the version of the last promotion
        or rollback recorded as of a time before it (None before the first champion, or an unknown model).

        A run for the interval ending at `moment` records its own changes as of `moment`, so they take effect
        from then on and never change that run's view of its interval: every task of it, and every re-run,
        sees the same champion, whatever was promoted since."""
        validate_model_name(model)
        e = t.registry_event.c
        as_of = sa.func.coalesce(e.as_of, e.at)
        query = (
            sa.select(e.to_version)
            .where(e.model == model, e.kind.in_([EventKind.PROMOTE.value, EventKind.ROLLBACK.value]), as_of < moment)
            .order_by(as_of.desc(), e.id.desc())
            .limit(1)
        )
        with self.db.read("champion as of") as conn:
            version = conn.execute(query).scalar_one_or_none()
            return None if version is None else self._version(conn, model, int(version))

    def champion_changes_after(self, model: str, moment: Any) -> list[RegistryEvent]:
        """Promotions and rollbacks recorded as of a time after `moment` (oldest first): a run for an interval
        ending at `moment` must not promote over them."""
        validate_model_name(model)
        e = t.registry_event.c
        as_of = sa.func.coalesce(e.as_of, e.at)
        query = (
            sa.select(t.registry_event)
            .where(e.model == model, e.kind.in_([EventKind.PROMOTE.value, EventKind.ROLLBACK.value]), as_of > moment)
            .order_by(as_of, e.id)
        )
        with self.db.read("champion changes since") as conn:
            return [_to_event(row) for row in conn.execute(query).mappings().all()]

    def list_versions(
        self,
        model: str,
        *,
        status: str | VersionStatus | None = None,
        window_from: Any = None,
        window_to: Any = None,
        tags: Mapping[str, str] | None = None,
        newest: int | None = None,
    ) -> list[ModelVersion]:
        """Versions oldest first, filtered by status, training window overlap and tags (all must match); the
        `newest` of them when given."""
        validate_model_name(model)
        query = sa.select(t.model_version).where(t.model_version.c.model == model)
        if status is not None:
            query = query.where(t.model_version.c.status == _status(status).value)
        if window_from is not None:
            query = query.where(t.model_version.c.window_end > window_from)
        if window_to is not None:
            query = query.where(t.model_version.c.window_start < window_to)
        if tags:
            query = query.where(t.model_version.c.tags.contains(dict(tags)))
        query = query.order_by(t.model_version.c.version.desc())
        if newest is not None:
            query = query.limit(newest)
        with self.db.read("list versions") as conn:
            self._require_model(conn, model)
            rows = conn.execute(query).mappings().all()
        return [_to_version(row) for row in reversed(rows)]

    def newest_trained(self, model: str, *, from_version: int, until: Any) -> ModelVersion | None:
        """The newest version numbered `from_version` or above whose training window ended by `until` (one row)."""
        validate_model_name(model)
        v = t.model_version.c
        query = (
            sa.select(t.model_version)
            .where(v.model == model, v.version >= from_version, v.window_end <= until, v.row_count > 0)
            .order_by(v.version.desc())
            .limit(1)
        )
        with self.db.read("newest trained version") as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _to_version(row)

    def last_rescored(self, model: str, version: int, *, before: Any) -> dt.datetime | None:
        """The newest fresh window end a verdict re-scored `version` on, among events recorded as of a time
        before `before` (evaluate, reject and hold events carry the holdout window they scored)."""
        validate_model_name(model)
        e = t.registry_event.c
        window = e.verdict["window"]
        query = sa.select(sa.func.max(sa.cast(window[1].astext, sa.DateTime(timezone=True)))).where(
            e.model == model,
            e.kind.in_([EventKind.EVALUATE.value, EventKind.REJECT.value, EventKind.HOLD.value]),
            sa.func.coalesce(e.as_of, e.at) < before,
            e.verdict["champion_version"].astext == str(version),
            # no short-circuit in SQL: the length is asked of arrays only
            sa.case((sa.func.jsonb_typeof(window) == "array", sa.func.jsonb_array_length(window))) == 2,
        )
        with self.db.read("last re-scored") as conn:
            found = conn.execute(query).scalar_one_or_none()
        return found

    # ------------------------------------------------------------------ lifecycle

    def promote(
        self,
        model: str,
        version: int,
        *,
        expected_champion: ExpectedChampion,
        actor: str,
        reason: str | None = None,
        verdict: Mapping[str, Any] | None = None,
        run: RunRef | None = None,
    ) -> ChampionChange:
        """Make `version` the champion if the champion is still `expected_champion` (None: no champion).

        One transaction: lock the model, compare-and-swap the alias, archive the old champion, append the
        event. Promoting the version that already is champion changes nothing and returns `changed=False`.
        """
        validate_model_name(model)
        with self.db.transaction("promote") as conn:
            return self._move_champion(
                conn, model, version, expected_champion, EventKind.PROMOTE, actor, reason, verdict, run
            )

    def rollback(
        self,
        model: str,
        to_version: int | None = None,
        *,
        actor: str,
        reason: str | None = None,
        run: RunRef | None = None,
        expected_champion: ExpectedChampion = ANY_CHAMPION,
    ) -> ChampionChange:
        """Back to the champion before the current one (or `to_version`), through the promotion path."""
        validate_model_name(model)
        with self.db.transaction("rollback") as conn:
            self._lock_model(conn, model)
            current = self._champion_version(conn, model)
            # first: a repeated rollback fails here, whatever it would roll back to
            _compare_and_swap(model, expected_champion, current, "nothing was rolled back")
            if current is None:
                raise NoChampion(f"model {model!r} has no champion to roll back from")
            if to_version is None:
                to_version = conn.execute(
                    sa.select(t.registry_event.c.from_version)
                    .where(
                        t.registry_event.c.model == model,
                        t.registry_event.c.kind == EventKind.PROMOTE.value,
                        t.registry_event.c.to_version == current,
                    )
                    .order_by(t.registry_event.c.id.desc())
                    .limit(1)
                ).scalar_one_or_none()
                if to_version is None:
                    raise NoChampion(
                        f"v{current} is the first champion of {model!r}; there is no previous champion to roll "
                        "back to: name an archived version explicitly"
                    )
            if to_version == current:
                raise InvalidTransition(f"v{to_version} of {model!r} already is the champion")
            return self._move_champion(
                conn, model, to_version, expected_champion, EventKind.ROLLBACK, actor, reason, None, run
            )

    def reject(
        self,
        model: str,
        version: int,
        *,
        actor: str,
        reason: str | None = None,
        verdict: Mapping[str, Any] | None = None,
        run: RunRef | None = None,
    ) -> bool:
        """Mark a challenger rejected (with the verdict that rejected it). False if it already was."""
        return self._set_terminal_status(model, version, VersionStatus.REJECTED, actor, reason, verdict, run)

    def archive(
        self, model: str, version: int, *, actor: str, reason: str | None = None, run: RunRef | None = None
    ) -> bool:
        """Retire a non-champion version. False if it already was archived."""
        return self._set_terminal_status(model, version, VersionStatus.ARCHIVED, actor, reason, None, run)

    def record_event(
        self,
        model: str,
        kind: EventKind | str,
        *,
        actor: str,
        from_version: int | None = None,
        to_version: int | None = None,
        reason: str | None = None,
        verdict: Mapping[str, Any] | None = None,
        run: RunRef | None = None,
        dedupe: bool = False,
    ) -> RegistryEvent:
        """Append an event that changes no status (an evaluation verdict, a deployment).

        With `dedupe`, an event of the same kind, versions and run already recorded is returned instead of
        appending a twin: re-running a task for the same interval changes nothing.
        """
        validate_model_name(model)
        try:
            event_kind = EventKind(kind)
        except ValueError as exc:
            raise InvalidInput(f"unknown event kind {kind!r}") from exc
        with self.db.transaction("record event") as conn:
            self._lock_model(conn, model)
            if dedupe:
                run_ref = run or RunRef()
                ev = t.registry_event.c
                existing = (
                    conn.execute(
                        sa.select(t.registry_event).where(
                            ev.model == model,
                            ev.kind == event_kind.value,
                            ev.from_version.is_not_distinct_from(from_version),
                            ev.to_version.is_not_distinct_from(to_version),
                            ev.dag_id.is_not_distinct_from(run_ref.dag_id),
                            ev.run_id.is_not_distinct_from(run_ref.run_id),
                            ev.task_id.is_not_distinct_from(run_ref.task_id),
                        )
                    )
                    .mappings()
                    .first()
                )
                if existing is not None:
                    return _to_event(existing)
            event_id = self.append_event(
                conn,
                model,
                event_kind,
                from_version=from_version,
                to_version=to_version,
                actor=actor,
                reason=reason,
                verdict=verdict,
                run=run,
            )
            row = conn.execute(sa.select(t.registry_event).where(t.registry_event.c.id == event_id)).mappings().one()
        return _to_event(row)

    # ------------------------------------------------------------------ audit and comparison

    def history(
        self,
        model: str,
        *,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
        to_version: int | None = None,
    ) -> list[RegistryEvent]:
        """Events oldest first (the last `limit` of them when given; those about `to_version` when given)."""
        validate_model_name(model)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidInput(f"limit must be a positive integer, got {limit!r}")
        query = sa.select(t.registry_event).where(t.registry_event.c.model == model)
        if kinds:
            query = query.where(t.registry_event.c.kind.in_(list(kinds)))
        if to_version is not None:
            query = query.where(t.registry_event.c.to_version == to_version)
        query = query.order_by(t.registry_event.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.db.read("history") as conn:
            self._require_model(conn, model)
            rows = conn.execute(query).mappings().all()
        return [_to_event(row) for row in reversed(rows)]

    def recent_events(
        self, models: Sequence[str], *, kinds: Sequence[str], limit: int
    ) -> dict[str, list[RegistryEvent]]:
        """Each model's newest `limit` events of `kinds`, oldest first, in one query (a page of the index)."""
        e = t.registry_event.c
        rank = sa.func.row_number().over(partition_by=e.model, order_by=e.id.desc()).label("rank")
        ranked = sa.select(t.registry_event, rank).where(e.model.in_(list(models)), e.kind.in_(list(kinds))).subquery()
        query = sa.select(ranked).where(ranked.c.rank <= limit).order_by(ranked.c.model, ranked.c.id)
        out: dict[str, list[RegistryEvent]] = {m: [] for m in models}
        with self.db.read("history") as conn:
            for row in conn.execute(query).mappings():
                out[row["model"]].append(_to_event(row))
        return out

    def count_events(self, model: str) -> int:
        query = sa.select(sa.func.count()).select_from(t.registry_event).where(t.registry_event.c.model == model)
        with self.db.read("count events") as conn:
            return int(conn.execute(query).scalar_one())

    def compare(self, model: str, versions: Sequence[int]) -> Comparison:
        """Metrics, params and data windows of several versions side by side."""
        if len(versions) < 2:
            raise InvalidInput("compare needs at least two versions")
        found = [self.get_version(model, v) for v in versions]
        metric_names = sorted({name for v in found for name in v.metrics})
        param_names = sorted({name for v in found for name in v.params})
        return Comparison(
            model=model,
            versions=[v.version for v in found],
            metrics={m: [v.metrics.get(m) for v in found] for m in metric_names},
            params={p: [v.params.get(p) for v in found] for p in param_names},
            windows={
                "window_start": [v.window_start.isoformat() if v.window_start else None for v in found],
                "window_end": [v.window_end.isoformat() if v.window_end else None for v in found],
                "data_fingerprint": [v.data_fingerprint for v in found],
                "row_count": [None if v.row_count is None else str(v.row_count) for v in found],
            },
            statuses=[v.status.value for v in found],
        )

    # ------------------------------------------------------------------ internals

    def _move_champion(
        self,
        conn: sa.Connection,
        model: str,
        version: int,
        expected: ExpectedChampion,
        kind: EventKind,
        actor: str,
        reason: str | None,
        verdict: Mapping[str, Any] | None,
        run: RunRef | None,
    ) -> ChampionChange:
        self._lock_model(conn, model)
        target = self._version(conn, model, version)
        current = self._champion_version(conn, model)
        if current == version:
            return ChampionChange(model, version, current, changed=False, event_id=None)
        _compare_and_swap(model, expected, current, f"v{version} was not promoted")
        if target.status is VersionStatus.REJECTED:
            raise InvalidTransition(
                f"v{version} of {model!r} was rejected and cannot become champion; register a new version"
            )
        if current is not None:
            conn.execute(
                sa.update(t.model_version)
                .where(t.model_version.c.model == model, t.model_version.c.version == current)
                .values(status=VersionStatus.ARCHIVED.value)
            )
        stmt = _pg_insert(t.model_alias).values(model=model, alias=CHAMPION_ALIAS, version=version)
        conn.execute(
            stmt.on_conflict_do_update(
                constraint="pk_model_alias", set_={"version": version, "updated_at": sa.func.now()}
            )
        )
        conn.execute(
            sa.update(t.model_version)
            .where(t.model_version.c.model == model, t.model_version.c.version == version)
            .values(status=VersionStatus.CHAMPION.value)
        )
        event_id = self.append_event(
            conn,
            model,
            kind,
            from_version=current,
            to_version=version,
            actor=actor,
            reason=reason,
            verdict=verdict,
            run=run,
        )
        return ChampionChange(model, version, current, changed=True, event_id=event_id)

    def _set_terminal_status(
        self,
        model: str,
        version: int,
        status: VersionStatus,
        actor: str,
        reason: str | None,
        verdict: Mapping[str, Any] | None,
        run: RunRef | None,
    ) -> bool:
        validate_model_name(model)
        kind = EventKind.REJECT if status is VersionStatus.REJECTED else EventKind.ARCHIVE
        with self.db.transaction(kind.value) as conn:
            self._lock_model(conn, model)
            current = self._version(conn, model, version)
            if current.status is status:
                return False
            if current.status is VersionStatus.CHAMPION:
                raise InvalidTransition(
                    f"v{version} of {model!r} is the champion: promote another version or roll back first"
                )
            if current.status is VersionStatus.REJECTED:
                raise InvalidTransition(f"v{version} of {model!r} was rejected; a rejected version stays rejected")
            if status is VersionStatus.REJECTED and current.status is not VersionStatus.CHALLENGER:
                raise InvalidTransition(f"only a challenger can be rejected; v{version} is {current.status.value}")
            conn.execute(
                sa.update(t.model_version)
                .where(t.model_version.c.model == model, t.model_version.c.version == version)
                .values(status=status.value)
            )
            self.append_event(
                conn,
                model,
                kind,
                from_version=None,
                to_version=version,
                actor=actor,
                reason=reason,
                verdict=verdict,
                run=run,
            )
        return True

    def create_model_in(self, conn: sa.Connection, name: str, description: str | None = None) -> None:
        """Create the model inside a caller's transaction (for stores sharing this database)."""
        validate_model_name(name)
        self._ensure_model(conn, name, description)

    @staticmethod
    def _ensure_model(conn: sa.Connection, name: str, description: str | None) -> None:
        conn.execute(
            _pg_insert(t.registered_model)
            .values(name=name, description=description)
            .on_conflict_do_nothing(index_elements=["name"])
        )

    @staticmethod
    def _lock_model(conn: sa.Connection, model: str) -> None:
        found = conn.execute(
            sa.select(t.registered_model.c.name).where(t.registered_model.c.name == model).with_for_update()
        ).scalar_one_or_none()
        if found is None:
            raise ModelNotFound(f"model {model!r} is not registered")

    @staticmethod
    def _require_model(conn: sa.Connection, model: str) -> None:
        found = conn.execute(
            sa.select(t.registered_model.c.name).where(t.registered_model.c.name == model)
        ).scalar_one_or_none()
        if found is None:
            raise ModelNotFound(f"model {model!r} is not registered")

    @staticmethod
    def _champion_version(conn: sa.Connection, model: str) -> int | None:
        return conn.execute(
            sa.select(t.model_alias.c.version).where(
                t.model_alias.c.model == model, t.model_alias.c.alias == CHAMPION_ALIAS
            )
        ).scalar_one_or_none()

    @staticmethod
    def _version(conn: sa.Connection, model: str, version: int) -> ModelVersion:
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidInput(f"version must be an integer, got {version!r}")
        if not 1 <= version <= MAX_VERSION:  # the column is a 4-byte integer
            raise VersionNotFound(f"model {model!r} has no version {version} (versions run from 1 to {MAX_VERSION})")
        row = (
            conn.execute(
                sa.select(t.model_version).where(t.model_version.c.model == model, t.model_version.c.version == version)
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            raise VersionNotFound(f"model {model!r} has no version {version}")
        return _to_version(row)

    @staticmethod
    def _version_by_source(conn: sa.Connection, model: str, source: Source) -> ModelVersion | None:
        row = (
            conn.execute(
                sa.select(t.model_version).where(
                    t.model_version.c.model == model,
                    t.model_version.c.source_dag_id == source.dag_id,
                    t.model_version.c.source_run_id == source.run_id,
                    t.model_version.c.source_task_id == source.task_id,
                )
            )
            .mappings()
            .one_or_none()
        )
        return None if row is None else _to_version(row)

    @staticmethod
    def _models(
        conn: sa.Connection, name: str | None, *, search: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[RegisteredModel]:
        rm, mv, ma = t.registered_model, t.model_version, t.model_alias
        count = sa.select(sa.func.count()).where(mv.c.model == rm.c.name).scalar_subquery()  # per row: indexed
        query = (
            sa.select(rm, ma.c.version.label("champion_version"), count.label("n"))
            .outerjoin(ma, sa.and_(ma.c.model == rm.c.name, ma.c.alias == CHAMPION_ALIAS))
            .order_by(rm.c.name)
        )
        if name is not None:
            query = query.where(rm.c.name == name)
        if search:
            query = query.where(_matches(search))
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return [
            RegisteredModel(
                name=row["name"],
                description=row["description"],
                created_at=row["created_at"],
                champion_version=row["champion_version"],
                version_count=row["n"] or 0,
            )
            for row in conn.execute(query).mappings()
        ]

    @staticmethod
    def append_event(
        conn: sa.Connection,
        model: str,
        kind: EventKind,
        *,
        to_version: int | None,
        actor: str,
        reason: str | None,
        verdict: Mapping[str, Any] | None,
        run: RunRef | None,
        from_version: int | None = None,
    ) -> int:
        """Append an audit event inside a caller's `db.transaction` (so it commits with the change it records)."""
        run = run or RunRef()
        return int(
            conn.execute(
                sa.insert(t.registry_event)
                .values(
                    model=model,
                    kind=kind.value,
                    from_version=from_version,
                    to_version=to_version,
                    actor=actor,
                    reason=reason,
                    verdict=None if verdict is None else dict(verdict),
                    dag_id=run.dag_id,
                    run_id=run.run_id,
                    task_id=run.task_id,
                    as_of=run.as_of if run.as_of is not None else sa.func.now(),
                )
                .returning(t.registry_event.c.id)
            ).scalar_one()
        )


def _pg_insert(table: sa.Table) -> Any:
    from sqlalchemy.dialects.postgresql import insert

    return insert(table)


def _matches(search: str) -> sa.ColumnElement[bool]:
    """Name or description holds `search`, any case; LIKE's wildcards in it match themselves."""
    pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rm = t.registered_model.c
    return sa.or_(rm.name.ilike(pattern, escape="\\"), rm.description.ilike(pattern, escape="\\"))


def _status(value: str | VersionStatus) -> VersionStatus:
    try:
        return VersionStatus(value)
    except ValueError as exc:
        allowed = ", ".join(s.value for s in VersionStatus)
        raise InvalidInput(f"unknown status {value!r}: use one of {allowed}") from exc


def _validate_draft(draft: VersionDraft) -> None:
    if not _SHA_RE.fullmatch(draft.artifact_sha256 or ""):
        raise InvalidInput(f"artifact_sha256 must be 64 lowercase hex characters, got {draft.artifact_sha256!r}")
    if draft.artifact_size < 0:
        raise InvalidInput("artifact_size must be >= 0")
    if not draft.artifact_uri:
        raise InvalidInput("artifact_uri is required")
    for field_name in ("dag_id", "run_id", "task_id"):
        if not getattr(draft.source, field_name):
            raise InvalidInput(f"source.{field_name} is required (it keys idempotent registration)")
    for metric, value in draft.metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInput(f"metric {metric!r} must be a finite number, got {value!r}")
    if draft.artifact_format not in ("joblib", "skops"):
        raise InvalidInput(f"artifact_format must be joblib or skops, got {draft.artifact_format!r}")
    if draft.window_start and draft.window_end and draft.window_start > draft.window_end:
        raise InvalidInput("window_start is after window_end")


_PLAIN_COLUMNS = (
    "artifact_uri",
    "artifact_sha256",
    "artifact_size",
    "framework",
    "window_start",
    "window_end",
    "data_fingerprint",
    "row_count",
    "code_version",
    "reference_uri",
    "reference_sha256",
    "holdout_artifact_uri",
    "holdout_artifact_sha256",
    "artifact_format",
)
_JSON_COLUMNS = ("library_versions", "params", "metrics", "tags", "feature_schema")
"""The model_version columns named like the fields of VersionDraft and ModelVersion: the one mapping."""


def _version_columns(draft: VersionDraft) -> dict[str, Any]:
    columns = {name: getattr(draft, name) for name in _PLAIN_COLUMNS}
    columns.update({name: dict(getattr(draft, name)) for name in _JSON_COLUMNS})
    columns["trusted_types"] = sorted(set(draft.trusted_types))
    source = draft.source
    columns.update(
        source_dag_id=source.dag_id,
        source_run_id=source.run_id,
        source_task_id=source.task_id,
        source_try=source.try_number,
    )
    return columns


def _to_version(row: Any) -> ModelVersion:
    columns: dict[str, Any] = {name: row[name] for name in _PLAIN_COLUMNS}
    columns.update({name: dict(row[name] or {}) for name in _JSON_COLUMNS})
    columns["trusted_types"] = tuple(row["trusted_types"] or ())
    return ModelVersion(
        model=row["model"],
        version=row["version"],
        status=VersionStatus(row["status"]),
        source=Source(row["source_dag_id"], row["source_run_id"], row["source_task_id"], row["source_try"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        **columns,
    )


def _to_event(row: Any) -> RegistryEvent:
    return RegistryEvent(
        id=row["id"],
        model=row["model"],
        kind=EventKind(row["kind"]),
        from_version=row["from_version"],
        to_version=row["to_version"],
        actor=row["actor"],
        reason=row["reason"],
        verdict=row["verdict"],
        run=RunRef(row["dag_id"], row["run_id"], row["task_id"]),  # the data time is `as_of`
        at=row["at"],
        as_of=row.get("as_of") or row["at"],
    )
