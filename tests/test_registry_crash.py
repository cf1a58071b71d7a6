"""A promotion whose backend dies mid-transaction leaves the old champion and no event."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from modelgate.registry import Registry, RegistryUnavailable, VersionStatus
from modelgate.registry.connection import create_registry_engine
from tests.helpers import draft

pytestmark = pytest.mark.integration


def test_killed_backend_mid_promotion_leaves_old_champion(registry_url: str) -> None:
    registry = Registry(create_registry_engine(registry_url))
    registry.register("churn", draft("r1"))
    registry.register("churn", draft("r2"))
    registry.promote("churn", 1, expected_champion=None, actor="setup")
    events_before = len(registry.history("churn"))
    conninfo = registry_url.replace("postgresql+psycopg://", "postgresql://")

    # Hold a lock that blocks the event INSERT, so the promotion stops after its status updates.
    blocker = psycopg.connect(conninfo)
    blocker.execute("LOCK TABLE registry_event IN EXCLUSIVE MODE")
    outcome: dict[str, BaseException | None] = {}

    def promote() -> None:
        try:
            registry.promote("churn", 2, expected_champion=1, actor="doomed")
            outcome["error"] = None
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=promote)
    worker.start()
    killer = psycopg.connect(conninfo, autocommit=True)
    pid = None
    for _ in range(200):
        row = killer.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO registry_event%%'"
        ).fetchone()
        if row:
            pid = row[0]
            break
        time.sleep(0.05)
    assert pid is not None, "the promotion never reached the event insert"
    # Mid-transaction: the uncommitted status updates exist only in the doomed backend.
    killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    worker.join(timeout=30)
    blocker.rollback()
    blocker.close()
    killer.close()

    assert isinstance(outcome["error"], RegistryUnavailable)
    assert "nothing was written" in str(outcome["error"])
    champion = registry.get_champion("churn")
    assert champion is not None and champion.version == 1
    assert registry.get_version("churn", 2).status is VersionStatus.CHALLENGER
    assert len(registry.history("churn")) == events_before
    # The registry recovers: the pool drops the dead connection and the retry succeeds.
    assert registry.promote("churn", 2, expected_champion=1, actor="retry").changed
    registry.close()
