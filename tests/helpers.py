"""Small builders shared by tests."""

from __future__ import annotations

import hashlib
from typing import Any

from modelgate.registry.entities import Source, VersionDraft


def draft(run_id: str = "run-1", *, task_id: str = "train", **overrides: Any) -> VersionDraft:
    """A valid draft whose source key is (dag, run_id, task_id)."""
    sha = hashlib.sha256(f"{run_id}/{task_id}".encode()).hexdigest()
    fields: dict[str, Any] = {
        "artifact_uri": f"file:///artifacts/{sha}.joblib",
        "artifact_sha256": sha,
        "artifact_size": 123,
        "source": Source("modelgate_retrain__churn", run_id, task_id, 1),
        "metrics": {"roc_auc": 0.8},
        "params": {"C": 1.0},
        "created_by": "tests",
    }
    fields.update(overrides)
    return VersionDraft(**fields)
