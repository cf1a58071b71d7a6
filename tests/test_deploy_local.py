"""The local target: canary steps and traffic restore, `modelgate serve` over real HTTP, batch scoring."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
import uvicorn
from sklearn.linear_model import LogisticRegression

from modelgate.data import Interval
from modelgate.datasets.churn import write_days
from modelgate.deploy.batch import batch_predict, risk_tiers
from modelgate.deploy.local import (
    DeployError,
    LocalTarget,
    ProbeBatch,
    ServingState,
    Slot,
    deploy_local,
    load_slot,
)
from modelgate.deploy.serve import create_app
from modelgate.deploy.store import DeploymentStore
from modelgate.registry import ArtifactIntegrityError, ArtifactStore, EventKind, Registry, Source, VersionDraft
from modelgate.registry.store import ANY_CHAMPION
from modelgate.spec import parse_spec
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

FEATURES = ["a", "b"]
TASK = "binary_classification"


def _register(registry: Registry, artifacts: ArtifactStore, run: str, c: float) -> int:
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
    stored = artifacts.save(LogisticRegression(C=c).fit(x, [0, 0, 0, 1, 1, 1]))
    draft = VersionDraft(
        artifact_uri=stored.uri,
        artifact_sha256=stored.sha256,
        artifact_size=stored.size,
        source=Source("tests", run, "train"),
        feature_schema={f: "numeric" for f in FEATURES},
        tags={"task": TASK},
    )
    return registry.register("demo", draft).version


@pytest.fixture
def setup(registry: Registry, tmp_path: Path) -> dict[str, Any]:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    versions = [_register(registry, artifacts, f"r{i}", c) for i, c in enumerate((1.0, 0.1, 10.0), start=1)]
    return {
        "registry": registry,
        "artifacts": artifacts,
        "target": LocalTarget(tmp_path / "serving"),
        "versions": versions,
    }


def _deploy(setup: dict[str, Any], version: int, steps=(10, 50, 100), probe=None) -> Any:
    """Promote `version` (only champions, present or past, may serve), then roll it out."""
    setup["registry"].promote("demo", version, expected_champion=ANY_CHAMPION, actor="tests")
    return deploy_local(
        setup["registry"],
        setup["artifacts"],
        setup["target"],
        model="demo",
        version=version,
        features=FEATURES,
        task=TASK,
        steps=list(steps),
        probe=probe,
    )


def test_first_deploy_goes_straight_to_full_traffic(setup: dict[str, Any]) -> None:
    deployment = _deploy(setup, 1)
    state = setup["target"].read_state("demo")
    assert state.stable.version == 1 and state.canary is None and state.traffic() == {"v1": 100}
    current = setup["target"].model_dir("demo") / "current"
    assert current.is_symlink() and current.resolve() == Path(state.stable.path)
    assert deployment.status == "live" and deployment.traffic == {"v1": 100}
    event = setup["registry"].history("demo", kinds=["deploy"])[-1]
    assert event.kind is EventKind.DEPLOY and event.to_version == 1 and event.verdict["status"] == "live"
    assert _deploy(setup, 1) is None  # already serving it: nothing changes


def test_canary_steps_then_full_switch(setup: dict[str, Any]) -> None:
    _deploy(setup, 1)
    seen: list[dict[str, int]] = []
    rows = pd.DataFrame({"a": [0.5, 4.5], "b": [1.0, 0.0]})
    probe = ProbeBatch(rows, classification=True)

    def recording_probe(state: ServingState, slot: Any) -> None:
        seen.append(state.traffic())
        probe(state, slot)

    deployment = _deploy(setup, 2, probe=recording_probe)
    assert seen == [{"v1": 90, "v2": 10}, {"v1": 50, "v2": 50}, {"v2": 100}]
    assert all(sum(step.values()) == 100 for step in seen)
    assert deployment.previous_version == 1 and setup["target"].read_state("demo").stable.version == 2
    statuses = [d.status for d in DeploymentStore(setup["registry"]).history("demo")]
    assert statuses == ["superseded", "live"]


def test_failed_probe_restores_traffic_and_records_failure(setup: dict[str, Any]) -> None:
    _deploy(setup, 1)

    def failing_at_50(state: ServingState, slot: Any) -> None:
        if state.canary_percent == 50:
            raise DeployError("probe: p99 latency too high")

    with pytest.raises(DeployError, match="demo v2 local deployment failed, traffic restored: DeployError: probe: p99"):
        _deploy(setup, 2, probe=failing_at_50)
    state = setup["target"].read_state("demo")
    assert state.stable.version == 1 and state.canary is None
    last = DeploymentStore(setup["registry"]).history("demo")[-1]
    assert last.status == "failed" and "p99 latency" in (last.error or "")
    assert last.traffic == {"v1": 100}


def test_tampered_artifacts_are_refused(setup: dict[str, Any]) -> None:
    registry = setup["registry"]
    version = registry.get_version("demo", 3)
    Path(version.artifact_uri.removeprefix("file://")).write_bytes(b"evil")
    with pytest.raises(DeployError, match="refusing to load it"):
        _deploy(setup, 3)
    _deploy(setup, 1)
    slot = setup["target"].read_state("demo").stable
    Path(slot.path).write_bytes(Path(slot.path).read_bytes() + b"x")
    with pytest.raises(ArtifactIntegrityError, match="staged artifact .* refusing to load it"):
        load_slot(slot)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _running(app: Any) -> Iterator[str]:
    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code in (200, 401):
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(setup: dict[str, Any]) -> Iterator[str]:
    _deploy(setup, 1)
    with _running(create_app(setup["target"], "demo", poll_seconds=0.05)) as url:
        yield url


def _wait_for(url: str, stable: int, canary: int | None = None) -> None:
    for _ in range(100):
        health = httpx.get(f"{url}/health").json()
        if health["stable"] == stable and health["canary"] == canary:
            return
        time.sleep(0.05)
    raise AssertionError(f"server never switched to v{stable}/{canary}")


def test_serve_predicts_with_version_and_validates_input(server: str) -> None:
    health = httpx.get(f"{server}/health").json()
    assert health == {"status": "ok", "model": "demo", "stable": 1, "canary": None, "traffic": {"v1": 100}}
    answer = httpx.post(f"{server}/predict", json={"instances": [{"a": 0.0, "b": 1.0}, {"a": 5.0, "b": 0.0}]})
    body = answer.json()
    assert answer.status_code == 200 and body["version"] == 1 and len(body["predictions"]) == 2
    assert body["predictions"][0] < 0.5 < body["predictions"][1]
    missing = httpx.post(f"{server}/predict", json={"instances": [{"a": 1.0}]})
    assert missing.status_code == 422 and "instances lack features: b" in missing.text
    empty = httpx.post(f"{server}/predict", json={"instances": []})
    assert empty.status_code == 422


def test_large_bodies_are_refused_before_parsing_and_errors_never_echo_input(server: str) -> None:
    huge = b'{"instances": [' + b",".join([b'{"a": 1.5, "b": 2.5}'] * 600_000) + b"]}"  # ~12 MB
    declared = httpx.post(f"{server}/predict", content=huge, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "4194304-byte limit" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    streamed = httpx.post(f"{server}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    many = [{"a": 123456.789, "b": 987654.321}] * 100_000  # under the byte limit, over the row limit
    rows = httpx.post(f"{server}/predict", json={"instances": many}, timeout=60)
    assert rows.status_code == 422 and len(rows.content) < 2000
    assert "123456.789" not in rows.text and "should have at most 10000 items" in rows.text
    wrong = httpx.post(f"{server}/predict", json={"instances": [{"a": "secret-value", "b": 1.0}]})
    assert wrong.status_code == 422 and "secret-value" not in wrong.text
    assert httpx.post(f"{server}/predict", json={"instances": [{"a": 1.0, "b": 0.0}]}).status_code == 200


def test_bearer_token_when_configured(setup: dict[str, Any]) -> None:
    _deploy(setup, 1)
    app = create_app(setup["target"], "demo", poll_seconds=0.05, token="s3cret", max_body_bytes=1000)
    with _running(app) as url:
        body = {"instances": [{"a": 1.0, "b": 0.0}]}
        assert httpx.get(f"{url}/health").status_code == 401
        assert httpx.post(f"{url}/predict", json=body).status_code == 401
        wrong = httpx.post(f"{url}/predict", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/predict", json=body, headers=good).json()["version"] == 1
        big = {"instances": [{"a": 1.0, "b": 0.0}] * 100}
        assert httpx.post(f"{url}/predict", json=big, headers=good).status_code == 413


def test_canary_split_is_honoured(server: str, setup: dict[str, Any]) -> None:
    target: LocalTarget = setup["target"]
    state = target.read_state("demo")
    canary = target.stage(setup["registry"].get_version("demo", 2), setup["artifacts"])
    target.write_state(ServingState("demo", FEATURES, TASK, state.stable, canary, 30))
    _wait_for(server, 1, 2)
    with httpx.Client() as client:
        versions = Counter(
            client.post(f"{server}/predict", json={"instances": [{"a": 1.0, "b": 0.0}]}).json()["version"]
            for _ in range(1000)
        )
    assert set(versions) == {1, 2}
    assert abs(versions[2] / 1000 - 0.30) < 0.05  # binomial sd ~0.014: 3.5 sd of tolerance


def test_switch_under_load_drops_no_request(server: str, setup: dict[str, Any]) -> None:
    stop = threading.Event()
    outcomes: list[tuple[int, int | None]] = []

    def client_loop() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                response = client.post(f"{server}/predict", json={"instances": [{"a": 2.0, "b": 1.0}]})
                version = response.json().get("version") if response.status_code == 200 else None
                outcomes.append((response.status_code, version))

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client_loop) for _ in range(4)]
        time.sleep(0.3)
        _deploy(setup, 2, steps=(100,))
        _wait_for(server, 2)
        time.sleep(0.3)
        stop.set()
        for future in futures:
            future.result()
    codes = Counter(code for code, _ in outcomes)
    assert codes == {200: len(outcomes)} and len(outcomes) > 50
    versions = [v for _, v in outcomes]
    assert versions[0] == 1 and versions[-1] == 2 and set(versions) == {1, 2}


def test_batch_predictions_are_idempotent_and_stamped(registry: Registry, registry_url: str, tmp_path: Path) -> None:
    spec = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    write_days(registry_url, dt.date(2026, 1, 1), dt.date(2026, 1, 3), rows_per_day=100)
    artifacts = ArtifactStore(str(tmp_path))
    from modelgate.data import load_window
    from modelgate.training import train

    interval = Interval(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))
    frame = load_window(spec, interval, url=registry_url)
    stored = artifacts.save(train(spec, frame).pipeline)
    version = registry.register(
        "churn",
        VersionDraft(
            artifact_uri=stored.uri,
            artifact_sha256=stored.sha256,
            artifact_size=stored.size,
            source=Source("t", "r", "t"),
        ),
    )
    registry.promote("churn", version.version, expected_champion=None, actor="tests")
    first = batch_predict(spec, interval, registry=registry, artifacts=artifacts, data_url=registry_url)
    second = batch_predict(spec, interval, registry=registry, artifacts=artifacts, data_url=registry_url)
    assert first.rows == second.rows == 200
    with registry.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT model_version, risk_tier, score FROM batch_prediction")).all()
    assert len(rows) == 200 and {r.model_version for r in rows} == {version.version}
    assert {r.risk_tier for r in rows} <= {"low", "medium", "high"}
    Path(stored.uri.removeprefix("file://")).write_bytes(b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="refusing to load it"):
        batch_predict(spec, interval, registry=registry, artifacts=artifacts, data_url=registry_url)
    with registry.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM batch_prediction")).scalar_one() == 200


def test_risk_tiers_take_the_highest_cutoff_reached() -> None:
    spec = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    import numpy as np

    assert risk_tiers(spec, np.array([0.1, 0.3, 0.59, 0.6, 0.99])) == ["low", "medium", "medium", "high", "high"]


def test_a_tampered_staged_copy_is_restaged_and_the_server_follows_the_rollback(
    setup: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    target: LocalTarget = setup["target"]
    _deploy(setup, 1)
    _deploy(setup, 2, steps=(100,))
    with _running(create_app(target, "demo", poll_seconds=0.05)) as url:
        _wait_for(url, 2)
        v1 = next(p for p in target.model_dir("demo").glob("v1-*.joblib"))
        v1.write_bytes(v1.read_bytes() + b"x")  # one byte appended to the staged copy
        deployment = _deploy(setup, 1, steps=(100,))  # a rollback: v1 is staged again from the registry
        assert deployment is not None and deployment.status == "live"
        health = httpx.get(f"{url}/health").json()  # live only once the server answered the new state
        assert health["status"] == "ok" and health["stable"] == 1
        assert httpx.post(f"{url}/predict", json={"instances": [{"a": 1.0, "b": 0.0}]}).json()["version"] == 1
        # "already serves" needs a staged copy that still verifies
        v1.write_bytes(b"evil")
        again = _deploy(setup, 1)
        assert again is not None and again.status == "live" and load_slot(target.read_state("demo").stable)

        # a state naming a copy whose bytes do not match: the server refuses it once, keeps v1, says so
        state = target.read_state("demo")
        v2 = next(p for p in target.model_dir("demo").glob("v2-*.joblib"))
        v2.write_bytes(v2.read_bytes() + b"x")
        bad = dataclasses.replace(state.stable, version=2, sha256=state.stable.sha256, path=str(v2))
        caplog.set_level("ERROR", logger="modelgate.deploy.serve")
        written = target.write_state(ServingState("demo", FEATURES, TASK, bad))
        with pytest.raises(DeployError, match=r"modelgate serve \(pid \d+\) refused the new state: .*sha256"):
            target.wait_served(written, timeout=10)
        time.sleep(0.5)  # ten polls: the same file is not retried, so one line, not a traceback each poll
        refusals = [r for r in caplog.records if "cannot load the new serving state" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].exc_info is None
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "stale" and health["stable"] == 1 and "ArtifactIntegrityError" in health["error"]
        assert httpx.post(f"{url}/predict", json={"instances": [{"a": 1.0, "b": 0.0}]}).json()["version"] == 1


def test_a_rollout_waits_for_the_server_and_restores_when_it_refuses(setup: dict[str, Any]) -> None:
    target: LocalTarget = setup["target"]
    _deploy(setup, 1)
    with _running(create_app(target, "demo", poll_seconds=0.05)) as url:
        _wait_for(url, 1)
        entry = setup["registry"].get_version("demo", 2)
        # the registry's artifact is fine, but the copy is swapped between staging and the server's load
        real_stage = target.stage

        def stage_then_tamper(version: Any, artifacts: Any) -> Any:
            slot = real_stage(version, artifacts)
            Path(slot.path).write_bytes(Path(slot.path).read_bytes() + b"x")
            return slot

        target.stage = stage_then_tamper  # type: ignore[method-assign]
        assert entry.version == 2
        with pytest.raises(DeployError, match="traffic restored: .*refused the new state"):
            _deploy(setup, 2)
        [*_, failed] = DeploymentStore(setup["registry"]).history("demo")
        assert failed.status == "failed" and failed.version == 2
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["stable"] == 1 and health["canary"] is None


def test_after_kill_9_mid_canary_the_next_rollout_recovers(setup: dict[str, Any], registry_url: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    target: LocalTarget = setup["target"]
    _deploy(setup, 2)
    setup["registry"].promote("demo", 1, expected_champion=ANY_CHAMPION, actor="tests")
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from modelgate.deploy.local import LocalTarget, deploy_local
        from modelgate.registry import ArtifactStore, Registry
        registry = Registry.connect({registry_url!r})
        deploy_local(registry, ArtifactStore({setup["artifacts"].root!r}), LocalTarget(Path({str(target.root)!r})),
                     model="demo", version=1, features={FEATURES!r}, task={TASK!r}, steps=[10, 50, 100],
                     probe=lambda state, slot: time.sleep(600))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            state = target.read_state("demo")
            if state is not None and state.canary is not None:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the canary never started")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    state = target.read_state("demo")
    assert state.traffic() == {"v2": 90, "v1": 10}  # what the killed rollout left
    assert DeploymentStore(setup["registry"]).history("demo")[-1].status == "deploying"

    setup["registry"].promote("demo", 2, expected_champion=ANY_CHAMPION, actor="tests")
    redeployed = deploy_local(
        setup["registry"], setup["artifacts"], target, model="demo", version=2, features=FEATURES, task=TASK,
        steps=[10, 50, 100],
    )  # fmt: skip
    assert redeployed is not None and redeployed.status == "live" and redeployed.traffic == {"v2": 100}
    assert target.read_state("demo").traffic() == {"v2": 100}
    statuses = [d.status for d in DeploymentStore(setup["registry"]).history("demo")]
    assert statuses == ["superseded", "abandoned", "live"]
    reasons = [e.reason for e in setup["registry"].history("demo", kinds=["deploy"])]
    assert "local deployment abandoned: its process ended mid-rollout" in reasons


def test_one_rollout_per_model_at_a_time(setup: dict[str, Any]) -> None:
    from modelgate.deploy.store import RolloutInProgress

    _deploy(setup, 1)
    held = DeploymentStore(setup["registry"]).rollout_lock("demo")
    with held, pytest.raises(RolloutInProgress, match="another rollout of 'demo' is in progress"):
        _deploy(setup, 2)
    assert _deploy(setup, 2) is not None


def _regression_server(tmp_path: Path) -> LocalTarget:
    import hashlib

    import joblib
    from sklearn.linear_model import LinearRegression

    target = LocalTarget(tmp_path / "serving")
    model = LinearRegression().fit(pd.DataFrame({"a": [0.0, 1.0]}), [0.0, 1e300])
    path = target.model_dir("reg") / "v1.joblib"
    path.parent.mkdir(parents=True)
    joblib.dump(model, path)
    slot = Slot(1, hashlib.sha256(path.read_bytes()).hexdigest(), str(path))
    target.write_state(ServingState("reg", ["a"], "regression", slot))
    return target


def test_serve_answers_422_for_huge_integers_and_non_finite_predictions(tmp_path: Path) -> None:
    with _running(create_app(_regression_server(tmp_path), "reg", poll_seconds=0.05)) as url:
        huge = '{"instances": [{"a": ' + "9" * 400 + "}]}"
        answer = httpx.post(f"{url}/predict", content=huge, headers={"content-type": "application/json"})
        assert answer.status_code == 422 and "out of range" in answer.json()["detail"]
        infinite = httpx.post(f"{url}/predict", json={"instances": [{"a": 1.0}, {"a": 1e10}]})
        assert infinite.status_code == 422 and "no finite prediction for instance(s) [1]" in infinite.json()["detail"]
        assert "Infinity" not in infinite.text
        fine = httpx.post(f"{url}/predict", json={"instances": [{"a": 0.5}]})
        assert fine.status_code == 200 and fine.json()["predictions"] == [pytest.approx(5e299)]


def test_serve_answers_a_multiclass_model_s_class_and_each_class_s_probability(tmp_path: Path) -> None:
    import hashlib

    import joblib

    target = LocalTarget(tmp_path / "serving")
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]})
    model = LogisticRegression(C=100.0).fit(x, ["low", "low", "low", "mid", "mid", "mid", "high", "high", "high"])
    path = target.model_dir("tiers") / "v1.joblib"
    path.parent.mkdir(parents=True)
    joblib.dump(model, path)
    slot = Slot(1, hashlib.sha256(path.read_bytes()).hexdigest(), str(path))
    target.write_state(ServingState("tiers", ["a"], "multiclass_classification", slot))
    with _running(create_app(target, "tiers", poll_seconds=0.05)) as url:
        answer = httpx.post(f"{url}/predict", json={"instances": [{"a": 0.5}, {"a": 7.5}]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["predictions"] == ["low", "high"] and body["version"] == 1
        expected = model.predict_proba(pd.DataFrame({"a": [0.5, 7.5]}))
        for row, probabilities in zip(expected, body["probabilities"], strict=True):
            assert probabilities == pytest.approx(dict(zip(model.classes_, row, strict=True)))


@pytest.mark.slow
def test_idle_sockets_cannot_lock_health_out(tmp_path: Path) -> None:
    """The server may open 256 files; 600 idle connections must neither exhaust them nor starve /health."""
    import os
    import subprocess
    import sys

    target = _regression_server(tmp_path)
    port = _free_port()

    env = {**os.environ, "MODELGATE_SERVING_DIR": str(target.root)}
    cli = Path(sys.executable).with_name("modelgate")
    command = ["prlimit", "--nofile=256:256", str(cli), "serve", "reg", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    idle: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        for _ in range(600):
            idle.append(socket.create_connection(("127.0.0.1", port)))
        answers = [httpx.get(f"{url}/health", timeout=5).status_code for _ in range(5)]
        assert answers == [200] * 5
        closed = 0
        for sock in idle:  # the oldest were closed to make room, the rest by the request-head deadline
            sock.settimeout(15)
            with contextlib.suppress(OSError):
                closed += sock.recv(1) == b""
        assert closed == len(idle)
    finally:
        for sock in idle:
            sock.close()
        server.terminate()
        server.wait(timeout=30)


def test_a_skops_version_is_staged_and_served_with_its_listed_types(setup: dict[str, Any]) -> None:
    """The staged copy keeps the version's format and trusted types through state.json; a state written before
    skops (no format) still loads its joblib slot; a slot that trusts less than its file holds is refused."""
    import json

    from sklearn.ensemble import HistGradientBoostingClassifier

    from modelgate.registry.errors import UntrustedArtifact

    registry, artifacts, target = setup["registry"], setup["artifacts"], setup["target"]
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] * 5, "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0] * 5})
    (stored,) = artifacts.save_models(HistGradientBoostingClassifier(max_iter=3).fit(x, [0, 0, 0, 1, 1, 1] * 5))
    draft = VersionDraft(
        artifact_uri=stored.uri,
        artifact_sha256=stored.sha256,
        artifact_size=stored.size,
        source=Source("tests", "skops", "train"),
        artifact_format=stored.format,
        trusted_types=stored.trusted,
    )
    version = registry.register("demo", draft)
    slot = target.stage(version, artifacts)
    assert slot.path.endswith(".skops") and (slot.format, slot.trusted) == ("skops", stored.trusted)
    state = ServingState("demo", FEATURES, TASK, slot, target.stage(registry.get_version("demo", 1), artifacts), 10)
    again = ServingState.from_json(state.to_json())
    assert again.stable == slot and again.canary is not None
    assert load_slot(again.stable).predict_proba(x).shape == (30, 2)
    raw = json.loads(state.to_json())
    for kept in ("stable", "canary"):
        del raw[kept]["format"], raw[kept]["trusted"]
    older = ServingState.from_json(json.dumps(raw))
    assert older.canary is not None and older.canary.format == "joblib"
    assert load_slot(older.canary).predict(x).shape == (30,)
    with pytest.raises(UntrustedArtifact, match="TreePredictor, which its version did not list"):
        load_slot(dataclasses.replace(slot, trusted=()))


def test_metrics_count_requests_rows_latency_and_scores_per_version(server: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    rows = [{"a": 0.0, "b": 1.0}, {"a": 5.0, "b": 0.0}]
    for _ in range(3):
        assert httpx.post(f"{server}/predict", json={"instances": rows}).status_code == 200
    assert httpx.post(f"{server}/predict", json={"instances": [{"a": 1.0}]}).status_code == 422
    scraped = httpx.get(f"{server}/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    v1 = (("model", "demo"), ("version", "1"))
    assert samples[("modelgate_serve_requests_total", (*v1[:1], ("status", "200"), v1[1]))] == 3
    assert samples[("modelgate_serve_rows_total", v1)] == 6
    assert samples[("modelgate_serve_latency_seconds_count", v1)] == 3
    assert samples[("modelgate_serve_score_count", v1)] == 6
    assert samples[("modelgate_serve_score_bucket", (("le", "0.5"), *v1))] == 3  # one of each pair is below 0.5
    refused = [k for k in samples if k[0] == "modelgate_serve_requests_total" and ("status", "422") in k[1]]
    assert len(refused) == 1 and samples[refused[0]] == 1
