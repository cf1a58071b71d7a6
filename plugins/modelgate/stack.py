"""A running Airflow for modelgate, as plain processes: what `make airflow` starts and the system tests drive.

The same services as `docker-compose.yaml` (api-server, scheduler, dag-processor, triggerer, and with
CeleryExecutor N workers on a Redis broker), with Airflow's metadata in PostgreSQL, never SQLite: SQLite's
single writer makes the scheduler, dag-processor and triggerer die on `database is locked`.

`prepare()` does what must happen before any component starts: both databases exist, the registry is at the
head revision, Airflow's metadata is migrated, and the login is fixed. `Stack` starts, watches, kills and
restarts the components; each writes its own log under `<AIRFLOW_HOME>/logs/stack/`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

log = logging.getLogger(__name__)


class PortInUse(ValueError):
    """A port the stack must listen on is taken: its message names the port, what needs it, the way out."""


Executor = Literal["local", "celery"]
EXECUTOR_CLASS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
TASK_SLOT_MEMORY_BYTES = 1_000_000_000  # a modelgate task process (pandas, sklearn, GX or Evidently) peaks near 0.6 GB


def default_parallelism() -> int:
    """Task slots that fit this machine: one per core, fewer when memory is short, never below 2."""
    cores = os.cpu_count() or 2
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover - not Linux
        memory = cores * TASK_SLOT_MEMORY_BYTES
    return max(2, min(cores, memory // TASK_SLOT_MEMORY_BYTES))


@dataclass(frozen=True)
class StackConfig:
    """Everything the components share. URLs are SQLAlchemy URLs of PostgreSQL databases."""

    airflow_home: Path
    metadata_url: str
    registry_url: str
    modelgate_home: Path
    repo_root: Path
    executor: Executor = "local"
    celery_workers: int = 2
    broker_url: str = "redis://127.0.0.1:6379/0"
    host: str = "127.0.0.1"
    port: int = 8080
    log_server_port: int = 8793  # where the scheduler (LocalExecutor) serves task logs to the api-server
    trigger_log_server_port: int = 8794  # the triggerer's
    parallelism: int = field(default_factory=default_parallelism)
    include_dir: Path | None = None
    dags_dir: Path | None = None  # the DAG files (default: the repository's dags/); shard files go beside them
    pool: str = "modelgate"  # every modelgate task runs in it ($MODELGATE_POOL); made by `prepare`
    pool_slots: int | None = None  # default: `parallelism`, so modelgate alone can fill the executor
    username: str = "admin"
    password: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def include(self) -> Path:
        return self.include_dir or self.repo_root / "include"

    @property
    def dags(self) -> Path:
        return self.dags_dir or self.repo_root / "dags"

    @property
    def password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json"

    @property
    def log_dir(self) -> Path:
        return self.airflow_home / "logs" / "stack"

    def components(self) -> list[str]:
        names = ["api-server", "scheduler", "dag-processor", "triggerer"]
        if self.executor == "celery":
            names += [f"worker-{i}" for i in range(1, self.celery_workers + 1)]
        return names


def _psycopg2(url: str) -> sa.URL:
    return sa.engine.make_url(url).set(drivername="postgresql+psycopg2")


def _registry_connection(url: str) -> str:
    """AIRFLOW_CONN_MODELGATE_REGISTRY as JSON (Unix-socket hosts included)."""
    parsed = sa.engine.make_url(url)
    host = parsed.query.get("host") or parsed.host or "localhost"
    conn: dict[str, str | int] = {
        "conn_type": "postgres",
        "host": str(host),
        "login": parsed.username or "postgres",
        "schema": parsed.database or "postgres",
    }
    if parsed.port:
        conn["port"] = parsed.port
    if parsed.password:
        conn["password"] = parsed.password
    return json.dumps(conn)


def _secret(config: StackConfig, name: str) -> str:
    """A secret shared by every component of this home, made once and kept (0600) beside airflow.cfg."""
    path = config.airflow_home / f".{name}"
    if not path.exists():
        config.airflow_home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def airflow_env(config: StackConfig) -> dict[str, str]:
    """The environment of every component: the caller's, less its Airflow settings, plus the stack's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))}
    metadata = _psycopg2(config.metadata_url)
    env.update(
        {
            "AIRFLOW_HOME": str(config.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(config.dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(config.repo_root / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": EXECUTOR_CLASS[config.executor],
            "AIRFLOW__CORE__PARALLELISM": str(config.parallelism),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{config.username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(config.password_file),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.render_as_string(hide_password=False),
            "AIRFLOW__API__HOST": config.host,
            "AIRFLOW__API__PORT": str(config.port),
            "AIRFLOW__API__BASE_URL": config.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": _secret(config, "api_secret_key"),
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(config, "jwt_secret"),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(config.airflow_home / "logs"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(config.log_server_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(config.trigger_log_server_port),
            "AIRFLOW_CONN_MODELGATE_REGISTRY": _registry_connection(config.registry_url),
            "MODELGATE_HOME": str(config.modelgate_home),
            "MODELGATE_INCLUDE_DIR": str(config.include),
            "MODELGATE_POOL": config.pool,
            "MODELGATE_RETRY_DELAY_SECONDS": env.get("MODELGATE_RETRY_DELAY_SECONDS", "30"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(config.repo_root / "plugins"), env.get("PYTHONPATH")])),
        }
    )
    if config.executor == "celery":
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": config.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata.render_as_string(hide_password=False),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(max(1, config.parallelism // config.celery_workers)),
                # a worker that dies (kill -9, a lost machine) gives its unacknowledged tasks back after this
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "600",
            }
        )
    env.update(config.extra_env)
    return env


def ensure_database(url: str) -> None:
    """CREATE DATABASE for the URL's database when it does not exist (through the server's `postgres` db)."""
    parsed = sa.engine.make_url(url)
    admin = sa.create_engine(
        parsed.set(drivername="postgresql+psycopg", database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database})
            if found.first() is None:
                conn.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


CLI_ENV_FILE = "stack-env.json"  # beside airflow.cfg: what `modelgate airflow-cli` runs the Airflow CLI with
_CLI_KEYS = ("AIRFLOW", "MODELGATE_", "PYTHONPATH")


def write_cli_env(config: StackConfig) -> Path:
    """Keep the stack's Airflow settings (0600: they hold its secrets) for `modelgate airflow-cli`."""
    from modelgate.fileio import write_atomically

    path = config.airflow_home / CLI_ENV_FILE
    kept = {k: v for k, v in airflow_env(config).items() if k.startswith(_CLI_KEYS)}
    write_atomically(
        path, (json.dumps(kept, indent=1, sort_keys=True) + "\n").encode(), what="the stack's CLI settings"
    )
    path.chmod(0o600)
    return path


def cli_env(airflow_home: Path) -> dict[str, str]:
    """The environment the Airflow CLI needs to act on the stack prepared in `airflow_home`: the caller's,
    less its own Airflow settings, plus the stack's. ValueError (one line) when no stack was prepared there."""
    path = airflow_home / CLI_ENV_FILE
    try:
        kept = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"no modelgate stack was prepared in {airflow_home} (no {CLI_ENV_FILE}): run `make airflow` first, "
            "or set AIRFLOW_HOME to the stack's Airflow home"
        ) from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} cannot be read ({exc}): start the stack again to rewrite it") from None
    if not isinstance(kept, dict) or not all(isinstance(v, str) for v in kept.values()):
        raise ValueError(f"{path} is not the stack's settings: start the stack again to rewrite it")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))}
    return {**env, **kept}


def prepare(config: StackConfig) -> str:
    """Databases, registry schema, Airflow metadata and login, before anything starts; returns the password."""
    from modelgate.registry.connection import create_registry_engine
    from modelgate.registry.migrate import upgrade

    config.airflow_home.mkdir(parents=True, exist_ok=True)
    config.log_dir.mkdir(parents=True, exist_ok=True)
    ensure_database(config.metadata_url)
    ensure_database(config.registry_url)
    engine = create_registry_engine(config.registry_url, pool_size=1)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    password = _login(config)
    env = airflow_env(config)
    _airflow(env, "db", "migrate", timeout=600)
    slots = config.pool_slots or config.parallelism
    description = "modelgate's tasks (every model's): their share of the executor"
    _airflow(env, "pools", "set", config.pool, str(slots), description, timeout=300)
    write_cli_env(config)
    return password


def _airflow(env: Mapping[str, str], *args: str, timeout: float) -> None:
    """One Airflow CLI command of the stack's preparation; RuntimeError with the end of its stderr on failure."""
    result = subprocess.run(
        [airflow_bin(), *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"airflow {' '.join(args[:3])} failed:\n{tail}")


def _login(config: StackConfig) -> str:
    """The admin's password: the configured one, else the one kept from an earlier start, else a new one."""
    known: dict[str, str] = {}
    if config.password_file.exists():
        with contextlib.suppress(ValueError):
            known = json.loads(config.password_file.read_text() or "{}")
    password = config.password or known.get(config.username) or secrets.token_urlsafe(12)
    known[config.username] = password
    config.password_file.write_text(json.dumps(known) + "\n")
    config.password_file.chmod(0o600)
    return password


def _command(config: StackConfig, name: str) -> list[str]:
    airflow = airflow_bin()
    if name == "api-server":
        return [airflow, "api-server", "--host", config.host, "--port", str(config.port)]
    if name.startswith("worker-"):
        # Several workers on one machine: distinct node names; the api-server reads their task logs from
        # the shared log folder, so no worker needs its own log server (they would share one port).
        return [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs"]
    return [airflow, name]


class Stack:
    """The components as child processes, each in its own process group (kill -9 takes its children too)."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.env = airflow_env(config)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def pid_file(self) -> Path:
        return self.config.airflow_home / PID_FILE

    def _reap_leftovers(self) -> None:
        """Stop components an earlier launcher left running (it was killed before it could stop them)."""
        for pid in stop_recorded(self.config.airflow_home, timeout=10):
            log.warning("stopped a component left by an earlier start (pid %s)", pid)

    def _write_pids(self) -> None:
        """Each component's pid and start time (`stop_recorded` checks both: a pid may be reused)."""
        lines = [f"{p.pid} {_start_time(p.pid) or 0}" for p in self.processes.values()]
        self.pid_file.write_text("\n".join(lines) + "\n")

    def check_ports(self) -> None:
        """Every port the stack listens on is free, else one line naming it and the way out (PortInUse)."""
        import socket

        for port, what, option in (
            (self.config.port, "the api-server", "--port"),
            (self.config.log_server_port, "the task log server", "--log-port"),
            (self.config.trigger_log_server_port, "the triggerer's log server", "--log-port (and the next one)"),
        ):
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.config.host, port))
                except OSError:
                    raise PortInUse(
                        f"port {port} ({what}) is already in use on {self.config.host}: another Airflow? "
                        f"Stop it (`modelgate stop`) or pass {option}"
                    ) from None

    def start(self, names: list[str] | None = None) -> None:
        """Start the components (all of them by default, the api-server first: the scheduler sends its first
        tasks to the execution API only once it answers)."""
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.processes:
            self._reap_leftovers()
        if names is None:
            if not self.processes:
                self.check_ports()
            self._spawn("api-server")
            self.wait_api()
        for name in names or self.config.components():
            self._spawn(name)
        self._write_pids()

    def wait_api(self, timeout: float = 120) -> None:
        """Until the api-server answers its health endpoint (whatever the other components' state)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "api-server" in self.dead():
                raise RuntimeError(f"the api-server exited at start:\n{self.tail('api-server')}")
            try:
                if httpx.get(f"{self.config.base_url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the api-server did not answer within {timeout:.0f} s; see {self.config.log_dir}")

    def _spawn(self, name: str) -> None:
        if name in self.processes and self.processes[name].poll() is None:
            return
        with (self.config.log_dir / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(
                _command(self.config, name),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.config.airflow_home,
            )
        log.info("started %s (pid %s)", name, self.processes[name].pid)
        self._write_pids()

    def dead(self) -> list[str]:
        return [name for name, proc in self.processes.items() if proc.poll() is not None]

    def kill(self, name: str, sig: int = signal.SIGKILL, *, timeout: float = 30) -> None:
        """Signal the component's whole process group and wait for its leader to exit."""
        proc = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if sig == signal.SIGKILL:  # its task processes were in the group too: make sure none is left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def restart(self, name: str) -> None:
        self.kill(name, signal.SIGTERM)
        self.start([name])

    def stop(self) -> None:
        """SIGTERM every component at once (each finishes what it can), then wait; SIGKILL what lingers."""
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM, timeout=30)
        self.processes.clear()
        self.pid_file.unlink(missing_ok=True)

    def wait_ready(self, timeout: float = 180) -> None:
        """Until the API answers and reports the scheduler, dag-processor and triggerer healthy."""
        import httpx

        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.dead():
                raise RuntimeError(f"{', '.join(self.dead())} exited at start; see {self.config.log_dir}")
            try:
                health = httpx.get(f"{self.config.base_url}/api/v2/monitor/health", timeout=5).json()
                states = {k: (v or {}).get("status") for k, v in health.items()}
                last = json.dumps(states)
                if all(states.get(k) == "healthy" for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")):
                    return
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
            time.sleep(1)
        raise TimeoutError(f"the stack was not healthy after {timeout:.0f} s ({last}); see {self.config.log_dir}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.config.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


PID_FILE = "stack.pids"  # in the Airflow home: the components' process groups, while they run


def stop_recorded(airflow_home: Path, *, timeout: float = 30) -> list[int]:
    """Stop the components a stack started from `airflow_home` left running (say `make airflow` in another
    terminal), as its pid file has them: SIGTERM each process group, wait, SIGKILL what lingers. Returns the
    pids stopped; a pid that now names another process (reused) is never touched."""
    pid_file = airflow_home / PID_FILE
    if not pid_file.exists():
        return []
    pids = []
    for line in pid_file.read_text().splitlines():
        fields = line.split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            continue
        pid, started = int(fields[0]), int(fields[1])
        if _start_time(pid) != started:
            continue  # gone, or the pid now names another process (Celery renames its own: the start time holds)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            pids.append(pid)
    deadline = time.monotonic() + timeout
    killed = False
    while live := _live_groups(pids):  # a group's last process, not its leader: a Celery worker's pool outlives it
        if time.monotonic() > deadline and not killed:
            for pid in live:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + 10  # returns once SIGKILL has taken them too
        elif time.monotonic() > deadline:
            break
        time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    return pids


def _start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22): with the pid, its identity."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _live_groups(groups: list[int]) -> set[int]:
    """Which of these process groups still hold a running process (exited ones awaiting their parent's
    wait do not count: nothing is left to stop)."""
    live = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) in groups and state != "Z":
            live.add(int(group))
    return live


@contextlib.contextmanager
def running(config: StackConfig, *, ready_timeout: float = 240) -> Iterator[Stack]:
    stack = Stack(config)
    try:
        stack.start()
        stack.wait_ready(ready_timeout)
        yield stack
    finally:
        stack.stop()


def redis_answers(url: str) -> bool:
    """Whether the Celery broker answers PING."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def which_redis() -> str | None:
    return shutil.which("redis-server")


JsonObject = dict[str, Any]  # an API response, as Airflow's OpenAPI documents it
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowClient:
    """The REST API v2 with a JWT from /auth/token, the way the UI talks to the api-server."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        token = httpx.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=timeout
        )
        token.raise_for_status()
        self.token = str(token.json()["access_token"])
        self.http = httpx.Client(
            base_url=f"{self.base_url}/api/v2", headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return dict(response.json()) if response.content else {}

    def get(self, path: str, **params: object) -> JsonObject:
        return self._json("GET", path, params=params)

    def post(self, path: str, body: object) -> JsonObject:
        return self._json("POST", path, json=body)

    def patch(self, path: str, body: object) -> JsonObject:
        return self._json("PATCH", path, json=body)

    def dag_ids(self) -> set[str]:
        """Every DAG the api-server lists, page by page (a thousand models hold more than one page)."""
        found: set[str] = set()
        offset = 0
        while True:  # the server may cap the page size ([api] maximum_page_limit): step by what came back
            page = self.get("/dags", limit=1000, offset=offset, order_by="dag_id")
            found |= {d["dag_id"] for d in page["dags"]}
            offset += len(page["dags"])
            if not page["dags"] or offset >= int(page["total_entries"]):
                return found

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.patch(f"/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: Mapping[str, object] | None = None, **body: object) -> str:
        """A manual run as the UI's trigger form makes it (logical date: now); returns the run id."""
        import datetime as dt

        now = dt.datetime.now(dt.UTC).isoformat()
        payload: dict[str, object] = {"conf": dict(conf or {}), "logical_date": now, **body}
        return str(self.post(f"/dags/{dag_id}/dagRuns", payload)["dag_run_id"])

    def runs(self, dag_id: str, **params: object) -> list[JsonObject]:
        return list(self.get(f"/dags/{dag_id}/dagRuns", limit=1000, order_by="run_after", **params)["dag_runs"])

    def run(self, dag_id: str, run_id: str) -> JsonObject:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> JsonObject:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                states = self.task_states(dag_id, run_id)
                raise TimeoutError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f} s: {states}")
            time.sleep(1)

    def wait_task(self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.task_states(dag_id, run_id).get(task_id)
            if state in states:
                return str(state)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{dag_id} {run_id} {task_id} is {state}, not {sorted(states)}, after {timeout:.0f} s"
                )
            time.sleep(0.5)
