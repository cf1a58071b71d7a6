"""Your own estimator by import path: checked when the spec loads, trained seeded, recorded with its code."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelgate.catalog import load_spec
from modelgate.registry.store import Registry
from modelgate.spec import InvalidSpec, parse_spec
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "include" / "examples" / "churn_custom.yaml"


@pytest.fixture
def include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh include folder and modelgate home (no cached verdicts); its modules forgotten afterwards."""
    folder = tmp_path / "include"
    (folder / "models").mkdir(parents=True)
    monkeypatch.setenv("MODELGATE_INCLUDE_DIR", str(folder))
    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path / "home"))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("team_models"):
            del sys.modules[name]
    if str(folder) in sys.path:
        sys.path.remove(str(folder))


def _module(include: Path, body: str) -> Path:
    package = include / "team_models"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    path = package / "churn.py"
    path.write_text(body)
    for name in [n for n in sys.modules if n.startswith("team_models")]:
        del sys.modules[name]  # a rewritten module is imported anew, as a new process would
    return path


GOOD = """
def build(c=1.0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.compose import make_column_transformer
    features = make_column_transformer(
        ("passthrough", ["tenure_months", "monthly_charges"]), (OneHotEncoder(handle_unknown="ignore"), ["contract"])
    )
    return make_pipeline(features, LogisticRegression(C=c, max_iter=500))
"""


def _spec_file(include: Path, **estimator: object) -> Path:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["name"] = "churn"
    raw["estimator"] = {"factory": "team_models.churn:build", "preprocessing": "none", **estimator}
    path = include / "models" / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(InvalidSpec) as info:
        load_spec(path)
    return "; ".join(f"{e.field}: {e.reason}" for e in info.value.errors)


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        ({"name": "random_forest", "factory": "a.b:c"}, "give either name (.*) or factory (.*), not both"),
        ({"params": {"c": 1}}, r"give name \(logistic_regression, .*\) or factory"),
        (
            {"factory": "team_models/churn.py"},
            "factory 'team_models/churn.py' is not a path like my_models.churn:build",
        ),
        ({"name": "random_forest", "preprocessing": "none"}, "preprocessing: none hands the raw columns to your own"),
    ],
)
def test_the_estimator_is_named_or_brought_never_both(estimator: dict[str, object], expected: str) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["estimator"] = estimator
    with pytest.raises(InvalidSpec, match=expected):
        parse_spec(yaml.safe_dump(raw), "x.yaml")


@pytest.mark.parametrize(
    ("body", "params", "expected"),
    [
        (
            None,
            {},
            "estimator.factory: estimator.factory team_models.churn:build: no module 'team_models' in .*include",
        ),
        ("def other(): pass\n", {}, "module 'team_models.churn' has no 'build'"),
        ("build = 3\n", {}, "'build' is a int, not a function"),
        ("raise RuntimeError('no licence server')\n", {}, "importing it failed: RuntimeError: no licence server"),
        (GOOD, {"gamma": 2}, "does not take these params: build\\(\\) got an unexpected keyword argument 'gamma'"),
        ("def build():\n    return object()\n", {}, "returned a object, which has no fit, get_params, set_params"),
        (GOOD, {"c": -1.0}, "estimator.params: .*'C' parameter of LogisticRegression must be a float in the range"),
    ],
)
def test_a_factory_that_cannot_serve_is_a_one_line_spec_error(
    include: Path, body: str | None, params: dict[str, object], expected: str
) -> None:
    if body is not None:
        _module(include, body)
    message = _load_error(_spec_file(include, params=params))
    assert "\n" not in message
    assert pytest.importorskip("re").search(expected, message), message


def test_the_check_follows_the_factory_s_code_not_only_the_spec(include: Path) -> None:
    module = _module(include, GOOD)
    path = _spec_file(include, params={"c": 0.5})
    assert load_spec(path).estimator.factory == "team_models.churn:build"
    assert load_spec(path).estimator.factory == "team_models.churn:build"  # from the caches
    module.write_text(GOOD.replace("def build(c=1.0):", "def build(C=1.0):"))  # the function changed, not the spec
    _module(include, module.read_text())
    assert "does not take these params" in _load_error(path)


BAGGED = GOOD.replace(
    "LogisticRegression(C=c, max_iter=500))",
    "BaggingClassifier(LogisticRegression(C=c, max_iter=500), n_estimators=3))",
).replace("def build(c=1.0):", "def build(c=1.0):\n    from sklearn.ensemble import BaggingClassifier")


def test_training_with_a_factory_is_seeded_and_recorded(include: Path) -> None:
    from modelgate.datasets.churn import generate_day
    from modelgate.training import code_provenance, train

    module = _module(include, BAGGED)
    spec = load_spec(_spec_file(include, params={"c": 0.5}))
    frame = __import__("pandas").concat([generate_day(dt.date(2026, 1, d)) for d in range(1, 8)], ignore_index=True)
    first, second = train(spec, frame), train(spec, frame)
    params = first.pipeline.get_params()
    assert params["baggingclassifier__random_state"] == spec.seed  # left unset by the factory: the spec's seed
    x = frame[spec.feature_names]
    assert (first.pipeline.predict_proba(x) == second.pipeline.predict_proba(x)).all()
    assert first.params["baggingclassifier__n_estimators"] == 3  # the record keeps your Pipeline's params

    made_by = code_provenance(spec, first.pipeline)
    assert made_by.tags == {
        "factory": "team_models.churn:build",
        "factory_sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
    }
    assert made_by.packages == {"scikit-learn": importlib.metadata.version("scikit-learn")}


def test_the_shipped_example_factory_loads_and_trains(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from modelgate.datasets.churn import generate_day
    from modelgate.training import train

    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path))
    monkeypatch.setenv("MODELGATE_INCLUDE_DIR", str(REPO_ROOT / "include"))
    path = tmp_path / "churn_custom.yaml"
    path.write_text(EXAMPLE.read_text())
    spec = load_spec(path)
    assert spec.estimator.label == "custom_models.churn:build"
    frame = __import__("pandas").concat([generate_day(dt.date(2026, 1, d)) for d in range(1, 8)], ignore_index=True)
    trained = train(spec, frame)
    assert type(trained.pipeline).__name__ == "Pipeline" and trained.metrics["train_roc_auc"] > 0.6


@pytest.mark.integration
def test_a_retrain_with_your_factory_registers_a_version_that_says_what_code_made_it(
    include: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrain task's own steps on a factory spec: trained, registered with the factory's path, its module's
    sha256 and the packages' versions, then judged against the class-prior baseline like any first champion."""
    import pandas as pd

    from modelgate.config import DATA_ROOTS_ENV
    from modelgate.data import Interval
    from modelgate.datasets.churn import generate_day
    from modelgate.pipeline import RetrainParams, RunInfo, Services, evaluate_challenger, train_challenger
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.report_store import ReportStore
    from modelgate.spec import FileSource

    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    module = _module(include, GOOD)
    days = [dt.date(2026, 1, 4) + dt.timedelta(days=d) for d in range(28)]
    pd.concat([generate_day(day) for day in days], ignore_index=True).to_parquet(tmp_path / "churn.parquet")
    spec = load_spec(_spec_file(include, params={"c": 0.5}))
    spec = spec.model_copy(update={"source": FileSource(kind="files", path=str(tmp_path / "churn.parquet"))})
    services = Services(registry, None, ArtifactStore(str(tmp_path / "a")), ReportStore(str(tmp_path / "r")))
    end = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    run = RunInfo("modelgate_retrain__churn", "manual__1", "train_challenger", Interval(end - dt.timedelta(7), end))
    version = train_challenger(spec, run, services, RetrainParams(force=True))
    recorded = registry.get_version("churn", version)
    assert recorded.params["estimator"] == "team_models.churn:build"
    assert recorded.tags["factory"] == "team_models.churn:build"
    assert recorded.tags["factory_sha256"] == hashlib.sha256(module.read_bytes()).hexdigest()
    assert recorded.library_versions["scikit-learn"] == importlib.metadata.version("scikit-learn")
    outcome = evaluate_challenger(spec, run, services, RetrainParams(force=True), version)
    assert outcome.promote, outcome.reason  # a real model beats the class prior


@pytest.mark.parametrize(("example", "package"), [("churn_lightgbm", "lightgbm"), ("churn_xgboost", "xgboost-cpu")])
def test_lightgbm_and_xgboost_through_the_same_path(
    example: str, package: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The shipped LightGBM and XGBoost examples behind modelgate's preprocessing: checked, seeded, reproducible,
    and recorded with their package's version."""
    from modelgate.datasets.churn import generate_day
    from modelgate.training import code_provenance, model_step, train

    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path))
    monkeypatch.setenv("MODELGATE_INCLUDE_DIR", str(REPO_ROOT / "include"))
    path = tmp_path / f"{example}.yaml"
    path.write_text((REPO_ROOT / "include" / "examples" / f"{example}.yaml").read_text())
    spec = load_spec(path)
    frame = __import__("pandas").concat([generate_day(dt.date(2026, 1, d)) for d in range(1, 15)], ignore_index=True)
    first, second = train(spec, frame), train(spec, frame)
    assert model_step(spec, first.pipeline).get_params()["random_state"] == spec.seed
    x = frame[spec.feature_names]
    assert (first.pipeline.predict_proba(x) == second.pipeline.predict_proba(x)).all()
    assert first.metrics["train_roc_auc"] > 0.6 and first.params["n_estimators"] == 150
    made_by = code_provenance(spec, first.pipeline)
    assert made_by.packages[package] == importlib.metadata.version(package)
    bad = spec.estimator.model_copy(update={"params": {"n_estimators": 150, "learning_rat": 0.1}})
    from modelgate.estimator_check import check_params

    assert "does not take these params" in (check_params(spec.model_copy(update={"estimator": bad})) or "")


CUSTOM_STEP = '''
from sklearn.base import BaseEstimator, TransformerMixin


class Clip(TransformerMixin, BaseEstimator):
    """A transformer of the team's own: the model file holds an instance of it."""

    def __init__(self, high=100.0):
        self.high = high

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return x.clip(upper=self.high)


def build():
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    return make_pipeline(
        make_column_transformer((Clip(60.0), ["tenure_months", "monthly_charges"])), LogisticRegression(max_iter=500)
    )
'''


def test_a_model_holding_your_own_class_loads_in_a_fresh_process(include: Path, tmp_path: Path) -> None:
    """Serving and batch scoring unpickle the model in another process: the include folder is importable there."""
    import os
    import subprocess

    from modelgate.datasets.churn import generate_day
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.training import train

    _module(include, CUSTOM_STEP)
    spec = load_spec(_spec_file(include))
    frame = __import__("pandas").concat([generate_day(dt.date(2026, 1, d)) for d in range(1, 8)], ignore_index=True)
    (saved,) = ArtifactStore(str(tmp_path / "artifacts")).save_models(train(spec, frame).pipeline)
    assert saved.format == "skops" and "team_models.churn.Clip" in saved.trusted  # your class, listed by name
    code = (
        "import sys; from modelgate.registry.artifacts import ArtifactStore; "
        f"model = ArtifactStore({str(tmp_path / 'artifacts')!r}).load({saved.uri!r}, {saved.sha256!r}, "
        f"format='skops', trusted={list(saved.trusted)!r}); "
        "print(type(model.steps[0][1].transformers_[0][1]).__module__)"
    )
    env = {**os.environ, "MODELGATE_INCLUDE_DIR": str(include), "PYTHONPATH": str(REPO_ROOT / "plugins")}
    run = [sys.executable, "-c", code]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "team_models.churn"
