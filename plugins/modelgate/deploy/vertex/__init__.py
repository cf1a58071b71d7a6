"""The Vertex AI target: `api` (settings, hooks, the API adapter), `probe` (what the canary must answer),
`rollout` (the endpoint as a DeploymentTarget for the shared canary controller)."""

from modelgate.deploy.vertex.api import (
    DeployedModelInfo,
    EndpointState,
    VertexApi,
    VertexHooks,
    VertexSettings,
    VertexVersion,
    resource_id,
    split_gs_uri,
)
from modelgate.deploy.vertex.probe import ProbeExpectation, rows_to_instances, serving_estimator
from modelgate.deploy.vertex.rollout import VertexDeployment, canary_split, deploy_vertex, upload_serving_version

__all__ = [
    "DeployedModelInfo",
    "EndpointState",
    "ProbeExpectation",
    "VertexApi",
    "VertexDeployment",
    "VertexHooks",
    "VertexSettings",
    "VertexVersion",
    "canary_split",
    "deploy_vertex",
    "resource_id",
    "rows_to_instances",
    "serving_estimator",
    "split_gs_uri",
    "upload_serving_version",
]
