"""Vectorized metrics agree with scikit-learn; the paired bootstrap and McNemar behave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from modelgate.evaluation import EvaluationError, evaluate_scores, mcnemar, metric, paired_bootstrap
from modelgate.spec import parse_spec
from tests.conftest import REPO_ROOT

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 2, 2000).astype(float)
GOOD = np.clip(Y * 0.6 + RNG.normal(0.2, 0.25, 2000), 0, 1)
NOISY = np.clip(Y * 0.2 + RNG.normal(0.4, 0.3, 2000), 0, 1)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("roc_auc", skm.roc_auc_score),
        ("pr_auc", skm.average_precision_score),
        ("accuracy", lambda y, s: skm.accuracy_score(y, s >= 0.5)),
        ("f1", lambda y, s: skm.f1_score(y, s >= 0.5)),
        ("precision", lambda y, s: skm.precision_score(y, s >= 0.5)),
        ("recall", lambda y, s: skm.recall_score(y, s >= 0.5)),
        ("log_loss", lambda y, s: skm.log_loss(y, np.clip(s, 1e-15, 1 - 1e-15))),
        ("brier", skm.brier_score_loss),
        ("rmse", lambda y, s: np.sqrt(skm.mean_squared_error(y, s))),
        ("mae", skm.mean_absolute_error),
        ("r2", skm.r2_score),
    ],
)
def test_metrics_match_scikit_learn(name: str, reference) -> None:
    assert metric(name, Y, GOOD) == pytest.approx(reference(Y, GOOD), rel=1e-9)


def test_auc_is_undefined_for_one_class() -> None:
    assert np.isnan(metric("roc_auc", np.ones(10), np.linspace(0, 1, 10)))
    with pytest.raises(ValueError, match="unknown metric 'auc2'"):
        metric("auc2", Y, GOOD)


def test_paired_bootstrap_separates_a_real_gain_from_a_tie() -> None:
    low, high = paired_bootstrap("roc_auc", Y, NOISY, GOOD, samples=500, alpha=0.05, seed=1)
    assert 0 < low < high
    tie_low, tie_high = paired_bootstrap("roc_auc", Y, GOOD, GOOD.copy(), samples=500, alpha=0.05, seed=1)
    assert tie_low == tie_high == 0
    again = paired_bootstrap("roc_auc", Y, NOISY, GOOD, samples=500, alpha=0.05, seed=1)
    assert again == (low, high)  # seeded: reproducible verdicts


def test_mcnemar() -> None:
    assert mcnemar(Y, GOOD, GOOD) == 1.0
    assert mcnemar(Y, NOISY, GOOD) < 0.001


def _spec():
    return parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())


def test_evaluate_scores_builds_metrics_and_slices() -> None:
    spec = _spec()
    holdout = pd.DataFrame({"contract": RNG.choice(["month-to-month", "one-year", "two-year"], 2000)})
    result = evaluate_scores(spec, holdout, Y, NOISY, GOOD, champion_version=1, challenger_version=2)
    assert result.primary.metric == "roc_auc" and result.primary.ci_low is not None and result.primary.ci_low > 0
    assert {"brier", "roc_auc", "log_loss"} <= set(result.metrics)
    assert sorted(s.value for s in result.slices) == ["month-to-month", "one-year", "two-year"]
    assert sum(s.rows for s in result.slices) == 2000


def test_evaluate_refuses_empty_and_single_class_holdouts() -> None:
    spec = _spec()
    with pytest.raises(EvaluationError, match="the holdout is empty"):
        evaluate_scores(spec, pd.DataFrame({"contract": []}), [], None, [], champion_version=None, challenger_version=1)
    with pytest.raises(EvaluationError, match=r"single class \(1\)"):
        evaluate_scores(
            spec,
            pd.DataFrame({"contract": ["one-year"] * 3}),
            [1, 1, 1],
            None,
            [0.2, 0.3, 0.9],
            champion_version=None,
            challenger_version=1,
        )


def test_bootstrap_bound_is_one_sided_and_reproducible() -> None:
    import numpy as np

    from modelgate.evaluation import bootstrap_distributions, metric, metric_rows, percentile_bound, resampled_metric

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400).astype(float)
    scores = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    resampled = bootstrap_distributions(["roc_auc", "accuracy"], y, scores, samples=500, seed=1)
    point = metric("roc_auc", y, scores)
    upper = percentile_bound(resampled["roc_auc"], 0.05, upper=True)
    lower = percentile_bound(resampled["roc_auc"], 0.05, upper=False)
    assert lower < point < upper and upper - point < 0.06
    alone = bootstrap_distributions(["roc_auc"], y, scores, samples=500, seed=1)["roc_auc"]
    assert np.array_equal(alone, resampled["roc_auc"])  # reproducible, whichever metrics share the draws
    assert np.isnan(percentile_bound(np.array([]), 0.05, upper=True))
    idx = rng.integers(0, 400, (7, 400))  # a resample's accuracy, counted, is what scoring its copy gives
    assert np.array_equal(resampled_metric("accuracy", y, scores, idx), metric_rows("accuracy", y[idx], scores[idx]))


def test_baseline_scores_are_the_class_prior() -> None:
    from modelgate.evaluation import baseline_scores, metric

    scores, label = baseline_scores(_spec(), [0, 0, 1, 1, 0, 0, 0, 1], 5)
    assert label == "class prior 0.3750" and list(scores) == [0.375] * 5
    assert metric("roc_auc", [0, 1, 0, 1, 1], scores) == 0.5


@pytest.mark.parametrize("levels", [None, 7, 2])  # distinct scores, many ties, two values only
def test_counted_resample_auc_equals_ranking_each_resample(levels: int | None) -> None:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from modelgate.evaluation import resampled_metric

    rng = np.random.default_rng(5)
    score = rng.random(300)
    if levels is not None:
        score = np.floor(score * levels) / levels
    y = (rng.random(300) < 0.3 + 0.4 * score).astype(float)
    idx = rng.integers(0, 300, size=(40, 300))
    expected = [roc_auc_score(y[row], score[row]) for row in idx]
    assert np.allclose(resampled_metric("roc_auc", y, score, idx), expected, rtol=0, atol=1e-12)
    one_class = np.zeros((1, 300), dtype=np.int64)  # every draw the same row: one label, no AUC
    assert np.isnan(resampled_metric("roc_auc", y, score, one_class)[0])
