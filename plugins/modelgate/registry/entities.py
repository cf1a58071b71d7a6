"""Plain, immutable entities the registry returns: never ORM rows, never live connections."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, Literal

ArtifactFormat = Literal["joblib", "skops"]


class VersionStatus(enum.StrEnum):
    CHALLENGER = "challenger"
    CHAMPION = "champion"
    ARCHIVED = "archived"
    REJECTED = "rejected"


class EventKind(enum.StrEnum):
    REGISTER = "register"
    PROMOTE = "promote"
    REJECT = "reject"
    ARCHIVE = "archive"
    ROLLBACK = "rollback"
    DEPLOY = "deploy"
    EVALUATE = "evaluate"
    HOLD = "hold"  # a passing verdict not promoted: dry run, backfill, or a newer champion exists
    EXPERIMENT = "experiment"  # an A/B experiment started, stopped or promoted its challenger


CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class Source:
    """Where a version came from: an Airflow task instance, or the CLI."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int | None = None

    @classmethod
    def cli(cls, key: str) -> Source:
        return cls(dag_id="cli", run_id=key, task_id="register")


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str | None
    created_at: dt.datetime
    champion_version: int | None = None
    version_count: int = 0


@dataclass(frozen=True)
class VersionDraft:
    """Everything a caller supplies to register a new version; the registry adds the rest."""

    artifact_uri: str
    artifact_sha256: str
    artifact_size: int
    source: Source
    framework: str = "scikit-learn"
    library_versions: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    data_fingerprint: str | None = None
    row_count: int | None = None
    feature_schema: dict[str, str] = field(default_factory=dict)
    code_version: str | None = None
    reference_uri: str | None = None
    reference_sha256: str | None = None
    holdout_artifact_uri: str | None = None  # refit: the model fitted without the holdout, scored in evaluation
    holdout_artifact_sha256: str | None = None
    created_by: str | None = None
    description: str | None = None
    artifact_format: ArtifactFormat = "joblib"  # skops: loads without unpickling (`ArtifactStore.save_model`)
    trusted_types: tuple[str, ...] = ()  # skops: the types beyond skops' own that loading may build


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    status: VersionStatus
    artifact_uri: str
    artifact_sha256: str
    artifact_size: int
    framework: str
    library_versions: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    data_fingerprint: str | None
    row_count: int | None
    feature_schema: dict[str, str]
    code_version: str | None
    reference_uri: str | None
    reference_sha256: str | None
    source: Source
    created_at: dt.datetime
    created_by: str | None
    holdout_artifact_uri: str | None = None
    holdout_artifact_sha256: str | None = None
    artifact_format: ArtifactFormat = "joblib"
    trusted_types: tuple[str, ...] = ()

    @property
    def evaluation_artifact(self) -> tuple[str, str]:
        """What to score on a holdout: the model fitted without it when the served one was refit on it."""
        if self.holdout_artifact_uri and self.holdout_artifact_sha256:
            return self.holdout_artifact_uri, self.holdout_artifact_sha256
        return self.artifact_uri, self.artifact_sha256


@dataclass(frozen=True)
class RunRef:
    """The Airflow run (or CLI invocation) behind an event."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    as_of: dt.datetime | None = None  # the end of the data interval the run acted for (None: now)


@dataclass(frozen=True)
class RegistryEvent:
    id: int
    model: str
    kind: EventKind
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    verdict: dict[str, Any] | None
    run: RunRef
    at: dt.datetime
    as_of: dt.datetime  # the data time it acted for: its run's interval end (`at` for the CLI and older events)


@dataclass(frozen=True)
class Comparison:
    """Versions side by side: one row per metric, param and window field."""

    model: str
    versions: list[int]
    metrics: dict[str, list[float | None]]
    params: dict[str, list[Any]]
    windows: dict[str, list[str | None]]
    statuses: list[str]

    @staticmethod
    def differs(values: list[Any]) -> bool:
        """Whether a row's values are not all the same: what `modelgate compare` and the compare page mark."""
        import json

        return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1
