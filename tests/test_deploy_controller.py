"""The shared canary controller against a recording target: the protocol's contract, whatever serves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelgate.deploy.controller import DeployError, DeploymentTarget, Serving, rollout
from modelgate.deploy.store import DeploymentStore
from modelgate.registry import ArtifactStore, EventKind, Registry, Source, VersionDraft
from modelgate.registry.entities import ModelVersion
from modelgate.registry.errors import NotServable
from modelgate.registry.store import ANY_CHAMPION

pytestmark = pytest.mark.integration


class RecordingTarget:
    """A target that keeps its traffic in memory and records every call the controller makes."""

    kind = "memory"
    label = "in-memory"

    def __init__(self, *, serving: int | None, fail_at: int | None = None) -> None:
        self.calls: list[str] = []
        self.before = {f"v{serving}": 100} if serving else {}
        self.traffic = dict(self.before)
        self.fail_at = fail_at
        self.version = 0

    def survey(self, entry: ModelVersion) -> Serving:
        self.calls.append("survey")
        self.version = entry.version
        return Serving(version=int(next(iter(self.before))[1:]) if self.before else None, already_all=False)

    def settle_unchanged(self) -> None:
        self.calls.append("settle_unchanged")

    def stage(self) -> None:
        self.calls.append("stage")

    def steps(self, requested: Sequence[int]) -> Sequence[int]:
        return requested

    def shift(self, percent: int) -> dict[str, int]:
        self.calls.append(f"shift {percent}")
        old = {k: 100 - percent for k in self.before} if percent < 100 else {}
        self.traffic = {**old, f"v{self.version}": percent}
        return self.traffic

    def probe(self) -> None:
        self.calls.append("probe")
        if self.fail_at is not None and self.traffic.get(f"v{self.version}") == self.fail_at:
            raise DeployError("probe: the canary answered 500")

    def complete(self) -> dict[str, int]:
        self.calls.append("complete")
        return self.traffic

    def restore(self) -> tuple[dict[str, int], str | None]:
        self.calls.append("restore")
        self.traffic = dict(self.before)
        return self.traffic, None

    def where(self) -> str | None:
        return "memory://demo"

    def ids(self) -> dict[str, Any]:
        return {"memory": self.version}


def _versions(registry: Registry, tmp_path: Path) -> list[int]:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    versions = []
    for run in ("r1", "r2", "r3"):
        stored = artifacts.save(LogisticRegression().fit(x, [0, 0, 1, 1]))
        draft = VersionDraft(stored.uri, stored.sha256, stored.size, Source("tests", run, "train"))
        versions.append(registry.register("demo", draft).version)
    return versions


def test_a_target_needs_only_the_protocol(registry: Registry, tmp_path: Path) -> None:
    v1, v2, _ = _versions(registry, tmp_path)
    registry.promote("demo", v1, expected_champion=None, actor="tests")
    registry.promote("demo", v2, expected_champion=v1, actor="tests")
    target: DeploymentTarget = RecordingTarget(serving=v1)
    deployment = rollout(registry, target, model="demo", version=v2, steps=[10, 100], actor="tests")
    assert isinstance(target, RecordingTarget)
    assert target.calls == ["survey", "stage", "shift 10", "probe", "shift 100", "probe", "complete"]
    assert deployment is not None and deployment.status == "live" and deployment.traffic == {"v2": 100}
    assert deployment.target == "memory" and deployment.previous_version == v1
    event = registry.history("demo", kinds=["deploy"])[-1]
    assert event.kind is EventKind.DEPLOY and event.verdict["status"] == "live"


def test_a_failed_probe_restores_through_the_target_and_is_recorded(registry: Registry, tmp_path: Path) -> None:
    v1, v2, _ = _versions(registry, tmp_path)
    registry.promote("demo", v1, expected_champion=None, actor="tests")
    registry.promote("demo", v2, expected_champion=v1, actor="tests")
    target = RecordingTarget(serving=v1, fail_at=50)
    with pytest.raises(DeployError, match="demo v2 in-memory deployment failed, traffic restored: .*answered 500"):
        rollout(registry, target, model="demo", version=v2, steps=[10, 50, 100], actor="tests")
    assert target.calls[-2:] == ["probe", "restore"] and target.traffic == {"v1": 100}
    last = DeploymentStore(registry).history("demo")[-1]
    assert last.status == "failed" and last.traffic == {"v1": 100} and "answered 500" in (last.error or "")


def test_only_champions_reach_a_target(registry: Registry, tmp_path: Path) -> None:
    v1, _, v3 = _versions(registry, tmp_path)
    registry.promote("demo", v1, expected_champion=ANY_CHAMPION, actor="tests")
    target = RecordingTarget(serving=v1)
    with pytest.raises(NotServable):
        rollout(registry, target, model="demo", version=v3, steps=[100])
    assert target.calls == []  # refused before the target was asked anything
