"""Vertex AI as plain values, through apache-airflow-providers-google's hooks: settings, hooks, the API adapter.

Mutating calls are retried only on UNAVAILABLE (the request was not acted on); a DEADLINE_EXCEEDED on a
mutation may have been applied, so the rollout fails and the restore path reads what the endpoint really
holds before putting traffic back.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.deploy.controller import DeployError
from modelgate.registry.artifacts import GCSHookLike

if TYPE_CHECKING:
    from airflow.providers.google.cloud.hooks.vertex_ai.batch_prediction_job import BatchPredictionJobHook
    from airflow.providers.google.cloud.hooks.vertex_ai.endpoint_service import EndpointServiceHook
    from airflow.providers.google.cloud.hooks.vertex_ai.model_service import ModelServiceHook
    from airflow.providers.google.cloud.hooks.vertex_ai.prediction_service import PredictionServiceHook

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

    model: ModelServiceHook
    endpoint: EndpointServiceHook
    prediction: PredictionServiceHook
    job: BatchPredictionJobHook
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


def label_value(value: str) -> str:
    """GCP label values: lowercase letters, digits, '_' and '-', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]
