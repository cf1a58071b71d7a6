"""A fake Vertex AI: the part of google.cloud.aiplatform.v1 modelgate uses, served over gRPC on 127.0.0.1.

The provider's real hooks and the real aiplatform clients talk to it through `grpc.insecure_channel`; it
speaks the protobuf messages google-cloud-aiplatform ships (each message's own serialize/deserialize), keeps
its state in memory, and records every request so tests can assert on what Google would have received.

Online predictions behave like the prebuilt scikit-learn container: the `model.joblib` under the model's
artifact_uri (read from the FakeGCS temp dir) gets `np.asarray(instances)` and answers `predict()`.

Faults: `inject(method, code)` fails the next call(s) of a method with UNAVAILABLE, DEADLINE_EXCEEDED...,
either before the server acts or, with `after=True`, after it did (a reply lost on the way back);
`fail_operation(method)` makes the long-running operation of the next such call finish with an error.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud.aiplatform_v1.types import (
    batch_prediction_job as batch_pb,
)
from google.cloud.aiplatform_v1.types import (
    endpoint as endpoint_pb,
)
from google.cloud.aiplatform_v1.types import (
    endpoint_service,
    job_service,
    job_state,
    model_service,
    prediction_service,
)
from google.cloud.aiplatform_v1.types import (
    model as model_pb,
)
from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from tests.fakes.gcs import FakeGCS

V1 = "google.cloud.aiplatform.v1"


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Fault:
    method: str
    code: grpc.StatusCode
    after: bool
    times: int
    skip: int


@dataclass
class FakeVertex:
    gcs: FakeGCS
    project: str = "test-project"
    region: str = "us-central1"
    seed: int = 0
    calls: list[tuple[str, Any]] = field(default_factory=list)
    models: dict[str, list[model_pb.Model]] = field(default_factory=dict)
    endpoints: dict[str, endpoint_pb.Endpoint] = field(default_factory=dict)
    operations: dict[str, operations_pb2.Operation] = field(default_factory=dict)
    jobs: dict[str, batch_pb.BatchPredictionJob] = field(default_factory=dict)
    undeployed_at: list[tuple[str, int]] = field(default_factory=list)  # (deployed model, its traffic then)
    names: dict[str, str] = field(default_factory=dict)  # every deployed model id ever -> display name

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1001)
        self._faults: list[_Fault] = []
        self._failing_operations: dict[str, str] = {}
        self._rng = random.Random(self.seed)
        self._cache: dict[str, Any] = {}
        self._server: grpc.Server | None = None
        self.address = ""

    # -- lifecycle

    def start(self) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers(self._handlers())
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self.address

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)

    # -- test controls

    def inject(
        self,
        method: str,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        *,
        after: bool = False,
        times: int = 1,
        skip: int = 0,
    ) -> None:
        """Fail the next `times` calls of `method` (after letting `skip` through)."""
        self._faults.append(_Fault(method, code, after, times, skip))

    def fail_operation(self, method: str, message: str = "injected: the operation failed") -> None:
        """The next `method` call returns an operation that finishes with an error and changes nothing."""
        self._failing_operations[method] = message

    def requests(self, method: str) -> list[Any]:
        return [request for name, request in self.calls if name == method]

    def methods(self) -> list[str]:
        return [name for name, _ in self.calls]

    def endpoint(self, display_name: str) -> endpoint_pb.Endpoint | None:
        found = [e for e in self.endpoints.values() if e.display_name == display_name]
        return found[0] if found else None

    def traffic(self, display_name: str) -> dict[str, int]:
        """The endpoint's split by deployed model display name (e.g. {"churn-v2": 100})."""
        ep = self.endpoint(display_name)
        if ep is None:
            return {}
        names = {dm.id: dm.display_name for dm in ep.deployed_models}
        return {names[k]: v for k, v in ep.traffic_split.items() if v}

    def deployed(self, display_name: str) -> list[str]:
        ep = self.endpoint(display_name)
        return [dm.display_name for dm in ep.deployed_models] if ep else []

    def aliases(self, model_display_name: str) -> dict[str, list[str]]:
        """{version_id: aliases} of the parent model with that display name."""
        for versions in self.models.values():
            if versions and versions[0].display_name == model_display_name:
                return {m.version_id: list(m.version_aliases) for m in versions}
        return {}

    # -- plumbing

    def _handlers(self) -> list[grpc.GenericRpcHandler]:
        op = operations_pb2.Operation
        services: dict[str, dict[str, tuple[Any, Any, Callable[[Any], Any]]]] = {
            f"{V1}.ModelService": {
                "UploadModel": (model_service.UploadModelRequest, op, self._upload_model),
                "GetModel": (model_service.GetModelRequest, model_pb.Model, self._get_model),
                "ListModels": (model_service.ListModelsRequest, model_service.ListModelsResponse, self._list_models),
                "ListModelVersions": (
                    model_service.ListModelVersionsRequest,
                    model_service.ListModelVersionsResponse,
                    self._list_model_versions,
                ),
                "MergeVersionAliases": (
                    model_service.MergeVersionAliasesRequest,
                    model_pb.Model,
                    self._merge_version_aliases,
                ),
            },
            f"{V1}.EndpointService": {
                "CreateEndpoint": (endpoint_service.CreateEndpointRequest, op, self._create_endpoint),
                "GetEndpoint": (endpoint_service.GetEndpointRequest, endpoint_pb.Endpoint, self._get_endpoint),
                "ListEndpoints": (
                    endpoint_service.ListEndpointsRequest,
                    endpoint_service.ListEndpointsResponse,
                    self._list_endpoints,
                ),
                "DeployModel": (endpoint_service.DeployModelRequest, op, self._deploy_model),
                "UndeployModel": (endpoint_service.UndeployModelRequest, op, self._undeploy_model),
                "UpdateEndpoint": (
                    endpoint_service.UpdateEndpointRequest,
                    endpoint_pb.Endpoint,
                    self._update_endpoint,
                ),
                "MutateDeployedModel": (endpoint_service.MutateDeployedModelRequest, op, self._mutate_deployed),
            },
            f"{V1}.PredictionService": {
                "Predict": (prediction_service.PredictRequest, prediction_service.PredictResponse, self._predict),
            },
            f"{V1}.JobService": {
                "CreateBatchPredictionJob": (
                    job_service.CreateBatchPredictionJobRequest,
                    batch_pb.BatchPredictionJob,
                    self._create_batch_job,
                ),
                "GetBatchPredictionJob": (
                    job_service.GetBatchPredictionJobRequest,
                    batch_pb.BatchPredictionJob,
                    self._get_batch_job,
                ),
                "ListBatchPredictionJobs": (
                    job_service.ListBatchPredictionJobsRequest,
                    job_service.ListBatchPredictionJobsResponse,
                    self._list_batch_jobs,
                ),
            },
            "google.longrunning.Operations": {
                "GetOperation": (operations_pb2.GetOperationRequest, op, self._get_operation),
                "WaitOperation": (operations_pb2.WaitOperationRequest, op, self._get_operation),
            },
        }
        handlers = []
        for service, methods in services.items():
            table = {
                name: grpc.unary_unary_rpc_method_handler(
                    self._wrap(name, fn),
                    request_deserializer=_deserializer(request_type),
                    response_serializer=_serializer(response_type),
                )
                for name, (request_type, response_type, fn) in methods.items()
            }
            handlers.append(grpc.method_handlers_generic_handler(service, table))
        return handlers

    def _wrap(self, method: str, fn: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.calls.append((method, request))
                fault = self._take_fault(method)
                if fault is not None and not fault.after:
                    context.abort(fault.code, f"injected {fault.code.name} on {method}")
                try:
                    response = fn(request)
                except _Abort as exc:
                    context.abort(exc.code, exc.message)
                if fault is not None:
                    context.abort(fault.code, f"injected {fault.code.name} on {method} (after acting)")
                return response

        return handle

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method != method or fault.times <= 0:
                continue
            if fault.skip > 0:
                fault.skip -= 1
                return None
            fault.times -= 1
            return fault
        return None

    def _operation(self, method: str, response: Any | None, mutate: Callable[[], Any] | None = None) -> Any:
        """A long-running operation, finished on the client's first poll (or failed, when asked to)."""
        name = f"projects/{self.project}/locations/{self.region}/operations/{next(self._ids)}"
        operation = operations_pb2.Operation(name=name, done=False)
        failure = self._failing_operations.pop(method, None)
        if failure is not None:
            operation.error.CopyFrom(status_pb2.Status(code=code_pb2.INTERNAL, message=failure))
        else:
            result = mutate() if mutate is not None else response
            operation.response.Pack(type(result).pb(result))
        self.operations[name] = operation
        return operation

    def _get_operation(self, request: Any) -> Any:
        operation = self.operations.get(request.name)
        if operation is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"operation {request.name} not found")
        operation.done = True
        return operation

    # -- models

    def _location(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def _resolve_model(self, name: str) -> model_pb.Model:
        base, _, version = name.partition("@")
        model_id = base.rpartition("/")[2]
        versions = self.models.get(model_id)
        if not versions:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Model {base} not found")
        wanted = version or "default"
        for m in versions:
            if m.version_id == wanted or wanted in m.version_aliases:
                return m
        raise _Abort(grpc.StatusCode.NOT_FOUND, f"Model version {name} not found")

    def _upload_model(self, request: Any) -> Any:
        model = model_pb.Model(request.model)
        if request.parent_model:
            parent = self._resolve_model(request.parent_model)
            model_id = parent.name.rpartition("/")[2]
        else:
            model_id = request.model_id or str(next(self._ids))
        versions = self.models.get(model_id, [])
        for alias in model.version_aliases:
            if any(alias in v.version_aliases for v in versions):
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"alias {alias!r} is already used by another version")

        def apply() -> Any:
            model.name = f"{self._location()}/models/{model_id}"
            model.version_id = str(len(versions) + 1)
            for v in versions:  # the new version becomes the default
                if "default" in v.version_aliases:
                    v.version_aliases.remove("default")
            model.version_aliases.insert(0, "default")
            self.models[model_id] = [*versions, model]
            return model_service.UploadModelResponse(model=model.name, model_version_id=model.version_id)

        return self._operation("UploadModel", None, apply)

    def _get_model(self, request: Any) -> Any:
        return self._resolve_model(request.name)

    def _list_models(self, request: Any) -> Any:
        wanted = _display_name_filter(request.filter)
        found = [vs[-1] for vs in self.models.values() if wanted is None or vs[0].display_name == wanted]
        return model_service.ListModelsResponse(models=found)

    def _list_model_versions(self, request: Any) -> Any:
        model_id = request.name.rpartition("/")[2].partition("@")[0]
        return model_service.ListModelVersionsResponse(models=self.models.get(model_id, []))

    def _merge_version_aliases(self, request: Any) -> Any:
        target = self._resolve_model(request.name)
        siblings = self.models[target.name.rpartition("/")[2]]
        for alias in request.version_aliases:
            if alias.startswith("-"):
                if alias[1:] == "default":
                    raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "the default alias cannot be removed")
                if alias[1:] in target.version_aliases:
                    target.version_aliases.remove(alias[1:])
                continue
            holder = [v for v in siblings if alias in v.version_aliases and v is not target]
            if holder and alias != "default":
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"alias {alias!r} is already used by version {holder[0].version_id}",
                )
            for v in holder:
                v.version_aliases.remove(alias)
            if alias not in target.version_aliases:
                target.version_aliases.append(alias)
        return target

    # -- endpoints

    def _resolve_endpoint(self, name: str) -> endpoint_pb.Endpoint:
        endpoint = self.endpoints.get(name.rpartition("/")[2])
        if endpoint is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Endpoint {name} not found")
        return endpoint

    def _create_endpoint(self, request: Any) -> Any:
        def apply() -> Any:
            endpoint_id = request.endpoint_id or str(next(self._ids))
            endpoint = endpoint_pb.Endpoint(request.endpoint)
            endpoint.name = f"{self._location()}/endpoints/{endpoint_id}"
            self.endpoints[endpoint_id] = endpoint
            return endpoint

        return self._operation("CreateEndpoint", None, apply)

    def _get_endpoint(self, request: Any) -> Any:
        return self._resolve_endpoint(request.name)

    def _list_endpoints(self, request: Any) -> Any:
        wanted = _display_name_filter(request.filter)
        found = [e for e in self.endpoints.values() if wanted is None or e.display_name == wanted]
        return endpoint_service.ListEndpointsResponse(endpoints=found)

    def _check_split(self, endpoint: endpoint_pb.Endpoint, split: dict[str, int], extra: set[str]) -> None:
        known = {dm.id for dm in endpoint.deployed_models} | extra
        unknown = set(split) - known
        if unknown:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"traffic_split names unknown deployed models {unknown}")
        if split and sum(split.values()) != 100:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"traffic_split {split} does not sum to 100")

    def _deploy_model(self, request: Any) -> Any:
        endpoint = self._resolve_endpoint(request.endpoint)
        version = self._resolve_model(request.deployed_model.model)
        split = dict(request.traffic_split)
        self._check_split(endpoint, split, {"0"})

        def apply() -> Any:
            deployed = endpoint_pb.DeployedModel(request.deployed_model)
            deployed.id = str(next(self._ids))
            deployed.model = version.name
            deployed.model_version_id = version.version_id
            self.names[deployed.id] = deployed.display_name
            endpoint.deployed_models.append(deployed)
            if split:
                new_split = {(deployed.id if k == "0" else k): v for k, v in split.items()}
                endpoint.traffic_split.clear()
                endpoint.traffic_split.update(new_split)
            elif len(endpoint.deployed_models) == 1:
                endpoint.traffic_split.update({deployed.id: 100})
            return endpoint_service.DeployModelResponse(deployed_model=deployed)

        return self._operation("DeployModel", None, apply)

    def _undeploy_model(self, request: Any) -> Any:
        endpoint = self._resolve_endpoint(request.endpoint)
        ids = [dm.id for dm in endpoint.deployed_models]
        self.undeployed_at.append((request.deployed_model_id, endpoint.traffic_split.get(request.deployed_model_id, 0)))
        if request.deployed_model_id not in ids:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"deployed model {request.deployed_model_id} not found")
        split = dict(request.traffic_split) if request.traffic_split else dict(endpoint.traffic_split)
        remaining = [i for i in ids if i != request.deployed_model_id]
        if split.get(request.deployed_model_id, 0) > 0 and remaining:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"deployed model {request.deployed_model_id} still has {split[request.deployed_model_id]}% traffic",
            )
        split.pop(request.deployed_model_id, None)
        if remaining:
            self._check_split(endpoint, {k: v for k, v in split.items() if v}, set())

        def apply() -> Any:
            kept = [dm for dm in endpoint.deployed_models if dm.id != request.deployed_model_id]
            del endpoint.deployed_models[:]
            endpoint.deployed_models.extend(kept)
            endpoint.traffic_split.clear()
            endpoint.traffic_split.update(split if remaining else {})
            return endpoint_service.UndeployModelResponse()

        return self._operation("UndeployModel", None, apply)

    def _update_endpoint(self, request: Any) -> Any:
        endpoint = self._resolve_endpoint(request.endpoint.name)
        paths = set(request.update_mask.paths)
        if "traffic_split" in paths:
            split = dict(request.endpoint.traffic_split)
            self._check_split(endpoint, split, set())
            endpoint.traffic_split.clear()
            endpoint.traffic_split.update(split)
        if "display_name" in paths:
            endpoint.display_name = request.endpoint.display_name
        return endpoint

    def _mutate_deployed(self, request: Any) -> Any:
        endpoint = self._resolve_endpoint(request.endpoint)
        for dm in endpoint.deployed_models:
            if dm.id == request.deployed_model.id:
                return self._operation(
                    "MutateDeployedModel", endpoint_service.MutateDeployedModelResponse(deployed_model=dm)
                )
        raise _Abort(grpc.StatusCode.NOT_FOUND, f"deployed model {request.deployed_model.id} not found")

    # -- predictions

    def _load(self, version: model_pb.Model) -> Any:
        key = f"{version.name}@{version.version_id}"
        if key not in self._cache:
            import joblib

            path = self.gcs.path_of(version.artifact_uri.rstrip("/") + "/model.joblib")
            if not path.is_file():
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, f"no model.joblib under {version.artifact_uri}")
            self._cache[key] = joblib.load(path)
        return self._cache[key]

    def _container_predict(self, version: model_pb.Model, instances: list[Any]) -> list[Any]:
        """What the prebuilt scikit-learn container does: google.cloud.aiplatform's SklearnPredictor
        (preprocess = np.asarray(instances), predict = model.predict, postprocess = .tolist()). Its module
        cannot be imported here (it needs the docker SDK), so those three lines are repeated."""
        import numpy as np

        model = self._load(version)
        try:
            return list(np.asarray(model.predict(np.asarray(instances))).tolist())
        except Exception as exc:  # the container answers 500 with the exception text
            raise _Abort(grpc.StatusCode.INTERNAL, f"prediction failed: {type(exc).__name__}: {exc}") from exc

    def _predict(self, request: Any) -> Any:
        endpoint = self._resolve_endpoint(request.endpoint)
        split = {k: v for k, v in endpoint.traffic_split.items() if v > 0}
        if not split:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, f"endpoint {request.endpoint} has no deployed model")
        chosen = self._rng.choices(list(split), weights=list(split.values()))[0]
        deployed = next(dm for dm in endpoint.deployed_models if dm.id == chosen)
        version = self._resolve_model(f"{deployed.model}@{deployed.model_version_id}")
        instances = [_plain(v) for v in request.instances]
        predictions = self._container_predict(version, instances)
        response = prediction_service.PredictResponse(
            deployed_model_id=deployed.id, model=deployed.model, model_version_id=deployed.model_version_id
        )
        # proto-plus 1.29 with protobuf 7 cannot build a repeated Value from a list: fill the raw message
        raw = prediction_service.PredictResponse.pb(response)
        for prediction in predictions:
            json_format.ParseDict(prediction, raw.predictions.add())
        return response

    # -- batch prediction jobs

    def _create_batch_job(self, request: Any) -> Any:
        job = batch_pb.BatchPredictionJob(request.batch_prediction_job)
        self._resolve_model(job.model)
        job.name = f"{self._location()}/batchPredictionJobs/{next(self._ids)}"
        job.state = job_state.JobState.JOB_STATE_PENDING
        failure = self._failing_operations.pop("CreateBatchPredictionJob", None)
        if failure is not None:
            job.error = status_pb2.Status(code=code_pb2.INTERNAL, message=failure)
        self.jobs[job.name] = job
        return job

    def _list_batch_jobs(self, request: Any) -> Any:
        wanted = _label_filter(request.filter)
        found = [j for j in self.jobs.values() if all(j.labels.get(k) == v for k, v in wanted.items())]
        return job_service.ListBatchPredictionJobsResponse(batch_prediction_jobs=found)

    def _get_batch_job(self, request: Any) -> Any:
        job = self.jobs.get(request.name)
        if job is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"batch prediction job {request.name} not found")
        if job.state == job_state.JobState.JOB_STATE_PENDING:
            job.state = job_state.JobState.JOB_STATE_RUNNING  # first poll: running
        elif job.state == job_state.JobState.JOB_STATE_RUNNING:
            self._run_batch_job(job)
        return job

    def _run_batch_job(self, job: batch_pb.BatchPredictionJob) -> None:
        if job.error.code:
            job.state = job_state.JobState.JOB_STATE_FAILED
            return
        version = self._resolve_model(job.model)
        lines: list[str] = []
        for uri in job.input_config.gcs_source.uris:
            lines += [line for line in self.gcs.path_of(uri).read_text().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        config = job.instance_config
        if config.instance_type == "array" and config.included_fields:  # objects -> arrays in that field order
            instances = [[r.get(f) for f in config.included_fields] for r in records]
        else:
            instances = records
        predictions = self._container_predict(version, instances) if instances else []
        out_dir = f"{job.output_config.gcs_destination.output_uri_prefix.rstrip('/')}/prediction-{job.name[-4:]}"
        target = self.gcs.path_of(f"{out_dir}/predictions_00001.jsonl")
        target.parent.mkdir(parents=True, exist_ok=True)
        out = []
        for record, instance, prediction in zip(records, instances, predictions, strict=True):
            if config.key_field:
                out.append({"key": record[config.key_field], "prediction": prediction})
            else:
                out.append({"instance": instance, "prediction": prediction})
        target.write_text("".join(json.dumps(o) + "\n" for o in out))
        job.output_info = batch_pb.BatchPredictionJob.OutputInfo(gcs_output_directory=out_dir)
        job.state = job_state.JobState.JOB_STATE_SUCCEEDED


def _label_filter(expression: str) -> dict[str, str]:
    """`labels.a="x" AND labels.b="y"`, the only job filter the fake understands (as Vertex AI writes it)."""
    wanted = {}
    for term in filter(None, (t.strip() for t in expression.split(" AND "))):
        key, _, value = term.partition("=")
        if not key.strip().startswith("labels."):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"the fake supports only label filters: {expression}")
        wanted[key.strip().removeprefix("labels.")] = value.strip().strip('"')
    return wanted


def _display_name_filter(expression: str) -> str | None:
    expression = expression.strip()
    if not expression:
        return None
    key, _, value = expression.partition("=")
    if key.strip() != "display_name":
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"the fake supports only display_name filters: {expression}")
    return value.strip().strip('"')


def _plain(value: Any) -> Any:
    """proto-plus hands Values over as MapComposite/RepeatedComposite; the container sees plain JSON."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__.startswith("Repeated"):
        return [_plain(v) for v in value]
    return value


def _deserializer(message_type: Any) -> Callable[[bytes], Any]:
    if hasattr(message_type, "deserialize"):
        return message_type.deserialize  # type: ignore[no-any-return]
    return message_type.FromString  # type: ignore[no-any-return]


def _serializer(message_type: Any) -> Callable[[Any], bytes]:
    if hasattr(message_type, "serialize"):
        return message_type.serialize  # type: ignore[no-any-return]
    return lambda message: message.SerializeToString()


def vertex_clients(address: str) -> dict[str, Any]:
    """The real aiplatform v1 clients, on an insecure channel to the fake."""
    from google.cloud.aiplatform_v1 import (
        EndpointServiceClient,
        JobServiceClient,
        ModelServiceClient,
        PredictionServiceClient,
    )
    from google.cloud.aiplatform_v1.services.endpoint_service.transports import EndpointServiceGrpcTransport
    from google.cloud.aiplatform_v1.services.job_service.transports import JobServiceGrpcTransport
    from google.cloud.aiplatform_v1.services.model_service.transports import ModelServiceGrpcTransport
    from google.cloud.aiplatform_v1.services.prediction_service.transports import PredictionServiceGrpcTransport

    channel = grpc.insecure_channel(address)
    return {
        "model": ModelServiceClient(transport=ModelServiceGrpcTransport(channel=channel)),
        "endpoint": EndpointServiceClient(transport=EndpointServiceGrpcTransport(channel=channel)),
        "prediction": PredictionServiceClient(transport=PredictionServiceGrpcTransport(channel=channel)),
        "job": JobServiceClient(transport=JobServiceGrpcTransport(channel=channel)),
    }


def patch_vertex_hooks(monkeypatch: Any, address: str) -> dict[str, Any]:
    """Hand the provider's hooks clients built on the fake's channel (the only thing replaced)."""
    from airflow.providers.google.cloud.hooks.vertex_ai.batch_prediction_job import (
        BatchPredictionJobAsyncHook,
        BatchPredictionJobHook,
    )
    from airflow.providers.google.cloud.hooks.vertex_ai.endpoint_service import EndpointServiceHook
    from airflow.providers.google.cloud.hooks.vertex_ai.model_service import ModelServiceHook
    from airflow.providers.google.cloud.hooks.vertex_ai.prediction_service import PredictionServiceHook

    clients = vertex_clients(address)
    monkeypatch.setattr(ModelServiceHook, "get_model_service_client", lambda self, region=None: clients["model"])
    monkeypatch.setattr(
        EndpointServiceHook, "get_endpoint_service_client", lambda self, region=None: clients["endpoint"]
    )
    monkeypatch.setattr(
        PredictionServiceHook, "get_prediction_service_client", lambda self, region=None: clients["prediction"]
    )
    monkeypatch.setattr(BatchPredictionJobHook, "get_job_service_client", lambda self, region=None: clients["job"])

    async def async_job_client(self: Any, region: str | None = None) -> Any:
        """The async client the provider's poller uses, on an asyncio channel of the running loop."""
        from google.cloud.aiplatform_v1 import JobServiceAsyncClient
        from google.cloud.aiplatform_v1.services.job_service.transports import JobServiceGrpcAsyncIOTransport

        channel = grpc.aio.insecure_channel(address)
        return JobServiceAsyncClient(transport=JobServiceGrpcAsyncIOTransport(channel=channel))

    monkeypatch.setattr(BatchPredictionJobAsyncHook, "get_job_service_client", async_job_client)
    return clients
