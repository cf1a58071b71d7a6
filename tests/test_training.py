"""Training refuses garbage with a clear error and is reproducible; unseen categories do not break scoring."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml

from modelgate.data import fingerprint, split_holdout
from modelgate.datasets.churn import generate_day
from modelgate.spec import parse_spec
from modelgate.training import TrainingError, check_trainable, predict_scores, reference_sample, train
from tests.conftest import REPO_ROOT

SPEC = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    days = [generate_day(dt.date(2026, 1, 1) + dt.timedelta(days=i), rows=150) for i in range(14)]
    return pd.concat(days, ignore_index=True)


def test_training_is_reproducible(frame: pd.DataFrame) -> None:
    first = train(SPEC, frame)
    second = train(SPEC, frame)
    np.testing.assert_array_equal(
        predict_scores(SPEC, first.pipeline, frame), predict_scores(SPEC, second.pipeline, frame)
    )
    assert first.metrics == second.metrics and first.metrics["train_roc_auc"] > 0.6
    assert first.params["random_state"] == SPEC.seed
    assert fingerprint(frame) == fingerprint(frame.copy())
    assert fingerprint(frame) != fingerprint(frame.iloc[1:])


def test_holdout_is_the_latest_rows(frame: pd.DataFrame) -> None:
    train_part, holdout = split_holdout(SPEC, frame)
    assert len(holdout) == round(len(frame) * SPEC.holdout_fraction)
    assert train_part["event_time"].max() <= holdout["event_time"].min()


def test_unseen_categories_are_scored(frame: pd.DataFrame) -> None:
    model = train(SPEC, frame).pipeline
    odd = frame.head(5).copy()
    odd["contract"] = "ten-year"
    scores = predict_scores(SPEC, model, odd)
    assert np.isfinite(scores).all()


def test_reference_sample_is_bounded_and_seeded(frame: pd.DataFrame) -> None:
    sample = reference_sample(SPEC, frame)
    assert len(sample) == min(len(frame), SPEC.drift.reference_sample_size)
    pd.testing.assert_frame_equal(sample, reference_sample(SPEC, frame))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.iloc[0:0], "the training window is empty"),
        (lambda f: f.assign(churned=0), r"target 'churned' has a single class \(0\)"),
        (lambda f: f.assign(churned=f["churned"] * 3), "binary target 'churned' must be 0/1"),
        (lambda f: f.assign(churned=f["churned"].where(f.index % 7 != 0)), "target 'churned' has .* null values"),
        (lambda f: f.assign(monthly_charges=np.nan), "feature 'monthly_charges' is entirely null"),
        (lambda f: f.assign(tenure_months=f["tenure_months"].astype(str)), "should be numeric, found dtype object"),
        (lambda f: f.drop(columns=["contract"]), "columns missing from the window: contract"),
        (
            lambda f: f.assign(contract=f["contract"].astype(object).where(f.index % 5 != 0, 7)),
            r"categorical feature 'contract' mixes value types \(int, str\): cast the column",
        ),
    ],
)
def test_garbage_is_refused(frame: pd.DataFrame, mutate, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        train(SPEC, mutate(frame.copy()))


def test_mostly_null_feature_is_a_recorded_warning(frame: pd.DataFrame) -> None:
    patchy = frame.assign(total_charges=frame["total_charges"].where(frame.index % 3 == 0))
    assert check_trainable(SPEC, patchy) == ["feature 'total_charges' is 67% null"]


@pytest.mark.parametrize(
    ("spec_threads", "env", "expected"),
    [
        (None, None, 1),  # a worker runs several slots: one thread each unless told otherwise
        (None, "3", 3),
        (2, "3", 2),  # the spec's own says most
        (None, "0", TrainingError),
        (None, "many", TrainingError),
    ],
)
def test_a_fit_uses_the_threads_its_slot_has(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, spec_threads: int | None, env: str | None, expected: object
) -> None:
    from threadpoolctl import threadpool_info

    from modelgate.training import THREADS_ENV, build_estimator, training_threads

    raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    raw["estimator"]["threads"] = spec_threads
    spec = parse_spec(yaml.safe_dump(raw))
    if env is None:
        monkeypatch.delenv(THREADS_ENV, raising=False)
    else:
        monkeypatch.setenv(THREADS_ENV, env)
    if expected is TrainingError:
        with pytest.raises(TrainingError, match=rf"\${THREADS_ENV} is '{env}': give a whole number of threads"):
            training_threads(spec)
        return
    assert training_threads(spec) == expected
    forest = parse_spec(yaml.safe_dump({**raw, "estimator": {"name": "random_forest", "threads": spec_threads}}))
    assert build_estimator(forest).n_jobs == expected
    seen: list[int] = []
    model = build_estimator(spec)
    fit = model.fit

    def spy(*args: object, **kwargs: object) -> object:  # what OpenMP allows while HistGradientBoosting fits
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp")
        return fit(*args, **kwargs)

    monkeypatch.setattr(type(model), "fit", lambda self, *a, **k: spy(*a, **k))
    monkeypatch.setattr("modelgate.training.build_estimator", lambda _spec: model)
    train(spec, frame)
    assert seen and set(seen) == {expected}
