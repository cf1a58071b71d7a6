"""A/B experiments: sticky assignment, the always-valid test and its decision (pure), then the registry side
(experiments, prediction log, outcomes, one look acted on) on real Postgres and a real `modelgate serve`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelgate import ab
from modelgate.experiments import (
    Action,
    ArmStats,
    GuardrailLook,
    Look,
    Settings,
    assign,
    decide,
    row_metric,
    sample_ratio,
    sequential_test,
)
from modelgate.registry import ArtifactStore, EventKind, Registry
from modelgate.registry.errors import InvalidInput, InvalidTransition, NoChampion, PromotionConflict
from modelgate.registry.experiments import ExperimentStore, LoggedPrediction
from modelgate.registry.store import ANY_CHAMPION
from modelgate.spec import InvalidSpec, parse_spec
from tests.conftest import REPO_ROOT
from tests.helpers import draft

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


# ------------------------------------------------------------------ pure


def test_assignment_is_sticky_uniform_and_independent_between_experiments() -> None:
    keys = [f"customer-{i}" for i in range(20_000)]
    first = [assign(k, "salt-a", 10) for k in keys]
    assert first == [assign(k, "salt-a", 10) for k in keys]  # one key, one arm
    assert 0.09 < sum(first) / len(keys) < 0.11
    other = [assign(k, "salt-b", 10) for k in keys]
    both = sum(a and b for a, b in zip(first, other, strict=True)) / len(keys)
    assert 0.005 < both < 0.015  # ~1 %: the two splits are independent
    assert not any(assign(k, "s", 0) for k in keys[:100]) and all(assign(k, "s", 100) for k in keys[:100])
    with pytest.raises(ValueError, match="within 0..100"):
        assign("k", "s", 150)


def test_row_metrics() -> None:
    assert row_metric("accuracy", 1, 0.7) == 1.0 and row_metric("accuracy", 0, 0.7) == 0.0
    assert row_metric("brier", 1, 0.7) == pytest.approx(0.09)
    assert row_metric("log_loss", 1, 0.5) == pytest.approx(math.log(2))
    assert row_metric("absolute_error", 3.0, 1.5) == 1.5
    with pytest.raises(ValueError, match="unknown per-prediction metric 'auc'"):
        row_metric("auc", 1, 0.5)


def test_the_sequential_test_is_oriented_and_its_intervals_only_narrow() -> None:
    better = sequential_test(ArmStats(5000, 0.80, 0.16), ArmStats(5000, 0.83, 0.14), alpha=0.05, mixture_sd=0.02)
    assert better.estimate == pytest.approx(0.03) and better.favours_challenger and better.p_value < 0.05
    lower_better = sequential_test(
        ArmStats(5000, 0.80, 0.16), ArmStats(5000, 0.83, 0.14), alpha=0.05, mixture_sd=0.02, higher_better=False
    )
    assert lower_better.favours_champion  # a brier 0.03 higher is worse
    noise = sequential_test(ArmStats(300, 0.80, 0.16), ArmStats(300, 0.81, 0.16), alpha=0.05, mixture_sd=0.02)
    assert noise.lower < 0 < noise.upper and not noise.favours_challenger
    later = sequential_test(
        ArmStats(310, 0.795, 0.16), ArmStats(310, 0.80, 0.16), alpha=0.05, mixture_sd=0.02, previous=noise
    )
    assert later.lower >= noise.lower and later.upper <= noise.upper and later.p_value <= noise.p_value
    few = sequential_test(ArmStats(1, 1.0, math.nan), ArmStats(0, math.nan, math.nan), alpha=0.05, mixture_sd=0.02)
    assert few.p_value == 1.0 and few.lower == -math.inf
    with pytest.raises(ValueError, match="alpha must be within"):
        sequential_test(ArmStats(10, 0, 1), ArmStats(10, 0, 1), alpha=1.5, mixture_sd=0.02)


def test_sample_ratio_mismatch() -> None:
    assert sample_ratio(9000, 1000, 10) > 0.5
    assert sample_ratio(9300, 700, 10) < 1e-6


def _look(lower: float, upper: float, n: int = 500) -> Look:
    return Look((lower + upper) / 2, lower, upper, 0.01 if lower > 0 or upper < 0 else 0.5, (n, n))


SETTINGS = Settings(metric="accuracy", min_labelled=100, max_looks=10, guardrails=(("brier", 0.01),))


@pytest.mark.parametrize(
    ("primary", "guard", "srm_p", "looks", "action", "reason"),
    [
        (_look(0.01, 0.05), _look(-0.005, 0.01), 1e-5, 3, Action.STOP, "sample ratio mismatch"),
        (_look(0.01, 0.05, n=50), _look(-0.005, 0.01), 0.5, 3, Action.CONTINUE, "fewer than min_labelled=100"),
        (_look(0.01, 0.05), _look(-0.05, -0.02), 0.5, 3, Action.STOP, "guardrail brier breached"),
        (_look(0.01, 0.05), _look(-0.005, 0.01), 0.5, 3, Action.PROMOTE, "the challenger is better"),
        (_look(0.01, 0.05), _look(-0.02, 0.01), 0.5, 3, Action.CONTINUE, "guardrails ['brier'] not yet cleared"),
        (_look(0.01, 0.05), _look(-0.02, 0.01), 0.5, 10, Action.STOP, "not cleared after 10 looks"),
        (_look(-0.05, -0.01), _look(-0.005, 0.01), 0.5, 3, Action.STOP, "the challenger is worse"),
        (_look(-0.01, 0.02), _look(-0.005, 0.01), 0.5, 10, Action.STOP, "no difference found in 10 looks"),
        (_look(-0.01, 0.02), _look(-0.005, 0.01), 0.5, 3, Action.CONTINUE, "no decision yet"),
    ],
)
def test_decide_records_one_reason(
    primary: Look, guard: Look, srm_p: float, looks: int, action: Action, reason: str
) -> None:
    decision = decide(SETTINGS, primary, [GuardrailLook("brier", 0.01, guard)], srm_p=srm_p, looks=looks)
    assert decision.action is action and reason in decision.reason, decision


def test_a_a_experiments_looked_at_daily_promote_at_most_alpha() -> None:
    from benchmarks.ab_bench import run

    result = run(100, seed=11)
    assert result["aa_false_promote_rate"] <= 0.05, result
    assert result["ab_power"] >= 0.4, result  # a real 2-point difference is found in most experiments


def test_the_spec_rules_of_experiments_are_checked() -> None:
    text = (REPO_ROOT / "include" / "models" / "churn.yaml").read_text()
    raw = yaml.safe_load(text)
    assert parse_spec(text).ab is None  # the example leaves it commented out: no modelgate_ab__churn
    raw["ab"] = {}
    spec = parse_spec(yaml.safe_dump(raw))
    assert spec.ab is not None and ab.settings_of(spec)["metric"] == "accuracy" and spec.ab.alpha == 0.05
    raw["ab"] = {"metric": "absolute_error"}
    with pytest.raises(InvalidSpec, match="absolute_error does not fit a binary_classification model"):
        parse_spec(yaml.safe_dump(raw))
    raw["ab"] = {"guardrails": [{"metric": "auc", "tolerance": 0.01}]}
    with pytest.raises(InvalidSpec, match="unknown per-prediction metric 'auc'"):
        parse_spec(yaml.safe_dump(raw))
    raw["ab"] = {"schedule": "@fortnightly"}
    with pytest.raises(InvalidSpec, match="unknown schedule preset '@fortnightly'"):
        parse_spec(yaml.safe_dump(raw))


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("key,outcome\na,1\n", "o.csv", "no column time"),
        ("key,outcome,time\na,yes,2026-03-01\n", "o.csv", "row 2 has no numeric outcome"),
        ("key,outcome,time\na,1,2026-03-01\nb,0,someday\n", "o.csv", "row 3 has no readable time"),
        ("key,outcome,time\n", "o.csv", "no rows"),
        ("key,outcome,time\na,1,2026-03-01\n", "o.txt", "come as .csv or .parquet"),
    ],
)
def test_outcome_files_are_refused_with_one_line(tmp_path: Path, content: str, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        ab.read_outcomes(path)


def test_outcome_files_read_keys_as_text_and_times_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("key,outcome,time\n007,1,2026-03-01 10:00\n8,0,2026-03-02T00:00:00+01:00\n")
    rows = ab.read_outcomes(path)
    assert rows == [
        ("007", 1.0, dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)),
        ("8", 0.0, dt.datetime(2026, 3, 1, 23, tzinfo=dt.UTC)),
    ]


# ------------------------------------------------------------------ registry


def _two_versions(registry: Registry) -> None:
    registry.register("demo", draft("r1"))
    registry.register("demo", draft("r2"))
    registry.promote("demo", 1, expected_champion=ANY_CHAMPION, actor="tests")


def _settings(**changes: Any) -> dict[str, Any]:
    raw = {"metric": "accuracy", "threshold": 0.5, "alpha": 0.05, "mixture_sd": 0.02, "min_labelled": 100,
           "max_looks": 28, "srm_alpha": 0.001, "guardrails": [["brier", 0.05]]}  # fmt: skip
    return {**raw, **changes}


@pytest.mark.integration
def test_one_experiment_at_a_time_against_the_champion(registry: Registry) -> None:
    store = ExperimentStore(registry)
    registry.register("demo", draft("r1"))
    with pytest.raises(NoChampion, match="no champion to run an experiment against"):
        store.start("demo", challenger=1, split_percent=10, settings=_settings(), actor="t")
    registry.register("demo", draft("r2"))
    registry.promote("demo", 1, expected_champion=ANY_CHAMPION, actor="tests")
    with pytest.raises(InvalidTransition, match="is the champion: name a challenger"):
        store.start("demo", challenger=1, split_percent=10, settings=_settings(), actor="t")
    with pytest.raises(InvalidInput, match="has no v7"):
        store.start("demo", challenger=7, split_percent=10, settings=_settings(), actor="t")
    with pytest.raises(InvalidInput, match="--split must be within"):
        store.start("demo", challenger=2, split_percent=100, settings=_settings(), actor="t")
    first = store.start("demo", challenger=2, split_percent=10, settings=_settings(), actor="alice")
    assert first.champion_version == 1 and first.status == "running" and len(first.salt) == 16
    with pytest.raises(InvalidTransition, match=r"experiment #\d+ of demo: v1 \(champion\) vs v2 .* stop it first"):
        store.start("demo", challenger=2, split_percent=10, settings=_settings(), actor="bob")
    ended = store.end(first.id, status="stopped", reason="enough", actor="alice")
    assert ended.status == "stopped" and ended.end_reason == "enough"
    with pytest.raises(PromotionConflict, match="no longer running, nothing was changed"):
        store.end(first.id, status="promoted", reason="late", actor="bob")
    events = [e for e in registry.history("demo") if e.kind is EventKind.EXPERIMENT]
    assert [e.reason.split(":")[0] for e in events] == [
        f"started experiment #{first.id}",
        f"experiment #{first.id} stopped",
    ]


@pytest.mark.integration
def test_the_prediction_log_appends_and_batch_rows_are_logged_once(registry: Registry) -> None:
    import sqlalchemy as sa

    store = ExperimentStore(registry)
    rows = [LoggedPrediction("demo", f"k{i}", 1, 0.1 * i, "serve") for i in range(5)]
    batch = [LoggedPrediction("demo", f"b{i}", 1, 0.5, "batch", None, T0) for i in range(3)]
    assert store.log_predictions(rows + batch) == 8
    store.log_predictions(batch)  # the interval scored again
    logged = store.predictions("demo")
    assert len(logged) == 8 and sorted(p.request_key for p in logged if p.source == "batch") == ["b0", "b1", "b2"]
    with pytest.raises(Exception, match="append-only"), registry.engine.begin() as conn:
        conn.execute(sa.text("UPDATE prediction_log SET score = 0"))


@pytest.mark.integration
def test_outcomes_load_all_or_nothing_and_are_never_changed(registry: Registry) -> None:
    store = ExperimentStore(registry)
    loaded = store.load_outcomes("demo", [("a", 1.0, T0), ("b", 0.0, T0)], source="t")
    assert (loaded.added, loaded.known) == (2, 0)
    again = store.load_outcomes("demo", [("a", 1.0, T0), ("c", 1.0, T0)], source="t")
    assert (again.added, again.known) == (1, 1)
    with pytest.raises(InvalidInput, match="key 'b' already has outcome 0, the input says 1: nothing was loaded"):
        store.load_outcomes("demo", [("d", 1.0, T0), ("b", 1.0, T0)], source="t")
    with pytest.raises(InvalidInput, match="key 'e' has two different outcomes"):
        store.load_outcomes("demo", [("e", 1.0, T0), ("e", 0.0, T0)], source="t")
    assert store.load_outcomes("demo", [("d", 0.0, T0)], source="t").added == 1  # 'd' was not half-written


@pytest.mark.integration
def test_the_sql_sums_of_every_metric_agree_with_the_per_prediction_definitions(registry: Registry) -> None:
    """`row_metric` is the oracle: one query sums every metric per arm as Python does row by row."""
    import random

    store = ExperimentStore(registry)
    _two_versions(registry)
    experiment = store.start("demo", challenger=2, split_percent=50, settings=_settings(), actor="t")
    rng = random.Random(7)
    rows, outcomes, expected = [], [], {}
    for i in range(300):
        version, score, outcome = 1 + i % 2, rng.random(), float(rng.random() < 0.4)
        rows.append(LoggedPrediction("demo", f"k{i}", version, score, "serve", experiment.id, T0))
        if i % 5:  # every fifth key has no outcome yet
            outcomes.append((f"k{i}", outcome, T0 + dt.timedelta(hours=1)))
            expected.setdefault(version, []).append((outcome, score))
    rows.append(LoggedPrediction("demo", "k0", 2, 0.99, "serve", experiment.id, T0 + dt.timedelta(minutes=5)))
    store.log_predictions(rows)  # k0 answered twice: its first prediction counts
    store.load_outcomes("demo", outcomes, source="t")
    metrics = ["accuracy", "brier", "log_loss", "squared_error", "absolute_error"]
    summed = store.arm_sums(experiment, until=T0 + dt.timedelta(days=1), metrics=metrics, threshold=0.4)
    for metric in metrics:
        for version, pairs in expected.items():
            arm = summed[metric][version]
            values = [row_metric(metric, o, s, threshold=0.4) for o, s in pairs]
            assert (arm.keys, arm.labelled, arm.missing) == (150, len(pairs), 150 - len(pairs))
            assert arm.total == pytest.approx(sum(values)) and arm.total_sq == pytest.approx(sum(v * v for v in values))
    with pytest.raises(InvalidInput, match="unknown per-prediction metric 'auc'"):
        store.arm_sums(experiment, until=T0, metrics=["accuracy", "auc"])


@pytest.mark.integration
def test_retention_deletes_old_predictions_but_never_a_running_experiment_s(registry: Registry) -> None:
    store = ExperimentStore(registry)
    _two_versions(registry)
    running = store.start("demo", challenger=2, split_percent=10, settings=_settings(), actor="t")
    old, new = T0 - dt.timedelta(days=100), T0 - dt.timedelta(days=1)
    rows = [LoggedPrediction("demo", f"old{i}", 1, 0.2, "serve", None, old) for i in range(5)]
    rows += [LoggedPrediction("demo", f"exp{i}", 2, 0.7, "serve", running.id, old) for i in range(3)]
    rows += [LoggedPrediction("demo", f"new{i}", 1, 0.4, "serve", None, new) for i in range(4)]
    rows += [LoggedPrediction("other", "old0", 1, 0.2, "serve", None, old)]  # another model's: untouched
    store.log_predictions(rows)
    outcomes = [(f"old{i}", 1.0, old) for i in range(5)] + [("exp0", 0.0, old), ("new0", 1.0, new), ("gone", 1.0, old)]
    store.load_outcomes("demo", outcomes, source="t")
    cut = T0 - dt.timedelta(days=90)
    dry = store.prune("demo", before=cut, dry_run=True)
    assert (dry.predictions, dry.outcomes, dry.kept_for_experiment) == (5, 6, 3)  # old0-4 and 'gone'
    assert len(store.predictions("demo")) == 12  # a dry run deletes nothing
    pruned = store.prune("demo", before=cut, batch=2)  # in batches of two: each its own transaction
    assert pruned == dry
    assert sorted(p.request_key for p in store.predictions("demo")) == [*(f"exp{i}" for i in range(3)),
                                                                         *(f"new{i}" for i in range(4))]  # fmt: skip
    assert [p.request_key for p in store.predictions("other")] == ["old0"]
    assert store.prune("demo", before=cut) == dataclasses.replace(pruned, predictions=0, outcomes=0)  # again: none
    assert store.load_outcomes("demo", [("exp0", 0.0, old), ("new0", 1.0, new)], source="t").known == 2  # kept
    store.end(running.id, status="stopped", reason="done", actor="t")
    assert store.prune("demo", before=cut).predictions == 3  # an ended experiment's rows age out too
    with pytest.raises(InvalidInput, match="timezone-aware"):
        store.prune("demo", before=dt.datetime(2026, 1, 1))


@pytest.mark.integration
def test_the_batch_dag_s_retention_and_the_prune_command(registry: Registry, registry_url: str, tmp_path: Path) -> None:
    from tests.cli_helpers import run_cli

    spec = parse_spec(
        yaml.safe_dump(
            {
                **yaml.safe_load((REPO_ROOT / "include/models/churn.yaml").read_text()),
                "deploy": {"target": "local", "keep_predictions": "30d"},
            }
        )  # fmt: skip
    )
    store = ExperimentStore(registry)
    store.log_predictions([LoggedPrediction("churn", f"k{d}", 1, 0.5, "serve", None, T0 - dt.timedelta(days=d))
                           for d in (10, 40, 50)])  # fmt: skip
    pruned = ab.apply_retention(spec, registry, T0)
    assert (
        pruned is not None
        and pruned.predictions == 2
        and [p.request_key for p in store.predictions("churn")] == ["k10"]
    )
    forever = spec.model_copy(update={"deploy": spec.deploy.model_copy(update={"keep_predictions": None})})
    assert ab.apply_retention(forever, registry, T0) is None
    with pytest.raises(InvalidSpec, match="keep_predictions"):
        parse_spec(yaml.safe_dump({**yaml.safe_load((REPO_ROOT / "include/models/churn.yaml").read_text()),
                                   "deploy": {"keep_predictions": "forever"}}))  # fmt: skip
    env = {"MODELGATE_REGISTRY_URL": registry_url, "MODELGATE_INCLUDE_DIR": str(tmp_path / "include")}
    dry = run_cli("predictions", "prune", "churn", "--older-than", "1d", "--dry-run", env=env).stdout
    assert "churn: would delete 1 logged predictions and 0 outcomes from before" in dry
    assert (
        "churn: deleted 1 logged predictions"
        in run_cli("predictions", "prune", "churn", "--older-than", "1d", env=env).stdout
    )
    assert store.predictions("churn") == []
    bad = run_cli("predictions", "prune", "churn", "--older-than", "soon", env=env, check=False)
    assert bad.returncode == 1 and "--older-than: 'soon' is not a duration like 30m" in bad.stderr
    missing = run_cli("predictions", "prune", "churn", env=env, check=False)
    assert (
        missing.returncode == 1
        and "give --older-than (e.g. 90d): the spec sets no deploy.keep_predictions" in missing.stderr
    )


def _traffic(
    store: ExperimentStore,
    experiment: Any,
    *,
    keys: int,
    accuracy: dict[int, float],
    at: dt.datetime,
    delay: dt.timedelta = dt.timedelta(days=2),
) -> list:
    """Each key predicted through its sticky arm, with a score right or wrong at the arm's accuracy."""
    import random

    rng = random.Random(5)
    predictions, outcomes = [], []
    for i in range(keys):
        key = f"cust-{i}"
        version = (
            experiment.challenger_version if assign(key, experiment.salt, experiment.split_percent)
            else experiment.champion_version
        )  # fmt: skip
        truth = float(rng.random() < 0.5)
        right = rng.random() < accuracy[version]
        score = 0.9 if (truth == 1.0) == right else 0.1
        predictions.append(LoggedPrediction("demo", key, version, score, "serve", experiment.id, at))
        outcomes.append((key, truth, at + delay))
    store.log_predictions(predictions)
    return outcomes


@pytest.mark.integration
def test_a_look_joins_outcomes_point_in_time_and_promotes_once(registry: Registry) -> None:
    import time

    _two_versions(registry)
    store = ExperimentStore(registry)
    experiment = store.start("demo", challenger=2, split_percent=30, settings=_settings(), actor="t")
    start = experiment.started_at
    delay = dt.timedelta(milliseconds=50)
    outcomes = _traffic(store, experiment, keys=6000, accuracy={1: 0.75, 2: 0.85}, at=start, delay=delay)
    labelled, late = outcomes[:5000], outcomes[5000:]
    store.load_outcomes("demo", labelled, source="t")

    # before any outcome was observed: every prediction counts as missing, nothing is decided
    early = ab.analyse(registry, "demo", interval_end=start + delay / 2, act=True)
    assert early is not None and early.decision.action is Action.CONTINUE
    assert sum(a.missing for a in early.arms) == 6000 and sum(a.labelled for a in early.arms) == 0

    time.sleep(0.1)
    moment = dt.datetime.now(dt.UTC)
    look = ab.analyse(registry, "demo", interval_end=moment, act=False)
    assert look is not None
    champion, challenger = look.arms
    assert champion.keys + challenger.keys == 6000 and 0.25 < challenger.keys / 6000 < 0.35
    assert champion.labelled + challenger.labelled == 5000 and champion.missing + challenger.missing == 1000
    assert look.decision.action is Action.PROMOTE and look.acted is None  # a dry run
    assert registry.get_champion("demo").version == 1

    store.load_outcomes("demo", late, source="t")  # observed by `moment`, loaded after it: late
    acted = ab.analyse(registry, "demo", interval_end=moment, act=True)
    assert acted is not None and acted.acted == "promoted v2"
    assert sum(a.late for a in acted.arms) == 1000 and sum(a.labelled for a in acted.arms) == 6000
    assert registry.get_champion("demo").version == 2
    assert store.get(experiment.id).status == "promoted"
    promotion = registry.history("demo", kinds=["promote"])[-1]
    assert promotion.actor == "modelgate ab" and promotion.verdict["experiment"] == experiment.id
    again = ab.analyse(registry, "demo", interval_end=moment, act=True)
    assert again is not None and again.acted is None  # ended: not acted on twice
    assert [lk.interval_end for lk in store.looks(experiment.id)] == [start + delay / 2, moment]


@pytest.mark.integration
def test_a_changed_champion_stops_the_experiment_without_promoting(registry: Registry) -> None:
    _two_versions(registry)
    registry.register("demo", draft("r3"))
    store = ExperimentStore(registry)
    experiment = store.start("demo", challenger=2, split_percent=50, settings=_settings(), actor="t")
    outcomes = _traffic(store, experiment, keys=4000, accuracy={1: 0.7, 2: 0.9}, at=experiment.started_at)
    store.load_outcomes("demo", outcomes, source="t")
    registry.promote("demo", 3, expected_champion=1, actor="someone else")
    look = ab.analyse(registry, "demo", interval_end=experiment.started_at + dt.timedelta(days=3))
    assert look is not None and look.acted == "stopped: the champion changed"
    assert registry.get_champion("demo").version == 3 and store.get(experiment.id).status == "stopped"


# ------------------------------------------------------------------ serving


def _served_setup(registry: Registry, tmp_path: Path) -> tuple[Any, Any]:
    from modelgate.deploy.local import LocalTarget, deploy_local
    from tests.test_deploy_local import FEATURES, TASK, _register

    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    for run, c in (("r1", 1.0), ("r2", 0.1)):
        _register(registry, artifacts, run, c)
    registry.promote("demo", 1, expected_champion=ANY_CHAMPION, actor="tests")
    target = LocalTarget(tmp_path / "serving")
    deploy_local(registry, artifacts, target, model="demo", version=1, features=FEATURES, task=TASK, steps=[100])
    raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    raw.update(name="demo", features=[{"name": f, "type": "numeric"} for f in FEATURES])
    raw["evaluation"]["slices"] = []
    raw["ab"] = {}
    return parse_spec(yaml.safe_dump(raw)), artifacts


@pytest.mark.integration
def test_serve_routes_keys_sticky_during_an_experiment_and_logs_every_prediction(
    registry: Registry, tmp_path: Path
) -> None:
    from modelgate.deploy.local import LocalTarget
    from modelgate.deploy.serve import PredictionLog, create_app
    from tests.test_deploy_local import _running

    spec, artifacts = _served_setup(registry, tmp_path)
    store = ExperimentStore(registry)
    log = PredictionLog(store, flush_seconds=0.05)
    target = LocalTarget(tmp_path / "serving")
    with _running(create_app(target, "demo", poll_seconds=0.05, prediction_log=log)) as url:
        experiment = ab.start(
            registry, spec, challenger=2, split=40, actor="t", serving_root=tmp_path / "serving", artifacts=artifacts
        )
        for _ in range(100):
            if httpx.get(f"{url}/health").json()["canary"] == 2:
                break
        keys = [f"k{i}" for i in range(200)]
        rows = [{"a": float(i % 6), "b": float(i % 2)} for i in range(200)]
        first = httpx.post(f"{url}/predict", json={"instances": rows, "keys": keys}).json()
        second = httpx.post(f"{url}/predict", json={"instances": rows[:50], "keys": keys[:50]}).json()
        assert first["experiment"] == experiment.id and first["keys"] == keys
        expected = [2 if assign(k, experiment.salt, 40) else 1 for k in keys]
        assert first["versions"] == expected and second["versions"] == expected[:50]  # sticky
        anonymous = httpx.post(f"{url}/predict", json={"instances": rows[:3]}).json()
        assert len(anonymous["keys"]) == 3 and len(set(anonymous["keys"])) == 3  # made up, answered
        mismatch = httpx.post(f"{url}/predict", json={"instances": rows[:3], "keys": ["x"]})
        assert mismatch.status_code == 422 and "1 keys for 3 instances" in mismatch.text
        metrics = httpx.get(f"{url}/metrics").text
        ab.stop(registry, "demo", reason="done", actor="t", serving_root=tmp_path / "serving")
        for _ in range(100):
            if httpx.get(f"{url}/health").json()["canary"] is None:
                break
        after = httpx.post(f"{url}/predict", json={"instances": rows[:20], "keys": keys[:20]}).json()
        assert set(after["versions"]) == {1} and "experiment" not in after
    logged = store.predictions("demo")
    assert len(logged) == 200 + 50 + 3 + 20 and log.dropped == 0
    by_key = {(p.request_key, p.experiment_id): p.version for p in logged if p.experiment_id}
    assert all(by_key[(k, experiment.id)] == v for k, v in zip(keys, expected, strict=True))
    assert 'modelgate_serve_rows_total{model="demo",version="2"}' in metrics
    assert "modelgate_prediction_log_written_rows" in metrics


@pytest.mark.integration
def test_an_experiment_needs_the_champion_served_and_vertex_is_refused(registry: Registry, tmp_path: Path) -> None:
    from modelgate.deploy.controller import DeployError

    spec, artifacts = _served_setup(registry, tmp_path)
    registry.register("demo", draft("r9"))
    vertex = spec.model_copy(update={"deploy": spec.deploy.model_copy(update={"target": "vertex"})})
    with pytest.raises(InvalidInput, match="deploys to Vertex AI: A/B experiments route keys in `modelgate serve`"):
        ab.start(registry, vertex, challenger=2, split=10, actor="t", serving_root=tmp_path / "serving")
    with pytest.raises(DeployError, match="serves nothing for demo, not the champion v1: deploy it first"):
        ab.start(registry, spec, challenger=2, split=10, actor="t", serving_root=tmp_path / "elsewhere",
                 artifacts=artifacts)  # fmt: skip
    assert ExperimentStore(registry).of_model("demo") == []  # refused before anything was recorded


# ------------------------------------------------------------------ the CLI


@pytest.mark.integration
def test_the_cli_starts_reads_and_stops_an_experiment_with_one_line_errors(registry_url: str, tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    from tests.cli_helpers import run_cli, run_json

    env = {
        "MODELGATE_REGISTRY_URL": registry_url,
        "MODELGATE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "MODELGATE_INCLUDE_DIR": str(tmp_path / "include"),
        "MODELGATE_SERVING_DIR": str(tmp_path / "serving"),
    }
    x, y = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]], [0, 0, 1, 1]
    for c in (1.0, 0.1):
        joblib.dump(LogisticRegression(C=c).fit(x, y), tmp_path / f"m{c}.joblib")
        run_cli("register", "demo", "--artifact", str(tmp_path / f"m{c}.joblib"), env=env)
    run_cli("promote", "demo", "1", "--reason", "first", env=env)
    raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    raw.update(name="demo", deploy={"target": "none"})
    (tmp_path / "include" / "models").mkdir(parents=True)
    (tmp_path / "include" / "models" / "demo.yaml").write_text(yaml.safe_dump(raw))

    def fails(*args: str) -> str:
        result = run_cli(*args, env=env, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        return lines[0]

    assert "declares no `ab:` section: add one" in fails("ab", "start", "demo", "--challenger", "v2")
    raw["ab"] = {"min_labelled": 10}
    (tmp_path / "include" / "models" / "demo.yaml").write_text(yaml.safe_dump(raw))
    started = run_json("ab", "start", "demo", "--challenger", "v2", "--split", "20", env=env)
    assert started["status"] == "running" and started["split_percent"] == 20 and started["champion_version"] == 1
    assert "stop it first (`modelgate ab stop demo`)" in fails("ab", "start", "demo", "--challenger", "2")

    bad = tmp_path / "outcomes.csv"
    bad.write_text("key,outcome\nk1,1\n")
    assert "no column time" in fails("outcomes", "load", "demo", str(bad))
    good = tmp_path / "good.csv"
    good.write_text("key,outcome,time\nk1,1,2026-03-01\nk2,0,2026-03-02\n")
    assert (
        "2 outcomes loaded for demo, 0 already known" in run_cli("outcomes", "load", "demo", str(good), env=env).stdout
    )
    assert (
        "0 outcomes loaded for demo, 2 already known" in run_cli("outcomes", "load", "demo", str(good), env=env).stdout
    )

    looked = run_json("ab", "analyse", "demo", env=env)
    assert looked["decision"]["action"] == "continue" and looked["acted"] is None
    status = run_cli("ab", "status", "demo", env=env).stdout
    assert f"experiment #{started['id']} of demo: v1 (champion) vs v2 on 20 % of keys, running" in status
    assert "fewer than min_labelled=10" in status
    stopped = run_cli("ab", "stop", "demo", "--reason", "enough", env=env).stdout
    assert f"stopped experiment #{started['id']} of demo: v1 serves every key" in stopped
    assert "demo runs no experiment" in fails("ab", "stop", "demo")


@pytest.mark.integration
def test_the_model_page_form_starts_and_stops_an_experiment(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelgate.airflow.web import experiment_action

    spec, artifacts = _served_setup(registry, tmp_path)
    include = tmp_path / "include"
    (include / "models").mkdir(parents=True)
    (include / "models" / "demo.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True)))
    monkeypatch.setenv("MODELGATE_INCLUDE_DIR", str(include))
    monkeypatch.setenv("MODELGATE_SERVING_DIR", str(tmp_path / "serving"))
    monkeypatch.setenv("MODELGATE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    for form, message in (
        ({"do": "launch"}, "unknown experiment action 'launch'"),
        ({"do": "start", "challenger": "x", "split": "10"}, "the challenger must be a version number"),
        ({"do": "start", "challenger": "2", "split": "100"}, "the split must be a whole percent from 1 to 99"),
        ({"do": "stop", "reason": " "}, "stopping an experiment needs a reason"),
    ):
        with pytest.raises(InvalidInput, match=message):
            experiment_action(registry, "demo", form, "airflow:ann")
    started = experiment_action(registry, "demo", {"do": "start", "challenger": "v2", "split": "25"}, "airflow:ann")
    assert started.startswith("started experiment #") and "v2 on 25 % of keys" in started
    running = ExperimentStore(registry).running("demo")
    assert running is not None and running.started_by == "airflow:ann" and running.split_percent == 25
    from modelgate.deploy.local import LocalTarget

    assert LocalTarget(tmp_path / "serving").read_state("demo").canary_percent == 25  # type: ignore[union-attr]
    stopped = experiment_action(registry, "demo", {"do": "stop", "reason": "seen enough"}, "airflow:ann")
    assert stopped.endswith("v1 serves every key")
    assert LocalTarget(tmp_path / "serving").read_state("demo").canary is None  # type: ignore[union-attr]


@pytest.mark.integration
def test_the_prediction_log_connects_lazily_and_counts_what_it_could_not_write(registry: Registry) -> None:
    from modelgate.deploy.serve import PredictionLog
    from modelgate.registry.connection import create_registry_engine

    made: list[str] = []

    def away() -> ExperimentStore:
        made.append("away")
        return ExperimentStore(Registry(create_registry_engine("postgresql://postgres@127.0.0.1:1/nowhere")))

    log = PredictionLog(away)
    log.flush()
    assert made == []  # nothing to write: no connection tried
    log.add([LoggedPrediction("demo", "k1", 1, 0.5)])
    log.flush()
    assert made == ["away"] and (log.written, log.dropped) == (0, 1)
    log.add([LoggedPrediction("demo", "k2", 1, 0.5)])
    log.flush()  # within the quiet period: dropped without another try
    assert made == ["away"] and log.dropped == 2

    working = PredictionLog(lambda: ExperimentStore(registry), max_pending=3)
    working.add([LoggedPrediction("demo", f"k{i}", 1, 0.5) for i in range(5)])  # two over the buffer's bound
    working.stop()  # flushes what it holds
    assert (working.written, working.dropped) == (3, 2)
    assert len(ExperimentStore(registry).predictions("demo")) == 3


@pytest.mark.integration
def test_outcomes_come_from_the_specs_source_and_a_changed_label_keeps_the_first(
    registry: Registry, registry_url: str
) -> None:
    import sqlalchemy as sa

    from modelgate.data import Interval
    from modelgate.datasets.churn import write_days

    spec = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    write_days(registry_url, dt.date(2026, 1, 1), dt.date(2026, 1, 3), rows_per_day=50)
    interval = Interval(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))
    first = ab.collect_outcomes(registry, spec, interval, data_url=registry_url)
    assert (first.added, first.known, first.conflicting) == (100, 0, 0)
    again = ab.collect_outcomes(registry, spec, interval, data_url=registry_url)
    assert (again.added, again.known, again.conflicting) == (0, 100, 0)
    with registry.engine.begin() as conn:
        key, label = conn.execute(sa.text("SELECT customer_id, churned FROM churn_events LIMIT 1")).one()
        conn.execute(sa.text("UPDATE churn_events SET churned = 1 - churned WHERE customer_id = :k"), {"k": key})
    changed = ab.collect_outcomes(registry, spec, interval, data_url=registry_url)
    assert (changed.added, changed.conflicting) == (0, 1)  # counted, never rewritten
    with registry.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT outcome FROM outcome WHERE request_key = :k"), {"k": key}).scalar_one()
    assert stored == float(label)
    empty = Interval(dt.datetime(2027, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 2, tzinfo=dt.UTC))
    assert ab.collect_outcomes(registry, spec, empty, data_url=registry_url).added == 0


@pytest.mark.integration
def test_the_ab_dag_sends_its_per_arm_metrics_through_airflows_opentelemetry(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's OTel metrics to an OTLP/HTTP endpoint on loopback (a collector's wire), decoded as it would."""
    import http.server
    import threading
    import time

    from airflow.sdk._shared.observability.metrics import stats
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.observability.metrics.otel_logger import get_otel_logger
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from modelgate.airflow.factory import _emit_ab_metrics

    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for key, value in {
        "OTEL_ON": "True",
        "OTEL_HOST": "127.0.0.1",
        "OTEL_PORT": str(server.server_address[1]),
        "OTEL_SSL_ACTIVE": "False",
        "OTEL_INTERVAL_MILLISECONDS": "100",
    }.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)

    _two_versions(registry)
    store = ExperimentStore(registry)
    experiment = store.start("demo", challenger=2, split_percent=50, settings=_settings(), actor="t")
    outcomes = _traffic(store, experiment, keys=400, accuracy={1: 0.7, 2: 0.8}, at=experiment.started_at)
    store.load_outcomes("demo", outcomes, source="t")
    analysis = ab.analyse(registry, "demo", interval_end=experiment.started_at + dt.timedelta(days=3), act=False)
    assert analysis is not None
    stats.initialize(factory=get_otel_logger, export_legacy_names=False)
    try:
        _emit_ab_metrics("demo", analysis)
        otel_metrics.get_meter_provider().force_flush()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        gauges: dict[tuple[str, str], float] = {}
        while time.monotonic() < deadline and len(gauges) < 7:
            for body in list(received):
                request = ExportMetricsServiceRequest.FromString(body)
                for resource in request.resource_metrics:
                    for scope in resource.scope_metrics:
                        for metric in scope.metrics:
                            for point in metric.gauge.data_points:
                                tags = {a.key: a.value.string_value for a in point.attributes}
                                gauges[(metric.name, tags.get("arm", ""))] = point.as_double or float(point.as_int)
            time.sleep(0.1)
    finally:
        stats.initialize(factory=NoStatsLogger, export_legacy_names=False)
        otel_metrics.get_meter_provider().shutdown()  # type: ignore[attr-defined]
        # a provider without readers, set as Airflow itself resets it after a fork
        import opentelemetry.metrics._internal as otel_internal

        otel_internal._METER_PROVIDER_SET_ONCE._done = False
        otel_internal._METER_PROVIDER = None
        from opentelemetry.sdk.metrics import MeterProvider

        otel_metrics.set_meter_provider(MeterProvider())  # no readers: Airflow's flush at exit sends nothing
        server.shutdown()
    champion, challenger = analysis.arms
    names = {name.split(".", 1)[-1] if not name.startswith("modelgate") else name for name, _ in gauges}
    assert {"modelgate.ab.champion.labelled", "modelgate.ab.difference.lower"} <= names, gauges
    labelled = {arm: value for (name, arm), value in gauges.items() if name.endswith("ab.challenger.labelled")}
    assert labelled == {"challenger": challenger.labelled}, gauges
    estimate = next(v for (name, _), v in gauges.items() if name.endswith("ab.difference.estimate"))
    assert estimate == pytest.approx(analysis.look.estimate)
