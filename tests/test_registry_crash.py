"""A promotion whose backend dies mid-transaction leaves the old champion and no event."""

from __future__ import annotations

import contextlib
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


class CommitAckCutter:
    """A TCP proxy in front of PostgreSQL that, once armed, lets a COMMIT reach the server, waits for the
    server's reply and drops it, closing the client's connection: the commit happened, its acknowledgement
    never arrived. Everything else passes through unchanged."""

    def __init__(self, port: int) -> None:
        import socket

        self.upstream = ("127.0.0.1", port)
        self.armed = threading.Event()
        self.cut = threading.Event()
        self._muted: dict[int, threading.Event] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: object, sink: object, from_client: bool) -> None:
        import socket

        assert isinstance(source, socket.socket) and isinstance(sink, socket.socket)
        muted = threading.Event()  # set: this connection's replies are dropped
        if from_client:
            self._muted[id(sink)] = muted
        try:
            while data := source.recv(65536):
                if from_client and self.armed.is_set() and b"COMMIT" in data:
                    self.armed.clear()
                    muted.set()
                    sink.sendall(data)  # the server commits ...
                    time.sleep(0.5)  # ... and answers, while the client hears nothing
                    self.cut.set()
                    source.shutdown(socket.SHUT_RDWR)
                    sink.close()
                    return
                if not from_client and self._muted.get(id(source), threading.Event()).is_set():
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_lost_commit_acknowledgement_is_outcome_unknown_and_the_cli_reads_what_happened(
    registry_url: str, tmp_path
) -> None:
    import sqlalchemy as sa

    from modelgate.registry.errors import OutcomeUnknown, PromotionConflict
    from tests.cli_helpers import run_cli

    direct = Registry(create_registry_engine(registry_url))
    for run in ("r1", "r2"):
        direct.register("churn", draft(run))
    direct.promote("churn", 1, expected_champion=None, actor="setup")
    direct.promote("churn", 2, expected_champion=1, actor="setup")
    url = sa.engine.make_url(registry_url)
    proxy = CommitAckCutter(url.port or 5432)
    proxied = url.set(port=proxy.port, query={"sslmode": "disable"}).render_as_string(hide_password=False)
    try:
        registry = Registry(create_registry_engine(proxied))
        proxy.armed.set()
        with pytest.raises(OutcomeUnknown, match="may or may not have been written; read the audit log"):
            registry.rollback("churn", actor="ops", reason="bad v2", expected_champion=2)
        assert proxy.cut.is_set()
        assert direct.get_champion("churn").version == 1  # type: ignore[union-attr]  # it did commit
        # the retry the old message invited: carrying the champion it expects, it cannot act twice
        with pytest.raises(PromotionConflict, match="expected v2, found v1"):
            registry.rollback("churn", actor="ops", reason="bad v2", expected_champion=2)
        assert [e.kind.value for e in direct.history("churn")].count("rollback") == 1
        registry.close()

        # the CLI reads the audit log and says what happened
        direct.promote("churn", 2, expected_champion=1, actor="setup")
        env = {"MODELGATE_REGISTRY_URL": proxied, "MODELGATE_INCLUDE_DIR": str(tmp_path)}
        proxy.armed.set()
        result = run_cli("rollback", "churn", "--reason", "bad v2", env=env, check=False)
        assert proxy.cut.is_set() and result.returncode == 0, result.stderr
        assert "reply to the commit was lost, but the audit log shows the rollback took effect" in result.stderr
        assert "nothing was written" not in result.stderr + result.stdout
        assert direct.get_champion("churn").version == 1  # type: ignore[union-attr]
        assert [e.kind.value for e in direct.history("churn")].count("rollback") == 2
    finally:
        proxy.close()
        direct.close()
