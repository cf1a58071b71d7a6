"""The quality gate in a fresh process, as a task runs it: `python -m benchmarks.quality_bench ROWS DOCS`.

Prints one JSON line: the gate's seconds in a fresh process (GX's import plus `validate`, the test data's
generation left out), the import alone, and whether Data Docs were written.
"""

from __future__ import annotations

import json
import sys
import time

START = time.perf_counter()


def main(rows: int, docs: str) -> None:
    import datetime as dt
    from pathlib import Path

    import great_expectations  # noqa: F401  # timed on its own: the floor of any GX-based gate

    imported = time.perf_counter() - START
    import pandas as pd

    from modelgate.catalog import load_spec
    from modelgate.config import project_dir
    from modelgate.datasets.churn import generate_day
    from modelgate.quality import build_suite, validate

    spec = load_spec(project_dir() / "include" / "models" / "churn.yaml")
    per_day = min(rows, 50_000)
    days = [generate_day(dt.date(2026, 1, 1) + dt.timedelta(days=i), rows=per_day) for i in range(-(-rows // per_day))]
    frame = pd.concat(days, ignore_index=True).head(rows)
    frame[spec.time_column] = pd.to_datetime(frame[spec.time_column], utc=True)
    made = time.perf_counter()
    result = validate(spec, frame, build_suite(spec), docs_dir=Path(docs))
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "gate_s": round(imported + (done - made), 2),  # a fresh process: import, then validate
                "gx_import_s": round(imported, 2),
                "validate_s": round(done - made, 2),
                "rows": len(frame),
                "passed": result.passed,
                "docs": bool(result.docs_path),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
