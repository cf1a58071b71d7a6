"""Database roles and the TRUNCATE guard: each role is refused what it must not do, in PostgreSQL itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from modelgate.registry import ANY_CHAMPION, Registry
from modelgate.registry.connection import create_registry_engine
from modelgate.registry.errors import PermissionDenied
from tests.cli_helpers import run_cli
from tests.helpers import draft

pytestmark = pytest.mark.integration


@pytest.fixture
def login(registry_url: str, admin_url: str) -> Iterator[dict[str, str]]:
    """A log-in user in each group role, with its URL to the test's registry."""
    suffix = uuid.uuid4().hex[:8]
    users = {role: f"mg_{role}_{suffix}" for role in ("owner", "writer", "reader")}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for role, user in users.items():
            conn.execute(f"CREATE ROLE {user} LOGIN IN ROLE modelgate_{role}")
    base = sa.engine.make_url(registry_url)
    yield {role: base.set(username=user).render_as_string(hide_password=False) for role, user in users.items()}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for user in users.values():
            conn.execute(f"DROP OWNED BY {user} CASCADE")
            conn.execute(f"DROP ROLE {user}")


def _sql(url: str, statement: str) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(statement)


def _refused(url: str, statement: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message):
        _sql(url, statement)


def test_truncating_the_audit_log_is_refused_even_for_the_superuser(registry: Registry, registry_url: str) -> None:
    registry.register("churn", draft("r1"))
    registry.promote("churn", 1, expected_champion=None, actor="t")
    _refused(registry_url, "TRUNCATE registry_event", r"registry_event is append-only \(TRUNCATE refused\)")
    _refused(registry_url, "TRUNCATE model_version CASCADE", "model_version holds registry history")
    _refused(registry_url, "TRUNCATE registered_model CASCADE", "holds registry history")
    assert [e.kind.value for e in registry.history("churn")] == ["register", "promote"]


def test_the_writer_runs_the_loop_but_cannot_erase_or_change_the_schema(login: dict[str, str]) -> None:
    writer = Registry(create_registry_engine(login["writer"]))
    try:
        writer.register("churn", draft("r1"))
        writer.register("churn", draft("r2"))
        writer.promote("churn", 1, expected_champion=None, actor="dag")
        writer.promote("churn", 2, expected_champion=ANY_CHAMPION, actor="dag")
        assert writer.get_champion("churn").version == 2  # type: ignore[union-attr]
    finally:
        writer.close()
    url = login["writer"]
    _refused(url, "TRUNCATE registry_event", "permission denied")
    _refused(url, "TRUNCATE model_version CASCADE", "permission denied")
    _refused(url, "DELETE FROM registry_event", "permission denied")
    _refused(url, "UPDATE registry_event SET reason = 'x'", "permission denied")
    _refused(url, "CREATE TABLE sneaky (x int)", "permission denied")
    _refused(url, "DROP TABLE drift_result", "must be owner")
    _refused(url, "ALTER TABLE model_version ADD COLUMN x int", "must be owner")


def test_the_reader_only_reads(registry: Registry, login: dict[str, str]) -> None:
    registry.register("churn", draft("r1"))
    reader = Registry(create_registry_engine(login["reader"]))
    try:
        assert [m.name for m in reader.list_models()] == ["churn"]
        assert reader.get_version("churn", 1).version == 1
        with pytest.raises(PermissionDenied, match="the registry role may not promote .*modelgate_writer"):
            reader.promote("churn", 1, expected_champion=None, actor="ui")
        with pytest.raises(PermissionDenied, match="may not register"):
            reader.register("churn", draft("r2"))
    finally:
        reader.close()
    assert registry.get_champion("churn") is None and len(registry.list_versions("churn")) == 1  # nothing written
    _refused(login["reader"], "INSERT INTO registered_model (name) VALUES ('x')", "permission denied")
    refused = run_cli(
        "promote", "churn", "1", "--reason", "r", env={"MODELGATE_REGISTRY_URL": login["reader"]}, check=False
    )
    assert refused.returncode == 1 and refused.stderr.startswith("error: the registry role may not promote")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_owner_changes_the_schema_but_not_the_audit_log(login: dict[str, str]) -> None:
    url = login["owner"]
    _sql(url, "CREATE TABLE owner_scratch (x int)")
    _sql(url, "DROP TABLE owner_scratch")
    _refused(url, "TRUNCATE registry_event", "append-only")


def test_versions_are_immutable_in_the_database_for_every_role(
    registry: Registry, registry_url: str, login: dict[str, str]
) -> None:
    registry.register("churn", draft("r1"))
    registry.register("churn", draft("r2"))
    registry.register("churn", draft("r3"))
    registry.promote("churn", 1, expected_champion=None, actor="dag")
    registry.reject("churn", 3, actor="dag")
    sha = "0" * 64
    for url in (login["writer"], login["owner"], registry_url):  # registry_url: the superuser
        _refused(url, "DELETE FROM model_version", "(permission denied|model_version rows are immutable)")
        _refused(url, f"UPDATE model_version SET artifact_sha256 = '{sha}'", "model_version rows are immutable")
        _refused(url, "UPDATE model_version SET artifact_uri = 'file:///evil.joblib'", "immutable")
        _refused(url, """UPDATE model_version SET metrics = '{"roc_auc": 1}'""", "immutable")
        _refused(url, "UPDATE model_version SET version = 9 WHERE version = 2", "immutable")
        _refused(url, "UPDATE model_version SET status = 'champion' WHERE version = 3", "cannot go from rejected")
        _refused(url, "UPDATE model_version SET status = 'challenger' WHERE version = 1", "cannot go from champion")
    _refused(login["owner"], "DELETE FROM model_version WHERE version = 2", "model_version rows are immutable")
    _sql(login["writer"], """UPDATE model_version SET tags = '{"note": "kept"}' WHERE version = 2""")  # allowed
    writer = Registry(create_registry_engine(login["writer"]))
    try:  # the lifecycle's own moves still work, and are audited by the registry
        writer.promote("churn", 2, expected_champion=1, actor="dag", reason="better")
        writer.rollback("churn", actor="ops", reason="back")
        assert writer.get_champion("churn").version == 1  # type: ignore[union-attr]
        assert [e.kind.value for e in writer.history("churn")][-2:] == ["promote", "rollback"]
    finally:
        writer.close()
    original = draft("r1")
    assert registry.get_version("churn", 1).artifact_sha256 == original.artifact_sha256
    assert len(registry.list_versions("churn")) == 3
