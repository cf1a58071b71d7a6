"""Surfaces invalid modelgate specs as this file's import error in the Airflow UI (the airflow DAG list).

`modelgate_dags.py` still generates the DAGs of every valid spec; this file holds no DAG and fails to import,
with one line per problem (file, field, reason), only while some spec in include/models/ is invalid.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelgate.catalog import load_specs
from modelgate.spec import InvalidSpec

INCLUDE_DIR = Path(os.environ.get("MODELGATE_INCLUDE_DIR", Path(__file__).resolve().parents[1] / "include"))

_, _errors = load_specs(INCLUDE_DIR / "models")
if _errors:
    raise InvalidSpec(_errors)
