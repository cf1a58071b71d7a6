"""The two pure decisions: the retrain decision table and the fail-closed promotion policy."""

from __future__ import annotations

import datetime as dt

import pytest

from modelgate.policy import (
    CalibrationEvidence,
    CalibrationLook,
    DecayEvidence,
    EvaluationResult,
    MetricComparison,
    RetrainInputs,
    RetrainReason,
    SliceComparison,
    WindowGrowth,
    decide_promotion,
    decide_retrain,
)
from modelgate.spec import Evaluation, Guardrail, Retrain, SliceSpec

POLICY = Retrain(
    drift_runs_k=2,
    drift_runs_n=3,
    performance_metric="roc_auc",
    performance_threshold=0.7,
    max_age_days=30,
    new_rows_threshold=1000,
)


def _held(
    window: int,
    trained: int,
    since: int,
    *,
    full: bool = False,
    lost: bool = False,
    age: float | None = None,
    drift: list[bool] | None = None,
) -> RetrainInputs:
    """A champion in place and nothing forced, with a window grown to `window` rows against `trained`."""
    return RetrainInputs(
        force=False,
        has_champion=True,
        champion_age_days=age,
        drift_flags=drift or [],
        growth=WindowGrowth(window_rows=window, trained_rows=trained, rows_since_trained=since, full=full, lost=lost),
    )


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        (RetrainInputs(force=True, has_champion=True, drift_flags=[True, True]), RetrainReason.FORCED),
        (RetrainInputs(force=False, has_champion=False), RetrainReason.NO_CHAMPION),
        (RetrainInputs(force=False, has_champion=True, drift_flags=[True, False, True]), RetrainReason.DRIFT),
        (RetrainInputs(force=False, has_champion=True, drift_flags=[True, True, False, False]), RetrainReason.SKIP),
        (RetrainInputs(force=False, has_champion=True, champion_performance=0.65), RetrainReason.DECAY),
        (
            RetrainInputs(force=False, has_champion=True, champion_performance=0.75, champion_age_days=31),
            RetrainReason.STALENESS,
        ),
        (RetrainInputs(force=False, has_champion=True, champion_age_days=10, new_rows=1000), RetrainReason.NEW_DATA),
        (RetrainInputs(force=False, has_champion=True, champion_age_days=10, new_rows=999), RetrainReason.SKIP),
        (RetrainInputs(force=False, has_champion=True, champion_performance=float("nan")), RetrainReason.SKIP),
        (
            RetrainInputs(force=False, has_champion=True, unsettled_change=dt.datetime(2024, 3, 3, tzinfo=dt.UTC)),
            RetrainReason.SETTLED,
        ),
        (
            RetrainInputs(
                force=False,
                has_champion=True,
                drift_flags=[True, True],
                unsettled_change=dt.datetime(2024, 3, 3, tzinfo=dt.UTC),
            ),
            RetrainReason.DRIFT,
        ),
        (_held(2000, 1000, 300, age=10), RetrainReason.GROWN),
        (  # a re-run of the interval the newest model was trained on: no newer rows, nothing to learn
            _held(2000, 1000, 0),
            RetrainReason.SKIP,
        ),
        (_held(1999, 1000, 300, age=10), RetrainReason.SKIP),
        (  # at max_window_days the window only slides: however much of it is newer, that alone retrains nothing
            _held(900, 900, 900, full=True),
            RetrainReason.SKIP,
        ),
        (_held(900, 900, 450, full=True, age=10), RetrainReason.SKIP),
        (  # the last grown window lost to the champion: growth stops
            _held(2000, 1000, 300, lost=True),
            RetrainReason.SKIP,
        ),
        (_held(900, 900, 900, full=True, lost=True), RetrainReason.SKIP),
        (  # a change still retrains after a lost growth
            _held(900, 900, 900, full=True, lost=True, drift=[True, True]),
            RetrainReason.DRIFT,
        ),
        (_held(2000, 100, 300, lost=True, age=31), RetrainReason.STALENESS),
        (  # not at the cap yet: only doubling counts
            _held(900, 900, 800),
            RetrainReason.SKIP,
        ),
        (  # a model trained on no rows never counts as outgrown
            _held(5000, 0, 300),
            RetrainReason.SKIP,
        ),
        (  # staleness is the older rule and keeps its place before growth
            _held(2000, 100, 300, age=31),
            RetrainReason.STALENESS,
        ),
        (
            _held(9000, 10, 300, drift=[True, True]),
            RetrainReason.DRIFT,
        ),
    ],
)
def test_retrain_decision_table(inputs: RetrainInputs, reason: RetrainReason) -> None:
    decision = decide_retrain(POLICY, inputs)
    assert decision.reason is reason
    assert decision.retrain is (reason is not RetrainReason.SKIP)
    assert decision.detail


def test_settling_a_change_can_be_turned_off() -> None:
    inputs = RetrainInputs(force=False, has_champion=True, unsettled_change=dt.datetime(2024, 3, 3, tzinfo=dt.UTC))
    assert decide_retrain(Retrain(settle_after_change=False), inputs).reason is RetrainReason.SKIP
    assert "2024-03-03" in decide_retrain(Retrain(), inputs).detail


def test_retrain_detail_explains_drift_window() -> None:
    decision = decide_retrain(POLICY, RetrainInputs(force=False, has_champion=True, drift_flags=[True, True]))
    assert decision.detail == "drift in 2 of the last 2 monitor runs (trigger: 2 of 3)"


def test_lower_is_better_performance_metric() -> None:
    policy = Retrain(performance_metric="log_loss", performance_threshold=0.5)
    assert decide_retrain(policy, RetrainInputs(False, True, champion_performance=0.6)).reason is RetrainReason.DECAY
    assert decide_retrain(policy, RetrainInputs(False, True, champion_performance=0.4)).reason is RetrainReason.SKIP


def _primary(
    champion: float | None,
    challenger: float,
    ci: tuple[float, float] | None = (0.01, 0.05),
    metric: str = "roc_auc",
    higher: bool = True,
    p_value: float | None = None,
) -> MetricComparison:
    low, high = ci if ci else (None, None)
    return MetricComparison(metric, champion, challenger, higher, low, high, p_value, "paired bootstrap")


def _evaluation(primary: MetricComparison, *, champion: int | None = 1, extra=(), slices=()) -> EvaluationResult:
    metrics = {primary.metric: primary, **{m.metric: m for m in extra}}
    return EvaluationResult(champion, 2, 1000, primary, metrics, list(slices))


POLICY_EVAL = Evaluation(
    primary_metric="roc_auc",
    min_improvement=0.01,
    guardrails=[Guardrail(metric="brier", tolerance=0.01)],
    slices=[SliceSpec(column="contract", tolerance=0.02, min_rows=50)],
)


def test_clear_win_is_promoted_with_every_check_recorded() -> None:
    verdict = decide_promotion(
        _evaluation(_primary(0.80, 0.83), extra=[MetricComparison("brier", 0.20, 0.19, False)]), POLICY_EVAL
    )
    assert verdict.promote
    assert [c.name for c in verdict.checks] == ["primary", "guardrail:brier", "slice:contract"]
    assert verdict.as_dict()["decision"] == "promote"


def test_interval_including_zero_is_not_significant() -> None:
    verdict = decide_promotion(
        _evaluation(_primary(0.80, 0.83, ci=(-0.001, 0.05)), extra=[MetricComparison("brier", 0.2, 0.2, False)]),
        POLICY_EVAL,
    )
    assert not verdict.promote and "the interval includes zero" in verdict.reason


def test_tie_and_small_gain_are_rejected() -> None:
    tie = decide_promotion(_evaluation(_primary(0.80, 0.80, ci=(-0.01, 0.01))), POLICY_EVAL)
    small = decide_promotion(_evaluation(_primary(0.80, 0.805, ci=(0.001, 0.009))), POLICY_EVAL)
    assert not tie.promote and not small.promote
    assert "below the minimum improvement 0.01" in small.reason


def test_guardrail_regression_blocks_promotion() -> None:
    verdict = decide_promotion(
        _evaluation(_primary(0.80, 0.85), extra=[MetricComparison("brier", 0.20, 0.22, False)]), POLICY_EVAL
    )
    assert not verdict.promote and "guardrail brier 0.2000 -> 0.2200 (worse than tolerance 0.01)" in verdict.reason


def test_missing_guardrail_metric_fails_closed() -> None:
    verdict = decide_promotion(_evaluation(_primary(0.80, 0.85)), POLICY_EVAL)
    assert not verdict.promote and "brier: not measured" in verdict.reason


def test_slice_regression_blocks_promotion_but_small_slices_are_ignored() -> None:
    slices = [
        SliceComparison("contract", "two-year", 400, 0.80, 0.75, True),
        SliceComparison("contract", "tiny", 10, 0.90, 0.10, True),
    ]
    verdict = decide_promotion(
        _evaluation(_primary(0.80, 0.85), extra=[MetricComparison("brier", 0.2, 0.2, False)], slices=slices),
        POLICY_EVAL,
    )
    assert not verdict.promote and "contract=two-year (-0.0500)" in verdict.reason and "tiny" not in verdict.reason


def test_no_champion_uses_absolute_thresholds_only() -> None:
    policy = Evaluation(primary_metric="roc_auc", absolute_thresholds={"roc_auc": 0.7})
    passing = decide_promotion(_evaluation(_primary(None, 0.75, ci=None), champion=None), policy)
    failing = decide_promotion(_evaluation(_primary(None, 0.65, ci=None), champion=None), policy)
    assert passing.promote and passing.champion_version is None
    assert not failing.promote and "roc_auc 0.6500 misses >= 0.7" in failing.reason


def test_no_champion_and_no_thresholds_never_promotes() -> None:
    verdict = decide_promotion(_evaluation(_primary(None, 0.99, ci=None), champion=None), Evaluation())
    assert not verdict.promote and "no champion, no baseline and no absolute thresholds configured" in verdict.reason


def test_missing_interval_fails_closed() -> None:
    verdict = decide_promotion(_evaluation(_primary(0.80, 0.90, ci=None)), Evaluation())
    assert not verdict.promote and "no paired comparison available" in verdict.reason


def test_lower_is_better_primary_metric() -> None:
    policy = Evaluation(primary_metric="log_loss", min_improvement=0.01)
    better = _primary(0.50, 0.45, ci=(-0.08, -0.02), metric="log_loss", higher=False)
    worse = _primary(0.45, 0.50, ci=(0.02, 0.08), metric="log_loss", higher=False)
    assert decide_promotion(_evaluation(better), policy).promote
    assert not decide_promotion(_evaluation(worse), policy).promote


def test_mcnemar_p_value_decides_for_accuracy() -> None:
    policy = Evaluation(primary_metric="accuracy", significance_level=0.05)
    significant = _primary(0.80, 0.85, ci=(0.01, 0.09), metric="accuracy", p_value=0.01)
    not_significant = _primary(0.80, 0.85, ci=(0.01, 0.09), metric="accuracy", p_value=0.2)
    assert decide_promotion(_evaluation(significant), policy).promote
    verdict = decide_promotion(_evaluation(not_significant), policy)
    assert not verdict.promote and "p=0.2 not significant" in verdict.reason


def _decay(observed: float, bound: float, *, reference: float = 0.80, rows: int = 300, higher: bool = True):
    from modelgate.policy import DecayEvidence

    since = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)
    return DecayEvidence("roc_auc" if higher else "log_loss", reference, observed, bound, rows, higher, since, 0.025)


@pytest.mark.parametrize(
    ("decay", "reason"),
    [
        # 5% below 0.80 is 0.76: decayed only when even the upper bound is below it
        (_decay(0.70, 0.74), RetrainReason.DECAY),
        (_decay(0.74, 0.77), RetrainReason.SKIP),  # the point is past it, but the bound says it may be noise
        (_decay(0.79, 0.83), RetrainReason.SKIP),
        (_decay(0.60, 0.70, rows=49), RetrainReason.SKIP),  # too few labelled rows to test
        # lower is better: 5% above 0.40 is 0.42; decayed when even the lower bound is above it
        (_decay(0.50, 0.45, reference=0.40, higher=False), RetrainReason.DECAY),
        (_decay(0.43, 0.41, reference=0.40, higher=False), RetrainReason.SKIP),
    ],
)
def test_label_aware_decay_trigger_needs_no_threshold(decay, reason: RetrainReason) -> None:
    policy = Retrain(decay_min_rows=50)  # defaults: 5% relative tolerance, one-sided 5% test
    decision = decide_retrain(policy, RetrainInputs(force=False, has_champion=True, decay=decay))
    assert decision.reason is reason


def test_decay_detail_records_the_numbers_and_comes_before_drift() -> None:
    inputs = RetrainInputs(force=False, has_champion=True, drift_flags=[True], decay=_decay(0.70, 0.74))
    decision = decide_retrain(Retrain(), inputs)
    assert decision.reason is RetrainReason.DECAY
    assert decision.detail == (
        "champion roc_auc 0.7000 on the 300 labelled rows since 2024-03-04 00:00 (97.5% upper bound 0.7400) is "
        "past 0.7600, "
        "0.05 below its holdout score 0.8000"
    )
    off = decide_retrain(Retrain(decay_tolerance=None), inputs)
    assert off.reason is RetrainReason.DRIFT


def test_first_champion_must_beat_the_baseline_significantly() -> None:
    policy = Evaluation(primary_metric="roc_auc", min_improvement=0.01)
    strong, weak = _primary(0.5, 0.74, ci=(0.19, 0.29)), _primary(0.5, 0.52, ci=(-0.03, 0.07))
    good = EvaluationResult(None, 1, 500, strong, {"roc_auc": strong}, baseline="class prior 0.2700")
    garbage = EvaluationResult(None, 1, 500, weak, {"roc_auc": weak}, baseline="class prior 0.2700")
    verdict = decide_promotion(good, policy)
    assert verdict.promote and [c.name for c in verdict.checks] == ["baseline"]
    assert "roc_auc 0.5000 -> 0.7400 vs class prior 0.2700" in verdict.reason
    refused = decide_promotion(garbage, policy)
    assert not refused.promote and "the interval includes zero" in refused.reason
    # absolute thresholds still apply on top of the baseline
    strict = decide_promotion(good, Evaluation(primary_metric="roc_auc", absolute_thresholds={"roc_auc": 0.8}))
    assert not strict.promote and "roc_auc 0.7400 misses >= 0.8" in strict.reason


@pytest.mark.parametrize(
    ("primary", "promote", "why"),
    [
        (_primary(0.70, 0.70, ci=(-0.03, 0.03)), True, "non-inferiority, since the champion has measurably decayed"),
        (_primary(0.70, 0.695, ci=(-0.04, 0.03)), True, "non-inferiority"),
        (_primary(0.70, 0.685, ci=(-0.05, 0.02)), False, "more than the margin 0.01 worse"),
        (_primary(0.70, 0.695, ci=(-0.02, -0.001)), False, "significantly worse"),
        (_primary(0.70, 0.695, ci=(-0.03, 0.02), metric="accuracy", p_value=0.01), False, "significantly worse"),
        (_primary(0.70, 0.70, ci=None), False, "no paired comparison"),
    ],
)
def test_evidence_against_the_champion_asks_only_non_inferiority(
    primary: MetricComparison, promote: bool, why: str
) -> None:
    from modelgate.policy import champion_doubt

    brier = MetricComparison("brier", 0.20, 0.20, False)
    doubt = champion_doubt(RetrainReason.DECAY)
    verdict = decide_promotion(_evaluation(primary, extra=[brier]), POLICY_EVAL, doubt=doubt)
    assert verdict.promote is promote
    assert why in verdict.checks[0].detail
    # without the doubt the same tie is rejected; guardrails still apply under it
    assert not decide_promotion(_evaluation(_primary(0.70, 0.70, ci=(-0.03, 0.03)), extra=[brier]), POLICY_EVAL).promote
    worse_brier = MetricComparison("brier", 0.20, 0.25, False)
    assert not decide_promotion(
        _evaluation(_primary(0.70, 0.70, ci=(-0.03, 0.03)), extra=[worse_brier]), POLICY_EVAL, doubt=doubt
    ).promote


@pytest.mark.parametrize(
    ("reason", "doubted"),
    [
        (RetrainReason.DECAY, True),
        (RetrainReason.DRIFT, True),
        (RetrainReason.MISCALIBRATED, True),
        (RetrainReason.SETTLED, True),
        (RetrainReason.GROWN, True),
        (RetrainReason.SLID, False),  # recorded by earlier versions: as many rows as the champion's, only newer
        (RetrainReason.STALENESS, False),
        (RetrainReason.NEW_DATA, False),
        (RetrainReason.FORCED, False),
        (RetrainReason.NO_CHAMPION, False),
    ],
)
def test_which_triggers_count_against_the_champion(reason: RetrainReason, doubted: bool) -> None:
    from modelgate.policy import champion_doubt

    assert (champion_doubt(reason) is not None) is doubted
    assert (champion_doubt(reason.value) is not None) is doubted


def test_grown_window_detail_records_the_rows() -> None:
    decision = decide_retrain(Retrain(), _held(3360, 1344, 336))
    assert decision.retrain and decision.reason is RetrainReason.GROWN
    assert "3360 rows, 2.5x the 1344 the newest model was trained on" in decision.detail


# ------------------------------------------------------------------ the training window


def _mark(weeks_before_end: int, reason: str, retrain: bool = True, length: int = 1):  # type: ignore[no-untyped-def]
    from modelgate.loop import DecisionMark

    end = END - dt.timedelta(weeks=weeks_before_end)
    return DecisionMark(end - dt.timedelta(weeks=length), end, retrain, reason)


END = dt.datetime(2026, 6, 7, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("decisions", "kwargs", "weeks"),
    [
        ([], {}, 16),  # nothing detected yet: the longest window (4 x 28 days)
        ([_mark(10, "no_champion")], {}, 11),  # grown since the first champion's interval began
        ([_mark(10, "no_champion"), _mark(6, "performance_decay")], {}, 7),  # measured decay resets it
        ([_mark(10, "no_champion"), _mark(6, "drift")], {}, 11),  # drift of the inputs alone does not
        ([_mark(10, "no_champion"), _mark(2, "change_settled")], {}, 6),  # settling: its own window_days
        ([_mark(2, "performance_decay")], {}, 4),  # a recent change: never shorter than window_days
        ([_mark(0, "performance_decay")], {}, 4),  # this interval's own decision anchors it too
        ([_mark(30, "performance_decay")], {}, 16),  # never longer than max_window_days
        ([_mark(6, "performance_decay", retrain=False), _mark(8, "performance_decay")], {}, 9),  # retrains only
        ([_mark(6, "champion_stale"), _mark(6, "window_grown"), _mark(6, "forced")], {}, 16),  # not changes
        ([_mark(-1, "performance_decay")], {}, 16),  # decisions after the end (a backfill) are not seen
        ([], {"window_days": 14}, 2),  # the DAG's window_days param fixes it
    ],
)
def test_training_span_grows_from_the_last_change(decisions: list, kwargs: dict, weeks: int) -> None:  # type: ignore[type-arg]
    from modelgate.loop import training_span
    from modelgate.spec import parse_spec
    from tests.conftest import REPO_ROOT

    spec = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    span = training_span(spec, decisions, END, **kwargs)
    assert span.end == END and span.end - span.start == dt.timedelta(weeks=weeks)
    fixed = training_span(spec.model_copy(update={"max_window_days": spec.window_days}), decisions, END)
    assert fixed.end - fixed.start == dt.timedelta(days=spec.window_days)  # max_window_days = window_days: fixed


def test_window_growth_counts_the_rows_against_the_newest_model() -> None:
    import pandas as pd

    from modelgate.data import Interval
    from modelgate.loop import window_growth
    from modelgate.spec import parse_spec
    from tests.conftest import REPO_ROOT

    spec = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    days = pd.date_range(END - dt.timedelta(weeks=16), END, freq="6h", inclusive="left", tz="UTC")
    frame = pd.DataFrame({spec.time_column: days})
    trained_end = END - dt.timedelta(weeks=2)
    grown = Interval(END - dt.timedelta(weeks=10), END)
    rows = frame[frame[spec.time_column] >= grown.start]
    growth = window_growth(spec, grown, rows, trained_rows=112, trained_end=trained_end)
    assert growth == WindowGrowth(window_rows=280, trained_rows=112, rows_since_trained=56, full=False)
    longest = Interval(END - dt.timedelta(weeks=16), END)
    full = window_growth(spec, longest, frame, trained_rows=112, trained_end=trained_end)
    assert full is not None and full.full and full.window_rows == 448
    fixed = Interval(END - dt.timedelta(weeks=4), END)
    assert window_growth(spec, fixed, frame, trained_rows=112, trained_end=trained_end) is None  # not grown
    assert window_growth(spec, grown, rows, trained_rows=None, trained_end=trained_end) is None  # no row count
    assert window_growth(spec, grown, rows.iloc[:0], trained_rows=112, trained_end=trained_end) is None  # no rows


def test_max_window_days_cannot_be_below_window_days() -> None:
    from modelgate.spec import InvalidSpec, parse_spec
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "include" / "models" / "churn.yaml").read_text()
    with pytest.raises(InvalidSpec, match=r"max_window_days \(7\) is below window_days \(28\)"):
        parse_spec(text + "\nmax_window_days: 7\n")
    assert parse_spec(text + "\nmax_window_days: 28\n").longest_window_days == 28
    assert parse_spec(text).longest_window_days == 112


G, D, S = RetrainReason.GROWN, RetrainReason.DRIFT, RetrainReason.SKIP


@pytest.mark.parametrize(
    ("history", "rejected", "lost"),
    [
        ([(True, G)], True, True),
        ([(True, G)], False, False),  # promoted, or waiting for approval
        ([(True, G), (False, S)], True, True),  # skips don't count
        ([(True, G), (True, D)], True, False),  # a change re-arms growth
        ([(True, RetrainReason.SLID)], True, True),  # as earlier versions recorded a slid window
        ([(True, D)], True, False),
        ([], True, False),
    ],
)
def test_growth_is_lost_only_when_the_last_retrain_grew_and_was_rejected(
    history: list[tuple[bool, RetrainReason]], rejected: bool, lost: bool
) -> None:
    from modelgate.loop import growth_lost

    decisions = [_mark(len(history) - week, reason.value, retrain) for week, (retrain, reason) in enumerate(history)]
    assert growth_lost(decisions, newest_rejected=rejected) is lost


# ------------------------------------------------------------------ calibration: the predicted rate against the labels

_T0 = dt.datetime(2024, 3, 3, tzinfo=dt.UTC)


def _calibration(*zs: float, critical: float = 1.645) -> CalibrationEvidence:
    looks = tuple(
        CalibrationLook(_T0 + dt.timedelta(weeks=i), 300, 0.6 if z > 0 else 0.4, 0.5, z) for i, z in enumerate(zs)
    )
    return CalibrationEvidence(looks, tolerance=0.025, critical=critical, alpha=0.05)


@pytest.mark.parametrize(
    ("evidence", "shifted"),
    [
        (_calibration(3.0, 2.0), True),  # both looks past the tolerance, labels above the predictions
        (_calibration(-2.0, -5.0), True),  # both below
        (_calibration(3.0, -3.0), False),  # the rate swung back: no shift a retrain could follow
        (_calibration(3.0, 1.0), False),  # the newest look alone is not significant
        (_calibration(0.0, 4.0), False),  # the longer look is within the tolerance
        (_calibration(4.0), False),  # one look cannot confirm itself
        (_calibration(1.7, 1.7, critical=1.96), False),  # the level sets the bar
    ],
)
def test_calibration_shift_needs_both_looks_past_the_tolerance_in_one_direction(
    evidence: CalibrationEvidence, shifted: bool
) -> None:
    assert evidence.shifted() is shifted


def test_miscalibration_retrains_after_measured_decay_and_before_drift() -> None:
    shifted = _calibration(3.0, 2.5)
    decision = decide_retrain(Retrain(), RetrainInputs(force=False, has_champion=True, calibration=shifted))
    assert decision.retrain and decision.reason is RetrainReason.MISCALIBRATED
    assert "predicts 0.500 positives on the newest 300 labelled rows, which have 0.600" in decision.detail
    drifting = RetrainInputs(force=False, has_champion=True, calibration=shifted, drift_flags=[True])
    assert decide_retrain(Retrain(), drifting).reason is RetrainReason.MISCALIBRATED
    decay = DecayEvidence("roc_auc", 0.9, 0.7, 0.75, 300, True, since=_T0, alpha=0.025)
    decayed = RetrainInputs(force=False, has_champion=True, calibration=shifted, decay=decay)
    assert decide_retrain(Retrain(), decayed).reason is RetrainReason.DECAY
    off = Retrain(calibration_check=False)
    assert decide_retrain(off, RetrainInputs(force=False, has_champion=True, calibration=shifted)).retrain is False
    calm = RetrainInputs(force=False, has_champion=True, calibration=_calibration(3.0, -3.0))
    assert decide_retrain(Retrain(), calm).reason is RetrainReason.SKIP
