"""The `modelgate` console script against real PostgreSQL: tables, --json, one-line errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from modelgate.registry.connection import create_registry_engine
from modelgate.registry.migrate import downgrade, head_revision
from modelgate.registry.store import Registry
from tests.cli_helpers import SCRIPT, run_cli, run_json

pytestmark = pytest.mark.integration


@pytest.fixture
def model_files(tmp_path: Path) -> tuple[Path, Path]:
    x, y = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]], [0, 0, 1, 1]
    first, second = tmp_path / "m1.joblib", tmp_path / "m2.joblib"
    joblib.dump(LogisticRegression(C=1.0).fit(x, y), first)
    joblib.dump(LogisticRegression(C=0.1).fit(x, y), second)
    return first, second


@pytest.fixture
def cli_env(registry_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "MODELGATE_REGISTRY_URL": registry_url,
        "MODELGATE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "MODELGATE_INCLUDE_DIR": str(tmp_path / "include"),  # no specs: these models are bare files
    }


def test_console_script_is_installed() -> None:
    assert SCRIPT.is_file(), "the project must install the `modelgate` console script"


@pytest.mark.slow
def test_full_lifecycle_through_the_cli(cli_env: dict[str, str], model_files: tuple[Path, Path]) -> None:
    first, second = model_files
    v1 = run_json("register", "churn", "--artifact", str(first), "--metrics", '{"roc_auc": 0.81}', env=cli_env)
    assert v1["version"] == 1 and v1["status"] == "challenger" and v1["framework"] == "scikit-learn"
    assert v1["params"]["C"] == 1.0 and "scikit-learn" in v1["library_versions"]
    again = run_json("register", "churn", "--artifact", str(first), env=cli_env)
    assert again["version"] == 1  # the same file is the same version
    v2 = run_json(
        "register",
        "churn",
        "--artifact",
        str(second),
        "--metrics",
        '{"roc_auc": 0.84}',
        "--tags",
        '{"team": "growth"}',
        env=cli_env,
    )
    assert v2["version"] == 2 and v2["tags"] == {"task": "binary_classification", "team": "growth"}

    none = run_cli("versions", "churn", "--status", "champion", env=cli_env)
    assert none.stdout.strip() == "churn has no versions matching these filters"  # one line, not an empty table

    promoted = run_cli("promote", "churn", "1", "--expect-champion", "none", "--reason", "first", env=cli_env)
    assert "promoted v1 (was no champion)" in promoted.stdout
    conflict = run_cli("promote", "churn", "2", "--expect-champion", "none", "--reason", "x", env=cli_env, check=False)
    assert conflict.returncode == 1
    assert conflict.stderr.strip().splitlines() == [
        "error: champion of 'churn' changed since it was read: expected no champion, found v1; v2 was not promoted"
    ]
    run_cli("promote", "churn", "2", "--reason", "better auc", "--actor", "alice", env=cli_env)
    assert run_json("champion", "churn", env=cli_env)["version"] == 2

    comparison = run_json("compare", "churn", "1", "2", env=cli_env)
    assert comparison["metrics"]["roc_auc"] == [0.81, 0.84]
    assert comparison["statuses"] == ["archived", "champion"]
    table = run_cli("compare", "churn", "1", "2", env=cli_env).stdout
    assert "≠ metric: roc_auc" in table and "0.84" in table  # marked: the two differ
    assert "≠ status" in table and "  data: row_count" in table  # unmarked: neither has one

    rolled = run_cli("rollback", "churn", "--reason", "canary failed", env=cli_env)
    assert "rolled back to v1 (was v2)" in rolled.stdout
    history = run_json("history", "churn", env=cli_env)
    assert [(e["kind"], e["from_version"], e["to_version"]) for e in history] == [
        ("register", None, 1),
        ("register", None, 2),
        ("promote", None, 1),
        ("promote", 1, 2),
        ("rollback", 2, 1),
    ]
    assert history[3]["actor"] == "alice" and history[4]["reason"] == "canary failed"

    models = run_json("models", env=cli_env)
    assert models == [{**models[0], "name": "churn", "champion_version": 1, "version_count": 2}]
    archived = run_json("versions", "churn", "--status", "archived", env=cli_env)
    assert [v["version"] for v in archived] == [2]
    tagged = run_json("versions", "churn", "--tag", "team=growth", env=cli_env)
    assert [v["version"] for v in tagged] == [2]
    assert run_json("show", "churn", "2", env=cli_env)["metrics"] == {"roc_auc": 0.84}
    assert "champion" in run_cli("versions", "churn", env=cli_env).stdout
    assert "rollback" in run_cli("history", "churn", env=cli_env).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("register", "Bad", "--artifact", "{m1}"), "error: invalid model name 'Bad'"),
        (("register", "churn", "--artifact", "{m1}", "--metrics", "{x"), "error: --metrics is not valid JSON"),
        (("register", "churn", "--artifact", "{m1}", "--metrics", '{"auc": "hi"}'), "'auc' must be a number"),
        (("register", "churn", "--artifact", "{m1}", "--params", "[1]"), "--params must be a JSON object"),
        (("register", "churn", "--artifact", "/nope.joblib"), "error: no file at /nope.joblib"),
        (("register", "churn", "--artifact", "{junk}"), "is not a readable joblib file"),
        (("register", "churn", "--artifact", "{notmodel}"), "error: dict has no predict(): not a model"),
        (("show", "ghost", "1"), "error: model 'ghost' is not registered"),
        (("promote", "ghost", "1", "--reason", "r"), "error: model 'ghost' is not registered"),
        (("versions", "ghost", "--tag", "novalue"), "error: --tag must be KEY=VALUE"),
        (("compare", "ghost", "1"), "error: compare needs at least two versions"),
        (("promote", "ghost", "1", "--reason", "r", "--expect-champion", "abc"), "must be a version number (1"),
        (("register", "churn", "--artifact", "{m1}", "--params", '{"a": NaN}'), "--params: NaN is not a JSON number"),
        (("register", "churn", "--artifact", "{m1}", "--metrics", '{"a": 1e999}'), "too large to be finite"),
        (("--registry-url", "mysql://u@h/db", "models"), "error: the registry must be PostgreSQL, got a 'mysql' URL"),
        (("--registry-url", "notaurl", "models"), "error: the registry URL is not a database URL"),
        (("--registry-url", "postgresql://postgres:x@127.0.0.1:notaport/db", "models"), "not a database URL"),
        (("db", "downgrade", "nosuchrev"), "error: unknown registry schema revision 'nosuchrev'; known: base, 0001"),
        (("db", "upgrade", "nosuchrev"), "error: unknown registry schema revision 'nosuchrev'"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    cli_env: dict[str, str], model_files: tuple[Path, Path], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    junk = tmp_path / "junk.joblib"
    junk.write_bytes(b"not a pickle at all")
    notmodel = tmp_path / "dict.joblib"
    joblib.dump({"weights": [1, 2]}, notmodel)
    files = {"{m1}": str(model_files[0]), "{junk}": str(junk), "{notmodel}": str(notmodel)}
    filled = [files.get(a, a) for a in args]
    result = run_cli(*filled, env=cli_env, check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_usage_errors_exit_2(cli_env: dict[str, str]) -> None:
    result = run_cli("show", "churn", "notanumber", env=cli_env, check=False)
    assert result.returncode == 2 and "invalid value for 'version'" in result.stderr.lower()
    result = run_cli("history", "churn", "--limit", "-1", env=cli_env, check=False)
    assert result.returncode == 2 and "invalid value for '--limit'" in result.stderr.lower()


@pytest.mark.slow
@pytest.mark.parametrize("number", ["2147483648", "9223372036854775807", "0"])
def test_out_of_range_versions_are_not_found(
    cli_env: dict[str, str], model_files: tuple[Path, Path], number: str
) -> None:
    run_cli("register", "churn", "--artifact", str(model_files[0]), env=cli_env)
    run_cli("promote", "churn", "1", "--reason", "first", env=cli_env)
    for args in (
        ("show", "churn", number),
        ("promote", "churn", number, "--reason", "r"),
        ("rollback", "churn", "--to", number, "--reason", "r"),
        ("deploy", "churn", "--version", number),
    ):
        result = run_cli(*args, env=cli_env, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, (args, result.stderr)
        assert f"error: model 'churn' has no version {number}" in lines[0], (args, result.stderr)
    negative = run_cli("promote", "churn", "1", "--reason", "r", "--expect-champion", "-5", env=cli_env, check=False)
    assert negative.returncode == 1 and "--expect-champion must be a version number (1 or more)" in negative.stderr


@pytest.mark.slow
def test_registering_a_file_again_with_other_metadata_is_refused(
    cli_env: dict[str, str], model_files: tuple[Path, Path]
) -> None:
    first = str(model_files[0])
    made = run_json("register", "churn", "--artifact", first, "--tags", '{"team": "a"}', env=cli_env)
    assert run_json("register", "churn", "--artifact", first, env=cli_env)["version"] == made["version"]
    same = run_json("register", "churn", "--artifact", first, "--tags", '{"team": "a"}', env=cli_env)
    assert same["version"] == made["version"]
    other = run_cli("register", "churn", "--artifact", first, "--tags", '{"team": "b"}', env=cli_env, check=False)
    assert other.returncode == 1
    assert f"this file already is v{made['version']} of 'churn' with other --tags" in other.stderr
    assert run_json("show", "churn", str(made["version"]), env=cli_env)["tags"]["team"] == "a"
    assert len(run_json("versions", "churn", env=cli_env)) == 1


def _with_two_versions(cli_env: dict[str, str], model_files: tuple[Path, Path], tmp_path: Path) -> dict[str, str]:
    """churn v1 and v2 registered from the two files; the env with a serving directory of its own."""
    env = {**cli_env, "MODELGATE_SERVING_DIR": str(tmp_path / "serving")}
    for file in model_files:
        run_json("register", "churn", "--artifact", str(file), env=env)
    return env


@pytest.mark.slow
def test_a_rejected_or_unpromoted_version_is_never_deployed(
    cli_env: dict[str, str], model_files: tuple[Path, Path], tmp_path: Path
) -> None:
    env = _with_two_versions(cli_env, model_files, tmp_path)
    unpromoted = run_cli("deploy", "churn", "--version", "2", env=env, check=False)
    assert unpromoted.returncode == 1
    assert "v2 of 'churn' is a challenger that was never promoted; promote it first" in unpromoted.stderr
    run_cli("promote", "churn", "1", "--reason", "first", env=env)
    registry = Registry.connect(env["MODELGATE_REGISTRY_URL"])
    registry.reject("churn", 2, actor="test", reason="worse")
    registry.close()
    rejected = run_cli("deploy", "churn", "--version", "2", env=env, check=False)
    assert rejected.returncode == 1 and "v2 of 'churn' was rejected and never serves" in rejected.stderr
    assert not (tmp_path / "serving" / "churn" / "state.json").exists()  # nothing was written
    assert not [e for e in run_json("history", "churn", env=env) if e["kind"] == "deploy"]
    assert "v1 live" in run_cli("deploy", "churn", "--version", "1", env=env).stdout


def test_stale_schema_names_the_upgrade_command_and_db_upgrade_fixes_it(cli_env: dict[str, str]) -> None:
    engine = create_registry_engine(cli_env["MODELGATE_REGISTRY_URL"])
    downgrade(engine, "0001")
    engine.dispose()
    refused = run_cli("models", env=cli_env, check=False)
    assert refused.returncode == 1 and "run `modelgate db upgrade`" in refused.stderr
    assert "database: 0001" in run_cli("db", "current", env=cli_env).stdout
    assert f"registry schema at revision {head_revision()}" in run_cli("db", "upgrade", env=cli_env).stdout
    assert run_json("models", env=cli_env) == []


def test_unreachable_registry_is_one_line(tmp_path: Path) -> None:
    env = {"MODELGATE_REGISTRY_URL": "postgresql://postgres@127.0.0.1:1/x", "MODELGATE_HOME": str(tmp_path)}
    result = run_cli("models", env=env, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: registry database unavailable during schema check")


@pytest.mark.slow
def test_deploy_and_rollback_move_local_traffic(
    cli_env: dict[str, str], model_files: tuple[Path, Path], tmp_path: Path
) -> None:
    import json

    env = _with_two_versions(cli_env, model_files, tmp_path)
    run_cli("promote", "churn", "1", "--reason", "first", env=env)
    deployed = run_cli("deploy", "churn", env=env)
    assert "v1 live on the local target {'v1': 100}" in deployed.stdout
    state_path = tmp_path / "serving" / "churn" / "state.json"
    assert json.loads(state_path.read_text())["stable"]["version"] == 1

    run_cli("promote", "churn", "2", "--reason", "better", env=env)
    assert "v2 live" in run_cli("deploy", "churn", "--steps", "25,100", env=env).stdout
    assert json.loads(state_path.read_text())["stable"]["version"] == 2
    again = run_cli("deploy", "churn", env=env)
    assert "already serves all traffic on the local target" in again.stdout

    rolled = run_cli("rollback", "churn", "--reason", "bad canary", env=env)
    assert "local traffic moved to v1" in rolled.stderr
    assert json.loads(state_path.read_text())["stable"]["version"] == 1
    deploys = [e for e in run_json("history", "churn", env=env) if e["kind"] == "deploy"]
    assert [(e["from_version"], e["to_version"]) for e in deploys] == [(None, 1), (1, 2), (2, 1)]
    bad = run_cli("deploy", "churn", "--steps", "50,10", env=env, check=False)
    assert bad.returncode == 1 and "error: --steps must increase and end at 100" in bad.stderr


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, filled to the last byte (mounting needs root, as on these machines and in CI)."""
    import subprocess

    mount = tmp_path / "full"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)]
    mounted = subprocess.run(command, check=False, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (mount / "artifacts").mkdir()
        (mount / "serving").mkdir()
        with contextlib.suppress(OSError), open(mount / "filler", "wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(
    cli_env: dict[str, str], model_files: tuple[Path, Path], tmp_path: Path, full_disk: Path
) -> None:
    env = {**cli_env, "MODELGATE_ARTIFACT_ROOT": str(full_disk / "artifacts")}
    for _ in range(2):  # each try
        failed = run_cli("register", "churn", "--artifact", str(model_files[0]), env=env, check=False)
        assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert failed.stderr.startswith("error: cannot write artifact m1.joblib to ")
        assert "No space left on device; free space there and retry" in failed.stderr
    assert _leftovers(full_disk) == []

    served = {**_with_two_versions(cli_env, model_files, tmp_path), "MODELGATE_SERVING_DIR": str(full_disk / "serving")}
    run_cli("promote", "churn", "1", "--reason", "first", env=served)
    deployed = run_cli("deploy", "churn", env=served, check=False)
    assert deployed.returncode == 1 and len(deployed.stderr.strip().splitlines()) == 1, deployed.stderr
    assert "deployment failed, traffic restored" in deployed.stderr and "No space left on device" in deployed.stderr
    assert _leftovers(full_disk) == [] and not (full_disk / "serving" / "churn" / "state.json").exists()


def test_dags_shard_lays_out_copies_and_names_a_bad_count(tmp_path: Path) -> None:
    from tests.conftest import REPO_ROOT

    (tmp_path / "modelgate_dags.py").write_bytes((REPO_ROOT / "dags" / "modelgate_dags.py").read_bytes())
    done = run_cli("dags", "shard", "3", "--dags-dir", str(tmp_path), env={})
    assert "wrote modelgate_dags_1.py" in done.stdout and "3 DAG files share the models (2 changed)" in done.stdout
    assert sorted(p.name for p in tmp_path.glob("*.py")) == [f"modelgate_dags{s}.py" for s in ("", "_1", "_2")]
    bad = run_cli("dags", "shard", "0", "--dags-dir", str(tmp_path), env={}, check=False)
    assert bad.returncode == 1 and "shards must be between 1 and 256, got 0" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert run_cli("dags", "shard", "1", "--dags-dir", str(tmp_path), env={}).stdout.count("removed") == 2


@pytest.mark.slow
def test_airflow_cli_runs_airflow_with_the_stack_settings(tmp_path: Path) -> None:
    from modelgate.stack import StackConfig, write_cli_env
    from tests.conftest import REPO_ROOT

    shell = {"AIRFLOW_HOME": str(tmp_path / "airflow")}
    missing = run_cli("airflow-cli", "dags", "list", env=shell, check=False)
    assert missing.returncode == 1 and "no modelgate stack was prepared in" in missing.stderr
    assert "run `make airflow` first" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    config = StackConfig(
        airflow_home=tmp_path / "airflow",
        metadata_url="postgresql://postgres@127.0.0.1:5432/nowhere",
        registry_url="postgresql://postgres@127.0.0.1:5432/nowhere_registry",
        modelgate_home=tmp_path / "home",
        repo_root=REPO_ROOT,
        dags_dir=tmp_path / "dags",
    )
    written = write_cli_env(config)
    assert written.stat().st_mode & 0o777 == 0o600  # it holds the stack's secrets
    found = run_cli("airflow-cli", "config", "get-value", "core", "dags_folder", env=shell)
    assert found.stdout.strip() == str(tmp_path / "dags")
    pool = run_cli("airflow-cli", "config", "get-value", "database", "sql_alchemy_conn", env=shell).stdout
    assert "127.0.0.1:5432/nowhere" in pool and "sqlite" not in pool
    assert run_cli("airflow-cli", env=shell, check=False).returncode == 1
