"""The local deployment target: verified artifacts under serving/<model>/, switched atomically.

`serving/<model>/state.json` says which version is stable, which (if any) is the canary and its share of
traffic; it is replaced with os.replace, so a server reading it sees the old state or the new one, never a
mix. `serving/<model>/current` is a symlink to the stable artifact, switched the same way.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelgate.deploy.controller import DeployError, Serving, rollout
from modelgate.deploy.store import Deployment
from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.entities import ModelVersion, RunRef
from modelgate.registry.store import Registry

__all__ = ["DeployError", "LocalDeployment", "LocalTarget", "ProbeBatch", "ServingState", "Slot", "deploy_local"]


@dataclass(frozen=True)
class Slot:
    version: int
    sha256: str
    path: str


@dataclass(frozen=True)
class ServingState:
    model: str
    features: list[str]
    task: str
    stable: Slot | None
    canary: Slot | None = None
    canary_percent: int = 0

    def traffic(self) -> dict[str, int]:
        if self.stable is None:
            return {}
        if self.canary is None:
            return {f"v{self.stable.version}": 100}
        return {f"v{self.stable.version}": 100 - self.canary_percent, f"v{self.canary.version}": self.canary_percent}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServingState:
        raw = json.loads(text)
        stable = Slot(**raw["stable"]) if raw.get("stable") else None
        canary = Slot(**raw["canary"]) if raw.get("canary") else None
        return cls(raw["model"], list(raw["features"]), raw["task"], stable, canary, int(raw.get("canary_percent", 0)))


class LocalTarget:
    """serving/<model>/: staged artifacts, state.json and the `current` symlink."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def model_dir(self, model: str) -> Path:
        return self.root / model

    def state_path(self, model: str) -> Path:
        return self.model_dir(model) / "state.json"

    def read_state(self, model: str) -> ServingState | None:
        path = self.state_path(model)
        if not path.is_file():
            return None
        return ServingState.from_json(path.read_text())

    def stage(self, version: ModelVersion, artifacts: ArtifactStore) -> Slot:
        """Copy the artifact next to the server, after checking its sha256 against the registry's record."""
        directory = self.model_dir(version.model)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"v{version.version}-{version.artifact_sha256[:12]}.joblib"
        if not target.exists():
            data = artifacts.fetch(version.artifact_uri, version.artifact_sha256)
            fd, tmp = tempfile.mkstemp(prefix=".stage-", dir=directory)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        return Slot(version.version, version.artifact_sha256, str(target))

    def write_state(self, state: ServingState) -> None:
        """Atomically publish a new serving state (and point `current` at the stable artifact)."""
        directory = self.model_dir(state.model)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
        with os.fdopen(fd, "w") as fh:
            fh.write(state.to_json())
        os.replace(tmp, self.state_path(state.model))
        if state.stable is not None:
            link_tmp = directory / f".current-{os.getpid()}"
            link_tmp.unlink(missing_ok=True)
            link_tmp.symlink_to(Path(state.stable.path).name)
            os.replace(link_tmp, directory / "current")


def load_slot(slot: Slot) -> Any:
    """Load a staged artifact, refusing it if its bytes no longer match the recorded sha256."""
    import hashlib
    import io

    import joblib

    from modelgate.registry.errors import ArtifactIntegrityError

    data = Path(slot.path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != slot.sha256:
        raise ArtifactIntegrityError(
            f"staged artifact {slot.path} has sha256 {actual}, the registry recorded {slot.sha256}: refusing to load it"
        )
    return joblib.load(io.BytesIO(data))


Probe = Callable[[ServingState, Slot], None]


@dataclass(frozen=True)
class ProbeBatch:
    """Rows the new model must score without errors and within sane ranges at each step."""

    rows: Any  # a DataFrame with the model's features
    classification: bool | None = None  # None: as the serving state's task says

    def __call__(self, state: ServingState, slot: Slot) -> None:
        import numpy as np

        classification = self.classification
        if classification is None:
            classification = state.task != "regression"
        model = load_slot(slot)
        x = self.rows[state.features]
        scores = model.predict_proba(x)[:, 1] if classification else model.predict(x)
        scores = np.asarray(scores, dtype=float)
        if len(scores) != len(x) or not np.isfinite(scores).all():
            raise DeployError(f"probe: v{slot.version} returned non-finite or missing scores")
        if classification and ((scores < 0).any() or (scores > 1).any()):
            raise DeployError(f"probe: v{slot.version} returned probabilities outside [0, 1]")


class LocalDeployment:
    """The local target as a `DeploymentTarget`: each step is one atomic write of state.json.

    Without `features` and `task` (a model with no spec), those the registry recorded for the version are used.
    """

    kind = "local"
    label = "local"

    def __init__(
        self,
        target: LocalTarget,
        artifacts: ArtifactStore,
        *,
        features: Sequence[str] | None = None,
        task: str | None = None,
        probe: Probe | None = None,
    ) -> None:
        self._target = target
        self._artifacts = artifacts
        self._features = list(features) if features is not None else None
        self._task = task
        self._probe = probe
        self._entry: ModelVersion | None = None
        self._previous: ServingState | None = None
        self._slot: Slot | None = None
        self._state: ServingState | None = None
        self._done = False

    def survey(self, entry: ModelVersion) -> Serving:
        self._entry = entry
        if self._features is None:
            self._features = list(entry.feature_schema)
        if self._task is None:
            self._task = entry.tags.get("task", "binary_classification")
        previous = self._previous = self._target.read_state(entry.model)
        stable = previous.stable if previous is not None else None
        already = previous is not None and previous.canary is None and stable is not None
        return Serving(
            version=stable.version if stable else None,
            already_all=already and stable is not None and stable.version == entry.version,
        )

    def settle_unchanged(self) -> None:
        return None  # the state file already says what serves

    def stage(self) -> None:
        assert self._entry is not None, "survey() first"
        self._slot = self._target.stage(self._entry, self._artifacts)

    def steps(self, requested: Sequence[int]) -> Sequence[int]:
        return requested

    def shift(self, percent: int) -> dict[str, int]:
        assert self._entry is not None and self._slot is not None, "stage() first"
        assert self._features is not None and self._task is not None  # set by survey()
        previous = self._previous
        if percent < 100 and previous is not None and previous.stable is not None:
            state = ServingState(self._entry.model, self._features, self._task, previous.stable, self._slot, percent)
        else:
            state = ServingState(self._entry.model, self._features, self._task, self._slot, None, 0)
        if not math.isclose(sum(state.traffic().values()), 100):
            raise DeployError(f"traffic split {state.traffic()} does not sum to 100")
        self._target.write_state(state)
        self._state = state
        return state.traffic()

    def probe(self) -> None:
        if self._probe is not None and self._state is not None and self._slot is not None:
            self._probe(self._state, self._slot)

    def complete(self) -> dict[str, int]:
        assert self._state is not None, "no step was taken"
        self._done = True
        return self._state.traffic()

    def restore(self) -> tuple[dict[str, int], str | None]:
        if self._previous is None:
            return {}, None
        self._target.write_state(self._previous)  # traffic goes back where it was
        return self._previous.traffic(), None

    def where(self) -> str | None:
        return str(self._target.model_dir(self._entry.model)) if self._entry else None

    def ids(self) -> dict[str, Any]:
        return {"local": self._slot.path} if self._done and self._slot is not None else {}


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
    """Roll `version` out to the local target through the canary steps; None if it already serves it all."""
    deployment = LocalDeployment(target, artifacts, features=features, task=task, probe=probe)
    return rollout(registry, deployment, model=model, version=version, steps=steps, actor=actor, run=run)
