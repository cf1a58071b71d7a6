"""The project's own files: compose stack structure, dependency floors, README's first lines, CI script."""

from __future__ import annotations

import tomllib

import yaml

from tests.conftest import REPO_ROOT

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
# the component names of the test harness (modelgate.stack) -> the compose services that run them
HARNESS_TO_COMPOSE = {
    "api-server": "airflow-apiserver",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
    "worker-1": "airflow-worker",
    "worker-2": "airflow-worker",
}


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())


def test_compose_is_the_celery_stack() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "airflow-init"} | AIRFLOW_SERVICES <= set(services)
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
    }
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]


def test_compose_checks_every_component_and_starts_them_in_order() -> None:
    """As the official Airflow file does: a health check on every long-running service, the scheduler's health
    server on, and (ours) the scheduler and workers waiting for a healthy api-server."""
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 5, name
        assert services[name]["restart"] == "always", name
    assert "8974/health" in " ".join(services["airflow-scheduler"]["healthcheck"]["test"])
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "DagProcessorJob" in services["airflow-dag-processor"]["healthcheck"]["test"][1]
    assert "TriggererJob" in services["airflow-triggerer"]["healthcheck"]["test"][1]
    assert "inspect ping" in services["airflow-worker"]["healthcheck"]["test"][1]
    for name in ("airflow-scheduler", "airflow-worker"):
        assert services[name]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy", name


def test_compose_hands_what_init_wrote_to_airflow_uid_and_ships_a_cli() -> None:
    services = _compose()["services"]
    script = services["airflow-init"]["command"][-1].splitlines()
    chown = next(i for i, line in enumerate(script) if line.startswith("chown -R"))
    assert '"$${AIRFLOW_UID:-50000}:0"' in script[chown]
    assert chown == len(script) - 1  # after every step that writes, so nothing stays root's
    assert not any(line.lstrip().startswith(("su ", "exec su")) for line in script)  # not the image's 50000
    assert any("AIRFLOW_UID is not set" in line for line in script)
    cli = services["airflow-cli"]
    assert cli["profiles"] == ["debug"] and cli["command"] == ["bash", "-c", "airflow"]
    assert cli["environment"]["CONNECTION_CHECK_MAX_COUNT"] == "0"


def test_compose_mounts_code_data_and_logs_and_configures_celery() -> None:
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in service["volumes"]}
        assert mounts["./dags"] == "/opt/airflow/dags"
        assert mounts["./plugins"] == "/opt/airflow/plugins"
        assert mounts["./include"] == "/opt/airflow/include"
        assert mounts["modelgate-data"] == "/opt/airflow/modelgate" and mounts["airflow-logs"] == "/opt/airflow/logs"
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
        assert service["env_file"] == ".env"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    init = services["airflow-init"]
    assert init["user"] == "0:0"  # to hand the volumes to the Airflow user, as the official file does
    script = "\n".join(init["command"])
    for step in ("chown -R", "airflow db migrate", "modelgate db upgrade", "modelgate example-data"):
        assert step in script, step
    init_script = services["postgres"]["volumes"][1].split(":")[0]
    assert (REPO_ROOT / init_script).is_file()


def test_the_tested_stack_is_the_shipped_stack(tmp_path) -> None:
    """tests/system starts these components with this environment: compose must run the same ones, the same way."""
    from modelgate.stack import StackConfig, airflow_env

    config = StackConfig(
        airflow_home=tmp_path,
        metadata_url="postgresql://u@h/airflow",
        registry_url="postgresql://u@h/modelgate",
        modelgate_home=tmp_path,
        repo_root=REPO_ROOT,
        executor="celery",
    )
    services = _compose()["services"]
    assert {HARNESS_TO_COMPOSE[name] for name in config.components()} == AIRFLOW_SERVICES
    harness = {k for k in airflow_env(config) if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "MODELGATE_"))}
    machine_local = {  # where this machine's stack differs on purpose: paths, ports, sizing, secrets it makes
        "AIRFLOW__CORE__PARALLELISM",
        "AIRFLOW__API__HOST",
        "AIRFLOW__API__PORT",
        "AIRFLOW__API__WORKERS",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",  # a second stack on one host needs other ports
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
        "MODELGATE_RETRY_DELAY_SECONDS",
        "MODELGATE_CODE_VERSION",
        "MODELGATE_TEST_PG_URL",
        "MODELGATE_DATA_ROOTS",  # the tests let specs read their temporary folders
    }
    compose_env = set(services["airflow-scheduler"]["environment"])
    assert harness - machine_local - compose_env == set()


def test_dockerfile_installs_the_lock_with_airflow_pinned() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "uv export --frozen --no-dev" in dockerfile
    assert '"apache-airflow==3.3.2" -r /tmp/requirements.txt' in dockerfile


def test_env_example_gives_the_registry_connection() -> None:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert settings["AIRFLOW_CONN_MODELGATE_REGISTRY"].startswith("postgresql://")
    assert "MODELGATE_ARTIFACT_ROOT" in settings


def test_dependency_floors_that_matter() -> None:
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    joined = " ".join(deps)
    assert "apache-airflow-providers-google>=22" in joined  # without it the resolver picks 6.0.0
    assert "pandas>=2.2,<3" in joined  # Evidently 0.7 does not import on pandas 3
    assert "apache-airflow>=3.3,<3.4" in joined
    assert "evidently>=0.7,<0.8" in joined and "great-expectations>=1" in joined


def test_readme_first_lines_give_the_three_commands() -> None:
    head = "\n".join((REPO_ROOT / "README.md").read_text().splitlines()[:20])
    assert "make demo" in head and "make test" in head and "make airflow" in head


def test_ci_runs_the_readme_test_command() -> None:
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    assert "uv sync --frozen" in script
    assert script.rstrip().endswith("make test")
