"""Batch scoring's peak memory in a process of its own: `python -m benchmarks.batch_memory URL ARTIFACTS`.

The scratch registry at URL already holds the churn rows and a champion; prints one JSON line with the
rows scored, the seconds, and the peak RSS (VmHWM) before and after scoring.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _peak_mb() -> float:
    """VmHWM: this process's own peak (ru_maxrss would carry the parent's from before the exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(url: str, artifacts_root: str, start: str, end: str) -> None:
    import datetime as dt

    from modelgate.catalog import load_spec
    from modelgate.config import project_dir
    from modelgate.data import Interval
    from modelgate.deploy.batch import batch_predict
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.registry.connection import create_registry_engine
    from modelgate.registry.store import Registry

    spec = load_spec(project_dir() / "include" / "models" / "churn.yaml")
    registry = Registry(create_registry_engine(url))
    interval = Interval(dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end))
    before = _peak_mb()
    began = time.perf_counter()
    result = batch_predict(spec, interval, registry=registry, artifacts=ArtifactStore(artifacts_root), data_url=url)
    seconds = time.perf_counter() - began
    print(
        json.dumps(
            {
                "rows": result.rows,
                "seconds": round(seconds, 2),
                "rss_before_mb": round(before),
                "peak_rss_mb": round(_peak_mb()),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
