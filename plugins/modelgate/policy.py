"""The two decisions of the loop, as pure functions of typed inputs: no I/O, no clock, no randomness.

`decide_retrain` gives exactly one recorded reason; `decide_promotion` fails closed: no thresholds means no
promotion, a missing number means no promotion, and every check it ran is in the verdict.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modelgate.spec import HIGHER_IS_BETTER, Retrain
from modelgate.spec import Evaluation as EvaluationPolicy

WINDOW_GROWTH = 2.0  # a window holding this many times the champion's rows (no change since) retrains


class RetrainReason(enum.StrEnum):
    FORCED = "forced"
    NO_CHAMPION = "no_champion"
    DRIFT = "drift"
    DECAY = "performance_decay"
    MISCALIBRATED = "champion_miscalibrated"  # its predicted rate of positives no longer matches the labels
    SETTLED = "change_settled"
    STALENESS = "champion_stale"
    GROWN = "window_grown"
    SLID = "window_slid"  # recorded by earlier versions (a window at max_window_days slid); no longer decided
    NEW_DATA = "new_data"
    SKIP = "no_trigger"
    DEFERRED = "deferred"  # a drift-triggered run ahead of its interval's predecessor: the schedule decides it


@dataclass(frozen=True)
class DecayEvidence:
    """The champion on labelled rows since `since` against its own holdout score when it was trained.

    `bound` is the one-sided bootstrap bound of `observed` at level `alpha` on the champion's side (the upper
    bound when higher is better): the champion has decayed only if even that bound is past the tolerated drop.
    """

    metric: str
    reference: float
    observed: float
    bound: float
    rows: int
    higher_is_better: bool
    since: dt.datetime
    alpha: float

    def limit(self, tolerance: float) -> float:
        return self.reference * (1 - tolerance) if self.higher_is_better else self.reference * (1 + tolerance)

    def decayed(self, tolerance: float) -> bool:
        limit = self.limit(tolerance)
        return self.bound < limit if self.higher_is_better else self.bound > limit


@dataclass(frozen=True)
class CalibrationLook:
    """The champion's mean predicted probability against the observed rate on the labelled rows from `since`.

    `z` is how far the gap is past the tolerance, in standard errors of the observed rate under a calibrated
    champion (the square root of the sum of p(1 - p), over the rows): positive when the labels run above the
    predictions by more than the tolerance, negative when below by more than it, 0 within it.
    """

    since: dt.datetime
    rows: int
    observed: float
    predicted: float
    z: float


@dataclass(frozen=True)
class CalibrationEvidence:
    """Whether the champion's predicted rate of positives has moved off the labels (`loop.calibration_evidence`).

    A ranking metric (ROC AUC) cannot see this: the order of the scores may hold while the base rate moves,
    and every prediction near the threshold is then on the wrong side. A fresher model fixes it. Two looks,
    the rows since the champion's window end and the newest interval's alone, must both put the gap past
    `tolerance` (a fraction of the rarer class's predicted rate) in the same direction, each at one-sided
    level `alpha`: an intersection-union test, so its level is `alpha` without a correction, and a rate that
    swings back and forth from one interval to the next (weather delaying flights one week, not the next) is
    not a shift a retrain could follow.
    """

    looks: tuple[CalibrationLook, ...]
    tolerance: float
    critical: float  # the one-sided normal quantile at 1 - alpha
    alpha: float

    def shifted(self) -> bool:
        if len(self.looks) < 2:
            return False
        signs = {math.copysign(1, look.z) for look in self.looks if look.z}
        return len(signs) == 1 and all(abs(look.z) > self.critical for look in self.looks)

    def describe(self) -> str:
        newest, since = self.looks[-1], self.looks[0]
        return (
            f"champion predicts {newest.predicted:.3f} positives on the newest {newest.rows} labelled rows, which "
            f"have {newest.observed:.3f} ({since.predicted:.3f} against {since.observed:.3f} on the {since.rows} "
            f"since {since.since:%Y-%m-%d %H:%M}): both past the tolerance {self.tolerance:.3f}, one-sided level "
            f"{self.alpha:g}"
        )


@dataclass(frozen=True)
class WindowGrowth:
    """The training window grown since the last change, against the newest model trained (`loop.window_growth`).

    That model is the champion, or a challenger trained after it (rejected or waiting): a rejected challenger
    is not trained again until the window has outgrown it too. A grown window has to keep winning: once a
    challenger trained because the window grew loses to the champion (`lost`), growth retrains no more until
    a change (drift, decay, miscalibration, staleness) retrains for another reason. At `max_window_days` the
    window only slides, and sliding alone retrains nothing: a slid window holds as many rows as the champion's,
    only newer, and what newer rows fix the label triggers see (on every stream of the policy bench, no
    challenger trained because the capped window slid ever beat its champion, so those retrains were pure cost).
    """

    window_rows: int  # rows in the window a retrain would use now (`loop.training_span`)
    trained_rows: int  # rows the newest model was trained on
    rows_since_trained: int  # rows of the window newer than that model's
    full: bool  # the window spans `max_window_days`: it can only slide now, and sliding retrains nothing
    lost: bool = False  # the newest model was a `window_grown` challenger that the champion beat (`loop.growth_lost`)

    def outgrown(self) -> tuple[RetrainReason, str] | None:
        """Why a model trained on this window would see enough more rows to retrain, or None.

        `window_grown` when it holds twice the newest model's rows (never past `max_window_days`).
        """
        grown, trained, newer = self.window_rows, self.trained_rows, self.rows_since_trained
        if not (trained and newer):  # nothing newer than the newest model: nothing to learn
            return None
        if self.lost:  # the last grown window did not beat the champion: more of the same rows won't either
            return None
        if grown >= WINDOW_GROWTH * trained:
            return RetrainReason.GROWN, (
                f"the window since the last change holds {grown} rows, {grown / trained:.1f}x the {trained} the "
                "newest model was trained on"
            )
        return None


@dataclass(frozen=True)
class RetrainInputs:
    """What the retrain decision looks at, gathered by the DAG before calling `decide_retrain`."""

    force: bool
    has_champion: bool
    champion_age_days: float | None = None  # since the champion was last measured: trained, or re-scored
    drift_flags: Sequence[bool] = ()  # newest last, one per monitor run
    champion_performance: float | None = None  # the champion re-scored on labelled recent rows
    new_rows: int | None = None  # rows since the champion's training window ended
    decay: DecayEvidence | None = None  # the champion on labelled rows it has not seen (`loop.decay_evidence`)
    calibration: CalibrationEvidence | None = (
        None  # its predicted rate against the labels (`loop.calibration_evidence`)
    )
    unsettled_change: dt.datetime | None = None  # see `loop.unsettled_change`
    growth: WindowGrowth | None = None  # None while the window is fixed (not longer than `window_days`)


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: RetrainReason
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"retrain": self.retrain, "reason": self.reason.value, "detail": self.detail}


def decide_retrain(policy: Retrain, inputs: RetrainInputs) -> RetrainDecision:
    """First matching trigger wins, in a fixed order, so a run records exactly one reason.

    Labels beat proxies: a measured decay of the champion comes before drift, which only suggests one.
    """
    if inputs.force:
        return RetrainDecision(True, RetrainReason.FORCED, "forced by the `force` param")
    if not inputs.has_champion:
        return RetrainDecision(True, RetrainReason.NO_CHAMPION, "the model has no champion yet")
    decay = inputs.decay
    if decay is not None and policy.decay_tolerance is not None and decay.rows >= policy.decay_min_rows:
        if decay.decayed(policy.decay_tolerance):
            side = "upper" if decay.higher_is_better else "lower"
            return RetrainDecision(
                True,
                RetrainReason.DECAY,
                f"champion {decay.metric} {decay.observed:.4f} on the {decay.rows} labelled rows since "
                f"{decay.since:%Y-%m-%d %H:%M} ({(1 - decay.alpha) * 100:g}% {side} bound {decay.bound:.4f}) is past "
                f"{decay.limit(policy.decay_tolerance):.4f}, {policy.decay_tolerance:g} below its holdout "
                f"score {decay.reference:.4f}",
            )
    calibration = inputs.calibration
    if policy.calibration_check and calibration is not None and calibration.shifted():
        return RetrainDecision(True, RetrainReason.MISCALIBRATED, calibration.describe())
    recent = list(inputs.drift_flags)[-policy.drift_runs_n :]
    drifted = sum(1 for flag in recent if flag)
    if drifted >= policy.drift_runs_k:
        return RetrainDecision(
            True,
            RetrainReason.DRIFT,
            f"drift in {drifted} of the last {len(recent)} monitor runs (trigger: {policy.drift_runs_k} of "
            f"{policy.drift_runs_n})",
        )
    if policy.settle_after_change and inputs.unsettled_change is not None:
        return RetrainDecision(
            True,
            RetrainReason.SETTLED,
            f"the champion answered a change first seen in the interval from {inputs.unsettled_change:%Y-%m-%d %H:%M}"
            " but was trained partly on rows from before it; the window now holds only rows since then",
        )
    if policy.performance_metric and policy.performance_threshold is not None:
        value = inputs.champion_performance
        if value is not None and math.isfinite(value):
            worse = (
                value < policy.performance_threshold
                if HIGHER_IS_BETTER[policy.performance_metric]
                else value > policy.performance_threshold
            )
            if worse:
                return RetrainDecision(
                    True,
                    RetrainReason.DECAY,
                    f"champion {policy.performance_metric} {value:.4f} on recent labelled rows is past its "
                    f"threshold {policy.performance_threshold}",
                )
    if policy.max_age_days is not None and inputs.champion_age_days is not None:
        if inputs.champion_age_days > policy.max_age_days:
            return RetrainDecision(
                True,
                RetrainReason.STALENESS,
                f"champion is {inputs.champion_age_days:.1f} days old (max {policy.max_age_days})",
            )
    outgrown = inputs.growth.outgrown() if inputs.growth is not None else None
    if outgrown is not None:
        return RetrainDecision(True, *outgrown)
    if policy.new_rows_threshold is not None and inputs.new_rows is not None:
        if inputs.new_rows >= policy.new_rows_threshold:
            return RetrainDecision(
                True,
                RetrainReason.NEW_DATA,
                f"{inputs.new_rows} new rows since the champion's window (threshold {policy.new_rows_threshold})",
            )
    return RetrainDecision(
        False,
        RetrainReason.SKIP,
        f"no trigger: drift in {drifted} of the last {len(recent)} runs, champion healthy",
    )


@dataclass(frozen=True)
class MetricComparison:
    """One metric for both models on the same holdout; `ci_*` is the paired bootstrap CI of the difference."""

    metric: str
    champion: float | None
    challenger: float
    higher_is_better: bool
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    test: str | None = None

    @property
    def improvement(self) -> float | None:
        """Positive when the challenger is better, whatever the metric's direction."""
        if self.champion is None:
            return None
        diff = self.challenger - self.champion
        return diff if self.higher_is_better else -diff


@dataclass(frozen=True)
class SliceComparison:
    column: str
    value: str
    rows: int
    champion: float | None
    challenger: float | None
    higher_is_better: bool
    metric: str | None = None  # None: the primary metric on the slice's rows; else this one (a class's F1)

    @property
    def improvement(self) -> float | None:
        if self.champion is None or self.challenger is None:
            return None
        diff = self.challenger - self.champion
        return diff if self.higher_is_better else -diff


@dataclass(frozen=True)
class EvaluationResult:
    """Both models scored now on the same holdout (the champion re-scored, never trusted from storage)."""

    champion_version: int | None
    challenger_version: int
    holdout_rows: int
    primary: MetricComparison
    metrics: dict[str, MetricComparison]
    slices: list[SliceComparison] = field(default_factory=list)
    baseline: str | None = None  # with no champion: the trivial model on the champion's side ("class prior 0.27")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    champion_version: int | None
    challenger_version: int
    checks: list[Check]
    evaluation: EvaluationResult

    def as_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["decision"] = "promote" if self.promote else "reject"
        return payload


def champion_doubt(reason: RetrainReason | str) -> str | None:
    """Why the retrain's own trigger already counts against the champion, or None when it does not.

    Measured decay (labels), a predicted rate the labels have moved off, calibrated drift of the inputs away
    from the champion's training rows, and a change the champion's window straddles are evidence against the
    champion itself; staleness and new data
    only suggest looking. With such evidence a challenger fitted on newer rows need not win significantly,
    only be non-inferior (see `decide_promotion`): the rows it was fitted on are closer to what it will serve.
    A grown window is the same kind of reason: the window holds at least twice the rows of the concept the
    champion serves, and the challenger was fitted on all of it or on the part that fits the newest rows
    better (`loop.choose_window`), so a tie goes to the better-informed model.
    """
    return {
        RetrainReason.DECAY.value: "the champion has measurably decayed",
        RetrainReason.MISCALIBRATED.value: "the champion's predicted rate has moved off the labels",
        RetrainReason.DRIFT.value: "the inputs drifted from the champion's training rows",
        RetrainReason.SETTLED.value: "the champion was trained across a change",
        RetrainReason.GROWN.value: "the window outgrew the champion's, with no change in it",
    }.get(str(reason))


def decide_promotion(evaluation: EvaluationResult, policy: EvaluationPolicy, *, doubt: str | None = None) -> Verdict:
    """Fail closed: the challenger is blessed only if every configured check passes and at least one exists.

    `doubt` (from `champion_doubt`) relaxes only the primary check, to non-inferiority within
    `policy.non_inferiority_margin`; guardrails, slices and absolute thresholds still apply.
    """
    checks: list[Check] = []
    if evaluation.champion_version is None and evaluation.baseline is not None:
        # a first champion must beat a trivial model significantly (and meet any absolute thresholds)
        checks.append(_primary_check(evaluation.primary, policy, against=evaluation.baseline))
        checks.extend(_absolute_checks(evaluation, policy))
    elif evaluation.champion_version is None:
        checks.extend(_absolute_checks(evaluation, policy))
        if not policy.absolute_thresholds:
            checks.append(Check("thresholds", False, "no champion, no baseline and no absolute thresholds configured"))
    else:
        if doubt is not None and policy.non_inferiority_margin is not None:
            checks.append(_non_inferiority_check(evaluation.primary, policy, policy.non_inferiority_margin, doubt))
        else:
            checks.append(_primary_check(evaluation.primary, policy))
        checks.extend(_guardrail_checks(evaluation, policy))
        checks.extend(_slice_checks(evaluation, policy))
        checks.extend(_absolute_checks(evaluation, policy))
    failed = [c for c in checks if not c.passed]
    promote = bool(checks) and not failed
    if promote:
        reason = "; ".join(c.detail for c in checks)
    elif failed:
        reason = "; ".join(c.detail for c in failed)
    else:
        reason = "no checks configured: refusing to promote"
    return Verdict(promote, reason, evaluation.champion_version, evaluation.challenger_version, checks, evaluation)


INSUFFICIENT_EVIDENCE = "insufficient_evidence"


def insufficient_evidence(
    metric: str,
    higher_is_better: bool,
    *,
    champion_version: int | None,
    challenger_version: int,
    rows: int,
    needed: int,
    since: dt.datetime,
    single_class: bool = False,
) -> Verdict:
    """Too few holdout rows that neither model was fitted on: not promoted, and no comparison is pretended.

    Rows before `since` (the newer of the two models' window ends) were fitted on by one of them; scoring
    a refit champion there favours it. More rows accumulate with every interval the champion serves.
    """
    why = "they hold one class only" if single_class else f"at least {needed} are needed"
    detail = (
        f"{INSUFFICIENT_EVIDENCE}: {rows} holdout rows since {since:%Y-%m-%d %H:%M} (the newer model's window end), "
        f"and {why}; not comparing on rows a model was fitted on"
    )
    primary = MetricComparison(metric, None, math.nan, higher_is_better)
    evaluation = EvaluationResult(champion_version, challenger_version, rows, primary, {metric: primary})
    return Verdict(False, detail, champion_version, challenger_version, [Check("evidence", False, detail)], evaluation)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _primary_check(primary: MetricComparison, policy: EvaluationPolicy, *, against: str | None = None) -> Check:
    """Against the champion, or (`against`) against a trivial baseline when there is no champion."""
    name = "primary" if against is None else "baseline"
    improvement = primary.improvement
    if improvement is None or not math.isfinite(improvement) or primary.ci_low is None or primary.ci_high is None:
        return Check(name, False, f"{primary.metric}: no paired comparison available")
    # Orient the CI so that positive means "challenger better".
    low, high = (primary.ci_low, primary.ci_high) if primary.higher_is_better else (-primary.ci_high, -primary.ci_low)
    level = f"{(1 - policy.significance_level) * 100:g}%"
    versus = "" if against is None else f" vs {against}"
    head = (
        f"{primary.metric} {_fmt(primary.champion)} -> {_fmt(primary.challenger)}{versus} "
        f"(improvement {improvement:+.4f}, {level} CI [{low:+.4f}, {high:+.4f}])"
    )
    if improvement < policy.min_improvement:
        return Check(name, False, f"{head} is below the minimum improvement {policy.min_improvement}")
    if primary.p_value is not None:
        if primary.p_value >= policy.significance_level:
            return Check(name, False, f"{head}: {primary.test} p={primary.p_value:.4g} not significant")
        return Check(name, True, f"{head}: {primary.test} p={primary.p_value:.4g}")
    if low <= 0:
        return Check(name, False, f"{head}: the interval includes zero")
    return Check(name, True, head)


def _non_inferiority_check(primary: MetricComparison, policy: EvaluationPolicy, margin: float, doubt: str) -> Check:
    """The challenger at most `margin` below the champion, and not significantly worse."""
    improvement = primary.improvement
    if improvement is None or not math.isfinite(improvement) or primary.ci_low is None or primary.ci_high is None:
        return Check("primary", False, f"{primary.metric}: no paired comparison available")
    low, high = (primary.ci_low, primary.ci_high) if primary.higher_is_better else (-primary.ci_high, -primary.ci_low)
    level = f"{(1 - policy.significance_level) * 100:g}%"
    head = (
        f"{primary.metric} {_fmt(primary.champion)} -> {_fmt(primary.challenger)} "
        f"(improvement {improvement:+.4f}, {level} CI [{low:+.4f}, {high:+.4f}]; non-inferiority, since {doubt})"
    )
    if improvement < -margin:
        return Check("primary", False, f"{head} is more than the margin {margin} worse")
    worse = primary.p_value < policy.significance_level and improvement < 0 if primary.p_value is not None else high < 0
    if worse:
        return Check("primary", False, f"{head}: significantly worse")
    return Check("primary", True, head)


def _guardrail_checks(evaluation: EvaluationResult, policy: EvaluationPolicy) -> list[Check]:
    checks = []
    for guardrail in policy.guardrails:
        comparison = evaluation.metrics.get(guardrail.metric)
        improvement = None if comparison is None else comparison.improvement
        if improvement is None or not math.isfinite(improvement):
            checks.append(Check(f"guardrail:{guardrail.metric}", False, f"{guardrail.metric}: not measured"))
            continue
        ok = improvement >= -guardrail.tolerance
        detail = (
            f"guardrail {guardrail.metric} {_fmt(comparison.champion if comparison else None)} -> "
            f"{_fmt(comparison.challenger if comparison else None)} "
            f"({'within' if ok else 'worse than'} tolerance {guardrail.tolerance})"
        )
        checks.append(Check(f"guardrail:{guardrail.metric}", ok, detail))
    return checks


def _slice_checks(evaluation: EvaluationResult, policy: EvaluationPolicy) -> list[Check]:
    checks = []
    for spec in policy.slices:
        rows = [s for s in evaluation.slices if s.column == spec.column and s.rows >= spec.min_rows]
        worst = [s for s in rows if s.improvement is not None and s.improvement < -spec.tolerance]
        if worst:
            names = ", ".join(f"{s.column}={s.value} ({s.improvement:+.4f})" for s in worst)
            checks.append(
                Check(f"slice:{spec.column}", False, f"slices worse than tolerance {spec.tolerance}: {names}")
            )
        else:
            checks.append(
                Check(f"slice:{spec.column}", True, f"no {spec.column} slice worse than {spec.tolerance} ({len(rows)})")
            )
    return checks


def _absolute_checks(evaluation: EvaluationResult, policy: EvaluationPolicy) -> list[Check]:
    checks = []
    for metric, threshold in sorted(policy.absolute_thresholds.items()):
        comparison = evaluation.metrics.get(metric)
        value = None if comparison is None else comparison.challenger
        if value is None or not math.isfinite(value):
            checks.append(Check(f"threshold:{metric}", False, f"{metric} not measured"))
            continue
        higher = HIGHER_IS_BETTER[metric]
        ok = value >= threshold if higher else value <= threshold
        sign = ">=" if higher else "<="
        checks.append(
            Check(f"threshold:{metric}", ok, f"{metric} {_fmt(value)} {'meets' if ok else 'misses'} {sign} {threshold}")
        )
    return checks
