"""The Vertex AI target: one rollout on the model's endpoint, as a `DeploymentTarget`.

One parent Vertex model per modelgate model: each registry version is uploaded once as a Vertex version
aliased `v<N>` (found again by that alias, so a re-run uploads nothing), and the `champion` alias follows the
registry's champion. One endpoint per model, found by display name or created once. The serving artifact is
copied to `<gcs_prefix>/<model>/sha256/<registry sha256>/model.joblib`, where the prebuilt scikit-learn
container looks for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelgate.deploy.controller import DeployError, Serving, rollout
from modelgate.deploy.store import Deployment
from modelgate.deploy.vertex.api import EndpointState, VertexApi, VertexVersion, label_value
from modelgate.deploy.vertex.probe import ProbeExpectation, probe_endpoint, rows_to_instances, serving_estimator
from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.entities import CHAMPION_ALIAS, ModelVersion, RunRef
from modelgate.registry.store import Registry

log = logging.getLogger(__name__)


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


def upload_serving_version(
    api: VertexApi, parent: str | None, *, model: str, version: int, sha256: str, serving: Any
) -> VertexVersion:
    """Copy the serving artifact to GCS and upload it as version `v<version>` of the parent model."""
    return api.upload_version(
        parent,
        artifact_uri=api.copy_serving_artifact(model, sha256, serving),
        aliases=[f"v{version}"],
        labels={"modelgate-model": label_value(model), "modelgate-version": str(version)},
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


class VertexDeployment:
    """The Vertex endpoint as a `DeploymentTarget`: upload once, deploy a canary, move the split, undeploy."""

    kind = "vertex"
    label = "Vertex"

    def __init__(
        self,
        api: VertexApi,
        artifacts: ArtifactStore,
        registry: Registry,
        *,
        features: Sequence[str],
        numeric: Sequence[str],
        task: str,
        probe_rows: Any,
    ) -> None:
        self._api = api
        self._artifacts = artifacts
        self._registry = registry
        self._features = list(features)
        self._numeric = list(numeric)
        self._task = task
        self._probe_rows = probe_rows
        self._rollout = _Rollout()

    def survey(self, entry: ModelVersion) -> Serving:
        api = self._api
        self._entry = entry
        estimator = self._artifacts.load_version(entry)  # refuses a tampered artifact or an unlisted type
        self._serving = serving_estimator(estimator, self._features, self._numeric)
        self._expectation = ProbeExpectation.build(
            self._serving,
            rows_to_instances(self._probe_rows, self._features),
            self._task,
            api.settings.min_probe_agreement,
        )
        champion = self._registry.get_champion(entry.model)
        self._is_champion = champion is not None and champion.version == entry.version
        try:
            self._parent = api.find_parent_model()
            self._existing = api.get_version(self._parent, f"v{entry.version}") if self._parent else None
            endpoint = api.find_endpoint()
            before = api.read_endpoint(endpoint) if endpoint else None
        except Exception as exc:
            raise DeployError(f"{entry.model}: cannot read the Vertex state: {type(exc).__name__}: {exc}") from exc
        already = False
        if before is not None and self._existing is not None:
            live = before.live()
            already = len(live) == 1 and before.deployed[next(iter(live))].serves(self._existing)
        self._rollout = _Rollout(endpoint=endpoint, restore_split=_prior_split(before, self._existing))
        return Serving(version=_primary_version(before), already_all=already)

    def settle_unchanged(self) -> None:
        if self._is_champion and self._parent and self._existing is not None:
            api = self._api
            holder = api.alias_holder(self._parent, CHAMPION_ALIAS)
            api.move_alias(self._parent, CHAMPION_ALIAS, holder, self._existing.version_id)

    def stage(self) -> None:
        api, rollout, entry = self._api, self._rollout, self._entry
        rollout.version = self._existing or upload_serving_version(
            api,
            self._parent,
            model=entry.model,
            version=entry.version,
            sha256=entry.artifact_sha256,
            serving=self._serving,
        )
        if rollout.endpoint is None:
            rollout.endpoint = api.create_endpoint({"modelgate-model": label_value(entry.model)})
        state = api.read_endpoint(rollout.endpoint)
        leftover = [i for i, dm in state.deployed.items() if dm.serves(rollout.version)]
        rollout.deployed_id = leftover[0] if leftover else None  # an interrupted attempt's canary: reuse it

    def steps(self, requested: Sequence[int]) -> Sequence[int]:
        return requested if self._rollout.restore_split else [100]  # nothing served: no canary to weigh

    def shift(self, percent: int) -> dict[str, int]:
        api, rollout = self._api, self._rollout
        assert rollout.endpoint is not None and rollout.version is not None, "stage() first"
        if rollout.deployed_id is None:
            split = canary_split("0", percent, rollout.restore_split)
            name = f"{self._entry.model}-v{self._entry.version}"
            rollout.deployed_id = api.deploy(rollout.endpoint, rollout.version, name, split)
            split = {(rollout.deployed_id if k == "0" else k): v for k, v in split.items()}
        else:
            split = canary_split(rollout.deployed_id, percent, rollout.restore_split)
            api.set_split(rollout.endpoint, split)
        state = api.read_endpoint(rollout.endpoint)
        if state.live() != {k: v for k, v in split.items() if v > 0}:
            raise DeployError(f"the endpoint's split is {state.live()} after asking for {split}")
        return state.by_version()

    def probe(self) -> None:
        rollout = self._rollout
        assert rollout.endpoint is not None and rollout.deployed_id is not None, "shift() first"
        answered = probe_endpoint(self._api, rollout.endpoint, rollout.deployed_id, self._expectation)
        log.info("%s: the canary answered probe request %d", self._entry.model, answered)

    def complete(self) -> dict[str, int]:
        api, rollout = self._api, self._rollout
        assert rollout.endpoint is not None and rollout.version is not None, "shift() first"
        if self._is_champion:
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
        rollout.endpoint = final.name
        return final.by_version()

    def restore(self) -> tuple[dict[str, int], str | None]:
        return _restore(self._api, self._rollout)

    def where(self) -> str | None:
        return self._rollout.endpoint

    def ids(self) -> dict[str, Any]:
        return _ids(self._rollout)


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
    target = VertexDeployment(
        api, artifacts, registry, features=features, numeric=numeric, task=task, probe_rows=probe_rows
    )
    return rollout(registry, target, model=model, version=version, steps=steps, actor=actor, run=run)


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
