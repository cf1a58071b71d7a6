"""A/B experiments in the registry database: experiments and their looks, the prediction log and outcomes.

- An experiment is started and ended in one transaction with its audit event (`experiment`); at most one runs
  per model (a unique index decides, so two `ab start` at once cannot both win).
- Predictions are appended with COPY (`log_predictions`, what `modelgate serve` flushes in the background);
  batch rows are logged once per (model, key, time), so re-scoring an interval adds nothing.
- Outcomes are loaded all or nothing: a file that contradicts an outcome already known for a key is refused
  naming the key; the same outcome again is counted as known, not added.
- `arm_sums` joins each key's first prediction in the experiment with its outcome as of a moment, in the
  database: per arm the keys, the labelled rows and the metric's sum and sum of squares, with the missing
  (no outcome yet) and late (observed by then but loaded after) counted, never guessed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from modelgate.registry import schema as t
from modelgate.registry.entities import EventKind, RunRef
from modelgate.registry.errors import InvalidInput, InvalidTransition, NoChampion, PromotionConflict
from modelgate.registry.store import Registry, validate_model_name

RUNNING, PROMOTED, STOPPED = "running", "promoted", "stopped"


@dataclass(frozen=True)
class Experiment:
    id: int
    model: str
    champion_version: int
    challenger_version: int
    split_percent: float
    salt: str
    status: str
    settings: dict[str, Any]
    started_at: dt.datetime
    started_by: str
    ended_at: dt.datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    def describe(self) -> str:
        return (
            f"experiment #{self.id} of {self.model}: v{self.champion_version} (champion) vs "
            f"v{self.challenger_version} on {self.split_percent:g} % of keys, {self.status}"
        )


@dataclass(frozen=True)
class LoggedPrediction:
    model: str
    request_key: str
    version: int
    score: float | None
    source: str = "serve"  # or "batch"
    experiment_id: int | None = None
    predicted_at: dt.datetime | None = None  # None: the database's now()


@dataclass(frozen=True)
class OutcomeLoad:
    added: int
    known: int  # the same outcome was already stored for the key
    conflicting: int = 0  # kept as first stored, the new value ignored (only with conflicts="keep")


@dataclass(frozen=True)
class Pruned:
    """What a retention pass removed (or, dry, would remove)."""

    predictions: int
    outcomes: int
    kept_for_experiment: int  # older than the cut-off, kept because a running experiment still reads them


_PRUNE_PREDICTIONS = """
DELETE FROM prediction_log WHERE id IN (
    SELECT id FROM prediction_log
    WHERE model = :model AND predicted_at < :before
      AND (experiment_id IS NULL OR experiment_id NOT IN (
          SELECT id FROM experiment WHERE model = :model AND status = :running))
    LIMIT :batch)
"""
_PRUNE_OUTCOMES = """
DELETE FROM outcome WHERE (model, request_key) IN (
    SELECT o.model, o.request_key FROM outcome o
    WHERE o.model = :model AND o.observed_at < :before
      AND NOT EXISTS (SELECT 1 FROM prediction_log p WHERE p.model = o.model AND p.request_key = o.request_key)
    LIMIT :batch)
"""
_COUNT_PRUNABLE = """
SELECT
    count(*) FILTER (WHERE experiment_id IS NULL OR experiment_id NOT IN (
        SELECT id FROM experiment WHERE model = :model AND status = :running)) AS predictions,
    count(*) FILTER (WHERE experiment_id IN (
        SELECT id FROM experiment WHERE model = :model AND status = :running)) AS kept
FROM prediction_log WHERE model = :model AND predicted_at < :before
"""

_COUNT_PRUNABLE_OUTCOMES = """
SELECT count(*) FROM outcome o
WHERE o.model = :model AND o.observed_at < :before
  AND NOT EXISTS (
      SELECT 1 FROM prediction_log p WHERE p.model = o.model AND p.request_key = o.request_key
        AND (p.predicted_at >= :before OR p.experiment_id IN (
            SELECT id FROM experiment WHERE model = :model AND status = :running)))
"""


@dataclass(frozen=True)
class ArmSums:
    """One arm of an experiment as of a moment, on one per-prediction metric."""

    version: int
    keys: int  # keys routed to the arm (their first prediction in the experiment, by then)
    labelled: int
    total: float  # the metric summed over labelled rows
    total_sq: float
    missing: int  # predicted, no outcome observed by then
    late: int  # outcome observed by then, but loaded after: a re-run of this look sees it, the first did not


@dataclass(frozen=True)
class LookRow:
    experiment_id: int
    interval_end: dt.datetime
    look: dict[str, Any]
    action: str
    reason: str


# SQL for each per-prediction metric, on the columns s (score) and o (outcome); :threshold for accuracy
_METRIC_SQL = {
    "accuracy": "CASE WHEN (s >= :threshold) = (o >= 0.5) THEN 1.0 ELSE 0.0 END",
    "brier": "(s - o) * (s - o)",
    "log_loss": "-(o * ln(greatest(least(s, 1 - 1e-15), 1e-15))"
    " + (1 - o) * ln(1 - greatest(least(s, 1 - 1e-15), 1e-15)))",
    "squared_error": "(s - o) * (s - o)",
    "absolute_error": "abs(s - o)",
}

_ARM_SUMS = """
WITH first AS (
    SELECT DISTINCT ON (p.request_key) p.request_key, p.version, p.score, p.predicted_at
    FROM prediction_log p
    WHERE p.experiment_id = :experiment AND p.predicted_at <= :until AND p.score IS NOT NULL
    ORDER BY p.request_key, p.predicted_at, p.id
), joined AS (
    SELECT f.version, f.score AS s, o.outcome AS o,
           (o.request_key IS NOT NULL AND o.observed_at <= :until AND o.observed_at >= f.predicted_at) AS labelled,
           (o.request_key IS NOT NULL AND o.observed_at <= :until AND o.observed_at >= f.predicted_at
            AND o.loaded_at > :until) AS late
    FROM first f LEFT JOIN outcome o ON o.model = :model AND o.request_key = f.request_key
)
SELECT version, count(*) AS keys, count(*) FILTER (WHERE labelled) AS labelled,
       {sums}
       count(*) FILTER (WHERE NOT labelled) AS missing,
       count(*) FILTER (WHERE late) AS late
FROM joined GROUP BY version
"""
_METRIC_SUMS = """coalesce(sum({metric}) FILTER (WHERE labelled), 0) AS total_{i},
       coalesce(sum(({metric}) * ({metric})) FILTER (WHERE labelled), 0) AS total_sq_{i},"""


class ExperimentStore:
    """Experiments, looks, predictions and outcomes, next to the registry (same database, same guards)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    # ------------------------------------------------------------------ experiments

    def start(
        self,
        model: str,
        *,
        challenger: int,
        split_percent: float,
        settings: Mapping[str, Any],
        actor: str,
        salt: str | None = None,
        run: RunRef | None = None,
    ) -> Experiment:
        """Start champion vs `challenger` on `split_percent` % of keys; the champion is read under the model's
        lock, so the experiment names the champion that serves when it starts."""
        import secrets

        validate_model_name(model)
        if not 0 < split_percent < 100:
            raise InvalidInput(f"--split must be within 0..100 % (exclusive), got {split_percent:g}")
        db = self._registry.db
        with db.transaction("start experiment") as conn:
            self._registry._lock_model(conn, model)
            champion = self._registry._champion_version(conn, model)
            if champion is None:
                raise NoChampion(f"model {model!r} has no champion to run an experiment against")
            status = conn.execute(
                sa.select(t.model_version.c.status).where(
                    t.model_version.c.model == model, t.model_version.c.version == challenger
                )
            ).scalar_one_or_none()
            if status is None:
                raise InvalidInput(f"model {model!r} has no v{challenger}")
            if challenger == champion:
                raise InvalidTransition(f"v{challenger} of {model!r} is the champion: name a challenger")
            if status != "challenger":
                raise InvalidTransition(f"v{challenger} of {model!r} is {status}: only a challenger can be tried")
            running = self._running_in(conn, model)
            if running is not None:
                raise InvalidTransition(f"{running.describe()}: stop it first (`modelgate ab stop {model}`)")
            row = (
                conn.execute(
                    sa.insert(t.experiment)
                    .values(
                        model=model,
                        champion_version=champion,
                        challenger_version=challenger,
                        split_percent=float(split_percent),
                        salt=salt or secrets.token_hex(8),
                        status=RUNNING,
                        settings=dict(settings),
                        started_by=actor,
                    )
                    .returning(*t.experiment.c)
                )
                .mappings()
                .one()
            )
            experiment = _experiment(row)
            self._registry.append_event(
                conn,
                model,
                EventKind.EXPERIMENT,
                from_version=champion,
                to_version=challenger,
                actor=actor,
                reason=f"started experiment #{experiment.id}: v{challenger} on {split_percent:g} % of keys",
                verdict={"experiment": experiment.id, "status": RUNNING},
                run=run,
            )
        return experiment

    def end(
        self,
        experiment_id: int,
        *,
        status: str,
        reason: str,
        actor: str,
        run: RunRef | None = None,
    ) -> Experiment:
        """Move a running experiment to `promoted` or `stopped` (a compare-and-swap on `running`)."""
        if status not in (PROMOTED, STOPPED):
            raise InvalidInput(f"an experiment ends promoted or stopped, not {status!r}")
        e = t.experiment.c
        with self._registry.db.transaction("end experiment") as conn:
            row = (
                conn.execute(
                    sa.update(t.experiment)
                    .where(e.id == experiment_id, e.status == RUNNING)
                    .values(status=status, ended_at=sa.func.now(), ended_by=actor, end_reason=reason)
                    .returning(*t.experiment.c)
                )
                .mappings()
                .first()
            )
            if row is None:
                current = self._get_in(conn, experiment_id)
                raise PromotionConflict(f"{current.describe()}: it is no longer running, nothing was changed")
            experiment = _experiment(row)
            self._registry.append_event(
                conn,
                experiment.model,
                EventKind.EXPERIMENT,
                from_version=experiment.champion_version,
                to_version=experiment.challenger_version,
                actor=actor,
                reason=f"experiment #{experiment.id} {status}: {reason}",
                verdict={"experiment": experiment.id, "status": status},
                run=run,
            )
        return experiment

    def running(self, model: str) -> Experiment | None:
        with self._registry.db.read("running experiment") as conn:
            return self._running_in(conn, model)

    def get(self, experiment_id: int) -> Experiment:
        with self._registry.db.read("experiment") as conn:
            return self._get_in(conn, experiment_id)

    def of_model(self, model: str) -> list[Experiment]:
        query = sa.select(t.experiment).where(t.experiment.c.model == model).order_by(t.experiment.c.id)
        with self._registry.db.read("experiments") as conn:
            return [_experiment(r) for r in conn.execute(query).mappings()]

    def latest(self, model: str) -> Experiment | None:
        """The model's newest experiment, running or ended."""
        query = sa.select(t.experiment).where(t.experiment.c.model == model).order_by(t.experiment.c.id.desc())
        with self._registry.db.read("experiments") as conn:
            row = conn.execute(query.limit(1)).mappings().first()
        return None if row is None else _experiment(row)

    @staticmethod
    def _running_in(conn: sa.Connection, model: str) -> Experiment | None:
        e = t.experiment.c
        row = conn.execute(sa.select(t.experiment).where(e.model == model, e.status == RUNNING)).mappings().first()
        return None if row is None else _experiment(row)

    @staticmethod
    def _get_in(conn: sa.Connection, experiment_id: int) -> Experiment:
        row = conn.execute(sa.select(t.experiment).where(t.experiment.c.id == experiment_id)).mappings().first()
        if row is None:
            raise InvalidInput(f"no experiment #{experiment_id}")
        return _experiment(row)

    # ------------------------------------------------------------------ looks

    def record_look(self, row: LookRow, *, run_id: str | None = None) -> None:
        """Keep one look per (experiment, interval end); the same interval again overwrites it."""
        values = {**row.__dict__, "run_id": run_id}
        stmt = insert(t.experiment_look).values(**values)
        update = {k: stmt.excluded[k] for k in ("look", "action", "reason", "run_id")}
        with self._registry.db.transaction("record experiment look") as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["experiment_id", "interval_end"], set_={**update, "updated_at": sa.func.now()}
                )
            )

    def looks(
        self, experiment_id: int, *, before: dt.datetime | None = None, limit: int | None = None
    ) -> list[LookRow]:
        """The experiment's looks oldest first (those ending before `before` when given; the newest `limit`)."""
        c = t.experiment_look.c
        query = sa.select(t.experiment_look).where(c.experiment_id == experiment_id).order_by(c.interval_end.desc())
        if before is not None:
            query = query.where(c.interval_end < before)
        if limit is not None:
            query = query.limit(limit)
        with self._registry.db.read("experiment looks") as conn:
            rows = conn.execute(query).mappings().all()
        return [
            LookRow(r["experiment_id"], r["interval_end"], r["look"], r["action"], r["reason"]) for r in reversed(rows)
        ]

    # ------------------------------------------------------------------ predictions and outcomes

    def log_predictions(self, rows: Sequence[LoggedPrediction]) -> int:
        """Append predictions with COPY (serve) or, for batch rows, an insert that skips rows already logged."""
        if not rows:
            return 0
        serve = [r for r in rows if r.source == "serve"]
        batch = [r for r in rows if r.source == "batch"]
        unknown = {r.source for r in rows} - {"serve", "batch"}
        if unknown:
            raise InvalidInput(f"unknown prediction source {sorted(unknown)[0]!r}: serve or batch")
        with self._registry.db.transaction("log predictions") as conn:
            if serve:
                raw = conn.connection.driver_connection
                assert raw is not None
                columns = "model, request_key, version, score, experiment_id, source, predicted_at"
                with raw.cursor() as cursor, cursor.copy(f"COPY prediction_log ({columns}) FROM STDIN") as copy:
                    now = dt.datetime.now(dt.UTC)
                    for r in serve:
                        copy.write_row(
                            (r.model, r.request_key, r.version, r.score, r.experiment_id, r.source,
                             r.predicted_at or now)
                        )  # fmt: skip
            if batch:
                stmt = insert(t.prediction_log).values([_values(r) for r in batch])
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["model", "request_key", "predicted_at"],
                                                         index_where=sa.text("source = 'batch'")))  # fmt: skip
        return len(rows)

    def predictions(self, model: str, *, limit: int = 1000) -> list[LoggedPrediction]:
        p = t.prediction_log.c
        query = sa.select(t.prediction_log).where(p.model == model).order_by(p.id.desc()).limit(limit)
        with self._registry.db.read("prediction log") as conn:
            rows = conn.execute(query).mappings().all()
        return [
            LoggedPrediction(
                r["model"],
                r["request_key"],
                r["version"],
                r["score"],
                r["source"],
                r["experiment_id"],
                r["predicted_at"],
            )  # fmt: skip
            for r in reversed(rows)
        ]

    def load_outcomes(
        self,
        model: str,
        rows: Sequence[tuple[str, float, dt.datetime]],
        *,
        source: str,
        conflicts: str = "refuse",
    ) -> OutcomeLoad:
        """Store (key, outcome, observed_at) rows, all or nothing: a key whose stored outcome differs is refused
        (`conflicts="refuse"`, a file someone loads) or keeps its first outcome and is counted (`"keep"`, the
        spec's source read again each interval). A key's first row in the input counts."""
        validate_model_name(model)
        if conflicts not in ("refuse", "keep"):
            raise InvalidInput(f"conflicts must be refuse or keep, not {conflicts!r}")
        seen: dict[str, float] = {}
        clashes = 0
        for key, value, _ in rows:
            if key in seen and seen[key] != value:
                if conflicts == "keep":
                    clashes += 1
                    continue
                raise InvalidInput(f"key {key!r} has two different outcomes in the input ({seen[key]:g}, {value:g})")
            seen.setdefault(key, value)
        o = t.outcome.c
        with self._registry.db.transaction("load outcomes") as conn:
            self._registry.create_model_in(conn, model)
            stored: dict[str, float] = {}
            keys = list(seen)
            for start in range(0, len(keys), 10_000):
                chunk = keys[start : start + 10_000]
                found = conn.execute(
                    sa.select(o.request_key, o.outcome).where(o.model == model, o.request_key.in_(chunk))
                )
                stored.update({k: v for k, v in found})
            for key, value in stored.items():
                if not math.isclose(value, seen[key]):
                    if conflicts == "keep":
                        clashes += 1
                        continue
                    raise InvalidInput(
                        f"key {key!r} already has outcome {value:g}, the input says {seen[key]:g}: nothing was loaded"
                    )
            fresh = {}
            for key, value, observed in rows:
                if key not in stored and key not in fresh and seen[key] == value:
                    fresh[key] = {"model": model, "request_key": key, "outcome": value, "observed_at": observed,
                                  "source": source}  # fmt: skip
            values = list(fresh.values())
            for start in range(0, len(values), 5_000):
                conn.execute(insert(t.outcome).values(values[start : start + 5_000]).on_conflict_do_nothing())
        return OutcomeLoad(added=len(fresh), known=len(stored), conflicting=clashes)

    def prune(self, model: str, *, before: dt.datetime, dry_run: bool = False, batch: int = 50_000) -> Pruned:
        """Retention: delete the model's predictions logged before `before`, except those of a running
        experiment (its looks still read them), then the outcomes observed before it whose keys no longer have
        a logged prediction. In batches of `batch` rows, each its own transaction: a long pass holds no lock for
        long, and stopped halfway it is simply run again. `dry_run` counts instead."""
        validate_model_name(model)
        if before.tzinfo is None:
            raise InvalidInput("the retention cut-off must be timezone-aware")
        params: dict[str, Any] = {"model": model, "before": before, "running": RUNNING, "batch": batch}
        with self._registry.db.read("prunable predictions") as conn:
            counted = conn.execute(sa.text(_COUNT_PRUNABLE), params).mappings().one()
        kept = int(counted["kept"])
        if dry_run:
            with self._registry.db.read("prunable outcomes") as conn:
                outcomes = conn.execute(sa.text(_COUNT_PRUNABLE_OUTCOMES), params).scalar_one()
            return Pruned(int(counted["predictions"]), int(outcomes), kept)
        removed = {"predictions": 0, "outcomes": 0}
        for what, sql in (("predictions", _PRUNE_PREDICTIONS), ("outcomes", _PRUNE_OUTCOMES)):
            while True:
                with self._registry.db.transaction(f"prune {what}") as conn:
                    deleted = conn.execute(sa.text(sql), params).rowcount
                removed[what] += deleted
                if deleted < batch:
                    break
        return Pruned(removed["predictions"], removed["outcomes"], kept)

    def arm_sums(
        self, experiment: Experiment, *, until: dt.datetime, metrics: Sequence[str], threshold: float = 0.5
    ) -> dict[str, dict[int, ArmSums]]:
        """Per metric and version of the experiment, its keys and labelled metric sums as of `until`: one join
        of first predictions with outcomes, however many metrics (the primary and the guardrails)."""
        unknown = [m for m in metrics if m not in _METRIC_SQL]
        if unknown:
            raise InvalidInput(f"unknown per-prediction metric {unknown[0]!r}; known: {', '.join(_METRIC_SQL)}")
        wanted = list(dict.fromkeys(metrics))
        sums = "\n       ".join(_METRIC_SUMS.format(metric=_METRIC_SQL[m], i=i) for i, m in enumerate(wanted))
        params = {"experiment": experiment.id, "until": until, "model": experiment.model, "threshold": threshold}
        with self._registry.db.read("experiment arms") as conn:
            rows = conn.execute(sa.text(_ARM_SUMS.format(sums=sums)), params).mappings().all()
        found = {int(r["version"]): r for r in rows}
        out: dict[str, dict[int, ArmSums]] = {}
        for i, metric in enumerate(wanted):
            out[metric] = {}
            for version in (experiment.champion_version, experiment.challenger_version):
                r = found.get(version)
                out[metric][version] = (
                    ArmSums(version, 0, 0, 0.0, 0.0, 0, 0)
                    if r is None
                    else ArmSums(
                        version,
                        int(r["keys"]),
                        int(r["labelled"]),
                        float(r[f"total_{i}"]),
                        float(r[f"total_sq_{i}"]),
                        int(r["missing"]),
                        int(r["late"]),
                    )  # fmt: skip
                )
        return out


def _values(r: LoggedPrediction) -> dict[str, Any]:
    values = {k: v for k, v in r.__dict__.items() if v is not None or k in ("score", "experiment_id")}
    return values


def _experiment(row: Any) -> Experiment:
    return Experiment(**{k: row[k] for k in Experiment.__dataclass_fields__})
