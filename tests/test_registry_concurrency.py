"""Fifty workers promoting at once: one champion at every instant, every promotion has its event."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from modelgate.registry import EventKind, PromotionConflict, Registry
from modelgate.registry.connection import create_registry_engine
from tests.helpers import draft

pytestmark = pytest.mark.integration

WORKERS = 50


class ChampionPoller(threading.Thread):
    """Reads the champion count from its own connection, as fast as it can, for the whole run."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_registry_engine(url, pool_size=1)
        self.stop = threading.Event()
        self.samples: list[tuple[int, int]] = []

    def run(self) -> None:
        query = sa.text(
            "SELECT (SELECT count(*) FROM model_alias WHERE model = 'churn' AND alias = 'champion'),"
            "       (SELECT count(*) FROM model_version WHERE model = 'churn' AND status = 'champion')"
        )
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                aliases, statuses = conn.execute(query).one()
                self.samples.append((aliases, statuses))
                conn.commit()
        self.engine.dispose()


def _setup(registry_url: str) -> Registry:
    registry = Registry(create_registry_engine(registry_url, pool_size=WORKERS + 2))
    for i in range(WORKERS + 1):
        registry.register("churn", draft(f"run-{i}"))
    registry.promote("churn", 1, expected_champion=None, actor="setup")
    return registry


def test_fifty_compare_and_swap_promotions_one_winner(registry_url: str) -> None:
    registry = _setup(registry_url)
    poller = ChampionPoller(registry_url)
    poller.start()
    barrier = threading.Barrier(WORKERS)

    def attempt(version: int) -> str:
        barrier.wait()
        try:
            registry.promote("churn", version, expected_champion=1, actor=f"worker-{version}")
        except PromotionConflict:
            return "conflict"
        return "won"

    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(attempt, range(2, WORKERS + 2)))
    poller.stop.set()
    poller.join()

    assert outcomes.count("won") == 1
    assert outcomes.count("conflict") == WORKERS - 1
    assert poller.samples and all(sample == (1, 1) for sample in poller.samples)
    promotions = registry.history("churn", kinds=["promote"])
    assert len(promotions) == 2  # setup + the single winner
    winner = registry.get_champion("churn")
    assert winner is not None and promotions[-1].to_version == winner.version
    assert promotions[-1].from_version == 1
    registry.close()


def test_fifty_workers_retrying_until_promoted_lose_no_event(registry_url: str) -> None:
    registry = _setup(registry_url)
    poller = ChampionPoller(registry_url)
    poller.start()
    barrier = threading.Barrier(WORKERS)
    conflicts = 0
    lock = threading.Lock()

    def promote_until_done(version: int) -> None:
        nonlocal conflicts
        barrier.wait()
        while True:
            seen = registry.get_champion("churn")
            try:
                registry.promote("churn", version, expected_champion=seen.version if seen else None, actor="w")
                return
            except PromotionConflict:
                with lock:
                    conflicts += 1

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(promote_until_done, range(2, WORKERS + 2)))
    poller.stop.set()
    poller.join()

    assert all(sample == (1, 1) for sample in poller.samples)
    promotions = registry.history("churn", kinds=[EventKind.PROMOTE.value])
    assert len(promotions) == WORKERS + 1
    # The events form one unbroken chain: each promotion starts from the previous one's champion.
    for before, after in zip(promotions, promotions[1:], strict=False):
        assert after.from_version == before.to_version
    assert {e.to_version for e in promotions} == set(range(1, WORKERS + 2))
    assert conflicts > 0  # they really did race
    registry.close()
