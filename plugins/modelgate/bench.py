"""`make bench`: each benchmark prints its ratio against a baseline measured in the same run.

Performance targets live here, never in timed tests. Results also go to bench-results/latest.json.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from modelgate.registry.connection import create_registry_engine, normalize_url
from modelgate.registry.entities import Source, VersionDraft
from modelgate.registry.migrate import upgrade
from modelgate.registry.store import Registry

ADMIN_URL_ENV = "MODELGATE_BENCH_PG_URL"


def _timed(fn: Callable[[], Any], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def _scratch_database() -> tuple[str, Callable[[], None]]:
    """A throwaway database on the bench server: $MODELGATE_BENCH_PG_URL, else the embedded one."""
    admin = os.environ.get(ADMIN_URL_ENV)
    if not admin:
        from modelgate.registry.embedded import start_embedded

        admin = start_embedded().replace("/modelgate?", "/postgres?")
    admin_engine = sa.create_engine(normalize_url(admin), isolation_level="AUTOCOMMIT")
    name = f"mg_bench_{uuid.uuid4().hex[:8]}"
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(normalize_url(admin)).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()

    return url, drop


def bench_registry(repeat: int = 200) -> dict[str, Any]:
    """Promotion and registration cost against one-statement transactions on the same server."""
    url, drop = _scratch_database()
    engine = create_registry_engine(url)
    try:
        upgrade(engine)
        registry = Registry(engine)
        for i in range(2):
            registry.register("bench", _draft(f"seed-{i}"))
        registry.promote("bench", 1, expected_champion=None, actor="bench")

        def baseline() -> None:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE registered_model SET description = 'x' WHERE name = 'bench'"))

        state = {"champion": 1}

        def promote() -> None:
            target = 2 if state["champion"] == 1 else 1
            registry.promote("bench", target, expected_champion=state["champion"], actor="bench")
            state["champion"] = target

        counter = iter(range(10**9))
        base = _timed(baseline, repeat)
        promote_s = _timed(promote, repeat)
        register_s = _timed(lambda: registry.register("bench", _draft(f"r-{next(counter)}")), repeat)
        return {
            "baseline_single_update_ms": round(base * 1e3, 3),
            "promote_ms": round(promote_s * 1e3, 3),
            "register_ms": round(register_s * 1e3, 3),
            "promote_vs_baseline": round(promote_s / base, 2),
            "register_vs_baseline": round(register_s / base, 2),
        }
    finally:
        engine.dispose()
        drop()


def _draft(run_id: str) -> VersionDraft:
    import hashlib

    sha = hashlib.sha256(run_id.encode()).hexdigest()
    return VersionDraft(
        artifact_uri=f"file:///bench/{sha}", artifact_sha256=sha, artifact_size=1, source=Source("bench", run_id, "t")
    )


BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {"registry": bench_registry}


def main() -> None:
    selected = os.environ.get("MODELGATE_BENCH", ",".join(BENCHMARKS)).split(",")
    results: dict[str, Any] = {}
    for name in selected:
        print(f"== {name}", flush=True)
        results[name] = BENCHMARKS[name]()
        for key, value in results[name].items():
            print(f"  {key:<32} {value}")
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
