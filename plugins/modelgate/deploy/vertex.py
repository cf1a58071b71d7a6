"""The Vertex AI target, through apache-airflow-providers-google's hooks.

One parent Vertex model per modelgate model: each registry version is uploaded once as a Vertex version
aliased `v<N>` (found again by that alias, so a re-run uploads nothing), and the `champion` alias follows the
registry's champion. One endpoint per model, found by display name or created once. The serving artifact is
copied to `<gcs_prefix>/<model>/sha256/<registry sha256>/model.joblib`, where the prebuilt scikit-learn
container looks for it.

Mutating calls are retried only on UNAVAILABLE (the request was not acted on); a DEADLINE_EXCEEDED on a
mutation may have been applied, so the rollout fails and the restore path reads what the endpoint really
holds before putting traffic back.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.deploy.local import DeployError
from modelgate.deploy.store import Deployment, DeploymentStore
from modelgate.jsonable import jsonable
from modelgate.registry.artifacts import ArtifactStore, GCSHookLike
from modelgate.registry.entities import CHAMPION_ALIAS, RunRef
from modelgate.registry.store import Registry

if TYPE_CHECKING:
    from modelgate.spec import ModelSpec

log = logging.getLogger(__name__)

_VERSION_NAME = re.compile(r"-v(\d+)$")


def resource_id(name: str) -> str:
    """The last segment of a Vertex resource name (projects/p/locations/r/endpoints/<id> -> <id>)."""
    return name.rpartition("/")[2]


def split_gs_uri(uri: str) -> tuple[str, str]:
    """gs://bucket/some/path -> ("bucket", "some/path")."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


@dataclass(frozen=True)
class VertexSettings:
    """The spec's `deploy:` block, resolved for one model."""

    project: str
    region: str
    model_display_name: str
    endpoint_display_name: str
    serving_container_image_uri: str
    gcs_prefix: str
    machine_type: str = "n1-standard-2"
    min_replica_count: int = 1
    max_replica_count: int = 1
    operation_timeout_seconds: float = 1800
    call_timeout_seconds: float = 60
    probe_max_requests: int = 100
    min_probe_agreement: float = 0.99
    gcp_conn_id: str = "google_cloud_default"

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> VertexSettings:
        d = spec.deploy
        if d.target != "vertex" or not (d.project and d.region and d.gcs_prefix and d.serving_container_image_uri):
            raise DeployError(f"{spec.name}: deploy.target is {d.target!r}, not a complete vertex target")
        return cls(
            project=d.project,
            region=d.region,
            model_display_name=d.model_display_name or f"modelgate-{spec.name}",
            endpoint_display_name=d.endpoint_display_name or f"modelgate-{spec.name}",
            serving_container_image_uri=d.serving_container_image_uri,
            gcs_prefix=d.gcs_prefix,
            machine_type=d.machine_type,
            min_replica_count=d.min_replica_count,
            max_replica_count=d.max_replica_count,
            operation_timeout_seconds=d.operation_timeout_seconds,
            probe_max_requests=d.probe_max_requests,
            min_probe_agreement=d.min_probe_agreement,
            gcp_conn_id=d.gcp_conn_id,
        )


@dataclass
class VertexHooks:
    """The provider's hooks modelgate drives; built at task run time, never at parse time."""

    model: Any
    endpoint: Any
    prediction: Any
    job: Any
    gcs: GCSHookLike

    @classmethod
    def connect(cls, gcp_conn_id: str) -> VertexHooks:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook
        from airflow.providers.google.cloud.hooks.vertex_ai.batch_prediction_job import BatchPredictionJobHook
        from airflow.providers.google.cloud.hooks.vertex_ai.endpoint_service import EndpointServiceHook
        from airflow.providers.google.cloud.hooks.vertex_ai.model_service import ModelServiceHook
        from airflow.providers.google.cloud.hooks.vertex_ai.prediction_service import PredictionServiceHook

        return cls(
            model=ModelServiceHook(gcp_conn_id=gcp_conn_id),
            endpoint=EndpointServiceHook(gcp_conn_id=gcp_conn_id),
            prediction=PredictionServiceHook(gcp_conn_id=gcp_conn_id),
            job=BatchPredictionJobHook(gcp_conn_id=gcp_conn_id),
            gcs=GCSHook(gcp_conn_id=gcp_conn_id),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class VertexVersion:
    parent: str  # projects/.../models/<id>
    version_id: str
    artifact_uri: str


@dataclass(frozen=True)
class DeployedModelInfo:
    id: str
    display_name: str
    model: str
    model_version_id: str

    @property
    def registry_version(self) -> int | None:
        match = _VERSION_NAME.search(self.display_name)
        return int(match.group(1)) if match else None

    def serves(self, version: VertexVersion) -> bool:
        return self.model == version.parent and self.model_version_id == version.version_id


@dataclass(frozen=True)
class EndpointState:
    name: str
    deployed: dict[str, DeployedModelInfo] = field(default_factory=dict)
    split: dict[str, int] = field(default_factory=dict)

    def live(self) -> dict[str, int]:
        """Deployed models that take traffic."""
        return {k: v for k, v in self.split.items() if v > 0}

    def by_version(self) -> dict[str, int]:
        """The live split keyed `v<N>` as the registry knows versions (deployed model id if unknown)."""
        out: dict[str, int] = {}
        for dm_id, pct in self.live().items():
            info = self.deployed.get(dm_id)
            version = info.registry_version if info else None
            out[f"v{version}" if version is not None else dm_id] = pct
        return out


def _retries(*, mutation: bool) -> Any:
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type

    kinds: tuple[type[Exception], ...] = (gexc.ServiceUnavailable,)
    if not mutation:
        kinds += (gexc.DeadlineExceeded,)
    return Retry(predicate=if_exception_type(*kinds), initial=0.2, maximum=5.0, multiplier=2.0, timeout=60.0)


class VertexApi:
    """What modelgate asks of Vertex AI, as plain values; every call goes through the provider's hooks."""

    def __init__(self, hooks: VertexHooks, settings: VertexSettings) -> None:
        self.hooks = hooks
        self.settings = settings

    def _where(self) -> dict[str, str]:
        return {"project_id": self.settings.project, "region": self.settings.region}

    def _calls(self, *, mutation: bool) -> dict[str, Any]:
        return {"retry": _retries(mutation=mutation), "timeout": self.settings.call_timeout_seconds}

    # -- models

    def find_parent_model(self) -> str | None:
        """The parent model's resource name, found by display name (the oldest, if a race made two)."""
        pager = self.hooks.model.list_models(
            filter=f'display_name="{self.settings.model_display_name}"', **self._where(), **self._calls(mutation=False)
        )
        found = sorted(pager, key=lambda m: (m.create_time, m.name))
        if len(found) > 1:
            log.warning(
                "%d Vertex models are named %s; using %s", len(found), self.settings.model_display_name, found[0].name
            )
        return found[0].name if found else None

    def get_version(self, parent: str, alias_or_id: str) -> VertexVersion | None:
        from google.api_core.exceptions import NotFound

        try:
            m = self.hooks.model.get_model(
                model_id=f"{resource_id(parent)}@{alias_or_id}", **self._where(), **self._calls(mutation=False)
            )
        except NotFound:
            return None
        return VertexVersion(m.name, m.version_id, m.artifact_uri)

    def upload_version(
        self, parent: str | None, *, artifact_uri: str, aliases: Sequence[str], labels: dict[str, str], description: str
    ) -> VertexVersion:
        model = {
            "display_name": self.settings.model_display_name,
            "description": description,
            "artifact_uri": artifact_uri,
            "container_spec": {"image_uri": self.settings.serving_container_image_uri},
            "version_aliases": list(aliases),
            "labels": labels,
        }
        operation = self.hooks.model.upload_model(
            model=model,
            parent_model=resource_id(parent) if parent else None,
            **self._where(),
            **self._calls(mutation=True),
        )
        response = operation.result(timeout=self.settings.operation_timeout_seconds)
        return VertexVersion(response.model, response.model_version_id, artifact_uri)

    def alias_holder(self, parent: str, alias: str) -> str | None:
        version = self.get_version(parent, alias)
        return version.version_id if version else None

    def move_alias(self, parent: str, alias: str, holder: str | None, to: str | None) -> None:
        """Take `alias` off version `holder` (if any) and put it on version `to` (if any)."""
        if holder == to:
            return
        model_id = resource_id(parent)
        if holder is not None:
            self.hooks.model.delete_version_aliases(
                model_id=f"{model_id}@{holder}", version_aliases=[alias], **self._where(), **self._calls(mutation=True)
            )
        if to is not None:
            self.hooks.model.add_version_aliases(
                model_id=f"{model_id}@{to}", version_aliases=[alias], **self._where(), **self._calls(mutation=True)
            )

    # -- endpoints

    def find_endpoint(self) -> str | None:
        pager = self.hooks.endpoint.list_endpoints(
            filter=f'display_name="{self.settings.endpoint_display_name}"',
            **self._where(),
            **self._calls(mutation=False),
        )
        found = sorted(pager, key=lambda e: (e.create_time, e.name))
        return found[0].name if found else None

    def create_endpoint(self, labels: dict[str, str]) -> str:
        operation = self.hooks.endpoint.create_endpoint(
            endpoint={"display_name": self.settings.endpoint_display_name, "labels": labels},
            **self._where(),
            **self._calls(mutation=True),
        )
        return str(operation.result(timeout=self.settings.operation_timeout_seconds).name)

    def read_endpoint(self, name: str) -> EndpointState:
        ep = self.hooks.endpoint.get_endpoint(
            endpoint=resource_id(name), **self._where(), **self._calls(mutation=False)
        )
        deployed = {
            dm.id: DeployedModelInfo(dm.id, dm.display_name, dm.model.partition("@")[0], dm.model_version_id)
            for dm in ep.deployed_models
        }
        return EndpointState(ep.name, deployed, {k: int(v) for k, v in ep.traffic_split.items()})

    def deploy(self, endpoint: str, version: VertexVersion, display_name: str, split: dict[str, int]) -> str:
        """Deploy `version` with `split` ("0" names the new deployed model); returns its deployed model id."""
        s = self.settings
        operation = self.hooks.endpoint.deploy_model(
            endpoint=resource_id(endpoint),
            deployed_model={
                "model": f"{version.parent}@{version.version_id}",
                "display_name": display_name,
                "dedicated_resources": {
                    "machine_spec": {"machine_type": s.machine_type},
                    "min_replica_count": s.min_replica_count,
                    "max_replica_count": s.max_replica_count,
                },
            },
            traffic_split=split,
            **self._where(),
            **self._calls(mutation=True),
        )
        return str(operation.result(timeout=s.operation_timeout_seconds).deployed_model.id)

    def set_split(self, endpoint: str, split: dict[str, int]) -> None:
        self.hooks.endpoint.update_endpoint(
            endpoint_id=resource_id(endpoint),
            endpoint={"traffic_split": split},
            update_mask={"paths": ["traffic_split"]},
            **self._where(),
            **self._calls(mutation=True),
        )

    def undeploy(self, endpoint: str, deployed_model_id: str) -> None:
        operation = self.hooks.endpoint.undeploy_model(
            endpoint=resource_id(endpoint),
            deployed_model_id=deployed_model_id,
            **self._where(),
            **self._calls(mutation=True),
        )
        operation.result(timeout=self.settings.operation_timeout_seconds)

    def predict(self, endpoint: str, instances: list[list[Any]]) -> tuple[list[Any], str]:
        """Online predictions and the deployed model that answered.

        The request is built on the raw protobuf: proto-plus 1.29 with protobuf 7 cannot turn a list into a
        repeated `Value`, which is what PredictionServiceHook.predict would do; the hook's client is used.
        """
        from google.cloud.aiplatform_v1.types import PredictRequest, PredictResponse
        from google.protobuf import json_format

        request = PredictRequest(endpoint=endpoint)
        raw = PredictRequest.pb(request)
        for instance in instances:
            json_format.ParseDict(instance, raw.instances.add())  # type: ignore[arg-type]  # a list is a Value
        client = self.hooks.prediction.get_prediction_service_client(self.settings.region)
        response = client.predict(request=request, **self._calls(mutation=False))
        predictions = [json_format.MessageToDict(v) for v in PredictResponse.pb(response).predictions]
        return predictions, str(response.deployed_model_id)

    # -- storage

    def gcs_location(self, *parts: str) -> tuple[str, str]:
        """(bucket, object path) of `parts` under the spec's gcs_prefix."""
        bucket, prefix = split_gs_uri(self.settings.gcs_prefix)
        return bucket, "/".join(p for p in (prefix, *parts) if p)

    def copy_serving_artifact(self, model: str, registry_sha256: str, serving: Any) -> str:
        """Write the serving artifact under a path named by the registry artifact's sha256 (once)."""
        import joblib

        bucket, directory = self.gcs_location(model, "sha256", registry_sha256)
        object_name = f"{directory}/model.joblib"
        if not self.hooks.gcs.exists(bucket, object_name):
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / "model.joblib"
                joblib.dump(serving, local)
                self.hooks.gcs.upload(bucket_name=bucket, object_name=object_name, filename=str(local))
        return f"gs://{bucket}/{directory}"


# -- pure helpers


def canary_split(new_id: str, percent: int, previous: dict[str, int]) -> dict[str, int]:
    """`percent` to the new deployed model, the rest shared by the previous ones in their old proportions.

    Integer percentages by largest remainder, so the split always sums to exactly 100.
    """
    live = {k: v for k, v in previous.items() if v > 0 and k != new_id}
    if percent >= 100 or not live:
        return {new_id: 100}
    rest = 100 - percent
    total = sum(live.values())
    shares = {k: rest * v / total for k, v in live.items()}
    split = {k: math.floor(v) for k, v in shares.items()}
    for k in sorted(shares, key=lambda k: shares[k] - split[k], reverse=True)[: rest - sum(split.values())]:
        split[k] += 1
    split[new_id] = percent
    return split


def serving_estimator(estimator: Any, features: Sequence[str], numeric: Sequence[str]) -> Any:
    """The estimator as the prebuilt container calls it: `predict(np.asarray(instances))`.

    modelgate's pipelines select columns by name, so rows arriving as plain arrays (in the spec's feature
    order) are turned back into a typed frame first, with steps made only of scikit-learn and pandas, which
    the container has. An estimator fitted on arrays is served as it is.
    """
    if getattr(estimator, "feature_names_in_", None) is None:
        return estimator
    import pandas as pd
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    dtypes = {f: ("float64" if f in set(numeric) else "object") for f in features}
    return Pipeline(
        [
            ("rows_to_frame", FunctionTransformer(pd.DataFrame, kw_args={"columns": list(features)})),
            ("dtypes", FunctionTransformer(pd.DataFrame.astype, kw_args={"dtype": dtypes})),
            ("model", estimator),
        ]
    )


def rows_to_instances(rows: Any, features: Sequence[str]) -> list[list[Any]]:
    """DataFrame rows as JSON-ready lists in feature order; missing values become null."""
    frame = rows[list(features)].astype(object)
    frame = frame.where(frame.notna(), None)
    return [jsonable(list(row)) for row in frame.itertuples(index=False, name=None)]


def _norm(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True)
class ProbeExpectation:
    """What the deployed version must answer for the probe rows: modelgate's own predictions of them."""

    instances: list[list[Any]]
    predictions: list[Any]
    classes: frozenset[Any] | None  # None for regression
    min_agreement: float

    @classmethod
    def build(cls, serving: Any, instances: list[list[Any]], task: str, min_agreement: float) -> ProbeExpectation:
        import numpy as np

        if not instances:
            raise DeployError("no probe rows: cannot check the new version before it takes traffic")
        try:
            local = np.asarray(serving.predict(np.asarray(instances))).tolist()
        except Exception as exc:
            raise DeployError(
                f"the serving artifact cannot score plain rows as the container sends them: {type(exc).__name__}: {exc}"
            ) from exc
        classes = None
        if task != "regression":  # a classifier answers its classes; without classes_, a binary one 0 or 1
            classes = frozenset(_norm(c) for c in getattr(serving, "classes_", (0, 1)))
        return cls(instances, [_norm(v) for v in local], classes, min_agreement)

    def check(self, predictions: list[Any], *, from_new_version: bool) -> None:
        if len(predictions) != len(self.instances):
            raise DeployError(f"probe: {len(predictions)} predictions for {len(self.instances)} rows")
        got = [_norm(p) for p in predictions]
        if self.classes is not None:
            strange = sorted({str(g) for g in got if g not in self.classes})
            if strange:
                raise DeployError(f"probe: predictions {strange[:5]} are not classes {sorted(map(str, self.classes))}")
        elif not all(isinstance(g, float) and math.isfinite(g) for g in got):
            raise DeployError("probe: non-numeric or non-finite predictions")
        if from_new_version:
            pairs = zip(got, self.predictions, strict=True)
            if self.classes is None:
                agree = sum(math.isclose(g, e, rel_tol=1e-6, abs_tol=1e-9) for g, e in pairs)
            else:
                agree = sum(g == e for g, e in pairs)
            share = agree / len(got)
            if share < self.min_agreement:
                raise DeployError(
                    f"probe: the new version agrees with the registry artifact on {share:.1%} of rows "
                    f"(needs {self.min_agreement:.0%})"
                )


def _probe(api: VertexApi, endpoint: str, new_id: str, expectation: ProbeExpectation) -> int:
    """Send the probe batch until the new deployed model has answered once; every answer must be sane."""
    for attempt in range(1, api.settings.probe_max_requests + 1):
        try:
            predictions, answered_by = api.predict(endpoint, expectation.instances)
        except Exception as exc:
            raise DeployError(f"probe request {attempt} failed: {type(exc).__name__}: {exc}") from exc
        expectation.check(predictions, from_new_version=answered_by == new_id)
        if answered_by == new_id:
            return attempt
    raise DeployError(f"probe: the new deployed model answered none of {api.settings.probe_max_requests} requests")


def upload_serving_version(
    api: VertexApi, parent: str | None, *, model: str, version: int, sha256: str, serving: Any
) -> VertexVersion:
    """Copy the serving artifact to GCS and upload it as version `v<version>` of the parent model."""
    return api.upload_version(
        parent,
        artifact_uri=api.copy_serving_artifact(model, sha256, serving),
        aliases=[f"v{version}"],
        labels={"modelgate-model": _label(model), "modelgate-version": str(version)},
        description=f"modelgate {model} v{version} (registry artifact sha256 {sha256})",
    )


# -- the rollout


@dataclass
class _Rollout:
    """What this attempt changed, so a failure can put it back."""

    endpoint: str | None = None
    restore_split: dict[str, int] = field(default_factory=dict)
    version: VertexVersion | None = None
    deployed_id: str | None = None
    alias_was_on: str | None = None
    alias_moved: bool = False
    undeployed: list[str] = field(default_factory=list)


def deploy_vertex(
    registry: Registry,
    artifacts: ArtifactStore,
    api: VertexApi,
    *,
    model: str,
    version: int,
    features: Sequence[str],
    numeric: Sequence[str],
    task: str,
    steps: Sequence[int],
    probe_rows: Any,
    actor: str = "modelgate",
    run: RunRef | None = None,
) -> Deployment | None:
    """Roll registry `version` out on the model's Vertex endpoint; None if it already takes all the traffic."""
    entry = registry.servable_version(model, version)
    estimator = artifacts.load(entry.artifact_uri, entry.artifact_sha256)  # refuses a tampered artifact
    serving = serving_estimator(estimator, features, numeric)
    expectation = ProbeExpectation.build(
        serving, rows_to_instances(probe_rows, features), task, api.settings.min_probe_agreement
    )
    champion = registry.get_champion(model)
    is_champion = champion is not None and champion.version == version

    try:
        parent = api.find_parent_model()
        existing = api.get_version(parent, f"v{version}") if parent else None
        endpoint = api.find_endpoint()
        before = api.read_endpoint(endpoint) if endpoint else None
    except Exception as exc:
        raise DeployError(f"{model}: cannot read the Vertex state: {type(exc).__name__}: {exc}") from exc
    if before is not None and existing is not None:
        live = before.live()
        if len(live) == 1 and before.deployed[next(iter(live))].serves(existing):
            log.info("%s v%s already serves 100%% of %s", model, version, before.name)
            if is_champion and parent:
                api.move_alias(parent, CHAMPION_ALIAS, api.alias_holder(parent, CHAMPION_ALIAS), existing.version_id)
            return None

    previous_version = _primary_version(before)
    store = DeploymentStore(registry)
    deployment_id = store.start(model, version, previous_version, "vertex", run.run_id if run else None)
    rollout = _Rollout(endpoint=endpoint, restore_split=_prior_split(before, existing))
    try:
        rollout.version = existing or upload_serving_version(
            api, parent, model=model, version=version, sha256=entry.artifact_sha256, serving=serving
        )
        if rollout.endpoint is None:
            rollout.endpoint = api.create_endpoint({"modelgate-model": _label(model)})
        state = api.read_endpoint(rollout.endpoint)
        leftover = [i for i, dm in state.deployed.items() if dm.serves(rollout.version)]
        rollout.deployed_id = leftover[0] if leftover else None  # an interrupted attempt's canary: reuse it
        for percent in steps if rollout.restore_split else [100]:
            if rollout.deployed_id is None:
                split = canary_split("0", percent, rollout.restore_split)
                rollout.deployed_id = api.deploy(rollout.endpoint, rollout.version, f"{model}-v{version}", split)
                split = {(rollout.deployed_id if k == "0" else k): v for k, v in split.items()}
            else:
                split = canary_split(rollout.deployed_id, percent, rollout.restore_split)
                api.set_split(rollout.endpoint, split)
            state = api.read_endpoint(rollout.endpoint)
            if state.live() != {k: v for k, v in split.items() if v > 0}:
                raise DeployError(f"the endpoint's split is {state.live()} after asking for {split}")
            answered = _probe(api, rollout.endpoint, rollout.deployed_id, expectation)
            log.info("%s: %s; the canary answered probe request %d", model, state.by_version(), answered)
        if is_champion:
            rollout.alias_was_on = api.alias_holder(rollout.version.parent, CHAMPION_ALIAS)
            rollout.alias_moved = rollout.alias_was_on != rollout.version.version_id  # a failure puts it back
            api.move_alias(rollout.version.parent, CHAMPION_ALIAS, rollout.alias_was_on, rollout.version.version_id)
        state = api.read_endpoint(rollout.endpoint)
        for dm_id in list(state.deployed):
            if dm_id == rollout.deployed_id:
                continue
            if state.split.get(dm_id, 0) > 0:
                raise DeployError(f"deployed model {dm_id} still has {state.split[dm_id]}% traffic: not undeploying it")
            api.undeploy(rollout.endpoint, dm_id)
            rollout.undeployed.append(dm_id)
        final = api.read_endpoint(rollout.endpoint)
    except Exception as exc:
        traffic, restore_error = _restore(api, rollout)
        error = f"{type(exc).__name__}: {exc}"
        if restore_error:
            error += f"; restoring traffic also failed: {restore_error}"
        store.finish(
            deployment_id,
            status="failed",
            traffic=traffic,
            actor=actor,
            error=error,
            endpoint=rollout.endpoint,
            deployed_ids=_ids(rollout),
            run=run,
        )
        outcome = "traffic NOT fully restored, check the endpoint" if restore_error else "traffic restored"
        raise DeployError(f"{model} v{version} Vertex deployment failed, {outcome}: {error}") from exc
    return store.finish(
        deployment_id,
        status="live",
        traffic=final.by_version(),
        actor=actor,
        endpoint=final.name,
        deployed_ids=_ids(rollout),
        run=run,
    )


def _restore(api: VertexApi, rollout: _Rollout) -> tuple[dict[str, int], str | None]:
    """Put the endpoint back as it was: the old split, and nothing of the new version left deployed.

    Reads the endpoint first, since a call that timed out may have been applied anyway.
    """
    if rollout.endpoint is None:
        return {}, None
    errors: list[str] = []
    try:
        state = api.read_endpoint(rollout.endpoint)
        keep = {k: v for k, v in rollout.restore_split.items() if k in state.deployed}
        if keep and sum(keep.values()) == 100 and state.live() != keep:
            api.set_split(rollout.endpoint, keep)
        elif rollout.restore_split and sum(keep.values()) != 100:
            errors.append(f"the previous deployed models {sorted(rollout.restore_split)} are gone")
        for dm_id, info in state.deployed.items():  # a split change leaves the deployed models as they are
            ours = dm_id == rollout.deployed_id or (rollout.version is not None and info.serves(rollout.version))
            if ours and dm_id not in rollout.restore_split:
                api.undeploy(rollout.endpoint, dm_id)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    if rollout.alias_moved and rollout.version is not None:
        try:
            parent = rollout.version.parent
            api.move_alias(parent, CHAMPION_ALIAS, api.alias_holder(parent, CHAMPION_ALIAS), rollout.alias_was_on)
        except Exception as exc:
            errors.append(f"champion alias: {type(exc).__name__}: {exc}")
    try:
        traffic = api.read_endpoint(rollout.endpoint).by_version()
    except Exception as exc:
        errors.append(f"reading the endpoint back: {type(exc).__name__}: {exc}")
        traffic = {}
    return traffic, "; ".join(errors) or None


def _prior_split(state: EndpointState | None, ours: VertexVersion | None) -> dict[str, int]:
    """The split to go back to: what served before, without a canary of this version an interrupted
    attempt may have left (its share goes back to the others)."""
    if state is None:
        return {}
    prior = {
        k: v
        for k, v in state.live().items()
        if ours is None or k not in state.deployed or not state.deployed[k].serves(ours)
    }
    if not prior or sum(prior.values()) == 100:
        return prior
    split = canary_split("", 0, prior)
    split.pop("")
    return split


def _primary_version(state: EndpointState | None) -> int | None:
    live = state.live() if state is not None else {}
    if state is None or not live:
        return None
    dm_id = max(live, key=lambda k: live[k])
    info = state.deployed.get(dm_id)
    return info.registry_version if info else None


def _ids(rollout: _Rollout) -> dict[str, Any]:
    ids: dict[str, Any] = {"undeployed": rollout.undeployed}
    if rollout.version is not None:
        ids |= {
            "vertex_model": rollout.version.parent,
            "model_version_id": rollout.version.version_id,
            "artifact_uri": rollout.version.artifact_uri,
        }
    if rollout.deployed_id is not None:
        ids["deployed_model_id"] = rollout.deployed_id
    return ids


def _label(value: str) -> str:
    """GCP label values: lowercase letters, digits, '_' and '-', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]
