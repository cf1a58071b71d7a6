"""A/B experiments end to end: start one, analyse it each interval, act on the decision.

`start` records the experiment (champion vs a challenger on a share of keys, the spec's `ab:` rules frozen
into it) and has the local target serve it; `analyse` reads each arm's labelled predictions as of an
interval's end, runs the always-valid test and the decision (`modelgate.experiments`), keeps the look, and
with `act` promotes through the registry's compare-and-swap or stops the experiment, serving one version
again. Analysing the same interval again gives the same look; an experiment that already ended is not
acted on twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelgate.experiments import (
    Action,
    ArmStats,
    Decision,
    GuardrailLook,
    Look,
    Settings,
    decide,
    higher_is_better,
    sample_ratio,
    sequential_test,
)
from modelgate.registry.entities import RunRef
from modelgate.registry.errors import InvalidInput, PromotionConflict
from modelgate.registry.experiments import ArmSums, Experiment, ExperimentStore, LookRow, Pruned
from modelgate.registry.store import Registry

log = logging.getLogger(__name__)

ACTOR = "modelgate ab"


def settings_of(spec: Any) -> dict[str, Any]:
    """The spec's `ab:` rules as an experiment keeps them (JSON), the metric defaulted by task."""
    ab = spec.ab
    if ab is None:
        raise InvalidInput(
            f"{spec.name}'s spec declares no `ab:` section: add one (even `ab: {{}}`), so modelgate_ab__{spec.name} "
            "exists to analyse the experiment"
        )
    metric = ab.metric or ("accuracy" if spec.task.value == "binary_classification" else "absolute_error")
    return {
        "metric": metric,
        "threshold": ab.threshold,
        "alpha": ab.alpha,
        "mixture_sd": ab.minimum_effect,
        "min_labelled": ab.min_labelled,
        "max_looks": ab.max_looks,
        "srm_alpha": ab.srm_alpha,
        "guardrails": [[g.metric, g.tolerance] for g in ab.guardrails],
    }


def settings_from(raw: Mapping[str, Any]) -> Settings:
    return Settings(
        metric=str(raw["metric"]),
        alpha=float(raw["alpha"]),
        mixture_sd=float(raw["mixture_sd"]),
        min_labelled=int(raw["min_labelled"]),
        max_looks=int(raw["max_looks"]),
        srm_alpha=float(raw["srm_alpha"]),
        guardrails=tuple((str(m), float(t)) for m, t in raw.get("guardrails", [])),
    )


def start(
    registry: Registry,
    spec: Any,
    *,
    challenger: int,
    split: int,
    actor: str,
    serving_root: Path | None,
    artifacts: Any = None,
) -> Experiment:
    """Record the experiment, then serve it on the local target (the record is ended again if that fails)."""
    from modelgate.deploy.controller import DeployError
    from modelgate.deploy.local import LocalTarget

    if spec.deploy.target == "vertex":
        raise InvalidInput(
            f"{spec.name} deploys to Vertex AI: A/B experiments route keys in `modelgate serve` (the local target)"
        )
    store = ExperimentStore(registry)
    settings = settings_of(spec)
    serves = spec.deploy.target != "none" and serving_root is not None
    if serves:  # the usual mistakes, named before anything is recorded (checked again once it is)
        assert serving_root is not None
        champion = registry.get_champion(spec.name)
        if champion is not None:
            LocalTarget(serving_root).serving_champion(spec.name, champion.version)
    experiment = store.start(spec.name, challenger=challenger, split_percent=split, settings=settings, actor=actor)
    if not serves:
        return experiment
    assert serving_root is not None
    target = LocalTarget(serving_root)
    try:
        if artifacts is None:
            from modelgate.registry.artifacts import default_artifact_store

            artifacts = default_artifact_store()
        slot = target.stage(registry.get_version(spec.name, challenger), artifacts)  # sha-checked as it is staged
        target.start_experiment(
            spec.name,
            slot,
            champion=experiment.champion_version,
            split=split,
            experiment_id=experiment.id,
            salt=experiment.salt,
        )
    except Exception as exc:
        store.end(experiment.id, status="stopped", reason=f"could not be served: {exc}", actor=actor)
        if isinstance(exc, DeployError):
            raise
        raise DeployError(f"experiment #{experiment.id} could not be served, so it was stopped: {exc}") from exc
    return experiment


def stop(registry: Registry, model: str, *, reason: str, actor: str, serving_root: Path | None) -> Experiment:
    """Stop the model's running experiment: the champion serves every key again."""
    store = ExperimentStore(registry)
    running = store.running(model)
    if running is None:
        raise InvalidInput(f"{model} runs no experiment")
    ended = store.end(running.id, status="stopped", reason=reason, actor=actor)
    _serve_one(serving_root, model, ended.champion_version)
    return ended


def _serve_one(serving_root: Path | None, model: str, version: int) -> None:
    from modelgate.deploy.local import LocalTarget

    if serving_root is not None and (serving_root / model).is_dir():
        LocalTarget(serving_root).end_experiment(model, keep=version)


@dataclass(frozen=True)
class Analysis:
    experiment: Experiment
    interval_end: dt.datetime
    arms: tuple[ArmSums, ArmSums]  # champion, challenger
    look: Look
    guardrails: tuple[GuardrailLook, ...]
    srm_p: float
    looks: int
    decision: Decision
    acted: str | None = None  # what was done about the decision ("promoted v3", "stopped"), if anything

    def summary(self) -> dict[str, Any]:
        """The look as the registry keeps it (and the Models view draws it)."""
        champion, challenger = self.arms
        return {
            "champion": asdict(champion),
            "challenger": asdict(challenger),
            "estimate": _finite(self.look.estimate),
            "lower": _finite(self.look.lower),
            "upper": _finite(self.look.upper),
            "p_value": self.look.p_value,
            "srm_p": self.srm_p,
            "looks": self.looks,
            "guardrails": [
                {
                    "metric": g.metric,
                    "tolerance": g.tolerance,
                    "lower": _finite(g.look.lower),
                    "upper": _finite(g.look.upper),
                    "estimate": _finite(g.look.estimate),
                }
                for g in self.guardrails
            ],  # fmt: skip
        }


def _finite(value: float) -> float | None:
    import math

    return value if math.isfinite(value) else None


def _restore(raw: Mapping[str, Any] | None) -> Look | None:
    if raw is None:
        return None
    import math

    def number(key: str, missing: float) -> float:
        value = raw.get(key)
        return missing if value is None else float(value)

    return Look(
        number("estimate", math.nan),
        number("lower", -math.inf),
        number("upper", math.inf),
        float(raw.get("p_value", 1.0)),
        (int(raw["champion"]["labelled"]), int(raw["challenger"]["labelled"])),
    )


def _restore_guard(raw: Mapping[str, Any] | None, metric: str) -> Look | None:
    if raw is None:
        return None
    for g in raw.get("guardrails", []):
        if g["metric"] == metric:
            return _restore({**g, "champion": raw["champion"], "challenger": raw["challenger"], "p_value": 1.0})
    return None


def experiment_at(
    store: ExperimentStore, model: str, end: dt.datetime, start: dt.datetime | None = None
) -> Experiment | None:
    """The newest experiment that ran during (`start`, `end`]: started by `end`, not ended by `start` (by
    `end` when no start is given). A re-run of the interval an experiment ended in finds it again."""
    since = end if start is None else start
    for experiment in reversed(store.of_model(model)):
        if experiment.started_at <= end and (experiment.ended_at is None or experiment.ended_at > since):
            return experiment
    return None


def analyse(
    registry: Registry,
    model: str,
    *,
    interval_end: dt.datetime,
    interval_start: dt.datetime | None = None,
    act: bool = True,
    run: RunRef | None = None,
    serving_root: Path | None = None,
) -> Analysis | None:
    """One look, as of `interval_end`, at the experiment that ran in the interval (None: none did), recorded;
    acted on with `act` while the experiment still runs."""
    store = ExperimentStore(registry)
    experiment = experiment_at(store, model, interval_end, interval_start)
    if experiment is None:
        return None
    settings = settings_from(experiment.settings)
    threshold = float(experiment.settings.get("threshold", 0.5))
    earlier = store.looks(experiment.id, before=interval_end)
    previous = earlier[-1].look if earlier else None  # (a count would do for the rest: looks are few)

    every = [settings.metric, *(metric for metric, _ in settings.guardrails)]
    summed = store.arm_sums(experiment, until=interval_end, metrics=every, threshold=threshold)  # one query

    def arms(metric: str) -> tuple[ArmSums, ArmSums]:
        sums = summed[metric]
        return sums[experiment.champion_version], sums[experiment.challenger_version]

    def stats(pair: tuple[ArmSums, ArmSums]) -> tuple[ArmStats, ArmStats]:
        a, b = pair
        return ArmStats.from_sums(a.labelled, a.total, a.total_sq), ArmStats.from_sums(b.labelled, b.total, b.total_sq)

    primary_arms = arms(settings.metric)
    look = sequential_test(
        *stats(primary_arms),
        alpha=settings.alpha,
        mixture_sd=settings.mixture_sd,
        higher_better=higher_is_better(settings.metric),
        previous=_restore(previous),
    )
    guards = []
    for metric, tolerance in settings.guardrails:
        guard = sequential_test(
            *stats(arms(metric)),
            alpha=settings.alpha,
            mixture_sd=settings.mixture_sd,
            higher_better=higher_is_better(metric),
            previous=_restore_guard(previous, metric),
        )
        guards.append(GuardrailLook(metric, tolerance, guard))
    champion_arm, challenger_arm = primary_arms
    srm_p = sample_ratio(champion_arm.keys, challenger_arm.keys, experiment.split_percent)
    looks = len(earlier) + 1
    decision = decide(settings, look, guards, srm_p=srm_p, looks=looks)
    analysis = Analysis(experiment, interval_end, primary_arms, look, tuple(guards), srm_p, looks, decision)
    store.record_look(
        LookRow(experiment.id, interval_end, analysis.summary(), decision.action.value, decision.reason),
        run_id=run.run_id if run else None,
    )
    if not act or decision.action is Action.CONTINUE or experiment.status != "running":
        return analysis
    return _act(registry, store, analysis, run=run, serving_root=serving_root)


def _act(
    registry: Registry, store: ExperimentStore, analysis: Analysis, *, run: RunRef | None, serving_root: Path | None
) -> Analysis:
    import dataclasses

    experiment, decision = analysis.experiment, analysis.decision
    model = experiment.model
    if decision.action is Action.PROMOTE:
        try:
            change = registry.promote(
                model,
                experiment.challenger_version,
                expected_champion=experiment.champion_version,
                actor=ACTOR,
                reason=f"A/B experiment #{experiment.id}: {decision.reason}",
                verdict={"experiment": experiment.id, **analysis.summary()},
                run=run,
            )
        except PromotionConflict as exc:
            reason = f"the champion changed during the experiment, nothing promoted: {exc}"
            store.end(experiment.id, status="stopped", reason=reason, actor=ACTOR, run=run)
            log.warning("%s", reason)
            return dataclasses.replace(analysis, acted="stopped: the champion changed")
        store.end(experiment.id, status="promoted", reason=decision.reason, actor=ACTOR, run=run)
        _serve_one(serving_root, model, experiment.challenger_version)
        verb = "promoted" if change.changed else "already champion"
        return dataclasses.replace(analysis, acted=f"{verb} v{experiment.challenger_version}")
    store.end(experiment.id, status="stopped", reason=decision.reason, actor=ACTOR, run=run)
    _serve_one(serving_root, model, experiment.champion_version)
    return dataclasses.replace(analysis, acted="stopped")


def collect_outcomes(registry: Registry, spec: Any, interval: Any, *, data_url: str | None) -> Any:
    """The interval's labelled rows of the spec's source as outcomes (key: the id column, observed at the time
    column), loaded beside those from files: a key keeps its first outcome, a changed one is counted."""
    frame = _labelled(spec, interval, data_url)
    rows = [
        (str(key), float(value), when.to_pydatetime())
        for key, value, when in zip(frame[spec.id_column], frame[spec.target], frame[spec.time_column], strict=True)
    ]
    loaded = ExperimentStore(registry).load_outcomes(spec.name, rows, source="source", conflicts="keep")
    log.info(
        "%s: %s outcomes from the source (%s already known, %s changed since: kept as first seen)",
        spec.name, loaded.added, loaded.known, loaded.conflicting,
    )  # fmt: skip
    return loaded


def _labelled(spec: Any, interval: Any, data_url: str | None) -> Any:
    import pandas as pd

    from modelgate.data import load_window

    frame = load_window(spec, interval, url=data_url)
    frame = frame[frame[spec.target].notna()]
    frame = frame.assign(**{spec.time_column: pd.to_datetime(frame[spec.time_column], utc=True)})
    return frame


def read_outcomes(
    path: Path, *, key: str = "key", outcome: str = "outcome", time: str = "time"
) -> list[tuple[str, float, dt.datetime]]:
    """(key, outcome, observed time) rows of a CSV or Parquet file; a one-line error for anything unusable.

    Times without a zone are UTC. Keys are read as text (a CSV's `007` stays `007`)."""
    import pandas as pd

    if not path.is_file():
        raise InvalidInput(f"no outcomes file at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path, dtype={key: str})
        else:
            raise InvalidInput(f"{path}: outcomes come as .csv or .parquet, not {suffix or 'a file without suffix'}")
    except InvalidInput:
        raise
    except Exception as exc:
        why = " ".join(str(exc).split())[:200]
        raise InvalidInput(f"{path}: cannot be read ({type(exc).__name__}: {why})") from None
    absent = [c for c in (key, outcome, time) if c not in frame.columns]
    if absent:
        raise InvalidInput(f"{path}: no column {', '.join(absent)} (has {', '.join(map(str, frame.columns[:10]))})")
    if frame.empty:
        raise InvalidInput(f"{path}: no rows")
    keys = frame[key]
    if keys.isna().any():
        raise InvalidInput(f"{path}: row {int(keys.isna().to_numpy().argmax()) + 2} has no {key}")
    values = pd.to_numeric(frame[outcome], errors="coerce")
    bad = values.isna() | ~values.between(-1e300, 1e300)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise InvalidInput(f"{path}: row {row + 2} has no numeric {outcome} ({frame[outcome].iloc[row]!r})")
    times = pd.to_datetime(frame[time], errors="coerce", utc=True, format="mixed")
    if times.isna().any():
        row = int(times.isna().to_numpy().argmax())
        raise InvalidInput(f"{path}: row {row + 2} has no readable {time} ({frame[time].iloc[row]!r})")
    return [(str(k), float(v), t.to_pydatetime()) for k, v, t in zip(keys.astype(str), values, times, strict=True)]


def apply_retention(spec: Any, registry: Registry, now: dt.datetime) -> Pruned | None:
    """The spec's `deploy.keep_predictions`, as of `now` (an interval's end): predictions logged before
    `now - keep_predictions` are deleted, but never a running experiment's (None when the spec keeps all)."""
    keep = spec.deploy.keep_predictions_for
    if keep is None:
        return None
    pruned = ExperimentStore(registry).prune(spec.name, before=now - keep)
    if pruned.predictions or pruned.outcomes:
        log.info(
            "%s: retention %s removed %s logged predictions and %s outcomes from before %s (%s kept for a running "
            "experiment)",
            spec.name,
            spec.deploy.keep_predictions,
            pruned.predictions,
            pruned.outcomes,
            now - keep,
            pruned.kept_for_experiment,
        )
    return pruned
