"""modelgate's DAGs: each spec's in include/models/ (wiring only).

A task runner parses this file for its own DAG only (Airflow's parsing context): just that model is built.
With many models, `modelgate dags shard N` lays out copies of this file (modelgate_dags_1.py, …); each builds
the models whose names hash to it.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import get_parsing_context

from modelgate.airflow.factory import build_all
from modelgate.catalog import dag_shard

INCLUDE_DIR = Path(os.environ.get("MODELGATE_INCLUDE_DIR", Path(__file__).resolve().parents[1] / "include"))

_dags, SPEC_ERRORS = build_all(
    INCLUDE_DIR / "models",
    INCLUDE_DIR,
    only_dag=get_parsing_context().dag_id,
    shard=dag_shard(Path(__file__)),
)
globals().update(_dags)
