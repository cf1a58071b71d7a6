"""Shared fixtures: a real PostgreSQL, one migrated template database per session, one clone per test."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

# One Airflow home for the whole session, set before anything imports Airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="modelgate-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# specs written by tests read data from temporary folders: allow those beside the default root
os.environ.setdefault("MODELGATE_DATA_ROOTS", os.pathsep.join(["../shared/data", tempfile.gettempdir()]))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ.setdefault("MODELGATE_CODE_VERSION", "tests")
os.environ["MODELGATE_RETRY_DELAY_SECONDS"] = "1"

import psycopg
import pytest
import sqlalchemy as sa

from modelgate.registry.connection import create_registry_engine
from modelgate.registry.migrate import upgrade
from modelgate.registry.store import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ADMIN_URL = os.environ.get("MODELGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_conninfo() -> str:
    return ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")


def _db_url(name: str) -> str:
    return sa.engine.make_url(_admin_conninfo()).set(database=name).render_as_string(hide_password=False)


def _admin() -> psycopg.Connection:
    return psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres_available() -> None:
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {ADMIN_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must never silently skip the registry suites
        pytest.skip(message)


@pytest.fixture(scope="session")
def template_db(postgres_available: None) -> Iterator[str]:
    """A database migrated to head once per session; tests clone it (CREATE DATABASE ... TEMPLATE)."""
    name = f"mg_tpl_{os.getpid()}"
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = create_registry_engine(_db_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _new_database(template: str | None) -> str:
    name = f"mg_t_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def registry_url(template_db: str) -> Iterator[str]:
    """A fresh registry database at head, isolated for this test."""
    name = _new_database(template_db)
    yield _db_url(name)
    _drop_database(name)


@pytest.fixture
def empty_db_url(postgres_available: None) -> Iterator[str]:
    """A fresh empty database (no schema), for migration tests."""
    name = _new_database(None)
    yield _db_url(name)
    _drop_database(name)


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    engine = create_registry_engine(registry_url, pool_size=10)
    reg = Registry(engine)
    yield reg
    reg.close()


@pytest.fixture
def admin_url() -> str:
    return _admin_conninfo()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata database (SQLite in the session's AIRFLOW_HOME), migrated once."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _AIRFLOW_HOME
