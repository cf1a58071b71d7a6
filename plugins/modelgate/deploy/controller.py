"""Canary rollout to the local target: step traffic, probe between steps, put traffic back on failure."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelgate.deploy.local import DeployError, LocalTarget, ServingState, Slot, load_slot
from modelgate.deploy.store import Deployment, DeploymentStore
from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.entities import RunRef
from modelgate.registry.store import Registry

log = logging.getLogger(__name__)

Probe = Callable[[ServingState, Slot], None]


@dataclass(frozen=True)
class ProbeBatch:
    """Rows the new model must score without errors and within sane ranges at each step."""

    rows: Any  # a DataFrame with the model's features
    classification: bool

    def __call__(self, state: ServingState, slot: Slot) -> None:
        import numpy as np

        model = load_slot(slot)
        x = self.rows[state.features]
        scores = model.predict_proba(x)[:, 1] if self.classification else model.predict(x)
        scores = np.asarray(scores, dtype=float)
        if len(scores) != len(x) or not np.isfinite(scores).all():
            raise DeployError(f"probe: v{slot.version} returned non-finite or missing scores")
        if self.classification and ((scores < 0).any() or (scores > 1).any()):
            raise DeployError(f"probe: v{slot.version} returned probabilities outside [0, 1]")


def deploy_local(
    registry: Registry,
    artifacts: ArtifactStore,
    target: LocalTarget,
    *,
    model: str,
    version: int,
    features: Sequence[str],
    task: str,
    steps: Sequence[int],
    probe: Probe | None = None,
    actor: str = "modelgate",
    run: RunRef | None = None,
) -> Deployment | None:
    """Roll `version` out through the canary steps; None if it already takes all the traffic."""
    entry = registry.servable_version(model, version)
    previous = target.read_state(model)
    if previous is not None and previous.canary is None and previous.stable and previous.stable.version == version:
        log.info("%s v%s already serves 100%% of the local traffic", model, version)
        return None
    store = DeploymentStore(registry)
    previous_version = previous.stable.version if previous and previous.stable else None
    deployment_id = store.start(model, version, previous_version, "local", run.run_id if run else None)
    try:
        slot = target.stage(entry, artifacts)
        for percent in steps:
            if percent < 100 and previous is not None and previous.stable is not None:
                state = ServingState(model, list(features), task, previous.stable, slot, percent)
            else:
                state = ServingState(model, list(features), task, slot, None, 0)
            total = sum(state.traffic().values())
            if not math.isclose(total, 100):
                raise DeployError(f"traffic split {state.traffic()} does not sum to 100")
            target.write_state(state)
            log.info("%s: %s", model, state.traffic())
            if probe is not None:
                probe(state, slot)
    except Exception as exc:
        if previous is not None:
            target.write_state(previous)  # traffic goes back where it was
        store.finish(
            deployment_id,
            status="failed",
            traffic=previous.traffic() if previous else {},
            actor=actor,
            error=f"{type(exc).__name__}: {exc}",
            endpoint=str(target.model_dir(model)),
            run=run,
        )
        raise DeployError(f"{model} v{version} deployment failed, traffic restored: {exc}") from exc
    return store.finish(
        deployment_id,
        status="live",
        traffic=state.traffic(),
        actor=actor,
        endpoint=str(target.model_dir(model)),
        deployed_ids={"local": slot.path},
        run=run,
    )
