"""The local target: canary steps and traffic restore, `modelgate serve` over real HTTP, batch scoring."""

from __future__ import annotations

import contextlib
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
from modelgate.deploy.local import DeployError, LocalTarget, ProbeBatch, ServingState, deploy_local, load_slot
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
