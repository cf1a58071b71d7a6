"""Batch prediction through a Vertex AI batch prediction job, from and to GCS.

The interval's rows go to GCS as JSON lines keyed by the spec's id column; the job turns each into the
feature array the prebuilt container expects (`instance_config`: included_fields in feature order, key_field
the id) and answers `{"key", "prediction"}` lines, which replace the interval's rows in `batch_prediction`
exactly as the local path does. The champion's artifact is sha256-checked before anything leaves.

The prebuilt scikit-learn container answers `predict()`: for a classifier the rows carry the predicted
label, with `score` and `risk_tier` left empty (a label is not a probability; local rows have both); for a
regressor the prediction is the score, as locally.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from modelgate.data import Interval, load_window
from modelgate.deploy.batch import BatchResult, scoring_champion, write_predictions
from modelgate.deploy.controller import DeployError
from modelgate.deploy.vertex import (
    VertexApi,
    VertexHooks,
    VertexSettings,
    resource_id,
    rows_to_instances,
    serving_estimator,
    split_gs_uri,
    upload_serving_version,
)
from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.store import Registry
from modelgate.spec import ModelSpec, Task

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

_TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


class BatchJobFailed(DeployError):
    """The Vertex batch prediction job did not succeed, or its output does not cover the interval."""


def vertex_batch_predict(
    spec: ModelSpec,
    interval: Interval,
    *,
    registry: Registry,
    artifacts: ArtifactStore,
    data_url: str | None,
    api: VertexApi | None = None,
    poll_seconds: float = 10.0,
) -> BatchResult:
    settings = VertexSettings.from_spec(spec)
    api = api or VertexApi(VertexHooks.connect(settings.gcp_conn_id), settings)
    champion = scoring_champion(registry, spec.name, interval)
    estimator = artifacts.load_version(champion)  # refuses a tampered file or an unlisted type
    frame = load_window(spec, interval, url=data_url)
    import numpy as np

    ids = frame[spec.id_column].astype(str).to_numpy()
    scores = np.array([], dtype=float)
    classes: list[str] = []
    positions = np.array([], dtype=float)
    if len(frame):
        parent = api.find_parent_model()
        version = (api.get_version(parent, f"v{champion.version}") if parent else None) or upload_serving_version(
            api,
            parent,
            model=spec.name,
            version=champion.version,
            sha256=champion.artifact_sha256,
            serving=serving_estimator(estimator, spec.feature_names, spec.numeric_features),
        )
        predictions = _run_job(api, spec, interval, f"{version.parent}@{version.version_id}", frame, poll_seconds)
        missing = [i for i in ids if i not in predictions]
        if missing:
            raise BatchJobFailed(f"the batch job returned no prediction for {len(missing)} rows, e.g. {missing[:3]}")
        if spec.task is Task.MULTICLASS:  # the prebuilt container answers the class itself
            positions, classes = _answered_classes(spec, [predictions[i] for i in ids])
        else:
            scores = np.asarray([float(predictions[i]) for i in ids], dtype=float)
    if spec.task is Task.MULTICLASS:  # no probability: the class, and its position in the spec's classes
        write_predictions(registry, spec, interval, champion.version, ids, None, positions, classes)
    else:
        binary = spec.task is Task.BINARY
        write_predictions(registry, spec, interval, champion.version, ids, None if binary else scores, scores)
    log.info("scored %s rows of %s with v%s on Vertex AI for %s", len(ids), spec.name, champion.version, interval)
    return BatchResult(spec.name, champion.version, len(ids), interval)


def _answered_classes(spec: ModelSpec, answers: list[Any]) -> tuple[np.ndarray, list[str]]:
    """A multiclass job's answers as positions in the spec's classes and as the classes (text); an answer the
    spec does not list fails the job."""
    import numpy as np

    from modelgate.spec import label_text

    index = spec.class_index()
    answered = [label_text(a) for a in answers]
    unknown = sorted({a for a in answered if a not in index})
    if unknown:
        raise BatchJobFailed(f"the batch job answered classes the spec does not list: {unknown[:5]}")
    names = spec.class_names
    return np.asarray([index[a] for a in answered], dtype=float), [names[index[a]] for a in answered]


def _run_job(
    api: VertexApi, spec: ModelSpec, interval: Interval, model: str, frame: Any, poll_seconds: float
) -> dict[str, Any]:
    s = api.settings
    key = f"{interval.start:%Y%m%dT%H%M%S}-{interval.end:%Y%m%dT%H%M%S}"
    bucket, base = api.gcs_location(spec.name, "batch", key)
    rows = rows_to_instances(frame, spec.feature_names)
    lines = "".join(
        json.dumps({spec.id_column: row_id, **dict(zip(spec.feature_names, row, strict=True))}) + "\n"
        for row_id, row in zip(frame[spec.id_column].astype(str), rows, strict=True)
    )
    client = api.hooks.job.get_job_service_client(s.region)
    labels = {"modelgate-model": spec.name.replace("_", "-"), "modelgate-interval": key.lower(), **_model_label(model)}
    job = _existing_job(api, labels)
    if job is not None:  # a retry, or the same interval again: never a second job for it
        log.info("%s: reusing batch prediction job %s (%s)", spec.name, job.name, job.state.name)
        return _wait(api, job, poll_seconds)
    api.hooks.gcs.upload(bucket_name=bucket, object_name=f"{base}/instances.jsonl", data=lines)
    from google.cloud.aiplatform_v1 import types

    job = client.create_batch_prediction_job(
        parent=f"projects/{s.project}/locations/{s.region}",
        batch_prediction_job=types.BatchPredictionJob(
            mapping={
                "display_name": f"modelgate-{spec.name}-{key}",
                "model": model,
                "input_config": {
                    "instances_format": "jsonl",
                    "gcs_source": {"uris": [f"gs://{bucket}/{base}/instances.jsonl"]},
                },
                "instance_config": {
                    "instance_type": "array",
                    "included_fields": spec.feature_names,
                    "key_field": spec.id_column,
                },
                "output_config": {
                    "predictions_format": "jsonl",
                    "gcs_destination": {"output_uri_prefix": f"gs://{bucket}/{base}/output"},
                },
                "dedicated_resources": {
                    "machine_spec": {"machine_type": s.machine_type},
                    "starting_replica_count": s.min_replica_count,
                    "max_replica_count": s.max_replica_count,
                },
                "labels": labels,
            }
        ),
        timeout=s.call_timeout_seconds,
    )
    log.info("%s: batch prediction job %s started", spec.name, job.name)
    return _wait(api, job, poll_seconds)


def _model_label(model: str) -> dict[str, str]:
    """The model version as a label value (`<model id>-<version id>`), so a new champion gets its own job."""
    resource, _, version = model.rpartition("@")
    return {"modelgate-version": f"{resource.rpartition('/')[2]}-{version}".lower()[:63]}


def _existing_job(api: VertexApi, labels: dict[str, str]) -> Any | None:
    """The newest job for these labels that succeeded or may still do so; failed ones are not reused."""
    s = api.settings
    expression = " AND ".join(f'labels.{k}="{v}"' for k, v in sorted(labels.items()))
    found = api.hooks.job.list_batch_prediction_jobs(
        project_id=s.project, region=s.region, filter=expression, timeout=s.call_timeout_seconds
    )
    jobs = list(found)
    alive = [j for j in jobs if j.state.name not in _TERMINAL - {"JOB_STATE_SUCCEEDED"}]
    return max(alive, key=lambda j: j.name, default=None)


def _wait(api: VertexApi, job: Any, poll_seconds: float) -> dict[str, Any]:
    """Wait for the job with the provider's own poller (BatchPredictionJobAsyncHook, as its deferrable
    operator does), bounded by the spec's operation timeout."""
    import asyncio

    from airflow.providers.google.cloud.hooks.vertex_ai.batch_prediction_job import BatchPredictionJobAsyncHook

    s = api.settings
    hook = BatchPredictionJobAsyncHook(gcp_conn_id=s.gcp_conn_id)
    waiting = hook.wait_batch_prediction_job(
        project_id=s.project,
        location=s.region,
        job_id=resource_id(job.name),
        timeout=s.call_timeout_seconds,
        poll_interval=poll_seconds,  # type: ignore[arg-type]  # an int in the signature; asyncio.sleep takes any
    )
    try:
        job = asyncio.run(asyncio.wait_for(waiting, timeout=s.operation_timeout_seconds))
    except TimeoutError:
        raise BatchJobFailed(
            f"batch prediction job {job.name} still not done after {s.operation_timeout_seconds}s"
        ) from None
    state = job.state.name
    if state != "JOB_STATE_SUCCEEDED":
        raise BatchJobFailed(f"batch prediction job {job.name} ended {state}: {job.error.message or 'no error given'}")
    return _read_output(api, job.output_info.gcs_output_directory)


def _read_output(api: VertexApi, directory: str) -> dict[str, Any]:
    bucket, prefix = split_gs_uri(directory)
    found: dict[str, Any] = {}
    names = [n for n in api.hooks.gcs.list(bucket, prefix=f"{prefix}/") if "/prediction" in n]
    for name in names:
        raw = api.hooks.gcs.download(bucket_name=bucket, object_name=name)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        for line in text.splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if "error" in record:
                raise BatchJobFailed(f"the batch job could not score key {record.get('key')}: {record['error']}")
            found[str(record["key"])] = record["prediction"]
    if not names:
        raise BatchJobFailed(f"the batch job wrote no prediction files under {directory}")
    return found
