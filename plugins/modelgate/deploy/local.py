"""The local deployment target: verified artifacts under serving/<model>/, switched atomically.

`serving/<model>/state.json` says which version is stable, which (if any) is the canary and its share of
traffic; it is replaced with os.replace, so a server reading it sees the old state or the new one, never a
mix. `serving/<model>/current` is a symlink to the stable artifact, switched the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.entities import ModelVersion


class DeployError(RuntimeError):
    """A deployment step failed; traffic has been put back where it was."""


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
