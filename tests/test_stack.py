"""The running stack's start and stop, without starting Airflow: ports checked first, leftovers stopped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelgate.stack import PID_FILE, PortInUse, Stack, StackConfig, _live_groups, _start_time, stop_recorded
from tests.conftest import REPO_ROOT


def _config(tmp_path: Path, **changes: object) -> StackConfig:
    fields: dict = {
        "airflow_home": tmp_path / "airflow",
        "metadata_url": "postgresql://postgres@127.0.0.1:5432/nowhere",
        "registry_url": "postgresql://postgres@127.0.0.1:5432/nowhere_registry",
        "modelgate_home": tmp_path / "home",
        "repo_root": REPO_ROOT,
    }
    return StackConfig(**{**fields, **changes})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    ports = [_free_port() for _ in range(3)]
    for taken, what in zip(ports, ("the api-server", "the task log server", "the triggerer's log server"), strict=True):
        config = _config(tmp_path, port=ports[0], log_server_port=ports[1], trigger_log_server_port=ports[2])
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", taken))
            holder.listen()
            with pytest.raises(PortInUse, match=rf"^port {taken} \({what}\) is already in use on 127\.0\.0\.1"):
                Stack(config).check_ports()
    Stack(config).check_ports()  # all free again
    env = Stack(config).env
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == str(ports[1])
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == str(ports[2])


def test_stop_ends_the_recorded_components_and_nothing_else(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    # two stand-ins for components: process-group leaders, each with a child that
    # ignores SIGTERM and outlives its parent (as a Celery worker's pool process can)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {stubborn!r}]); time.sleep(120)"
    components = [subprocess.Popen([sys.executable, "-c", code], start_new_session=True) for _ in range(2)]
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        time.sleep(0.5)
        recorded = [f"{p.pid} {_start_time(p.pid)}" for p in components]
        recorded += [f"{bystander.pid} {_start_time(bystander.pid) + 1}", "999999999 5", "garbage"]  # not ours
        (home / PID_FILE).write_text("\n".join(recorded) + "\n")
        stopped = stop_recorded(home, timeout=2)
        assert sorted(stopped) == sorted(p.pid for p in components)
        assert _live_groups(stopped) == set()  # the stubborn children too (SIGKILL after the timeout)
        for proc in components:
            assert proc.wait(timeout=10) is not None
        assert bystander.poll() is None  # its pid with another start time: a reused pid is never touched
        assert not (home / PID_FILE).exists()
        assert stop_recorded(home) == []
    finally:
        bystander.kill()
        for proc in components:
            proc.kill()
