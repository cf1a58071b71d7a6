"""Replay a stream interval by interval through the loop's own steps, in memory: the policy benchmark.

Each interval is first scored with the champion as it stood before it (what production would have served),
then monitored (drift against the champion's reference), decided (`decide_retrain` with the same inputs the
retrain task gathers), and, when retraining, fitted and judged with the functions the tasks call
(`loop.fit_challenger`, `loop.judge`, `loop.decay_evidence`). Two baselines run on the same intervals: a model
never retrained, and one retrained on every interval and always deployed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from modelgate.data import Interval, training_window
from modelgate.loop import (
    ChampionScore,
    DecisionMark,
    DriftMark,
    Scored,
    absolute_performance,
    calibration_of,
    champion_score,
    checks_calibration,
    choose_window,
    decay_plan,
    decay_samples,
    decided_decay,
    fit_challenger,
    growth_lost,
    judge,
    last_drift_retrain,
    live_drift_flags,
    scored_since,
    shorter_window,
    training_span,
    unsettled_change,
    window_growth,
    with_predicted_class,
)
from modelgate.policy import CalibrationEvidence, DecayEvidence, RetrainInputs, champion_doubt, decide_retrain
from modelgate.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Policy = Literal["modelgate", "never", "every", "label_rule"]
LABEL_RULE_DROP = 0.06  # the naive label rule: retrain when accuracy falls this far below its best since promotion
LABEL_RULE_FLOOR = 0.70  # ... or below this


@dataclass(frozen=True)
class IntervalOutcome:
    end: dt.datetime
    scored_rows: int  # rows scored by a champion (0 before there is one)
    correct: int  # of those, predicted right (threshold 0.5; regression: within nothing, unused)
    alarm: bool
    reason: str  # the retrain decision's reason ('' for the baselines)
    trained: bool
    promoted: bool
    trained_from: dt.datetime | None = None  # the start of the window trained on this interval
    train_seconds: float = 0.0  # wall time spent fitting in this interval
    scores: np.ndarray | None = field(default=None, compare=False, repr=False)  # the served model's, per row
    labels: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ReplayResult:
    stream: str
    policy: Policy
    outcomes: list[IntervalOutcome]

    def accuracy(self, ends: set[dt.datetime] | None = None) -> float:
        chosen = [o for o in self.outcomes if o.scored_rows and (ends is None or o.end in ends)]
        rows = sum(o.scored_rows for o in chosen)
        return sum(o.correct for o in chosen) / rows if rows else math.nan

    def primary(self, name: str, ends: set[dt.datetime] | None = None) -> float:
        """The metric `name` pooled over every scored row of the chosen intervals (NaN when none)."""
        import numpy as np

        from modelgate.evaluation import metric

        chosen = [o for o in self.outcomes if o.scores is not None and (ends is None or o.end in ends)]
        if not chosen:
            return math.nan
        return metric(name, np.concatenate([o.labels for o in chosen]), np.concatenate([o.scores for o in chosen]))

    @property
    def scored(self) -> set[dt.datetime]:
        return {o.end for o in self.outcomes if o.scored_rows}

    @property
    def retrains(self) -> int:
        return sum(o.trained for o in self.outcomes)

    @property
    def promotions(self) -> int:
        return sum(o.promoted for o in self.outcomes)

    @property
    def alarms(self) -> int:
        return sum(o.alarm for o in self.outcomes)


@dataclass
class _Champion:
    version: int
    model: Any
    reference: pd.DataFrame
    window_start: dt.datetime
    window_end: dt.datetime
    score: ChampionScore | None
    measured: dt.datetime | None = None  # the newest verdict that re-scored it


@dataclass
class _State:
    champion: _Champion | None = None
    versions: int = 0
    timeline: list[tuple[dt.datetime, bool, int]] = field(default_factory=list)  # (end, drifted, champion)
    decisions: list[DecisionMark] = field(default_factory=list)
    trained: tuple[int, dt.datetime] | None = None  # (rows, window end) of the newest model trained
    trained_from: dt.datetime | None = None  # where its window starts (`loop.choose_window` may shorten it)
    spent: float = 0.0  # seconds this interval's retrain took to fit and judge (as if nothing were shared)


class ReplayCache:
    """Work that several replays of one history share, in one process: fits and measurements that don't
    depend on the retrain policy, keyed by what they do depend on (the spec without its policy knobs, the
    window's span and rows, the model measured). The backtest replays a dozen policies over the same
    intervals; most of them train the same windows and measure the same champions. Bounded (LRU)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = OrderedDict()
        self.hits = 0

    def get(self, key: tuple[Any, ...], pinned: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """`make()`, or the value stored under `key`. `pinned` holds the objects whose identity the key
        names (a model, a reference): the entry keeps them alive and must be for those very objects."""
        found = self._entries.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], pinned, strict=True)):
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1]
        value = make()
        self._entries[key] = (pinned, value)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value


# the cache of the replay running now, with its spec's training key (computed once per replay)
_CACHE: ContextVar[tuple[ReplayCache, str] | None] = ContextVar("modelgate_replay_cache", default=None)
_POLICY_KNOBS = ("retrain", "window_days", "max_window_days")  # what a fit or a measurement never depends on


def _training_key(spec: ModelSpec) -> str:
    raw = spec.model_dump(mode="json", exclude=set(_POLICY_KNOBS))
    return json.dumps(raw, sort_keys=True, default=str)


def _span_key(spec: ModelSpec, rows: pd.DataFrame) -> tuple[Any, ...]:
    times = rows[spec.time_column]
    return (len(rows), times.iloc[0], times.iloc[-1]) if len(rows) else (0,)


def _shared(kind: str, spec: ModelSpec, rows: pd.DataFrame, pinned: tuple[Any, ...], extra: tuple[Any, ...],
            make: Callable[[], Any]) -> Any:  # fmt: skip
    current = _CACHE.get()
    if current is None:
        return make()
    cache, training = current
    key = (kind, training, _span_key(spec, rows), tuple(id(p) for p in pinned), extra)
    return cache.get(key, pinned, make)


def intervals(start: dt.datetime, end: dt.datetime, every: dt.timedelta) -> list[Interval]:
    out = []
    while start + every <= end:
        out.append(Interval(start, start + every))
        start += every
    return out


def _rows(frame: pd.DataFrame, spec: ModelSpec, interval: Interval) -> pd.DataFrame:
    times = frame[spec.time_column]
    return frame[(times >= interval.start) & (times < interval.end)]


@dataclass(frozen=True)
class _Served:
    """What the model serving an interval did on its rows."""

    rows: int = 0
    correct: int = 0
    scores: np.ndarray | None = None
    labels: np.ndarray | None = None


def _serve(spec: ModelSpec, model: Any, rows: pd.DataFrame) -> _Served:
    from modelgate.evaluation import correct
    from modelgate.training import predict_scores, target_values

    if not spec.task.classifier:
        raise ValueError("the replay scores classifiers (accuracy)")
    if model is None or rows.empty:
        return _Served()
    scores = predict_scores(spec, model, rows)
    labels = target_values(spec, rows)
    return _Served(len(rows), int(correct(labels, scores).sum()), scores, labels)


def _outcome(end: dt.datetime, served: _Served, **fields: Any) -> IntervalOutcome:
    return IntervalOutcome(end, served.rows, served.correct, scores=served.scores, labels=served.labels, **fields)


def replay(
    spec: ModelSpec,
    frame: pd.DataFrame,
    steps: list[Interval],
    policy: Policy = "modelgate",
    *,
    cache: ReplayCache | None = None,
) -> ReplayResult:
    """Run `steps` (consecutive intervals) of the time-sorted `frame` under one policy; `cache` shares fits
    and measurements with other replays of the same frame (the same results, sooner)."""
    run = {"modelgate": _modelgate, "never": _never, "every": _every, "label_rule": _label_rule}[policy]
    token = _CACHE.set(None if cache is None else (cache, _training_key(spec)))
    try:
        return ReplayResult(spec.name, policy, list(run(spec, frame, steps)))
    finally:
        _CACHE.reset(token)


def _window(spec: ModelSpec, frame: pd.DataFrame, end: dt.datetime) -> pd.DataFrame:
    return _rows(frame, spec, training_window(spec, end))


def _fit_served(spec: ModelSpec, window: pd.DataFrame) -> tuple[Any | None, float]:
    """A model fitted on the whole window (None when it can't be), and the seconds it took."""
    from modelgate.training import TrainingError, train

    def fit() -> tuple[Any | None, float]:
        started = time.perf_counter()
        try:
            return train(spec, window).pipeline, time.perf_counter() - started
        except TrainingError:
            return None, time.perf_counter() - started

    return _shared("served", spec, window, (), (), fit)


def _never(spec: ModelSpec, frame: pd.DataFrame, steps: list[Interval]) -> Iterator[IntervalOutcome]:
    model = None
    for interval in steps:
        served = _serve(spec, model, _rows(frame, spec, interval))
        trained, seconds = False, 0.0
        if model is None:
            model, seconds = _fit_served(spec, _window(spec, frame, interval.end))
            trained = model is not None
        yield _outcome(interval.end, served, alarm=False, reason="", trained=trained, promoted=trained,
                       train_seconds=seconds)  # fmt: skip


def _every(spec: ModelSpec, frame: pd.DataFrame, steps: list[Interval]) -> Iterator[IntervalOutcome]:
    model = None
    for interval in steps:
        served = _serve(spec, model, _rows(frame, spec, interval))
        fitted, seconds = _fit_served(spec, _window(spec, frame, interval.end))
        model = fitted or model
        done = fitted is not None
        yield _outcome(interval.end, served, alarm=False, reason="", trained=done, promoted=done, train_seconds=seconds)


def _label_rule(spec: ModelSpec, frame: pd.DataFrame, steps: list[Interval]) -> Iterator[IntervalOutcome]:
    """The naive label rule: retrain and always deploy when the last interval's accuracy is more than
    LABEL_RULE_DROP below the best since the last promotion, or below LABEL_RULE_FLOOR."""
    model = None
    best = -math.inf
    for interval in steps:
        served = _serve(spec, model, _rows(frame, spec, interval))
        accuracy = served.correct / served.rows if served.rows else None
        if accuracy is not None:
            best = max(best, accuracy)
        due = model is None or (
            accuracy is not None and (accuracy < best - LABEL_RULE_DROP or accuracy < LABEL_RULE_FLOOR)
        )
        fitted, seconds = _fit_served(spec, _window(spec, frame, interval.end)) if due else (None, 0.0)
        if fitted is not None:
            model, best = fitted, -math.inf
        yield _outcome(interval.end, served, alarm=False, reason="label_rule" if due else "", trained=due,
                       promoted=fitted is not None, train_seconds=seconds)  # fmt: skip


def _modelgate(spec: ModelSpec, frame: pd.DataFrame, steps: list[Interval]) -> Iterator[IntervalOutcome]:
    state = _State()
    for interval in steps:
        rows = _rows(frame, spec, interval)
        champion = state.champion
        served = _serve(spec, champion.model if champion is not None else None, rows)
        alarm = _monitor(spec, state, rows, interval)
        state.spent = 0.0
        reason, trained, promoted = _retrain(spec, state, frame, interval)
        yield _outcome(
            interval.end,
            served,
            alarm=alarm,
            reason=reason,
            trained=trained,
            promoted=promoted,
            trained_from=state.trained_from if trained else None,
            train_seconds=state.spent,
        )


def _monitor(spec: ModelSpec, state: _State, rows: pd.DataFrame, interval: Interval) -> bool:
    """The monitor DAG: drift of the interval against the champion's reference, kept in the timeline."""
    from modelgate.drift import DriftError, compute_drift

    champion = state.champion
    if champion is None or rows.empty:
        return False

    def measure() -> Any:
        reference = with_predicted_class(spec, champion.model, champion.reference)  # multiclass: the class mix
        return compute_drift(spec, reference, with_predicted_class(spec, champion.model, rows))

    try:
        drifted = _shared("drift", spec, rows, (champion.reference,), (), measure).dataset_drift
    except DriftError:
        return False
    state.timeline.append((interval.end, drifted, champion.version))
    return drifted


def _retrain(spec: ModelSpec, state: _State, frame: pd.DataFrame, interval: Interval) -> tuple[str, bool, bool]:
    """The retrain DAG: decide with the task's inputs, then fit, judge and maybe promote."""
    from modelgate.evaluation import EvaluationError
    from modelgate.training import TrainingError

    span = training_span(spec, state.decisions, interval.end)
    window = _rows(frame, spec, span)
    champion = state.champion
    policy = spec.retrain
    drift_flags: list[bool] = []
    decay = calibration = None
    age = new_rows = None
    performance = None
    change = None
    growth = None
    if champion is not None:
        drift_flags = live_drift_flags(
            [DriftMark(end, drifted, version) for end, drifted, version in state.timeline if end <= interval.end],
            champion_version=champion.version,
            champion_window_end=champion.window_end,
            last_drift_retrain=last_drift_retrain(state.decisions),
            runs=policy.drift_runs_n,
        )
        confirmed = champion.measured or champion.window_end
        age = (interval.end - confirmed).total_seconds() / 86400
        fixed = training_window(spec, interval.end)
        if not window.empty:
            new_rows = int((window[spec.time_column] >= champion.window_end).sum())
            knobs = (fixed, policy.performance_metric, policy.performance_threshold is None)
            performance = _shared(
                "performance", spec, window, (champion.model,), knobs,
                lambda: absolute_performance(spec, champion.model, window, fixed),
            )  # fmt: skip
            decay, calibration = _evidence(spec, champion, window, interval)
        change = unsettled_change(
            state.decisions,
            champion_window=(champion.window_start, champion.window_end),
            window_start=fixed.start,
            window=fixed.end - fixed.start,
        )
        trained_rows, trained_end = state.trained or (None, None)
        lost = growth_lost(state.decisions, newest_rejected=trained_end != champion.window_end)  # no approval wait
        growth = window_growth(spec, span, window, trained_rows=trained_rows, trained_end=trained_end, lost=lost)
    inputs = RetrainInputs(
        force=False,
        has_champion=champion is not None,
        champion_age_days=age,
        drift_flags=drift_flags,
        champion_performance=performance,
        new_rows=new_rows,
        decay=decay,
        calibration=calibration,
        unsettled_change=change,
        growth=growth,
    )
    decision = decide_retrain(policy, inputs)
    state.decisions.append(DecisionMark(interval.start, interval.end, decision.retrain, decision.reason.value))
    if not decision.retrain:
        return decision.reason.value, False, False
    span = training_span(spec, state.decisions, interval.end)  # the run's own decision may anchor it
    window = _rows(frame, spec, span)
    chosen = choose_window(spec, window, span, shorter_window(spec, state.decisions, interval.end)).span
    if chosen != span:  # later windows restart where this one did, as the registry's tag tells the tasks
        state.decisions[-1] = dataclasses.replace(state.decisions[-1], shortened_to=chosen.start)
        span, window = chosen, window[window[spec.time_column] >= chosen.start]
    try:
        challenger, seconds = _shared("challenger", spec, window, (), (), lambda: _timed(fit_challenger, spec, window))
        state.spent += seconds
    except TrainingError:
        return decision.reason.value, False, False
    state.trained = (len(window), interval.end)  # the newest model trained, promoted or not (the registry's)
    state.trained_from = span.start
    state.versions += 1
    try:
        doubt = champion_doubt(decision.reason)
        champion_model = champion.model if champion else None
        promote, seconds = _shared(  # only the verdict's outcome is used: version numbers don't change it
            "judge", spec, window, (challenger.evaluation_model, champion_model),
            (champion.window_end if champion else None, doubt),
            lambda: _timed(lambda: judge(
                spec,
                window,
                challenger.evaluation_model,
                champion_model,
                champion_version=champion.version if champion else None,
                champion_window_end=champion.window_end if champion else None,
                challenger_version=state.versions,
                doubt=doubt,
            ).verdict.promote),
        )  # fmt: skip
        state.spent += seconds
    except EvaluationError:
        return decision.reason.value, True, False
    if promote:
        state.champion = _Champion(
            state.versions,
            challenger.served.pipeline,
            challenger.reference,
            span.start,
            interval.end,
            champion_score(spec, challenger.holdout_metrics, interval.end),
        )
    elif champion is not None:
        champion.measured = interval.end
    return decision.reason.value, True, promote


def _evidence(
    spec: ModelSpec, champion: _Champion, window: pd.DataFrame, interval: Interval
) -> tuple[DecayEvidence | None, CalibrationEvidence | None]:
    """`loop.decay_evidence` and `loop.calibration_evidence` on the champion, sharing what costs: its scores on
    the window's rows since it was measured (predicted once for both) and each look's bootstrap resamples,
    which depend on the rows and the metric, not on the policy. What is each policy's own (the looks' level,
    the tolerance, the calibration test) is computed afresh, so a replay of another tolerance reuses the
    resamples, never the verdict."""

    def scored(since: dt.datetime) -> Scored:
        model = champion.model
        return _shared("scored", spec, window, (model,), (since,), lambda: scored_since(spec, model, window, since))

    decay = None
    plan = decay_plan(spec, champion.score, interval.start)
    if plan is not None:
        samples = _shared(
            "decay", spec, window, (champion.model,), (plan.starts, plan.metrics, spec.retrain.decay_min_rows),
            lambda: decay_samples(spec, scored(plan.starts[0]), plan.starts, plan.metrics),
        )  # fmt: skip
        decay = decided_decay(spec, plan, samples)
    calibration = None
    if checks_calibration(spec) and champion.window_end < interval.start:
        calibration = calibration_of(spec, scored(champion.window_end), interval.start)
    return decay, calibration


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """`fn(*args)` and the seconds it took (kept with a shared result: each replay pays it as its own)."""
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started
