"""The local deployment target: verified artifacts under serving/<model>/, switched atomically.

`serving/<model>/state.json` says which version is stable, which (if any) is the canary and its share of
traffic; it is replaced with os.replace, so a server reading it sees the old state or the new one, never a
mix. `serving/<model>/current` is a symlink to the stable artifact, switched the same way.

A staged copy is trusted only while its bytes match the registry's sha256: staging re-copies a copy that
does not, and "already serves" needs a copy that does. Each running `modelgate serve` answers every state it
reads in `serving/<model>/served-<pid>.json` (the state's revision, and the error if it could not load it); a
step of a rollout waits for every live server to answer its revision, and fails (traffic restored) when one
refuses it, so a rollout is never recorded live while the server still answers with the old version.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelgate.deploy.controller import DeployError, Serving, rollout
from modelgate.deploy.store import Deployment
from modelgate.registry.artifacts import ArtifactStore, load_model_bytes
from modelgate.registry.entities import ArtifactFormat, ModelVersion, RunRef
from modelgate.registry.store import Registry

__all__ = [
    "DeployError",
    "LocalDeployment",
    "LocalTarget",
    "ProbeBatch",
    "ServedAnswer",
    "ServingState",
    "Slot",
    "deploy_local",
    "staged_copy_ok",
]


@dataclass(frozen=True)
class Slot:
    version: int
    sha256: str
    path: str
    format: ArtifactFormat = "joblib"  # as its version records (states written before skops have none)
    trusted: tuple[str, ...] = ()  # skops: the types beyond skops' own its version lists


def _slot(raw: dict[str, Any]) -> Slot:
    return Slot(**{**raw, "trusted": tuple(raw.get("trusted") or ())})


@dataclass(frozen=True)
class ServingState:
    model: str
    features: list[str]
    task: str
    stable: Slot | None
    canary: Slot | None = None
    canary_percent: int = 0
    revision: str = ""  # new with every write: what a server answers once it has loaded this state
    experiment_id: int | None = None  # an A/B experiment: the canary takes its share of keys, sticky, by hash
    salt: str = ""  # the experiment's: which keys go to the challenger

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
        stable = _slot(raw["stable"]) if raw.get("stable") else None
        canary = _slot(raw["canary"]) if raw.get("canary") else None
        return cls(
            raw["model"],
            list(raw["features"]),
            raw["task"],
            stable,
            canary,
            int(raw.get("canary_percent", 0)),
            str(raw.get("revision", "")),
            raw.get("experiment_id"),
            str(raw.get("salt", "")),
        )


@dataclass(frozen=True)
class ServedAnswer:
    """What one running server last made of state.json: the revision it read, and why it refused it if it did."""

    pid: int
    revision: str
    error: str | None


def staged_copy_ok(slot: Slot) -> bool:
    """The staged file exists and its bytes match the sha256 recorded for it."""
    try:
        with open(slot.path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest() == slot.sha256
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        """Copy the artifact next to the server, after checking its sha256 against the registry's record.

        A copy already there is reused only when its bytes still match; one that does not (tampered, torn)
        is replaced by a verified copy."""
        from modelgate.fileio import write_atomically

        directory = self.model_dir(version.model)
        target = directory / f"v{version.version}-{version.artifact_sha256[:12]}.{version.artifact_format}"
        slot = Slot(
            version.version, version.artifact_sha256, str(target), version.artifact_format, version.trusted_types
        )
        if not staged_copy_ok(slot):
            data = artifacts.fetch(version.artifact_uri, version.artifact_sha256)
            write_atomically(target, data, what=f"the staged copy of {version.model} v{version.version}")
        return slot

    def write_state(self, state: ServingState) -> ServingState:
        """Atomically publish a new serving state (and point `current` at the stable artifact); the state as
        written, with its new revision."""
        from dataclasses import replace

        from modelgate.fileio import write_atomically

        state = replace(state, revision=uuid.uuid4().hex)
        directory = self.model_dir(state.model)
        write_atomically(self.state_path(state.model), state.to_json().encode(), what=f"{state.model}'s state.json")
        if state.stable is not None:
            link_tmp = directory / f".current-{os.getpid()}"
            link_tmp.unlink(missing_ok=True)
            link_tmp.symlink_to(Path(state.stable.path).name)
            os.replace(link_tmp, directory / "current")
        return state

    def serving_champion(self, model: str, champion: int) -> ServingState:
        """The model's serving state, which must serve `champion` (a DeployError naming the way out otherwise)."""
        state = self.read_state(model)
        if state is None or state.stable is None or state.stable.version != champion:
            serving = "nothing" if state is None or state.stable is None else f"v{state.stable.version}"
            raise DeployError(
                f"the local target serves {serving} for {model}, not the champion v{champion}: "
                f"deploy it first (modelgate deploy {model})"
            )
        return state

    def start_experiment(self, model: str, challenger: Slot, *, champion: int, split: int, experiment_id: int,
                         salt: str) -> ServingState:  # fmt: skip
        """Serve `challenger` to `split` % of keys (sticky) beside the stable `champion`, in one state write."""
        state = self.serving_champion(model, champion)
        if state.canary is not None and state.experiment_id is None:
            raise DeployError(f"a canary of {model} is rolling out (v{state.canary.version}): wait for it to finish")
        new = ServingState(model, state.features, state.task, state.stable, challenger, split, "", experiment_id, salt)
        written = self.write_state(new)
        self.wait_served(written)
        return written

    def end_experiment(self, model: str, *, keep: int) -> ServingState | None:
        """Back to one version, `keep` (the champion, or the promoted challenger), if an experiment is served."""
        state = self.read_state(model)
        if state is None or state.experiment_id is None:
            return None
        slot = next((s for s in (state.stable, state.canary) if s is not None and s.version == keep), None)
        if slot is None:
            raise DeployError(f"v{keep} of {model} is not in the served experiment: deploy it")
        written = self.write_state(ServingState(model, state.features, state.task, slot, None, 0))
        self.wait_served(written)
        return written

    def served_path(self, model: str, pid: int, server: str) -> Path:
        """Where one running server answers (`server` tells apart servers of one process)."""
        return self.model_dir(model) / f"served-{pid}-{server}.json"

    @staticmethod
    def answer(path: Path, answer: ServedAnswer) -> None:
        """Write one server's answer to the state it read, in the shape `answers` reads (WriteFailed if not)."""
        from modelgate.fileio import write_atomically

        payload = json.dumps({"pid": answer.pid, "revision": answer.revision, "error": answer.error}).encode()
        write_atomically(path, payload, what="the server's answer", prefix=".served-")

    def answers(self, model: str) -> list[ServedAnswer]:
        """The answers of the servers still running (a dead server's file is removed)."""
        out = []
        for path in sorted(self.model_dir(model).glob("served-*.json")):
            try:
                raw = json.loads(path.read_text())
                answer = ServedAnswer(int(raw["pid"]), str(raw["revision"]), raw.get("error"))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if _alive(answer.pid):
                out.append(answer)
            else:
                path.unlink(missing_ok=True)
        return out

    def wait_served(self, state: ServingState, *, timeout: float = 15.0, poll: float = 0.05) -> None:
        """Return once every running server answers `state`'s revision; DeployError if one refuses it or
        does not answer within `timeout` seconds. No running server: nothing to wait for."""
        deadline = time.monotonic() + timeout
        while True:
            pending = []
            for answer in self.answers(state.model):
                if answer.revision != state.revision:
                    pending.append(answer)
                elif answer.error:
                    raise DeployError(f"modelgate serve (pid {answer.pid}) refused the new state: {answer.error}")
            if not pending:
                return
            if time.monotonic() > deadline:
                pids = ", ".join(str(a.pid) for a in pending)
                raise DeployError(f"modelgate serve (pid {pids}) did not load the new state within {timeout:g} s")
            time.sleep(poll)


def load_slot(slot: Slot) -> Any:
    """Load a staged artifact, refusing it if its bytes no longer match the recorded sha256."""
    import hashlib

    from modelgate.registry.errors import ArtifactIntegrityError

    data = Path(slot.path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != slot.sha256:
        raise ArtifactIntegrityError(
            f"staged artifact {slot.path} has sha256 {actual}, the registry recorded {slot.sha256}: refusing to load it"
        )
    return load_model_bytes(data, format=slot.format, trusted=slot.trusted, what=f"staged artifact {slot.path}")


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
            # "already serves" only with a staged copy whose bytes are still the registry's
            already_all=already
            and stable is not None
            and stable.version == entry.version
            and stable.sha256 == entry.artifact_sha256
            and staged_copy_ok(stable),
        )

    def settle_unchanged(self) -> None:
        return None  # the state file already says what serves

    def stage(self) -> None:
        assert self._entry is not None, "survey() first"
        self._slot = self._target.stage(self._entry, self._artifacts)

    def steps(self, requested: Sequence[int]) -> Sequence[int]:
        previous = self._previous
        if previous is None or previous.stable is None or previous.stable.version == self._version():
            return [100]  # nothing else serves (or this version already is stable): no canary to split with
        return requested

    def _version(self) -> int:
        assert self._entry is not None, "survey() first"
        return self._entry.version

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
        self._state = self._target.write_state(state)
        self._target.wait_served(self._state)
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
        restored = self._target.write_state(self._previous)  # traffic goes back where it was
        try:
            self._target.wait_served(restored)
        except DeployError as exc:
            return restored.traffic(), str(exc)
        return restored.traffic(), None

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
