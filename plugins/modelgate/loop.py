"""The loop's computations on frames and fitted models, with no I/O.

Shared by the Airflow tasks (`pipeline.py`, which loads rows and artifacts and records results) and the
in-memory replay (`replay.py`, which runs a whole stream through the same steps): what the policy benchmark
measures is what the DAGs do.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelgate.data import Interval, split_holdout, training_window
from modelgate.policy import (
    CalibrationEvidence,
    CalibrationLook,
    DecayEvidence,
    RetrainReason,
    Verdict,
    WindowGrowth,
    decide_promotion,
)
from modelgate.spec import HIGHER_IS_BETTER, ModelSpec, Retrain, Task
from modelgate.training import TrainedModel, predict_scores, reference_sample, target_values, train

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class Challenger:
    """A challenger fitted on a window: what is served, and what evaluation may score on the holdout."""

    served: TrainedModel  # refit on the whole window when the spec says so, else the holdout-free fit
    holdout_model: Any | None  # the fit without the holdout, kept only when `served` was refit
    holdout_metrics: dict[str, float]  # `holdout_<metric>` of the holdout-free fit
    reference: pd.DataFrame  # the drift reference: a sample of the training rows
    train_rows: int
    holdout_rows: int

    @property
    def evaluation_model(self) -> Any:
        return self.holdout_model if self.holdout_model is not None else self.served.pipeline


def holdout_metrics(spec: ModelSpec, model: Any, holdout: pd.DataFrame) -> dict[str, float]:
    """`holdout_<metric>` of a model fitted without the holdout: the score later decay is measured against."""
    from modelgate.evaluation import DEFAULT_METRICS, metric

    labelled = holdout.dropna(subset=[spec.target])
    y = target_values(spec, labelled)
    if not len(labelled) or (spec.task.classifier and len(set(y.tolist())) < 2):
        return {}
    scores = predict_scores(spec, model, labelled)
    out = {f"holdout_{name}": metric(name, y, scores) for name in DEFAULT_METRICS[spec.task]}
    if spec.task.classifier:  # what always answering the commonest class scores: the floor accuracy is read against
        import numpy as np

        out["holdout_majority_accuracy"] = float(np.unique(y, return_counts=True)[1].max() / len(y))
    return out


def with_predicted_class(spec: ModelSpec, model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """A multiclass champion's predicted class as one more column (`drift.predicted_column`), so drift sees
    a shift of the class mix it predicts as it sees a feature's; other tasks' frames are returned as they are."""
    if spec.task is not Task.MULTICLASS or model is None or frame.empty:
        return frame
    from modelgate.drift import predicted_column

    names = spec.class_names
    positions = predict_scores(spec, model, frame).argmax(axis=1)
    return frame.assign(**{predicted_column(spec): [names[i] for i in positions]})


def fit_challenger(spec: ModelSpec, frame: pd.DataFrame) -> Challenger:
    """Fit on the window's earlier rows, measure on its holdout, and refit on all of it when `spec.refit`."""
    train_frame, holdout = split_holdout(spec, frame)
    trained = train(spec, train_frame)
    measured = holdout_metrics(spec, trained.pipeline, holdout)
    if spec.refit and len(holdout):
        served, holdout_model = train(spec, frame), trained.pipeline
    else:
        served, holdout_model = trained, None
    return Challenger(
        served, holdout_model, measured, reference_sample(spec, train_frame), len(train_frame), len(holdout)
    )


@dataclass(frozen=True)
class Judgement:
    """The verdict and what it was computed from (for the report)."""

    verdict: Verdict
    holdout: pd.DataFrame
    y: np.ndarray
    champion_scores: np.ndarray | None  # None when the challenger was compared with the baseline
    challenger_scores: np.ndarray


def judge(
    spec: ModelSpec,
    frame: pd.DataFrame,
    challenger_model: Any,
    champion_model: Any | None,
    *,
    champion_version: int | None,
    challenger_version: int,
    doubt: str | None = None,
    champion_window_end: dt.datetime | None = None,
) -> Judgement:
    """Champion (re-scored now) or, with none, the trivial baseline vs the challenger on the window's holdout.

    The holdout is the newest `holdout_fraction` of the challenger's window (its evaluation model never saw
    them) from `champion_window_end` on (the champion was fitted on rows before it): neither model is ever
    scored on rows it was fitted on. Fewer than `evaluation.min_holdout_rows` such rows (or one class only)
    is `insufficient_evidence`: not promoted, nothing compared.

    `doubt` is `policy.champion_doubt` of the retrain's reason: evidence against the champion, under which
    a non-inferior challenger is promoted.
    """
    from modelgate.evaluation import baseline_scores, evaluate_scores
    from modelgate.policy import insufficient_evidence

    train_part, holdout = split_holdout(spec, frame)
    if champion_model is not None and champion_window_end is not None:
        holdout = holdout[holdout[spec.time_column] >= champion_window_end].reset_index(drop=True)
        target = holdout[spec.target]
        single = spec.task.classifier and target.nunique() < 2
        if len(holdout) < spec.evaluation.min_holdout_rows or single:
            verdict = insufficient_evidence(
                spec.evaluation.primary_metric,
                spec.evaluation.higher_is_better,
                champion_version=champion_version,
                challenger_version=challenger_version,
                rows=len(holdout),
                needed=spec.evaluation.min_holdout_rows,
                since=champion_window_end,
                single_class=single and len(holdout) >= spec.evaluation.min_holdout_rows,
            )
            empty = target_values(spec, holdout)
            return Judgement(verdict, holdout, empty, None, empty)
    y = target_values(spec, holdout)
    challenger_scores = predict_scores(spec, challenger_model, holdout)
    champion_scores = None
    baseline = None
    if champion_model is not None:
        champion_scores = predict_scores(spec, champion_model, holdout)
        compared_with = champion_scores
    else:  # a first champion must beat the trivial model
        compared_with, baseline = baseline_scores(spec, target_values(spec, train_part), len(holdout))
    evaluation = evaluate_scores(
        spec,
        holdout,
        y,
        compared_with,
        challenger_scores,
        champion_version=champion_version,
        challenger_version=challenger_version,
        baseline=baseline,
    )
    verdict = decide_promotion(evaluation, spec.evaluation, doubt=doubt)
    return Judgement(verdict, holdout, y, champion_scores, challenger_scores)


@dataclass(frozen=True)
class ChampionScore:
    """The champion's holdout score when it was trained, and up to when the rows it was measured on go."""

    value: float
    measured_until: dt.datetime
    accuracy: float | None = None  # its holdout accuracy at the served threshold (classifiers)
    majority: float | None = None  # the accuracy of always answering the holdout's commonest class


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Scored:
    """A model's scores on a frame's labelled rows from `since` on, predicted once for every look that reads
    them (the decay test's and the calibration check's)."""

    since: dt.datetime
    times: pd.Series
    labels: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def mask(self, start: dt.datetime) -> np.ndarray:
        """Which rows are from `start` on."""
        return (self.times >= start).to_numpy()


def scored_since(spec: ModelSpec, model: Any, frame: pd.DataFrame, since: dt.datetime) -> Scored:
    rows = frame[frame[spec.time_column] >= since].dropna(subset=[spec.target])
    scores = predict_scores(spec, model, rows) if len(rows) else target_values(spec, rows)
    return Scored(since, rows[spec.time_column].reset_index(drop=True), target_values(spec, rows), scores)


@dataclass(frozen=True)
class DecayPlan:
    """What the decay test reads for a champion, before any row is scored: where its looks start, which
    metrics it watches against which holdout values, and the level each look is tested at."""

    starts: tuple[dt.datetime, ...]  # since the champion's holdout score was measured; the newest interval
    watched: tuple[tuple[str, float], ...]  # (metric, the champion's holdout value of it)
    alpha: float  # each look's equal share of `decay_significance`

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.watched)


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class DecaySample:
    """One look's measurement: the champion's metric on the labelled rows from `since` on, and its value on
    each bootstrap resample of them (any level's bound is a percentile of these)."""

    metric: str
    since: dt.datetime
    rows: int
    observed: float
    resampled: np.ndarray


def decay_plan(spec: ModelSpec, reference: ChampionScore | None, newest_start: dt.datetime) -> DecayPlan | None:
    """The looks of `decay_evidence` (None when the spec tests no decay or there is no reference score)."""
    policy = spec.retrain
    if policy.decay_tolerance is None or reference is None:
        return None
    starts = [min(reference.measured_until, newest_start)]
    if starts[0] < newest_start:
        starts.append(newest_start)
    watched = [(decay_metric(spec), reference.value)]
    if watches_accuracy(spec) and reference.accuracy is not None and _decisions_informative(reference, policy):
        watched.append(("accuracy", reference.accuracy))
    return DecayPlan(tuple(starts), tuple(watched), policy.decay_significance / (len(starts) * len(watched)))


def decay_samples(
    spec: ModelSpec, scored: Scored, starts: tuple[dt.datetime, ...], metrics: tuple[str, ...]
) -> tuple[DecaySample, ...]:
    """Every look that can be measured: each start with `decay_min_rows` labelled rows of both classes
    (`scored` covers the earliest start), every metric read on the same resamples of its rows."""
    from modelgate.evaluation import bootstrap_distributions, metric

    out = []
    for start in starts:
        chosen = scored.mask(start)
        y, scores = scored.labels[chosen], scored.scores[chosen]
        if len(y) < spec.retrain.decay_min_rows or (spec.task.classifier and len(set(y.tolist())) < 2):
            continue
        samples = spec.evaluation.bootstrap_samples
        resampled = bootstrap_distributions(metrics, y, scores, samples=samples, seed=spec.seed)
        out += [DecaySample(name, start, len(y), metric(name, y, scores), resampled[name]) for name in metrics]
    return tuple(out)


def decided_decay(spec: ModelSpec, plan: DecayPlan, samples: tuple[DecaySample, ...]) -> DecayEvidence | None:
    """The look that shows decay by `decay_tolerance` (in the plan's order), else the first measured one."""
    from modelgate.evaluation import percentile_bound

    tolerance = spec.retrain.decay_tolerance
    found = {(s.metric, s.since): s for s in samples}
    looks = []
    for name, value in plan.watched:
        for start in plan.starts:
            sample = found.get((name, start))
            if sample is None:
                continue
            higher = HIGHER_IS_BETTER[name]
            bound = percentile_bound(sample.resampled, plan.alpha, upper=higher)
            if math.isfinite(sample.observed) and math.isfinite(bound):
                looks.append(DecayEvidence(name, value, sample.observed, bound, sample.rows, higher, start, plan.alpha))
    decayed = [e for e in looks if tolerance is not None and e.decayed(tolerance)]
    return (decayed or looks)[0] if looks else None


def decay_evidence(
    spec: ModelSpec, model: Any, reference: ChampionScore | None, frame: pd.DataFrame, newest_start: dt.datetime
) -> DecayEvidence | None:
    """The champion on labelled rows it has not seen, against its holdout score when it was trained.

    Two looks: the rows since that score was measured (the champion's training window end), where a slow
    decay adds up, and the newest interval's rows alone, where an abrupt one is not diluted by the weeks
    before it. With `decay_on_accuracy` a classifier judged on a ranking metric (ROC AUC) is watched on its
    accuracy at the served threshold too, in the same two looks: a ranking cannot see its decisions go wrong.
    Each look is tested at an equal share of `decay_significance` (Bonferroni), so the looks together raise
    no more false alarms than one. The look that shows decay is returned, else the longer one of the decay
    metric; a decay that a rejected challenger could not fix keeps triggering, so the loop keeps trying while
    the champion stays worse.

    In three steps, so that a replay can share the costly middle one between policies: `decay_plan` (which
    looks), `decay_samples` (score the rows once, resample them), `decided_decay` (the bounds at the plan's
    level, against the tolerance).
    """
    plan = decay_plan(spec, reference, newest_start)
    if plan is None or frame.empty:
        return None
    samples = decay_samples(spec, scored_since(spec, model, frame, plan.starts[0]), plan.starts, plan.metrics)
    return decided_decay(spec, plan, samples)


RANKING_METRICS = frozenset({"roc_auc", "pr_auc", "log_loss", "brier"})  # blind to the threshold's decisions


def _decisions_informative(reference: ChampionScore, policy: Retrain) -> bool:
    """Whether accuracy can show a decay of `tolerance` that is not the base rate moving: the champion's
    holdout accuracy, that far down, is still above always answering the commonest class. On a low-signal,
    imbalanced target (delays at a rate of 0.24, decisions barely better than "on time") it is not, and a week
    with more positives would pass for decay."""
    accuracy, majority = reference.accuracy, reference.majority
    if accuracy is None or majority is None or not (math.isfinite(accuracy) and math.isfinite(majority)):
        return False
    return policy.decay_tolerance is not None and accuracy * (1 - policy.decay_tolerance) > majority


def decays_on_ranks(spec: ModelSpec) -> bool:
    """Whether a classifier's decay metric ranks its scores and so cannot see its decisions at the threshold:
    what `decay_on_accuracy` is for (and what the backtest's grid flips it on)."""
    return spec.task.classifier and decay_metric(spec) in RANKING_METRICS


def watches_accuracy(spec: ModelSpec) -> bool:
    """Whether the decay test watches accuracy too: `decay_on_accuracy`, where the decay metric only ranks."""
    return spec.retrain.decay_on_accuracy and decays_on_ranks(spec)


def champion_score(spec: ModelSpec, metrics: Mapping[str, float], measured_until: dt.datetime) -> ChampionScore | None:
    """The decay reference from a version's holdout metrics (`holdout_metrics`), or None without its decay
    metric's."""
    value = metrics.get(f"holdout_{decay_metric(spec)}")
    if value is None:
        return None
    accuracy, majority = (metrics.get(f"holdout_{k}") for k in ("accuracy", "majority_accuracy"))
    return ChampionScore(
        float(value),
        measured_until,
        None if accuracy is None else float(accuracy),
        None if majority is None else float(majority),
    )


def calibration_evidence(
    spec: ModelSpec, model: Any, frame: pd.DataFrame, since: dt.datetime, newest_start: dt.datetime
) -> CalibrationEvidence | None:
    """The champion's predicted rate of positives against the labels: rows since `since` (its window end) and
    the newest interval's (from `newest_start`) alone, for `CalibrationEvidence`'s two-look test.

    None unless the spec checks calibration (a binary classifier, `calibration_check`, a decay tolerance) and
    both looks have `decay_min_rows` labelled rows the champion was not fitted on. The tolerance is
    `decay_tolerance` of the rarer class's predicted rate on the longer look.
    """
    if not checks_calibration(spec) or frame.empty or since >= newest_start:
        return None
    return calibration_of(spec, scored_since(spec, model, frame, since), newest_start)


def checks_calibration(spec: ModelSpec) -> bool:
    policy = spec.retrain
    return spec.task is Task.BINARY and policy.calibration_check and policy.decay_tolerance is not None


def calibration_of(spec: ModelSpec, scored: Scored, newest_start: dt.datetime) -> CalibrationEvidence | None:
    """`calibration_evidence` from the champion's scores on the rows since its window end."""
    import statistics

    import numpy as np

    policy = spec.retrain
    if not checks_calibration(spec) or policy.decay_tolerance is None or scored.since >= newest_start:
        return None  # (the tolerance again for mypy); no rows before the newest interval to confirm it with
    if len(scored) < policy.decay_min_rows:
        return None
    p = np.clip(scored.scores, 0.0, 1.0)
    y = scored.labels
    newest = scored.mask(newest_start)
    if newest.sum() < policy.decay_min_rows:
        return None
    mean = float(p.mean())
    tolerance = policy.decay_tolerance * min(mean, 1 - mean)
    looks = []
    for start, chosen in ((scored.since, np.ones(len(scored), dtype=bool)), (newest_start, newest)):
        predicted, observed = float(p[chosen].mean()), float(y[chosen].mean())
        spread = math.sqrt(float((p[chosen] * (1 - p[chosen])).sum())) / int(chosen.sum())
        gap = observed - predicted
        beyond = max(abs(gap) - tolerance, 0.0)
        z = math.copysign(beyond / spread, gap) if spread > 0 and beyond else 0.0
        looks.append(CalibrationLook(start, int(chosen.sum()), observed, predicted, z))
    critical = statistics.NormalDist().inv_cdf(1 - policy.decay_significance)
    return CalibrationEvidence(tuple(looks), tolerance, critical, policy.decay_significance)


def absolute_performance(spec: ModelSpec, model: Any, frame: pd.DataFrame, fixed: Interval) -> float | None:
    """The absolute-threshold trigger's input: the champion's `performance_metric` on the holdout rows of the
    `fixed` window (`window_days` long), however far the training window has grown."""
    from modelgate.evaluation import metric

    policy = spec.retrain
    if not policy.performance_metric or policy.performance_threshold is None or frame.empty:
        return None
    times = frame[spec.time_column]
    _, recent = split_holdout(spec, frame[(times >= fixed.start) & (times < fixed.end)])
    labelled = recent.dropna(subset=[spec.target])
    if not len(labelled) or labelled[spec.target].nunique() < 2:
        return None
    y = target_values(spec, labelled)
    return metric(policy.performance_metric, y, predict_scores(spec, model, labelled))


def decay_metric(spec: ModelSpec) -> str:
    return spec.retrain.performance_metric or spec.evaluation.primary_metric


@dataclass(frozen=True)
class DriftMark:
    """One monitor run, as the retrain decision sees it."""

    interval_end: dt.datetime
    drifted: bool
    champion_version: int | None


def last_drift_retrain(decisions: list[DecisionMark]) -> dt.datetime | None:
    """The end of the last interval whose drift already caused a retrain: older drift flags are spent.

    Drift that a retrain has answered (its challenger promoted or rejected) must not retrain again every
    interval while it lasts; from then on only new drift, or labels showing decay, trigger.
    """
    spent = [d.interval_end for d in decisions if d.retrain and d.reason == RetrainReason.DRIFT.value]
    return max(spent, default=None)


def live_drift_flags(
    timeline: list[DriftMark],
    *,
    champion_version: int,
    champion_window_end: dt.datetime | None,
    last_drift_retrain: dt.datetime | None,
    runs: int,
) -> list[bool]:
    """The drift flags that may still trigger a retrain, of the last `runs` monitor runs (oldest first).

    Only the current champion's runs count, and only after the last drift-triggered retrain. When that
    retrain left this champion in place (its challenger lost), the drift it answered is the same episode
    while it lasts: flags count again only after a run without drift. Seasonal or otherwise persistent
    drift then costs one retrain per episode, not one per interval; labels showing decay still trigger.
    """
    rearm = last_drift_retrain
    if rearm is not None and champion_window_end is not None and champion_window_end < rearm:
        after = [m for m in timeline if m.interval_end > rearm and m.champion_version == champion_version]
        clean = next((m.interval_end for m in after if not m.drifted), None)
        if clean is None:
            return []
        rearm = clean
    recent = timeline[-runs:]
    return [
        m.drifted
        for m in recent
        if m.champion_version == champion_version and (rearm is None or m.interval_end > rearm)
    ]


@dataclass(frozen=True)
class DecisionMark:
    """One retrain decision, as later decisions see it."""

    interval_start: dt.datetime
    interval_end: dt.datetime
    retrain: bool
    reason: str
    shortened_to: dt.datetime | None = None  # where its window started, when `choose_window` shortened it


@dataclass(frozen=True)
class DecisionReach:
    """The recorded decisions a retrain decision ending at `end` reads, however long the model's history.

    - every decision ending after `since` (`end` less the longest window): the only ones whose anchors can
      start a window (`training_span`, `shorter_window`);
    - every decision ending within the champion's training window, and the one before it: the chain of
      change-triggered retrains that led to its promotion (`unsettled_change`);
    - the newest decision, the newest retrain and the newest drift-triggered retrain before `end`
      (`decide`'s ordering check, `growth_lost` and "a retrain since settled it", `last_drift_retrain`).

    The loop's functions give the same answers on these as on the whole history (a tested property), so a
    decision's reads do not grow with the model's age.
    """

    end: dt.datetime
    since: dt.datetime
    champion_window: tuple[dt.datetime, dt.datetime] | None


def decision_reach(
    spec: ModelSpec, end: dt.datetime, champion_window: tuple[dt.datetime | None, dt.datetime | None] | None
) -> DecisionReach:
    start, stop = champion_window or (None, None)
    since = end - dt.timedelta(days=spec.longest_window_days)
    return DecisionReach(end, since, (start, stop) if start is not None and stop is not None else None)


_CHANGE = frozenset({RetrainReason.DECAY.value, RetrainReason.DRIFT.value})


def unsettled_change(
    decisions: list[DecisionMark],
    *,
    champion_window: tuple[dt.datetime | None, dt.datetime | None],
    window_start: dt.datetime,
    window: dt.timedelta,
) -> dt.datetime | None:
    """The start of the change a champion answered, when its window straddles it and the current one no longer does.

    A champion promoted by a retrain that decay or drift triggered was fitted on a window that still held rows
    from before the change (at first it has to be: the new concept is only an interval old). The change is
    dated by the first of the consecutive decay/drift-triggered decisions leading to that promotion. Once the
    current window starts at or after it, one retrain on rows of the new concept alone is due, unless a retrain
    since the champion already ran on such a window (its outcome, promoted or not, settles the change).
    """
    start, end = champion_window
    if start is None or end is None:
        return None
    ordered = sorted(decisions, key=lambda d: d.interval_end)
    at = next((i for i, d in enumerate(ordered) if d.interval_end == end and d.retrain), None)
    if at is None or ordered[at].reason not in _CHANGE:
        return None
    change = ordered[at].interval_start
    for earlier in reversed(ordered[:at]):
        if not (earlier.retrain and earlier.reason in _CHANGE):
            break
        change = earlier.interval_start
    if start >= change or window_start < change:
        return None
    if any(d.retrain and d.interval_end > end and d.interval_end - window >= change for d in ordered):
        return None
    return change


# where a window may start: labels showed a change (the champion decayed) and a retrain answered it, or the
# first champion was trained. Drift alone does not restart it: moved inputs (a season) need not mean old rows
# have become wrong, and when they have, the labels show it.
_ANCHORS = frozenset({RetrainReason.DECAY.value, RetrainReason.NO_CHAMPION.value})


def _anchor(spec: ModelSpec, decision: DecisionMark, end: dt.datetime) -> dt.datetime | None:
    if not decision.retrain:
        return None
    if decision.shortened_to is not None and decision.interval_end < end:
        return decision.shortened_to  # the older rows misled its fit: the window restarts where it did
    if decision.reason in _ANCHORS:
        return decision.interval_start
    if decision.reason == RetrainReason.SETTLED.value:  # it trains on rows since the change alone (`unsettled_change`)
        return decision.interval_end - dt.timedelta(days=spec.window_days)
    return None


def training_span(
    spec: ModelSpec, decisions: list[DecisionMark], end: dt.datetime, *, window_days: int | None = None
) -> Interval:
    """The rows a retrain ending at `end` trains on: `window_days`, grown while no change has been detected.

    The window reaches back to the start of the newest interval whose decay triggered a retrain (or that
    trained the first champion), so it never mixes in rows from before a change the labels showed; a retrain
    that settled a change restarts it at its own `window_days`, which hold only rows since the change, and an
    earlier retrain whose window `choose_window` shortened restarts it where that window started. It is at
    least `window_days` and at most `longest_window_days` long. Decisions ending after `end` are ignored. An
    explicit `window_days` (the retrain DAG's param) fixes the window instead.
    """
    if window_days is not None:
        return training_window(spec, end, window_days)
    short = end - dt.timedelta(days=spec.window_days)
    start = end - dt.timedelta(days=spec.longest_window_days)
    anchors = [a for d in decisions if d.interval_end <= end and (a := _anchor(spec, d, end)) is not None]
    if anchors:
        start = max(start, *anchors)
    return Interval(min(start, short), end)


def shorter_window(spec: ModelSpec, decisions: list[DecisionMark], end: dt.datetime) -> Interval | None:
    """The shorter window a retrain ending at `end` weighs against `training_span`'s (`choose_window`), if any.

    - After a decay-triggered retrain the window keeps `window_days`, so for a while it still holds rows from
      before the change. Once the rows since the start of that decay interval span at least half of
      `window_days` (and until they fill it), they are the candidate.
    - A window grown past `window_days` (no change seen) is weighed against its last `window_days`: a slow
      change the labels cannot prove yet makes the older rows mislead too.

    None otherwise: the window is `window_days` and holds no change.
    """
    whole = dt.timedelta(days=spec.window_days)
    marks = [(a, d.reason) for d in decisions if d.interval_end <= end and (a := _anchor(spec, d, end)) is not None]
    if marks:
        since, reason = max(marks)
        if reason == RetrainReason.DECAY.value and end - whole < since <= end - whole / 2:
            return Interval(since, end)
    span = training_span(spec, decisions, end)
    return training_window(spec, end) if span.end - span.start > whole else None


@dataclass(frozen=True)
class WindowChoice:
    """The window a retrain trains on: `training_span`'s, or a shorter one (`choose_window`)."""

    span: Interval
    detail: str


def choose_window(spec: ModelSpec, frame: pd.DataFrame, span: Interval, shorter: Interval | None) -> WindowChoice:
    """Train on the shorter window only if it fits the newest rows clearly better than the whole one.

    Both candidates are fitted without the newest `holdout_fraction` of the shorter window's rows and scored
    there with the primary metric; the shorter window is chosen when it is ahead by more than the spec's
    `non_inferiority_margin` (else `min_improvement`), so a tie keeps the rows. Seasons move the labels
    without making older rows wrong, and then the whole window is kept; a change makes the older rows
    mislead, and the shorter window wins plainly. `frame` holds the rows of `span`, sorted by time.
    """
    from modelgate.evaluation import metric
    from modelgate.training import TrainingError

    if shorter is None:
        return WindowChoice(span, "")
    evaluation = spec.evaluation
    labelled = frame.dropna(subset=[spec.target]).reset_index(drop=True)
    recent_rows = labelled[labelled[spec.time_column] >= shorter.start]
    holdout = split_holdout(spec, recent_rows)[1] if len(recent_rows) > 1 else recent_rows
    if len(holdout) < spec.retrain.decay_min_rows:
        return WindowChoice(
            span, f"kept the whole window: {len(recent_rows)} labelled rows since {shorter.start:%Y-%m-%d}"
        )
    y = target_values(spec, holdout)
    scores = []
    for rows in (labelled.iloc[: len(labelled) - len(holdout)], recent_rows.iloc[: len(recent_rows) - len(holdout)]):
        try:
            model = train(spec, rows).pipeline
        except TrainingError as exc:
            return WindowChoice(span, f"kept the whole window: {exc}")
        scores.append(metric(evaluation.primary_metric, y, predict_scores(spec, model, holdout)))
    whole, recent = scores
    if not (math.isfinite(whole) and math.isfinite(recent)):
        return WindowChoice(span, "kept the whole window: the newest rows cannot score both")
    margin = evaluation.non_inferiority_margin
    margin = evaluation.min_improvement if margin is None else margin
    ahead = recent - whole if evaluation.higher_is_better else whole - recent
    compared = (
        f"{evaluation.primary_metric} on the newest {len(holdout)} rows: {recent:.4f} trained since "
        f"{shorter.start:%Y-%m-%d %H:%M}, {whole:.4f} since {span.start:%Y-%m-%d %H:%M}; margin {margin:g}"
    )
    if ahead > margin:
        return WindowChoice(shorter, f"the rows since {shorter.start:%Y-%m-%d %H:%M} alone ({compared})")
    return WindowChoice(span, f"kept the whole window ({compared})")


def window_growth(
    spec: ModelSpec,
    span: Interval,
    frame: pd.DataFrame,
    *,
    trained_rows: int | None,
    trained_end: dt.datetime | None,
    lost: bool = False,
) -> WindowGrowth | None:
    """The `window_grown` trigger's input: the rows of `span` (from `training_span`) against the newest model's.

    `lost` comes from `growth_lost`: the newest model was a grown-window challenger that lost.

    None while the window is no longer than `window_days` (nothing has grown), when it holds no rows, or when
    the newest model trained has no row count or window end (registered from outside the loop).
    """
    if span.end - span.start <= dt.timedelta(days=spec.window_days) or frame.empty:
        return None
    if not trained_rows or trained_end is None:
        return None
    return WindowGrowth(
        window_rows=len(frame),
        trained_rows=trained_rows,
        rows_since_trained=int((frame[spec.time_column] >= trained_end).sum()),
        full=span.end - span.start >= dt.timedelta(days=spec.longest_window_days),
        lost=lost,
    )


def growth_lost(decisions: list[DecisionMark], *, newest_rejected: bool) -> bool:
    """Whether the newest model trained was a challenger the window's growth asked for, and it lost.

    `decisions` are the earlier intervals' (newest last); the last one that retrained trained the newest model.
    `newest_rejected`: that model is not the champion and its verdict rejected it (not one waiting for approval).
    """
    last = next((d for d in reversed(decisions) if d.retrain), None)
    grew = {RetrainReason.GROWN.value, RetrainReason.SLID.value}  # `window_slid`: recorded by earlier versions
    return newest_rejected and last is not None and last.reason in grew
