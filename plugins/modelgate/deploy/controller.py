"""The canary controller every deploy target shares, and the protocol a target implements.

A rollout is the same whatever serves the model: read what serves now, stage the new version, move traffic
to it step by step with a probe after each step, retire what no longer serves, and record the attempt in
the registry's `deployment` table with its `deploy` event. On any failure the target puts traffic back
where it was, and the failed attempt is recorded with the error. Targets only say how each step is done:
`deploy/local.py` switches files under serving/<model>/, `deploy/vertex/` drives a Vertex AI endpoint.
A new target implements `DeploymentTarget` and is chosen in `targets.build_target`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelgate.deploy.store import Deployment, DeploymentStore
from modelgate.registry.entities import ModelVersion, RunRef
from modelgate.registry.store import Registry

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """A deployment step failed; traffic has been put back where it was."""


@dataclass(frozen=True)
class Serving:
    """What a target served before the rollout touched it."""

    version: int | None  # the registry version with most of the traffic, if any
    already_all: bool  # the version being deployed already takes all of it


class DeploymentTarget(Protocol):
    """One attempt to roll one version out to one place. Built per attempt: it keeps what it changed."""

    kind: str  # recorded with the deployment: "local", "vertex"
    label: str  # how messages name it: "local", "Vertex"

    def survey(self, entry: ModelVersion) -> Serving:
        """Read the current state (and check the version can be served) before anything changes."""
        ...

    def settle_unchanged(self) -> None:
        """The version already takes all traffic: only bring bookkeeping (aliases) in line."""
        ...

    def stage(self) -> None:
        """Put the version where it can serve (copy, upload); it takes no traffic yet."""
        ...

    def steps(self, requested: Sequence[int]) -> Sequence[int]:
        """The canary steps to walk (a target with nothing serving may go straight to 100)."""
        ...

    def shift(self, percent: int) -> dict[str, int]:
        """Give the new version `percent` of the traffic; return the live split, keyed `v<N>`."""
        ...

    def probe(self) -> None:
        """Raise DeployError if the new version's answers at this step are not sane."""
        ...

    def complete(self) -> dict[str, int]:
        """After the last step: retire what no longer serves; return the final split."""
        ...

    def restore(self) -> tuple[dict[str, int], str | None]:
        """Put traffic back as it was: the split now, and what could not be restored (None if all was)."""
        ...

    def where(self) -> str | None:
        """The endpoint or directory serving the model, for the record."""
        ...

    def ids(self) -> dict[str, Any]:
        """Target-side identifiers of what this attempt created or removed, for the record."""
        ...


def rollout(
    registry: Registry,
    target: DeploymentTarget,
    *,
    model: str,
    version: int,
    steps: Sequence[int],
    actor: str = "modelgate",
    run: RunRef | None = None,
) -> Deployment | None:
    """Roll `version` out through the canary steps; None if it already takes all the traffic.

    One rollout per model at a time (the store's rollout lock); an attempt a killed process left
    `deploying` is closed as `abandoned` first, and the target's state is surveyed afresh.
    """
    entry = registry.servable_version(model, version)
    store = DeploymentStore(registry)
    with store.rollout_lock(model, actor=actor) as abandoned:
        if abandoned:
            log.warning("%s: closed deployment(s) %s left mid-rollout by a process that ended", model, abandoned)
        return _rollout(store, target, entry, steps=steps, actor=actor, run=run)


def _rollout(
    store: DeploymentStore,
    target: DeploymentTarget,
    entry: ModelVersion,
    *,
    steps: Sequence[int],
    actor: str,
    run: RunRef | None,
) -> Deployment | None:
    model, version = entry.model, entry.version
    before = target.survey(entry)
    if before.already_all:
        log.info("%s v%s already serves 100%% of the %s traffic", model, version, target.label)
        target.settle_unchanged()
        return None
    deployment_id = store.start(model, version, before.version, target.kind, run.run_id if run else None)
    try:
        target.stage()
        for percent in target.steps(steps):
            traffic = target.shift(percent)
            target.probe()
            log.info("%s: %s", model, traffic)
        final = target.complete()
    except Exception as exc:
        traffic, restore_error = target.restore()
        error = f"{type(exc).__name__}: {exc}"
        if restore_error:
            error += f"; restoring traffic also failed: {restore_error}"
        store.finish(
            deployment_id,
            status="failed",
            traffic=traffic,
            actor=actor,
            error=error,
            endpoint=target.where(),
            deployed_ids=target.ids(),
            run=run,
        )
        outcome = "traffic NOT fully restored, check the endpoint" if restore_error else "traffic restored"
        raise DeployError(f"{model} v{version} {target.label} deployment failed, {outcome}: {error}") from exc
    return store.finish(
        deployment_id,
        status="live",
        traffic=final,
        actor=actor,
        endpoint=target.where(),
        deployed_ids=target.ids(),
        run=run,
    )
