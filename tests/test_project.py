"""The project's own files: compose stack structure, dependency floors, README's first lines, CI script."""

from __future__ import annotations

import tomllib

import yaml

from tests.conftest import REPO_ROOT

AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())


def test_compose_has_postgres_and_the_airflow_3_services() -> None:
    services = _compose()["services"]
    assert {"postgres", "airflow-init"} | AIRFLOW_SERVICES <= set(services)
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


def test_compose_mounts_code_and_configures_local_executor() -> None:
    services = _compose()["services"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in service["volumes"]}
        assert mounts["./dags"] == "/opt/airflow/dags"
        assert mounts["./plugins"] == "/opt/airflow/plugins"
        assert mounts["./include"] == "/opt/airflow/include"
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert service["env_file"] == ".env"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    init_script = services["postgres"]["volumes"][1].split(":")[0]
    assert (REPO_ROOT / init_script).is_file()


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


def test_readme_first_lines_give_the_two_commands() -> None:
    head = "\n".join((REPO_ROOT / "README.md").read_text().splitlines()[:10])
    assert "make demo" in head and "make test" in head


def test_ci_runs_the_readme_test_command() -> None:
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    assert "uv sync --frozen" in script
    assert script.rstrip().endswith("make test")
