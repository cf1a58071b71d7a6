"""The Vertex AI target against a fake Vertex AI over gRPC: the provider's real hooks and aiplatform clients.

Asserts on what Google would have received (parent model, aliases, traffic splits summing to 100, undeploy
only at 0 %) and on the registry after a fault injected at each step of a rollout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from google.cloud.aiplatform_v1.types import job_state
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelgate.deploy.controller import DeployError
from modelgate.deploy.store import DeploymentStore
from modelgate.deploy.vertex import (
    ProbeExpectation,
    VertexApi,
    VertexHooks,
    VertexSettings,
    canary_split,
    deploy_vertex,
    rows_to_instances,
    serving_estimator,
)
from modelgate.registry import ANY_CHAMPION, ArtifactIntegrityError, ArtifactStore, Registry, Source, VersionDraft
from tests.fakes.gcs import FakeGCS, patch_gcs_hook
from tests.fakes.vertex import FakeVertex, patch_vertex_hooks

pytestmark = pytest.mark.integration

FEATURES = ["a", "c"]
NUMERIC = ["a"]
TASK = "binary_classification"
PROJECT, REGION = "test-project", "us-central1"
CONTAINER = "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-5:latest"
MUTATIONS = ("UploadModel", "CreateEndpoint", "DeployModel", "UpdateEndpoint", "UndeployModel", "MergeVersionAliases")


def _frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    c = rng.choice(["red", "green", "blue"], size=n)
    y = ((a + (c == "red") * 1.5 + rng.normal(scale=0.3, size=n)) > 0.5).astype(int)
    frame = pd.DataFrame({"a": a, "c": c, "y": y})
    frame.loc[3, "a"] = np.nan  # a missing value travels as JSON null
    return frame


def _pipeline(c: float) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["c"]),
        ]
    )
    return Pipeline([("pre", pre), ("model", LogisticRegression(C=c))])


def _fit(c: float) -> Pipeline:
    frame = _frame().fillna(0.0)
    return _pipeline(c).fit(frame[FEATURES], frame["y"])


def _register(registry: Registry, artifacts: ArtifactStore, run: str, estimator: Any) -> int:
    stored = artifacts.save(estimator)
    draft = VersionDraft(
        artifact_uri=stored.uri,
        artifact_sha256=stored.sha256,
        artifact_size=stored.size,
        source=Source("tests", run, "train"),
        feature_schema={"a": "numeric", "c": "categorical"},
        tags={"task": TASK},
    )
    return registry.register("demo", draft).version


@pytest.fixture
def gcp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeVertex, FakeGCS]]:
    """A fake Vertex AI and GCS; the provider's hooks get clients on the fake's insecure channel."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"project": PROJECT}}),
    )
    gcs = FakeGCS(tmp_path / "gcs")
    fake = FakeVertex(gcs, project=PROJECT, region=REGION)
    patch_vertex_hooks(monkeypatch, fake.start())
    patch_gcs_hook(monkeypatch, gcs)
    yield fake, gcs
    fake.stop()


@pytest.fixture
def setup(registry: Registry, tmp_path: Path, gcp: tuple[FakeVertex, FakeGCS]) -> dict[str, Any]:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    for i, c in enumerate((1.0, 0.05, 10.0), start=1):
        _register(registry, artifacts, f"r{i}", _fit(c))
    settings = VertexSettings(
        project=PROJECT,
        region=REGION,
        model_display_name="modelgate-demo",
        endpoint_display_name="modelgate-demo",
        serving_container_image_uri=CONTAINER,
        gcs_prefix="gs://mg-bucket/serving",
        probe_max_requests=200,
    )
    api = VertexApi(VertexHooks.connect("google_cloud_default"), settings)
    return {"registry": registry, "artifacts": artifacts, "api": api, "fake": gcp[0], "gcs": gcp[1]}


def _promote(setup: dict[str, Any], version: int) -> None:
    setup["registry"].promote("demo", version, expected_champion=ANY_CHAMPION, actor="tests")


def _deploy(setup: dict[str, Any], version: int, steps: tuple[int, ...] = (10, 50, 100)) -> Any:
    return deploy_vertex(
        setup["registry"],
        setup["artifacts"],
        setup["api"],
        model="demo",
        version=version,
        features=FEATURES,
        numeric=NUMERIC,
        task=TASK,
        steps=list(steps),
        probe_rows=_frame(20, seed=1),
    )


def _splits(fake: FakeVertex) -> list[dict[str, int]]:
    """Every traffic split the fake was asked for, in order, by deployed model display name."""
    out: list[dict[str, int]] = []
    for method, request in fake.calls:
        if method == "DeployModel" and request.traffic_split:
            new = request.deployed_model.display_name
            out.append({(new if k == "0" else fake.names[k]): v for k, v in request.traffic_split.items()})
        elif method == "UpdateEndpoint":
            out.append({fake.names[k]: v for k, v in request.endpoint.traffic_split.items()})
    return out


def _mutations(calls: list[tuple[str, Any]]) -> list[str]:
    return [method for method, _ in calls if method in MUTATIONS]


# -- pure helpers


def test_canary_split_always_sums_to_100() -> None:
    assert canary_split("new", 10, {"old": 100}) == {"old": 90, "new": 10}
    assert canary_split("new", 100, {"old": 100}) == {"new": 100}
    assert canary_split("new", 50, {}) == {"new": 100}  # nothing served before: all of it at once
    uneven = canary_split("new", 10, {"x": 67, "y": 33})
    assert sum(uneven.values()) == 100 and uneven["new"] == 10 and uneven["x"] > uneven["y"]
    for percent in range(1, 101):
        assert sum(canary_split("n", percent, {"a": 1, "b": 1, "c": 1}).values()) == 100


def test_serving_estimator_scores_plain_rows_like_frames() -> None:
    model = _fit(1.0)
    rows = _frame(30, seed=2)
    instances = rows_to_instances(rows, FEATURES)
    assert instances[3][0] is None and isinstance(instances[0][1], str)  # NaN -> null, categories stay text
    served = serving_estimator(model, FEATURES, NUMERIC)
    frame = rows[FEATURES].fillna({"a": np.nan})
    with pytest.raises(ValueError, match="[Ss]pecifying the columns using strings"):
        model.predict(np.asarray(instances))  # what the prebuilt container would hit without the adapter
    expected = model.predict(frame.iloc[[i for i in range(30) if i != 3]])
    got = served.predict(np.asarray([row for i, row in enumerate(instances) if i != 3]))
    assert got.tolist() == expected.tolist()


def test_probe_expectation_flags_out_of_range_and_disagreement() -> None:
    served = serving_estimator(_fit(1.0), FEATURES, NUMERIC)
    instances = rows_to_instances(_frame(20, seed=1).fillna({"a": 0.0}), FEATURES)
    expectation = ProbeExpectation.build(served, instances, TASK, 0.99)
    expectation.check(expectation.predictions, from_new_version=True)
    with pytest.raises(DeployError, match=r"predictions \['7.0'\] are not classes"):
        expectation.check([7] * len(instances), from_new_version=False)
    flipped = [1.0 - p for p in expectation.predictions]
    with pytest.raises(DeployError, match="agrees with the registry artifact on 0.0% of rows"):
        expectation.check(flipped, from_new_version=True)
    with pytest.raises(DeployError, match="3 predictions for 20 rows"):
        expectation.check([0, 1, 0], from_new_version=False)
    with pytest.raises(DeployError, match="no probe rows"):
        ProbeExpectation.build(served, [], TASK, 0.99)


# -- rollouts against the fake


def test_first_deploy_uploads_creates_endpoint_and_takes_all_traffic(setup: dict[str, Any]) -> None:
    fake: FakeVertex = setup["fake"]
    _promote(setup, 1)
    deployment = _deploy(setup, 1)

    upload = fake.requests("UploadModel")[0]
    entry = setup["registry"].get_version("demo", 1)
    assert upload.parent_model == ""  # the first version creates the parent model
    assert upload.model.display_name == "modelgate-demo" and list(upload.model.version_aliases) == ["v1"]
    assert upload.model.container_spec.image_uri == CONTAINER
    assert upload.model.artifact_uri == f"gs://mg-bucket/serving/demo/sha256/{entry.artifact_sha256}"
    assert setup["gcs"].path_of(upload.model.artifact_uri + "/model.joblib").is_file()
    assert [r.endpoint.display_name for r in fake.requests("CreateEndpoint")] == ["modelgate-demo"]
    assert _splits(fake) == [{"demo-v1": 100}]
    assert fake.traffic("modelgate-demo") == {"demo-v1": 100}
    assert fake.aliases("modelgate-demo") == {"1": ["default", "v1", "champion"]}

    assert deployment.status == "live" and deployment.traffic == {"v1": 100}
    assert deployment.endpoint == fake.endpoint("modelgate-demo").name
    assert deployment.deployed_ids["model_version_id"] == "1"
    event = setup["registry"].history("demo", kinds=["deploy"])[-1]
    assert event.to_version == 1 and event.verdict["status"] == "live"

    before = len(fake.calls)
    assert _deploy(setup, 1) is None  # already serving all traffic: reads only
    assert _mutations(fake.calls[before:]) == []


def test_canary_steps_then_undeploy_the_previous_at_zero(setup: dict[str, Any]) -> None:
    fake: FakeVertex = setup["fake"]
    _promote(setup, 1)
    _deploy(setup, 1)
    _promote(setup, 2)
    fake.calls.clear()
    deployment = _deploy(setup, 2)

    upload = fake.requests("UploadModel")[0]
    parent = next(iter(fake.models))
    assert upload.parent_model.endswith(f"/models/{parent}") and list(upload.model.version_aliases) == ["v2"]
    assert fake.requests("CreateEndpoint") == []  # found by display name
    assert _splits(fake) == [
        {"demo-v1": 90, "demo-v2": 10},
        {"demo-v2": 50, "demo-v1": 50},
        {"demo-v2": 100},
    ]
    assert all(sum(split.values()) == 100 for split in _splits(fake))
    v1_id = next(dm_id for dm_id, _ in fake.undeployed_at)
    assert fake.undeployed_at == [(v1_id, 0)]  # the previous version left only once at 0 %
    assert fake.deployed("modelgate-demo") == ["demo-v2"] and fake.traffic("modelgate-demo") == {"demo-v2": 100}
    assert fake.aliases("modelgate-demo") == {"1": ["v1"], "2": ["default", "v2", "champion"]}
    assert deployment.previous_version == 1 and deployment.traffic == {"v2": 100}
    assert deployment.deployed_ids["undeployed"] == [v1_id]
    assert [d.status for d in DeploymentStore(setup["registry"]).history("demo")] == ["superseded", "live"]


def test_unavailable_is_retried_and_the_rollout_completes(setup: dict[str, Any]) -> None:
    fake: FakeVertex = setup["fake"]
    _promote(setup, 1)
    fake.inject("UploadModel", grpc.StatusCode.UNAVAILABLE, times=2)
    fake.inject("GetEndpoint", grpc.StatusCode.DEADLINE_EXCEEDED)  # reads retry on timeouts too
    assert _deploy(setup, 1).status == "live"
    assert fake.methods().count("UploadModel") == 3 and len(fake.models[next(iter(fake.models))]) == 1


FAULTS = {
    "upload operation fails": lambda f: f.fail_operation("UploadModel"),
    "deploy operation fails": lambda f: f.fail_operation("DeployModel"),
    "deploy times out after acting": lambda f: f.inject("DeployModel", grpc.StatusCode.DEADLINE_EXCEEDED, after=True),
    "50% step times out": lambda f: f.inject("UpdateEndpoint", grpc.StatusCode.DEADLINE_EXCEEDED),
    "100% step applied, reply lost": lambda f: f.inject(
        "UpdateEndpoint", grpc.StatusCode.DEADLINE_EXCEEDED, after=True, skip=1
    ),
    "probe request errors": lambda f: f.inject("Predict", grpc.StatusCode.INTERNAL),
    "alias move fails half way": lambda f: f.inject("MergeVersionAliases", grpc.StatusCode.DEADLINE_EXCEEDED, skip=1),
    "undeploy of the previous fails": lambda f: f.fail_operation("UndeployModel"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_at_any_step_leaves_traffic_on_the_previous_version(setup: dict[str, Any], fault: str) -> None:
    fake: FakeVertex = setup["fake"]
    _promote(setup, 1)
    _deploy(setup, 1)
    _promote(setup, 2)
    events_before = len(setup["registry"].history("demo"))
    fake.calls.clear()
    FAULTS[fault](fake)

    with pytest.raises(DeployError, match="demo v2 Vertex deployment failed, traffic restored"):
        _deploy(setup, 2)

    assert fake.traffic("modelgate-demo") == {"demo-v1": 100}
    assert fake.deployed("modelgate-demo") == ["demo-v1"]  # nothing of v2 left deployed
    assert all(sum(split.values()) == 100 for split in _splits(fake))
    assert all(traffic == 0 for _, traffic in fake.undeployed_at)
    assert "champion" in fake.aliases("modelgate-demo")["1"]  # the alias is back (or never moved)
    last = DeploymentStore(setup["registry"]).history("demo")[-1]
    assert last.status == "failed" and last.traffic == {"v1": 100} and last.error
    assert setup["registry"].get_champion("demo").version == 2  # the spec did not ask for a registry rollback
    history = setup["registry"].history("demo")
    assert len(history) == events_before + 1 and history[-1].verdict["status"] == "failed"


def test_a_model_answering_outside_its_classes_is_rolled_back(setup: dict[str, Any]) -> None:
    fake: FakeVertex = setup["fake"]
    _promote(setup, 1)
    _deploy(setup, 1)
    frame = _frame().fillna(0.0)
    bad = _register(
        setup["registry"],
        setup["artifacts"],
        "bad",
        DummyRegressor(strategy="constant", constant=7.0).fit(frame[FEATURES], frame["y"]),
    )
    _promote(setup, bad)
    with pytest.raises(DeployError, match=r"probe: predictions \['7.0'\] are not classes"):
        _deploy(setup, bad)
    assert fake.traffic("modelgate-demo") == {"demo-v1": 100} and fake.deployed("modelgate-demo") == ["demo-v1"]


def test_a_left_over_canary_is_resumed_not_duplicated(setup: dict[str, Any]) -> None:
    fake: FakeVertex = setup["fake"]
    api: VertexApi = setup["api"]
    _promote(setup, 1)
    _deploy(setup, 1)
    # an earlier attempt uploaded v2 and put it at 10 %, then its worker died
    _promote(setup, 2)
    fake.inject("UpdateEndpoint", grpc.StatusCode.DEADLINE_EXCEEDED)  # fail at 50% ...
    fake.fail_operation("UndeployModel")  # ... and the restore cannot clean up
    with pytest.raises(DeployError, match="traffic NOT fully restored.*restoring traffic also failed"):
        _deploy(setup, 2)
    fake._faults.clear()
    endpoint = api.find_endpoint()
    assert endpoint is not None
    v1_only = api.read_endpoint(endpoint)
    assert fake.deployed("modelgate-demo") == ["demo-v1", "demo-v2"] and v1_only.by_version() == {"v1": 100}

    fake.calls.clear()
    assert _deploy(setup, 2).status == "live"
    assert fake.requests("UploadModel") == [] and fake.requests("DeployModel") == []  # found by alias v2, reused
    assert fake.deployed("modelgate-demo") == ["demo-v2"]


def test_a_tampered_artifact_is_refused_before_any_vertex_call(setup: dict[str, Any]) -> None:
    fake: FakeVertex = setup["fake"]
    entry = setup["registry"].get_version("demo", 3)
    Path(entry.artifact_uri.removeprefix("file://")).write_bytes(b"evil")
    _promote(setup, 3)
    with pytest.raises(ArtifactIntegrityError, match="refusing to load it"):
        _deploy(setup, 3)
    assert fake.calls == []


def test_vertex_spec_needs_its_settings() -> None:
    from modelgate.spec import Deploy

    with pytest.raises(ValueError, match="deploy.target vertex needs project, region, gcs_prefix"):
        Deploy(target="vertex")
    with pytest.raises(ValueError, match="must look like gs://bucket"):
        Deploy(target="vertex", project="p", region="r", gcs_prefix="s3://x", serving_container_image_uri="i")


# -- batch prediction jobs


def _spec_yaml(tmp_path: Path, *, batch: bool) -> str:
    frame = _frame(48, seed=3)
    frame["id"] = [f"c{i:03d}" for i in range(48)]
    frame["t"] = pd.date_range("2026-01-01", periods=48, freq="h", tz="UTC")
    frame.to_csv(tmp_path / "rows.csv", index=False)
    return f"""
name: demo
source: {{kind: files, path: {tmp_path / "rows.csv"}}}
time_column: t
id_column: id
target: y
features: [{{name: a, type: numeric}}, {{name: c, type: categorical}}]
estimator: {{name: logistic_regression}}
risk_tiers: {{low: 0.0, high: 0.5}}
deploy:
  target: vertex
  project: {PROJECT}
  region: {REGION}
  gcs_prefix: gs://mg-bucket/serving
  serving_container_image_uri: {CONTAINER}
  batch_prediction_job: {str(batch).lower()}
"""


def _batch_spec(tmp_path: Path) -> Any:
    from modelgate.spec import parse_spec

    spec = parse_spec(_spec_yaml(tmp_path, batch=True))
    return spec, pd.read_csv(tmp_path / "rows.csv")


def test_vertex_batch_prediction_job_scores_the_interval_once(setup: dict[str, Any], tmp_path: Path) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from modelgate.data import Interval
    from modelgate.deploy.vertex_batch import BatchJobFailed, vertex_batch_predict

    fake: FakeVertex = setup["fake"]
    registry: Registry = setup["registry"]
    spec, frame = _batch_spec(tmp_path)
    _promote(setup, 1)
    day = Interval(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))

    def run() -> Any:
        return vertex_batch_predict(
            spec,
            day,
            registry=registry,
            artifacts=setup["artifacts"],
            data_url=None,
            api=setup["api"],
            poll_seconds=0.01,
        )

    def stored() -> list[tuple[str, float, int, str | None, float | None]]:
        with registry.engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text(
                        "SELECT row_id, label, model_version, risk_tier, score FROM batch_prediction ORDER BY row_id"
                    )
                )
            ]

    assert run().rows == 24
    job = fake.requests("CreateBatchPredictionJob")[0].batch_prediction_job
    assert job.model.endswith("@1") and list(job.instance_config.included_fields) == FEATURES
    assert job.instance_config.key_field == "id" and job.input_config.gcs_source.uris[0].endswith("instances.jsonl")
    first = stored()
    expected = _fit(1.0).predict(frame[FEATURES].iloc[:24].fillna({"a": np.nan}))
    assert [r[0] for r in first] == list(frame["id"].iloc[:24])
    assert [r[1] for r in first] == [float(v) for v in expected]  # the container's predict(), per row by key
    assert {r[2] for r in first} == {1}
    assert {r[3] for r in first} == {None} and {r[4] for r in first} == {None}  # labels are never tiered as scores

    assert run().rows == 24 and stored() == first  # the same interval again: one set of rows ...
    assert len(fake.requests("CreateBatchPredictionJob")) == 1  # ... from the same job, found by its labels
    labels = fake.requests("CreateBatchPredictionJob")[0].batch_prediction_job.labels
    assert labels["modelgate-interval"] == "20260101t000000-20260102t000000"
    _promote(setup, 2)  # a later champion: the interval keeps the version that served it (point in time)
    assert run().rows == 24 and len(fake.requests("CreateBatchPredictionJob")) == 1
    assert {r[2] for r in stored()} == {1}
    for job in fake.jobs.values():  # a failed job is not reused: the next attempt creates one
        job.state = job_state.JobState.JOB_STATE_FAILED
    fake.fail_operation("CreateBatchPredictionJob", "quota exceeded")
    before = stored()
    with pytest.raises(BatchJobFailed, match="ended JOB_STATE_FAILED: quota exceeded"):
        run()
    assert len(fake.requests("CreateBatchPredictionJob")) == 2
    assert stored() == before  # a failed job replaces nothing


def test_a_multiclass_batch_job_keeps_the_class_the_container_answers(setup: dict[str, Any], tmp_path: Path) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from modelgate.data import Interval
    from modelgate.deploy.vertex_batch import vertex_batch_predict
    from modelgate.spec import parse_spec

    registry: Registry = setup["registry"]
    train = _frame(seed=4).fillna(0.0)
    tiers = np.where(train["a"] > 0.5, "high", np.where(train["a"] < -0.5, "low", "mid"))
    version = _register(registry, setup["artifacts"], "multiclass", _pipeline(10.0).fit(train[FEATURES], tiers))
    _promote(setup, version)
    rows = _frame(30, seed=5).assign(id=[f"m{i:02d}" for i in range(30)], tier="mid")
    rows["t"] = pd.date_range("2026-01-01", periods=30, freq="h", tz="UTC")
    rows.to_csv(tmp_path / "tiers.csv", index=False)
    spec = parse_spec(
        _spec_yaml(tmp_path, batch=True)
        .replace(f"{tmp_path / 'rows.csv'}", f"{tmp_path / 'tiers.csv'}")
        .replace("target: y", "target: tier\ntask: multiclass_classification\nclasses: [low, mid, high]")
        .replace("risk_tiers: {low: 0.0, high: 0.5}\n", "")
    )
    day = Interval(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    result = vertex_batch_predict(
        spec, day, registry=registry, artifacts=setup["artifacts"], data_url=None, api=setup["api"], poll_seconds=0.01
    )
    assert result.rows == 24 and result.version == version
    with registry.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT row_id, predicted_class, label, score FROM batch_prediction ORDER BY row_id")
        ).all()
    fitted = setup["artifacts"].load_version(registry.get_version("demo", version))
    expected = fitted.predict(rows[FEATURES].iloc[:24].fillna({"a": np.nan}))
    assert [r[1] for r in stored] == list(expected) and len(set(expected)) >= 2  # the container's answers
    assert [r[2] for r in stored] == [float(["low", "mid", "high"].index(c)) for c in expected]
    assert {r[3] for r in stored} == {None}  # the container gives no probability: none is made up


def test_cli_deploy_and_rollback_move_vertex_traffic(
    registry_url: str, tmp_path: Path, gcp: tuple[FakeVertex, FakeGCS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`modelgate deploy` and `modelgate rollback` go through the same rollout when the spec targets Vertex."""
    from typer.testing import CliRunner

    from modelgate.cli import app

    fake = gcp[0]
    include = tmp_path / "include"
    (include / "models").mkdir(parents=True)
    (include / "models" / "demo.yaml").write_text(_spec_yaml(tmp_path, batch=False))
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    reference = artifacts.save(_frame(40, seed=5)[FEATURES], suffix=".reference.joblib")
    registry = Registry.connect(registry_url)
    for i, c in enumerate((1.0, 0.05), start=1):
        stored = artifacts.save(_fit(c))
        draft = VersionDraft(
            artifact_uri=stored.uri,
            artifact_sha256=stored.sha256,
            artifact_size=stored.size,
            source=Source("tests", f"cli{i}", "train"),
            reference_uri=reference.uri,
            reference_sha256=reference.sha256,
        )
        registry.register("demo", draft)
    for key, value in {
        "MODELGATE_REGISTRY_URL": registry_url,
        "MODELGATE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "MODELGATE_INCLUDE_DIR": str(include),
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()

    def cli(*args: str) -> Any:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    cli("promote", "demo", "1", "--reason", "first")
    assert "v1 live on Vertex AI {'v1': 100}" in cli("deploy", "demo").output
    cli("promote", "demo", "2", "--reason", "better")
    assert "v2 live on Vertex AI {'v2': 100}" in cli("deploy", "demo", "--steps", "50,100").output
    assert _splits(fake)[-2:] == [{"demo-v1": 50, "demo-v2": 50}, {"demo-v2": 100}]

    rolled = cli("rollback", "demo", "--reason", "bad canary")
    assert "Vertex AI traffic moved to v1" in rolled.output
    assert fake.traffic("modelgate-demo") == {"demo-v1": 100} and fake.deployed("modelgate-demo") == ["demo-v1"]
    assert "champion" in fake.aliases("modelgate-demo")["1"]
    deploys = registry.history("demo", kinds=["deploy"])
    assert [(e.from_version, e.to_version) for e in deploys] == [(None, 1), (1, 2), (2, 1)]
    registry.close()
