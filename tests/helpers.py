"""Small builders shared by tests."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
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


def registry_connection(url: str) -> str:
    """The `modelgate_registry` Airflow Connection (as AIRFLOW_CONN_ JSON) for a registry database URL."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    connection = {
        "conn_type": "postgres",
        "host": parsed.host,
        "port": parsed.port,
        "login": parsed.username,
        "schema": parsed.database,
    }
    return json.dumps(connection)


@contextlib.contextmanager
def dags_for(url: str, include: Path, root: Path, module_name: str) -> Iterator[dict[str, Any]]:
    """dags/modelgate_dags.py parsed against this registry database and include dir: {dag_id: DAG}.

    The tasks read the same environment when dag.test() runs them; it is restored after the block.
    """
    from tests.conftest import REPO_ROOT

    env = {
        "AIRFLOW_CONN_MODELGATE_REGISTRY": registry_connection(url),
        "MODELGATE_INCLUDE_DIR": str(include),
        "MODELGATE_ARTIFACT_ROOT": str(root / "artifacts"),
        "MODELGATE_REPORTS_DIR": str(root / "reports"),
        "MODELGATE_SERVING_DIR": str(root / "serving"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / "dags" / "modelgate_dags.py")
        assert module_spec and module_spec.loader
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        yield module._dags
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
