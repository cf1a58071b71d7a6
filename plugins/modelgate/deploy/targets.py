"""Which `DeploymentTarget` serves a model: chosen here, from the spec, for the deploy DAG and the CLI alike.

A new target implements `controller.DeploymentTarget`, gets a `deploy.target` value in `spec.py`, and a
branch in `build_target`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.deploy.controller import DeployError, DeploymentTarget
from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.store import Registry

if TYPE_CHECKING:
    from modelgate.spec import ModelSpec


def build_target(
    spec: ModelSpec | None,
    *,
    registry: Registry,
    artifacts: ArtifactStore,
    serving_root: Path,
    probe_rows: Any | None,
) -> DeploymentTarget:
    """The target for one rollout, probing with `probe_rows` at each step.

    Without a spec (a model registered from the CLI), the local target is used, with the features and task
    the registry recorded for the version.
    """
    if spec is None or spec.deploy.target == "local":
        from modelgate.deploy.local import LocalDeployment, LocalTarget, ProbeBatch

        return LocalDeployment(
            LocalTarget(serving_root),
            artifacts,
            features=spec.feature_names if spec else None,
            task=spec.task.value if spec else None,
            probe=None if probe_rows is None else ProbeBatch(probe_rows),
        )
    if spec.deploy.target == "vertex":
        from modelgate.deploy.vertex import VertexApi, VertexDeployment, VertexHooks, VertexSettings

        if probe_rows is None:
            raise DeployError(f"{spec.name}: a Vertex AI rollout needs probe rows to check the canary with")
        settings = VertexSettings.from_spec(spec)
        return VertexDeployment(
            VertexApi(VertexHooks.connect(settings.gcp_conn_id), settings),
            artifacts,
            registry,
            features=spec.feature_names,
            numeric=spec.numeric_features,
            task=spec.task.value,
            probe_rows=probe_rows.tail(spec.deploy.probe_rows),
        )
    raise DeployError(f"{spec.name}: deploy.target is {spec.deploy.target!r}: nothing to deploy to")
