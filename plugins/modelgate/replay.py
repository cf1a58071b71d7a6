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
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from modelgate.data import Interval, training_window
from modelgate.loop import (
    ChampionScore,
    DecisionMark,
    DriftMark,
    absolute_performance,
    choose_window,
    decay_evidence,
    decay_metric,
    fit_challenger,
    judge,
    last_drift_retrain,
    live_drift_flags,
    shorter_window,
    training_span,
    unsettled_change,
    window_growth,
)
from modelgate.policy import RetrainInputs, champion_doubt, decide_retrain
from modelgate.spec import ModelSpec, Task

if TYPE_CHECKING:
    import pandas as pd

Policy = Literal["modelgate", "never", "every"]


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


@dataclass(frozen=True)
class ReplayResult:
    stream: str
    policy: Policy
    outcomes: list[IntervalOutcome]

    def accuracy(self, ends: set[dt.datetime] | None = None) -> float:
        chosen = [o for o in self.outcomes if o.scored_rows and (ends is None or o.end in ends)]
        rows = sum(o.scored_rows for o in chosen)
        return sum(o.correct for o in chosen) / rows if rows else math.nan

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


def intervals(start: dt.datetime, end: dt.datetime, every: dt.timedelta) -> list[Interval]:
    out = []
    while start + every <= end:
        out.append(Interval(start, start + every))
        start += every
    return out


def _rows(frame: pd.DataFrame, spec: ModelSpec, interval: Interval) -> pd.DataFrame:
    times = frame[spec.time_column]
    return frame[(times >= interval.start) & (times < interval.end)]


def _correct(spec: ModelSpec, model: Any, rows: pd.DataFrame) -> int:
    from modelgate.training import predict_scores

    if spec.task is not Task.BINARY:
        raise ValueError("the replay scores classifiers (accuracy)")
    scores = predict_scores(spec, model, rows)
    return int(((scores >= 0.5) == (rows[spec.target].to_numpy() >= 0.5)).sum())


def replay(spec: ModelSpec, frame: pd.DataFrame, steps: list[Interval], policy: Policy = "modelgate") -> ReplayResult:
    """Run `steps` (consecutive intervals) of the time-sorted `frame` under one policy."""
    run = {"modelgate": _modelgate, "never": _never, "every": _every}[policy]
    return ReplayResult(spec.name, policy, list(run(spec, frame, steps)))


def _window(spec: ModelSpec, frame: pd.DataFrame, end: dt.datetime) -> pd.DataFrame:
    return _rows(frame, spec, training_window(spec, end))


def _fit_served(spec: ModelSpec, window: pd.DataFrame) -> Any | None:
    from modelgate.training import TrainingError, train

    try:
        return train(spec, window).pipeline
    except TrainingError:
        return None


def _never(spec: ModelSpec, frame: pd.DataFrame, steps: list[Interval]) -> Iterator[IntervalOutcome]:
    model = None
    for interval in steps:
        rows = _rows(frame, spec, interval)
        scored = len(rows) if model is not None else 0
        correct = _correct(spec, model, rows) if scored else 0
        trained = False
        if model is None:
            model = _fit_served(spec, _window(spec, frame, interval.end))
            trained = model is not None
        yield IntervalOutcome(interval.end, scored, correct, False, "", trained, trained)


def _every(spec: ModelSpec, frame: pd.DataFrame, steps: list[Interval]) -> Iterator[IntervalOutcome]:
    model = None
    for interval in steps:
        rows = _rows(frame, spec, interval)
        scored = len(rows) if model is not None else 0
        correct = _correct(spec, model, rows) if scored else 0
        fitted = _fit_served(spec, _window(spec, frame, interval.end))
        model = fitted or model
        yield IntervalOutcome(interval.end, scored, correct, False, "", fitted is not None, fitted is not None)


def _modelgate(spec: ModelSpec, frame: pd.DataFrame, steps: list[Interval]) -> Iterator[IntervalOutcome]:
    state = _State()
    for interval in steps:
        rows = _rows(frame, spec, interval)
        champion = state.champion
        scored = len(rows) if champion is not None else 0
        correct = _correct(spec, champion.model, rows) if champion is not None and scored else 0
        alarm = _monitor(spec, state, rows, interval)
        reason, trained, promoted = _retrain(spec, state, frame, interval)
        yield IntervalOutcome(
            interval.end, scored, correct, alarm, reason, trained, promoted, state.trained_from if trained else None
        )


def _monitor(spec: ModelSpec, state: _State, rows: pd.DataFrame, interval: Interval) -> bool:
    """The monitor DAG: drift of the interval against the champion's reference, kept in the timeline."""
    from modelgate.drift import DriftError, compute_drift

    champion = state.champion
    if champion is None or rows.empty:
        return False
    try:
        drifted = compute_drift(spec, champion.reference, rows).dataset_drift
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
    decay = None
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
            performance = absolute_performance(spec, champion.model, window, fixed)
            decay = decay_evidence(spec, champion.model, champion.score, window, interval.start)
        change = unsettled_change(
            state.decisions,
            champion_window=(champion.window_start, champion.window_end),
            window_start=fixed.start,
            window=fixed.end - fixed.start,
        )
        trained_rows, trained_end = state.trained or (None, None)
        growth = window_growth(spec, span, window, trained_rows=trained_rows, trained_end=trained_end)
    inputs = RetrainInputs(
        force=False,
        has_champion=champion is not None,
        champion_age_days=age,
        drift_flags=drift_flags,
        champion_performance=performance,
        new_rows=new_rows,
        decay=decay,
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
        challenger = fit_challenger(spec, window)
    except TrainingError:
        return decision.reason.value, False, False
    state.trained = (len(window), interval.end)  # the newest model trained, promoted or not (the registry's)
    state.trained_from = span.start
    state.versions += 1
    try:
        judged = judge(
            spec,
            window,
            challenger.evaluation_model,
            champion.model if champion else None,
            champion_version=champion.version if champion else None,
            champion_window_end=champion.window_end if champion else None,
            challenger_version=state.versions,
            doubt=champion_doubt(decision.reason),
        )
    except EvaluationError:
        return decision.reason.value, True, False
    verdict = judged.verdict
    if verdict.promote:
        holdout = challenger.holdout_metrics.get(f"holdout_{decay_metric(spec)}")
        state.champion = _Champion(
            state.versions,
            challenger.served.pipeline,
            challenger.reference,
            span.start,
            interval.end,
            None if holdout is None else ChampionScore(holdout, interval.end),
        )
    elif champion is not None:
        champion.measured = interval.end
    return decision.reason.value, True, verdict.promote
