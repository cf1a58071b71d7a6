"""modelgate's DAGs: one monitor and one retrain DAG per spec in include/models/ (wiring only)."""

from __future__ import annotations

import os
from pathlib import Path

from modelgate.airflow.factory import build_all

INCLUDE_DIR = Path(os.environ.get("MODELGATE_INCLUDE_DIR", Path(__file__).resolve().parents[1] / "include"))

_dags, SPEC_ERRORS = build_all(INCLUDE_DIR / "models", INCLUDE_DIR)
globals().update(_dags)
