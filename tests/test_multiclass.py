"""Multiclass models: the spec's checks, metrics against scikit-learn, training on labels, the verdict's
per-class slices and paired comparison, the prior baseline, the quality gate and drift's predicted class."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import metrics as skm

from modelgate.datasets.churn import PLAN_CHANGES, generate_day
from modelgate.evaluation import (
    baseline_scores,
    bootstrap_distributions,
    confusion,
    evaluate_scores,
    mcnemar,
    metric,
    metric_rows,
    paired_bootstrap,
    percentile_bound,
)
from modelgate.spec import InvalidSpec, Task, parse_spec
from modelgate.training import TrainingError, class_probabilities, predict_scores, target_values, train
from tests.conftest import REPO_ROOT

RAW = yaml.safe_load((REPO_ROOT / "include" / "models" / "plan_change.yaml").read_text())
SPEC = parse_spec((REPO_ROOT / "include" / "models" / "plan_change.yaml").read_text())
RNG = np.random.default_rng(3)
Y = RNG.integers(0, 4, 1500).astype(float)
LOGITS = RNG.normal(0, 1, (1500, 4)) + 1.5 * np.eye(4)[Y.astype(int)]
P = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)


def _spec(**changes: Any) -> Any:
    return parse_spec(yaml.safe_dump({**RAW, **changes}))


def _window(days: int = 14, start: dt.date = dt.date(2024, 1, 1), drift: dt.date | None = None) -> pd.DataFrame:
    frames = [generate_day(start + dt.timedelta(days=i), rows=150, drift_start=drift) for i in range(days)]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("accuracy", lambda y, p: skm.accuracy_score(y, p.argmax(axis=1))),
        ("balanced_accuracy", lambda y, p: skm.balanced_accuracy_score(y, p.argmax(axis=1))),
        ("macro_f1", lambda y, p: skm.f1_score(y, p.argmax(axis=1), average="macro")),
        ("weighted_f1", lambda y, p: skm.f1_score(y, p.argmax(axis=1), average="weighted")),
        ("log_loss", lambda y, p: skm.log_loss(y, p, labels=[0, 1, 2, 3])),
    ],
)
def test_multiclass_metrics_match_scikit_learn(name: str, reference: Any) -> None:
    assert metric(name, Y, P) == pytest.approx(reference(Y, P), rel=1e-9)
    # a class nobody has nor is predicted (the fourth column always least likely) is left out as sklearn does
    three = Y % 3
    probabilities = np.c_[P[:, :3] / P[:, :3].sum(axis=1, keepdims=True), np.zeros(len(Y))]
    assert metric(name, three, probabilities) == pytest.approx(reference(three, probabilities), rel=1e-9)


def test_resampled_multiclass_metrics_are_each_resamples_own() -> None:
    idx = RNG.integers(0, len(Y), (5, len(Y)))
    batch = metric_rows("macro_f1", Y[idx], P[idx])
    assert batch.shape == (5,)
    assert batch == pytest.approx([metric("macro_f1", Y[i], P[i]) for i in idx])
    resampled = bootstrap_distributions(["macro_f1"], Y, P, samples=200, seed=1)["macro_f1"]
    point, lower = metric("macro_f1", Y, P), percentile_bound(resampled, 0.05, upper=False)
    assert lower < point == pytest.approx(skm.f1_score(Y, P.argmax(axis=1), average="macro"))


def test_paired_comparison_and_mcnemar_see_a_better_multiclass_model() -> None:
    worse = 0.5 * P + 0.5 * RNG.dirichlet(np.ones(4), len(Y))
    low, high = paired_bootstrap("macro_f1", Y, worse, P, samples=300, alpha=0.05, seed=0)
    assert 0 < low < high
    assert mcnemar(Y, worse, P) < 0.01 and mcnemar(Y, P, P) == 1.0


def test_spec_checks_for_multiclass() -> None:
    assert SPEC.task is Task.MULTICLASS and SPEC.evaluation.primary_metric == "macro_f1"
    plain = {k: v for k, v in RAW.items() if k not in ("evaluation",)}
    assert parse_spec(yaml.safe_dump(plain)).evaluation.primary_metric == "macro_f1"  # the multiclass default
    with pytest.raises(InvalidSpec, match="needs classes: the target's values, at least three"):
        _spec(classes=None)
    with pytest.raises(InvalidSpec, match="at least three"):
        _spec(classes=["a", "b"])
    with pytest.raises(InvalidSpec, match="classes repeat: a"):
        _spec(classes=["a", "b", "a", "c"])
    with pytest.raises(InvalidSpec, match="classes apply to task multiclass_classification, not binary"):
        parse_spec(
            yaml.safe_dump(
                {**yaml.safe_load((REPO_ROOT / "include/models/churn.yaml").read_text()), "classes": [1, 2, 3]}
            )
        )
    with pytest.raises(InvalidSpec, match="metrics roc_auc do not apply to multiclass_classification"):
        _spec(evaluation={"primary_metric": "roc_auc"})
    with pytest.raises(InvalidSpec, match="ab: experiments judge binary classifiers and regressors"):
        _spec(ab={})
    with pytest.raises(InvalidSpec, match="risk_tiers cut a binary classifier's probability"):
        _spec(risk_tiers={"high": 0.6})
    with pytest.raises(InvalidSpec, match="slices name unknown features: plan"):
        _spec(evaluation={**RAW["evaluation"], "slices": [{"column": "plan"}]})


def test_labels_of_any_type_map_to_the_spec_s_classes() -> None:
    spec = _spec(target="plan_change", classes=[3, 1, 2])
    frame = pd.DataFrame({"plan_change": [1.0, 2.0, None, 3.0]})  # a numeric column with a gap reads as floats
    assert target_values(spec, frame)[[0, 1, 3]].tolist() == [1.0, 2.0, 0.0] and np.isnan(target_values(spec, frame)[2])
    with pytest.raises(TrainingError, match="outside the spec's classes: 7; add them to classes or fix the rows"):
        target_values(spec, pd.DataFrame({"plan_change": [1, 7]}))


def test_training_learns_the_labels_and_scores_in_the_spec_s_order() -> None:
    spec = _spec(estimator={"name": "logistic_regression", "params": {"C": 1.0}})
    frame = _window()
    trained = train(spec, frame)
    assert list(trained.pipeline.classes_) == sorted(PLAN_CHANGES)  # the model answers the labels themselves
    scores = predict_scores(spec, trained.pipeline, frame)
    assert scores.shape == (len(frame), 3) and np.allclose(scores.sum(axis=1), 1.0)
    direct = trained.pipeline.predict_proba(frame[spec.feature_names])
    order = [list(trained.pipeline.classes_).index(c) for c in PLAN_CHANGES]
    assert np.allclose(scores, direct[:, order])
    assert {"train_macro_f1", "train_log_loss", "train_balanced_accuracy"} <= set(trained.metrics)
    # a window without one class: that class's probability is 0, the columns stay the spec's
    two = frame[frame.plan_change != "downgrade"]
    fitted = train(spec, two).pipeline
    partial = class_probabilities(spec, fitted, two[spec.feature_names])
    assert partial.shape == (len(two), 3) and (partial[:, 2] == 0).all()
    with pytest.raises(TrainingError, match="outside the spec's classes: cancel; add them to classes or fix"):
        train(spec, frame.assign(plan_change=frame.plan_change.where(frame.index > 0, "cancel")))
    with pytest.raises(TrainingError, match="has a single class"):
        train(spec, frame.assign(plan_change="none"))


def test_the_verdict_has_per_class_slices_and_a_prior_baseline() -> None:
    spec = _spec(evaluation={**RAW["evaluation"], "bootstrap_samples": 200})
    y = Y % 3
    probabilities = P[:, :3] / P[:, :3].sum(axis=1, keepdims=True)
    holdout = pd.DataFrame({"contract": RNG.choice(["month-to-month", "one-year", "two-year"], len(y))})
    prior, label = baseline_scores(spec, y[:500], len(y))
    assert prior.shape == (len(y), 3) and np.allclose(prior[0], np.bincount(y[:500].astype(int)) / 500)
    assert label.startswith("class prior (none 0.")
    result = evaluate_scores(spec, holdout, y, prior, probabilities, champion_version=None, challenger_version=1)
    assert result.primary.metric == "macro_f1" and result.primary.ci_low is not None and result.primary.ci_low > 0
    per_class = [s for s in result.slices if s.column == "plan_change"]
    assert [s.value for s in per_class] == PLAN_CHANGES and [s.rows for s in per_class] == np.bincount(
        y.astype(int)
    ).tolist()
    assert per_class[0].challenger == pytest.approx(skm.f1_score(y == 0, probabilities.argmax(axis=1) == 0))
    assert {s.column for s in result.slices} == {"plan_change", "contract"}
    assert result.metrics["accuracy"].challenger == pytest.approx(skm.accuracy_score(y, probabilities.argmax(axis=1)))
    matrix = np.array(confusion(y, probabilities))
    assert np.allclose(matrix.sum(axis=1), 1.0)
    assert matrix[1, 1] == pytest.approx(skm.recall_score(y, probabilities.argmax(axis=1), average=None)[1])


def test_the_policy_gates_on_a_class_whose_f1_falls() -> None:
    from modelgate.policy import decide_promotion

    spec = _spec(evaluation={**RAW["evaluation"], "bootstrap_samples": 200, "guardrails": []})
    y = Y % 3
    good = P[:, :3] / P[:, :3].sum(axis=1, keepdims=True)
    never_downgrade = good.copy()
    never_downgrade[:, 2] = 0.0  # better elsewhere never makes up for a class it stopped predicting
    never_downgrade[:, :2] += 0.01 * np.eye(2)[(y % 2).astype(int)]
    holdout = pd.DataFrame({"contract": ["one-year"] * len(y)})
    result = evaluate_scores(spec, holdout, y, good, never_downgrade, champion_version=1, challenger_version=2)
    verdict = decide_promotion(result, spec.evaluation)
    assert not verdict.promote
    failed = [c for c in verdict.checks if not c.passed]
    assert any(c.name == "slice:plan_change" and "plan_change=downgrade" in c.detail for c in failed)


def test_quality_gate_holds_the_target_to_the_classes() -> None:
    from modelgate.quality import build_suite

    expectation = next(
        e
        for e in build_suite(SPEC)
        if e.type == "expect_column_values_to_be_in_set" and e.kwargs["column"] == "plan_change"
    )
    assert expectation.kwargs["value_set"] == PLAN_CHANGES


def test_drift_measures_the_predicted_class_mix_when_the_frames_carry_it() -> None:
    from modelgate.drift import compute_drift, predicted_column

    column = predicted_column(SPEC)
    reference = _window(7).assign(**{column: "none"})
    same = _window(7, start=dt.date(2024, 2, 1)).assign(**{column: "none"})
    shifted = same.assign(**{column: np.where(np.arange(len(same)) % 2, "upgrade", "none")})
    assert column not in {c.column for c in compute_drift(SPEC, reference.drop(columns=column), same).columns}
    quiet = {c.column: c for c in compute_drift(SPEC, reference, same).columns}
    loud = {c.column: c for c in compute_drift(SPEC, reference, shifted).columns}
    assert not quiet[column].alarm and loud[column].alarm and loud[column].kind == "categorical"


def test_a_registered_multiclass_file_is_described_as_multiclass() -> None:
    from sklearn.linear_model import LogisticRegression

    from modelgate.registry.estimators import describe_estimator

    x = pd.DataFrame({"a": np.arange(9.0)})
    three = LogisticRegression().fit(x, ["a", "b", "c"] * 3)
    two = LogisticRegression().fit(x, [0, 1, 0] * 3)
    assert describe_estimator(three).task == "multiclass_classification"
    assert describe_estimator(two).task == "binary_classification"


def test_a_multiclass_history_replays_and_backtests_with_its_own_metric() -> None:
    """The replay scores the served classes; drift sees the predicted mix; the backtest chooses on macro F1."""
    import math

    from modelgate import backtest
    from modelgate.replay import replay

    spec = _spec(
        estimator={"name": "logistic_regression", "params": {"C": 1.0}},
        evaluation={**RAW["evaluation"], "bootstrap_samples": 200},
        window_days=14,
        max_window_days=14,
    )
    frame = _window(84, start=dt.date(2024, 1, 1), drift=dt.date(2024, 2, 19))
    result = backtest.run(spec, frame, spec_text=yaml.safe_dump(RAW), jobs=1, policies=["never", "every", "spec"])
    assert result.metric == "macro_f1" and result.intervals == 9
    never, every, mine = (result.result(name) for name in ("never", "every", "spec"))
    assert every.tune.retrains + every.held_out.retrains == result.intervals
    for candidate in (never, every, mine):
        assert 0 < candidate.held_out.primary < 1 and 0 < candidate.held_out.accuracy < 1
        assert all(math.isnan(p.primary) or 0 <= p.primary <= 1 for p in candidate.series)
    assert every.held_out.primary > never.held_out.primary  # after the drift, a fresh model wins
    from modelgate.replay import intervals as steps_of

    steps = steps_of(dt.datetime(2024, 1, 21, tzinfo=dt.UTC), dt.datetime(2024, 3, 24, tzinfo=dt.UTC), dt.timedelta(7))
    outcomes = replay(spec, frame, steps, "modelgate").outcomes
    after = [o for o in outcomes if o.end > dt.datetime(2024, 2, 19, tzinfo=dt.UTC)]
    assert any(o.alarm for o in after) and any(o.trained for o in after)  # the class mix moved: drift, a retrain
    served = [o.scores for o in outcomes if o.scores is not None]
    assert served and all(s.shape[1] == 3 for s in served)  # each served row: the three classes' probabilities
