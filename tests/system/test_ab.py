"""An A/B experiment end to end on the running stack: `modelgate serve` logging every prediction, an experiment
started from the CLI, keys answered by their sticky arm, outcomes loaded from a file, the A/B DAG's look
promoting the challenger through the compare-and-swap, and the deploy DAG that follows it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from modelgate.experiments import assign
from tests.system.conftest import RunningAirflow, _free_port

pytestmark = pytest.mark.system

MODEL = "churn_ab"


def _cli_env(stack: RunningAirflow) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MODELGATE_"))}
    config = stack.stack.config
    env.update(
        MODELGATE_REGISTRY_URL=stack.registry_url,
        MODELGATE_HOME=str(config.modelgate_home),
        MODELGATE_INCLUDE_DIR=str(config.include),
        COLUMNS="200",
    )
    return env


def _modelgate(stack: RunningAirflow, *args: str) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("modelgate")), *args],
        env=_cli_env(stack),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"modelgate {' '.join(args)}: {result.stderr[-1500:]}"
    return result.stdout


def _two_versions(stack: RunningAirflow, spec: Any, rows: Any) -> None:
    """v1 (the champion) and v2 (a challenger): the spec's pipeline fitted on the seeded rows twice."""
    from modelgate.registry import Source, VersionDraft
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.training import train

    store = ArtifactStore(str(stack.stack.config.modelgate_home / "artifacts"))
    for run, iterations in (("v1", 40), ("v2", 60)):
        fitted = train(spec, rows, params={"max_iter": iterations}).pipeline
        saved = store.save(fitted)
        draft = VersionDraft(
            artifact_uri=saved.uri,
            artifact_sha256=saved.sha256,
            artifact_size=saved.size,
            source=Source("system-tests", run, "train"),
            feature_schema={f.name: f.type for f in spec.features},
            tags={"task": spec.task.value},
        )
        stack.registry.register(MODEL, draft)
    stack.registry.promote(MODEL, 1, expected_champion=None, actor="system-tests", reason="first")


@pytest.mark.timeout(900)
def test_an_experiment_from_serve_to_promotion(airflow_stack: RunningAirflow, tmp_path: Path) -> None:
    import pandas as pd

    from modelgate.catalog import load_spec
    from tests.system.conftest import _wait_for_dags

    stack, api, registry = airflow_stack, airflow_stack.api, airflow_stack.registry
    deploy, ab_dag = f"modelgate_deploy__{MODEL}", f"modelgate_ab__{MODEL}"
    _wait_for_dags(api, {deploy, ab_dag})
    spec = load_spec(stack.stack.config.include / "models" / f"{MODEL}.yaml")
    engine = sa.create_engine(stack.registry_url)
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text("SELECT * FROM churn_events ORDER BY event_time DESC LIMIT 3000"), conn)
    _two_versions(stack, spec, rows)
    _modelgate(stack, "deploy", MODEL, "--version", "1")

    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("modelgate")), "serve", MODEL, "--port", str(port)],
        env=_cli_env(stack),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _health(base).get("stable") == 1, 60, "serve never answered with v1")
        started = _modelgate(stack, "ab", "start", MODEL, "--challenger", "v2", "--split", "30")
        assert "v2 on 30 % of keys, running" in started
        experiment = _running_experiment(stack)
        _until(lambda: _health(base).get("canary") == 2, 30, "serve never took the experiment")

        features = spec.feature_names
        instances = rows[features].head(400).astype(object).where(rows[features].head(400).notna(), None)
        keys = [f"cust-{i}" for i in range(400)]
        answered = httpx.post(
            f"{base}/predict", json={"instances": instances.to_dict("records"), "keys": keys}, timeout=30
        ).json()
        assert answered["experiment"] == experiment.id
        expected = [2 if assign(k, experiment.salt, 30) else 1 for k in keys]
        assert answered["versions"] == expected  # each key's sticky arm
        logged = "SELECT count(*) FROM prediction_log WHERE model = 'churn_ab' AND experiment_id IS NOT NULL"
        _until(lambda: _count(engine, logged) == 400, 30, "the predictions never reached the log")

        # outcomes: the challenger's calls all right, the champion's right two times in three
        observed = dt.datetime.now(dt.UTC)
        lines = ["key,outcome,time"]
        answers = zip(keys, answered["versions"], answered["predictions"], strict=True)
        for i, (key, version, score) in enumerate(answers):
            called = 1 if score >= 0.5 else 0
            right = version == 2 or i % 3 != 0
            lines.append(f"{key},{called if right else 1 - called},{observed.isoformat()}")
        outcomes = tmp_path / "outcomes.csv"
        outcomes.write_text("\n".join(lines) + "\n")
        assert "400 outcomes loaded for churn_ab" in _modelgate(stack, "outcomes", "load", MODEL, str(outcomes))

        api.set_paused(deploy, False)
        api.set_paused(ab_dag, False)
        run_id = api.trigger(ab_dag)
        api.wait_run(ab_dag, run_id, timeout=300)
        states = api.task_states(ab_dag, run_id)
        assert states == {"analyse_experiment": "success", "announce_champion": "success"}, states
        assert registry.get_champion(MODEL).version == 2  # type: ignore[union-attr]
        promotion = registry.history(MODEL, kinds=["promote"])[-1]
        assert promotion.actor == "modelgate ab" and (promotion.verdict or {})["experiment"] == experiment.id
        _until(lambda: _health(base).get("stable") == 2 and _health(base).get("canary") is None, 30, "v2 not alone")
        # the announced champion started the deploy DAG, which finds v2 already serving every key
        _until(lambda: any(r["state"] == "success" for r in api.runs(deploy)), 300, "no deploy run followed")
        status = _modelgate(stack, "ab", "status", MODEL)
        assert f"experiment #{experiment.id} of churn_ab: v1 (champion) vs v2 on 30 % of keys, promoted" in status
    finally:
        server.terminate()
        server.wait(timeout=20)
        engine.dispose()


def _running_experiment(stack: RunningAirflow) -> Any:
    from modelgate.registry.experiments import ExperimentStore

    running = ExperimentStore(stack.registry).running(MODEL)
    assert running is not None
    return running


def _health(base: str) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"{base}/health", timeout=5).json())
    except (httpx.HTTPError, ValueError):
        return {}


def _count(engine: Any, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        time.sleep(0.5)
