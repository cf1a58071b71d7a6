"""Champion vs challenger on the same holdout: metrics, paired bootstrap CIs, McNemar, per-slice table.

Works on score arrays, not models, so it is pure and fast to test; `score_model` turns a fitted pipeline
and a frame into scores. Bootstrap resamples are drawn once and shared by both models (paired).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from modelgate.policy import EvaluationResult, MetricComparison, SliceComparison
from modelgate.spec import HIGHER_IS_BETTER, ModelSpec, Task

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DEFAULT_METRICS = {
    Task.BINARY: ["roc_auc", "pr_auc", "accuracy", "f1", "log_loss", "brier"],
    Task.MULTICLASS: ["macro_f1", "weighted_f1", "balanced_accuracy", "accuracy", "log_loss"],
    Task.REGRESSION: ["rmse", "mae", "r2"],
}
_EPS = 1e-15
_MAX_CELLS = 4_000_000  # bootstrap chunk size (resamples x rows) to bound memory


class EvaluationError(ValueError):
    """The holdout cannot support a comparison (empty, one class for AUC...)."""


def _as_2d(values: Any) -> np.ndarray:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return arr[None, :] if arr.ndim == 1 else arr


def _multiclass_rows(name: str, y: Any, score: Any) -> np.ndarray:
    """A multiclass metric for each row of `y` (class positions, shape (B, n)) and `score` (the probability
    of each class, shape (B, n, K)); macro F1 averages the classes in either the truth or the predictions,
    balanced accuracy the classes in the truth, as scikit-learn does."""
    import numpy as np

    truth = np.asarray(y, dtype=float)
    probabilities = np.asarray(score, dtype=float)
    if truth.ndim == 1:
        truth, probabilities = truth[None, :], probabilities[None, :, :]
    codes = truth.astype(np.int64)
    k = probabilities.shape[2]
    if name == "log_loss":
        chosen = np.take_along_axis(probabilities, codes[..., None], axis=2)[..., 0]
        return -np.log(np.clip(chosen, _EPS, 1.0)).mean(axis=1)
    predicted = probabilities.argmax(axis=2)
    if name == "accuracy":
        return (predicted == codes).mean(axis=1)
    hits, support, chosen_count = _class_counts(codes, predicted, k)  # (B, K) each
    f1 = _f1(hits, support, chosen_count)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, 0.0)
        if name == "balanced_accuracy":
            return (recall * (support > 0)).sum(axis=1) / (support > 0).sum(axis=1)
        if name == "macro_f1":
            seen = (support + chosen_count) > 0
            return (f1 * seen).sum(axis=1) / seen.sum(axis=1)
        if name == "weighted_f1":
            return (f1 * support).sum(axis=1) / support.sum(axis=1)
    raise ValueError(f"unknown multiclass metric {name!r}")


def _class_counts(codes: np.ndarray, predicted: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class (the last axis, K), over the rows (the axis before it): hits, true rows, predicted rows."""
    import numpy as np

    classes = np.arange(k)
    is_true, is_predicted = codes[..., None] == classes, predicted[..., None] == classes
    counted = (is_true & is_predicted, is_true, is_predicted)
    hits, support, chosen = (c.sum(axis=-2).astype(float) for c in counted)
    return hits, support, chosen


def _f1(hits: np.ndarray, support: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Each class's F1 against the rest from its counts (0 for a class neither true nor predicted)."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support + chosen > 0, 2 * hits / (support + chosen), 0.0)


def class_f1(y: Any, score: Any) -> list[float]:
    """Each class's F1, one class against the rest (0 for a class neither true nor predicted)."""
    import numpy as np

    probabilities = np.asarray(score, dtype=float)
    codes = np.asarray(y, dtype=float).astype(np.int64)
    return _f1(*_class_counts(codes, probabilities.argmax(axis=1), probabilities.shape[1])).tolist()


def confusion(y: Any, score: Any) -> list[list[float]]:
    """Rows: true class; columns: predicted class; each row as shares of its class's rows (0 when absent)."""
    import numpy as np

    probabilities = np.asarray(score, dtype=float)
    k = probabilities.shape[1]
    codes = np.asarray(y, dtype=float).astype(np.int64)
    counts = np.zeros((k, k))
    np.add.at(counts, (codes, probabilities.argmax(axis=1)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0).tolist()


def metric_rows(name: str, y: Any, score: Any) -> np.ndarray:
    """The metric for each row of `y`/`score` (shape (B, n)), vectorized; NaN where undefined.

    A multiclass score holds each class's probability: one dimension more than `y` ((n, K) or (B, n, K))."""
    import numpy as np
    from scipy.stats import rankdata

    if np.ndim(score) == np.ndim(y) + 1:
        return _multiclass_rows(name, y, score)
    y2, s2 = _as_2d(y), _as_2d(score)
    n = y2.shape[1]
    if name == "roc_auc":
        ranks = rankdata(s2, axis=1)
        pos = y2.sum(axis=1)
        neg = n - pos
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * y2).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)
        return np.where((pos > 0) & (neg > 0), auc, np.nan)
    if name == "pr_auc":
        from sklearn.metrics import average_precision_score

        return np.array(
            [average_precision_score(yy, ss) if 0 < yy.sum() < n else np.nan for yy, ss in zip(y2, s2, strict=True)]
        )
    if name == "accuracy":
        return ((s2 >= 0.5) == (y2 >= 0.5)).mean(axis=1)
    if name in ("precision", "recall", "f1"):
        pred = s2 >= 0.5
        truth = y2 >= 0.5
        tp = (pred & truth).sum(axis=1)
        fp = (pred & ~truth).sum(axis=1)
        fn = (~pred & truth).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            if name == "precision":
                return precision
            if name == "recall":
                return recall
            return np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if name == "log_loss":
        p = np.clip(s2, _EPS, 1 - _EPS)
        return -(y2 * np.log(p) + (1 - y2) * np.log(1 - p)).mean(axis=1)
    if name == "brier":
        return ((s2 - y2) ** 2).mean(axis=1)
    if name == "rmse":
        return np.sqrt(((s2 - y2) ** 2).mean(axis=1))
    if name == "mae":
        return np.abs(s2 - y2).mean(axis=1)
    if name == "r2":
        ss_res = ((y2 - s2) ** 2).sum(axis=1)
        ss_tot = ((y2 - y2.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)
    raise ValueError(f"unknown metric {name!r}")


def resampled_metric(name: str, y: np.ndarray, score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The metric of each bootstrap resample (rows of `idx`, indices into `y`/`score`).

    ROC AUC is counted, not ranked: the scores are sorted once into runs of tied scores, and a resample is
    how many positives and negatives it drew in each run, one `bincount` over its draws; a run's positives
    beat the negatives of every lower run and tie with its own (the same values as ranking the resample: a
    duplicated row ties with itself at its midrank)."""
    import numpy as np

    if name == "accuracy" and score.ndim == 1:  # a resample's share of the rows called right, without copying scores
        return correct(y, score)[idx].mean(axis=1)
    if name != "roc_auc":
        return metric_rows(name, y[idx], score[idx])
    n, b = len(y), idx.shape[0]
    order = np.argsort(score, kind="mergesort")
    ordered = score[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]  # where each run of tied scores begins, in score order
    runs = int(starts.sum())
    run = np.empty(n, dtype=np.int64)
    run[order] = np.cumsum(starts) - 1
    positive = y >= 0.5
    if runs == n:  # no ties: a run is a row, whose label is known
        flat = (np.arange(b, dtype=np.int64)[:, None] * n + run[idx]).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n)
        pos = counts * positive[order]
        neg = counts - pos
    else:  # each row's (run, label) cell
        key = 2 * run + positive
        flat = (np.arange(b, dtype=np.int64)[:, None] * (2 * runs) + key[idx]).ravel()
        cells = np.bincount(flat, minlength=b * 2 * runs).reshape(b, runs, 2)
        neg, pos = cells[:, :, 0], cells[:, :, 1]
    below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower than each run
    p, q = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.einsum("ij,ij->i", pos, 2 * below + neg) / (2.0 * p * q)  # integers until here: exact
    return np.where((p > 0) & (q > 0), auc, np.nan)


def metric(name: str, y: Any, score: Any) -> float:
    return float(metric_rows(name, y, score)[0])


def _resample_indices(score: np.ndarray, samples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap row indices, `samples` resamples of `score`'s rows, in chunks of bounded size (seeded): a chunk
    holds at most _MAX_CELLS resampled values, counting a multiclass score's classes (its second axis)."""
    import numpy as np

    n, width = len(score), score.shape[1] if score.ndim == 2 else 1
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // max(n * width, 1))
    remaining = samples
    while remaining > 0:
        b = min(chunk, remaining)
        yield rng.integers(0, n, size=(b, n))
        remaining -= b


def bootstrap_distributions(
    names: Sequence[str], y: Any, score: Any, *, samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Each metric of `names` over the same `samples` seeded resamples of the rows (drawn once for all of
    them), the resamples where it is undefined left out: what a percentile bound at any level reads."""
    import numpy as np

    y, score = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    values: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for idx in _resample_indices(score, samples, seed):
        for name in names:
            values[name].append(resampled_metric(name, y, score, idx))
    out = {}
    for name, parts in values.items():
        resampled = np.concatenate(parts)
        out[name] = resampled[np.isfinite(resampled)]
    return out


def percentile_bound(resampled: np.ndarray, alpha: float, *, upper: bool) -> float:
    """The one-sided percentile bootstrap bound at level 1 - alpha of a metric's resampled values (NaN for none)."""
    import numpy as np

    if not len(resampled):
        return float("nan")
    return float(np.quantile(resampled, 1 - alpha if upper else alpha))


def paired_bootstrap(
    name: str, y: Any, champion: Any, challenger: Any, *, samples: int, alpha: float, seed: int
) -> tuple[float, float]:
    """Percentile CI of metric(challenger) - metric(champion) over shared resamples of the holdout."""
    import numpy as np

    y, champion, challenger = (np.asarray(a, dtype=float) for a in (y, champion, challenger))
    diffs = [
        resampled_metric(name, y, challenger, idx) - resampled_metric(name, y, champion, idx)
        for idx in _resample_indices(challenger, samples, seed)
    ]
    all_diffs = np.concatenate(diffs)
    all_diffs = all_diffs[np.isfinite(all_diffs)]
    if len(all_diffs) < samples * 0.9:
        return math.nan, math.nan
    low, high = np.quantile(all_diffs, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def correct(y: Any, score: Any) -> np.ndarray:
    """Which rows a classifier gets right: the 0.5 threshold, or the most probable of several classes."""
    import numpy as np

    score = np.asarray(score, dtype=float)
    if score.ndim == 2:
        return score.argmax(axis=1) == np.asarray(y, dtype=float).astype(np.int64)
    return (score >= 0.5) == (np.asarray(y) >= 0.5)


def mcnemar(y: Any, champion: Any, challenger: Any) -> float:
    """Exact McNemar p-value on the discordant pairs of predictions (right or wrong)."""
    from scipy.stats import binomtest

    champ_ok = correct(y, champion)
    chall_ok = correct(y, challenger)
    b = int((champ_ok & ~chall_ok).sum())
    c = int((~champ_ok & chall_ok).sum())
    if b + c == 0:
        return 1.0
    return float(binomtest(min(b, c), b + c, 0.5).pvalue)


def _compare(
    name: str,
    y: Any,
    champion: Any | None,
    challenger: Any,
    spec: ModelSpec,
    *,
    with_ci: bool,
) -> MetricComparison:
    higher = HIGHER_IS_BETTER[name]
    if name == spec.evaluation.primary_metric and spec.evaluation.direction is not None:
        higher = spec.evaluation.direction == "maximize"
    chall_value = metric(name, y, challenger)
    if champion is None:
        return MetricComparison(name, None, chall_value, higher)
    champ_value = metric(name, y, champion)
    if not with_ci:
        return MetricComparison(name, champ_value, chall_value, higher)
    policy = spec.evaluation
    low, high = paired_bootstrap(
        name,
        y,
        champion,
        challenger,
        samples=policy.bootstrap_samples,
        alpha=policy.significance_level,
        seed=spec.seed,
    )
    ci_low = None if math.isnan(low) else low
    ci_high = None if math.isnan(high) else high
    if name == "accuracy":
        return MetricComparison(
            name, champ_value, chall_value, higher, ci_low, ci_high, mcnemar(y, champion, challenger), "McNemar"
        )
    return MetricComparison(name, champ_value, chall_value, higher, ci_low, ci_high, None, "paired bootstrap")


def _slice_groups(frame: pd.DataFrame, column: str, spec: ModelSpec) -> list[tuple[str, Any]]:
    import numpy as np

    values = frame[column]
    if spec.feature(column).type == "categorical":
        return [(str(v), (values == v).to_numpy()) for v in sorted(values.dropna().unique(), key=str)]
    edges = np.unique(np.nanquantile(values.to_numpy(dtype=float), [0, 0.25, 0.5, 0.75, 1.0]))
    groups = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=False):
        last = hi == edges[-1]
        mask = (values >= lo) & ((values <= hi) if last else (values < hi))
        groups.append((f"[{lo:.4g}, {hi:.4g}{']' if last else ')'}", mask.to_numpy()))
    return groups


def evaluate_scores(
    spec: ModelSpec,
    holdout: pd.DataFrame,
    y: Sequence[float] | np.ndarray,
    champion_scores: Sequence[float] | np.ndarray | None,
    challenger_scores: Sequence[float] | np.ndarray,
    *,
    champion_version: int | None,
    challenger_version: int,
    extra_metrics: Sequence[str] = (),
    baseline: str | None = None,
) -> EvaluationResult:
    """Compare both models' scores on the same holdout rows (the champion's side may be a named baseline)."""
    import numpy as np

    y_arr = np.asarray(y, dtype=float)
    n = len(y_arr)
    if n == 0:
        raise EvaluationError("the holdout is empty: nothing to evaluate on")
    if spec.task.classifier and len(np.unique(y_arr)) < 2:
        raise EvaluationError(f"the holdout has a single class ({int(y_arr[0])}): cannot compare classifiers")
    champ = None if champion_scores is None else np.asarray(champion_scores, dtype=float)
    chall = np.asarray(challenger_scores, dtype=float)
    policy = spec.evaluation
    names = list(
        dict.fromkeys(
            [
                policy.primary_metric,
                *[g.metric for g in policy.guardrails],
                *policy.absolute_thresholds,
                *DEFAULT_METRICS[spec.task],
                *extra_metrics,
            ]
        )
    )
    metrics = {name: _compare(name, y_arr, champ, chall, spec, with_ci=name == policy.primary_metric) for name in names}
    slices: list[SliceComparison] = []
    for slice_spec in policy.slices:
        if slice_spec.column == spec.target:  # per class: below
            continue
        for value, mask in _slice_groups(holdout, slice_spec.column, spec):
            rows = int(mask.sum())
            if rows == 0:
                continue
            ys = y_arr[mask]
            chall_value = metric(policy.primary_metric, ys, chall[mask])
            champ_value = None if champ is None else metric(policy.primary_metric, ys, champ[mask])
            slices.append(
                SliceComparison(
                    slice_spec.column,
                    value,
                    rows,
                    None if champ_value is None or math.isnan(champ_value) else champ_value,
                    None if math.isnan(chall_value) else chall_value,
                    metrics[policy.primary_metric].higher_is_better,
                )
            )
    if spec.task is Task.MULTICLASS:  # each class's F1 against the rest, on the whole holdout
        champion_f1 = None if champ is None else class_f1(y_arr, champ)
        for k, (label, challenger_f1) in enumerate(zip(spec.class_names, class_f1(y_arr, chall), strict=True)):
            slices.append(
                SliceComparison(
                    spec.target,
                    label,
                    int((y_arr == k).sum()),
                    None if champion_f1 is None else champion_f1[k],
                    challenger_f1,
                    True,
                    metric="f1",
                )
            )
    return EvaluationResult(
        champion_version, challenger_version, n, metrics[policy.primary_metric], metrics, slices, baseline=baseline
    )


def baseline_scores(spec: ModelSpec, train_target: Any, rows: int) -> tuple[np.ndarray, str]:
    """The trivial model a first champion must beat: the class prior (classifiers) or the mean (regressors)."""
    import numpy as np

    if spec.task is Task.MULTICLASS:  # `train_target` holds class positions
        codes = np.asarray(train_target, dtype=float)
        codes = codes[np.isfinite(codes)].astype(np.int64)
        if not len(codes):
            raise EvaluationError("no labelled training rows to build a baseline from")
        prior = np.bincount(codes, minlength=len(spec.class_names)) / len(codes)
        shown = ", ".join(f"{c} {p:.3f}" for c, p in zip(spec.class_names, prior, strict=True))
        return np.tile(prior, (rows, 1)), f"class prior ({shown})"
    target = np.asarray(train_target, dtype=float)
    target = target[np.isfinite(target)]
    if not len(target):
        raise EvaluationError("no labelled training rows to build a baseline from")
    value = float(target.mean())
    label = f"class prior {value:.4f}" if spec.task is Task.BINARY else f"training mean {value:.4g}"
    return np.full(rows, value), label
