"""DagBag integrity: imports, tags, retries, explicit schedule and catchup, nothing looked up at parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.airflow

DAGS_DIR = REPO_ROOT / "dags"
HEAVY = ("pandas", "numpy", "sklearn", "scipy", "great_expectations", "evidently", "joblib", "pyarrow", "plotly")


def _dagbag(monkeypatch: pytest.MonkeyPatch):
    """Parse dags/ with Connections, Variables and database connections stubbed to raise."""
    import psycopg
    import sqlalchemy
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Connection, Variable

    def refuse(*_args, **_kwargs):
        raise AssertionError("looked up at DAG parse time")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(refuse))
    monkeypatch.setattr(Connection, "get", classmethod(refuse))
    monkeypatch.setattr(Variable, "get", staticmethod(refuse))
    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(sqlalchemy, "create_engine", refuse)
    return DagBag(dag_folder=str(DAGS_DIR))


def test_dagbag_imports_cleanly_without_parse_time_lookups(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> None:
    bag = _dagbag(monkeypatch)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        f"modelgate_{stage}__{model}"
        for stage in ("monitor", "retrain", "deploy", "batch_predict", "backtest")
        for model in ("churn", "plan_change", "weather_rain")
    }


def test_every_dag_is_tagged_retried_scheduled_and_explicit_about_catchup(
    monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> None:
    from modelgate.catalog import load_specs

    specs = {s.name: s for s in load_specs(REPO_ROOT / "include" / "models")[0]}
    bag = _dagbag(monkeypatch)
    for dag_id, dag in bag.dags.items():
        assert "modelgate" in dag.tags and any(t.startswith("model:") for t in dag.tags), dag_id
        spec = specs[dag_id.rsplit("__", 1)[1]]
        live = dag_id.startswith(("modelgate_backtest__", "modelgate_ab__"))  # these never catch up
        assert dag.catchup is (spec.catchup and not live), dag_id  # from the spec (default False)
        assert dag.start_date == spec.start(), dag_id
        assert dag.max_active_runs == 1, dag_id
        assert f"](/modelgate/models/{spec.name})" in (dag.doc_md or ""), dag_id  # the way back to the model
        assert dag.default_args["retries"] >= 1, dag_id
        expected = (
            "AssetTriggeredTimetable"
            if "deploy" in dag_id
            else "NullTimetable"  # the backtest runs when asked
            if "backtest" in dag_id
            else ("CronDataIntervalTimetable", "AssetOrTimeSchedule")
        )
        assert type(dag.timetable).__name__ in expected, dag_id
        for task in dag.tasks:
            if task.task_id != "approve":  # a human's answer is not retried
                assert task.retries >= 1, f"{dag_id}.{task.task_id}"
    retrain = bag.dags["modelgate_retrain__churn"]
    assert "Asset" in type(retrain.timetable).__name__  # time OR drift Asset
    assert set(retrain.params) == {"force", "window_days", "dry_run", "approval", "promote_on_backfill", "interval_end"}
    monitor = bag.dags["modelgate_monitor__churn"]
    assert [a.uri for a in monitor.get_task("signal_drift").outlets] == ["x-modelgate://churn/drift"]
    assert [a.uri for a in retrain.get_task("promote_champion").outlets] == ["x-modelgate://churn/champion"]
    # decisions in interval order: every run first waits for the one before it (a backfill starts 10 at once)
    assert [t.task_id for t in retrain.roots] == ["wait_for_earlier_interval"]
    waiting = retrain.get_task("wait_for_earlier_interval")
    assert waiting.mode == "reschedule" and waiting.downstream_task_ids == {"training_data_quality"}


def test_every_task_takes_its_share_from_one_pool_by_stage(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> None:
    """1,000 models' weekly runs: all in `$MODELGATE_POOL`, deploys and monitors first, backtests last, and
    the weight absolute, so a model with more tasks does not outrank another (older intervals go first)."""
    from modelgate.airflow.factory import STAGE_PRIORITY

    monkeypatch.setenv("MODELGATE_POOL", "modelgate")
    bag = _dagbag(monkeypatch)
    for dag_id, dag in bag.dags.items():
        stage = dag_id.removeprefix("modelgate_").split("__")[0]
        for task in dag.tasks:
            assert task.pool == "modelgate", f"{dag_id}.{task.task_id}"
            assert task.priority_weight == STAGE_PRIORITY[stage], f"{dag_id}.{task.task_id}"
            assert str(task.weight_rule).lower().endswith("absolute"), f"{dag_id}.{task.task_id}"
    assert STAGE_PRIORITY["deploy"] > STAGE_PRIORITY["monitor"] > STAGE_PRIORITY["retrain"] > STAGE_PRIORITY["backtest"]
    monkeypatch.delenv("MODELGATE_POOL")
    unpooled = _dagbag(monkeypatch).dags["modelgate_retrain__churn"]
    assert {t.pool for t in unpooled.tasks} == {"default_pool"}  # no pool asked for: Airflow's default


def test_the_trigger_form_shows_the_interval_a_run_triggered_now_judges(
    monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> None:
    import datetime as dt

    from modelgate.catalog import load_specs

    spec = {s.name: s for s in load_specs(REPO_ROOT / "include" / "models")[0]}["churn"]
    expected = spec.last_complete_interval(dt.datetime.now(dt.UTC))
    assert expected is not None
    described = _dagbag(monkeypatch).dags["modelgate_retrain__churn"].params.get_param("interval_end").description
    assert f"(now: {expected[0]:%Y-%m-%d %H:%M} to {expected[1]:%Y-%m-%d %H:%M} UTC)" in described


def test_params_are_validated_by_json_schema(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    params = _dagbag(monkeypatch).dags["modelgate_retrain__churn"].params
    params.validate()
    assert params.get_param("window_days").resolve(14) == 14
    with pytest.raises(ParamValidationError, match="0 is less than the minimum of 1"):
        params.get_param("window_days").resolve(0)
    with pytest.raises(ParamValidationError, match="'maybe' is not one of"):
        params.get_param("approval").resolve("maybe")
    with pytest.raises(ParamValidationError, match="is not of type 'boolean'"):
        params.get_param("force").resolve("yes")


def test_dag_file_imports_no_heavy_module() -> None:
    probe = (
        "import sys, json; sys.path.insert(0, {dags!r}); {body}; "
        "print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")}
    ours = subprocess.run(
        [sys.executable, "-c", probe.format(dags=str(DAGS_DIR), body="import modelgate_dags", heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    baseline = subprocess.run(
        [sys.executable, "-c", probe.format(dags=str(DAGS_DIR), body="import airflow.sdk", heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert set(json.loads(ours.stdout)) - set(json.loads(baseline.stdout)) == set()


def test_invalid_spec_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    include = tmp_path / "include"
    (include / "models").mkdir(parents=True)
    churn = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    (include / "models" / "churn.yaml").write_text(yaml.safe_dump(churn))
    broken = dict(churn, name="broken", window_days=-3)
    (include / "models" / "broken.yaml").write_text(yaml.safe_dump(broken))
    (include / "models" / "latin.yaml").write_bytes("name: latin\ndescription: café\n".encode("latin-1"))
    (include / "models" / "folder.yaml").mkdir()
    (include / "models" / "cron.yaml").write_text(yaml.safe_dump(dict(churn, name="cron", schedule="99 99 99 99 99")))
    params = dict(churn["estimator"], params={"max_iter": -1})
    (include / "models" / "params.yaml").write_text(yaml.safe_dump(dict(churn, name="params", estimator=params)))
    bogus = dict(churn["estimator"], params={"bogus_param": 3})
    (include / "models" / "bogus.yaml").write_text(yaml.safe_dump(dict(churn, name="bogus", estimator=bogus)))
    escape = {"kind": "files", "path": "../../../../etc/passwd"}
    (include / "models" / "escape.yaml").write_text(yaml.safe_dump(dict(churn, name="escape", source=escape)))
    (include / "models" / "twin.yaml").write_text(yaml.safe_dump(dict(churn, name="twin")))
    (include / "models" / "twin.yml").write_text(yaml.safe_dump(dict(churn, name="twin")))
    (include / "team_models").mkdir()  # your own estimator, imported from the include folder at parse
    (include / "team_models" / "__init__.py").write_text("")
    (include / "team_models" / "churn.py").write_text(
        "def build(c=1.0):\n"
        "    from sklearn.linear_model import LogisticRegression\n"
        "    return LogisticRegression(C=c)\n"
    )
    mine = {"factory": "team_models.churn:build", "params": {"c": 0.5}}
    (include / "models" / "mine.yaml").write_text(yaml.safe_dump(dict(churn, name="mine", estimator=mine)))
    lost = {"factory": "gone.models:build"}
    (include / "models" / "lost.yaml").write_text(yaml.safe_dump(dict(churn, name="lost", estimator=lost)))
    probe = (
        "import sys; sys.path.insert(0, {dags!r}); import modelgate_dags as m; "
        "print(sorted(m._dags)); print([str(e) for e in m.SPEC_ERRORS])"
    )
    env = {
        **os.environ,
        "MODELGATE_INCLUDE_DIR": str(include),
        "PYTHONPATH": str(REPO_ROOT / "plugins"),
        "MODELGATE_HOME": str(tmp_path / "home"),
        "MODELGATE_PROJECT_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe.format(dags=str(DAGS_DIR))], capture_output=True, text=True, check=True, env=env
    )
    dags_line, errors_line = result.stdout.strip().splitlines()[-2:]
    assert dags_line == (
        "['modelgate_backtest__churn', 'modelgate_backtest__mine', 'modelgate_batch_predict__churn', "
        "'modelgate_batch_predict__mine', 'modelgate_deploy__churn', 'modelgate_deploy__mine', "
        "'modelgate_monitor__churn', 'modelgate_monitor__mine', 'modelgate_retrain__churn', 'modelgate_retrain__mine']"
    )
    models = include / "models"
    for expected in (
        "broken.yaml: window_days: Input should be greater than or equal to 1",
        "latin.yaml: <file>: is not UTF-8 text",
        "folder.yaml: <file>: is a directory, not a spec file",
        "cron.yaml: schedule: Value error, schedule '99 99 99 99 99' is not a valid cron expression",
        "params.yaml: estimator.params: The 'max_iter' parameter of HistGradientBoostingClassifier must be an int",
        "bogus.yaml: estimator.params: bad estimator params for hist_gradient_boosting",
        "escape.yaml: source.path: '../../../../etc/passwd' is outside the data roots",
        f"lost.yaml: estimator.factory: estimator.factory gone.models:build: no module 'gone' in {include}",
        f"{models / 'twin.yaml'}: name: 'twin' is also defined in {models / 'twin.yml'}",
    ):
        assert expected in errors_line, expected
    assert "invalid model spec, its DAGs are not generated" in result.stdout + result.stderr
    # the UI shows them as the import error of modelgate_spec_check.py, the only file that fails
    check = subprocess.run(
        [sys.executable, str(DAGS_DIR / "modelgate_spec_check.py")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert check.returncode == 1 and "InvalidSpec" in check.stderr and "cron.yaml: schedule" in check.stderr
    (models / "twin.yml").unlink()
    for name in ("broken", "latin", "cron", "params", "bogus", "escape", "lost"):
        (models / f"{name}.yaml").unlink()
    models.joinpath("folder.yaml").rmdir()
    checked = subprocess.run([sys.executable, str(DAGS_DIR / "modelgate_spec_check.py")], env=env, check=False)
    assert checked.returncode == 0


def test_example_data_dag_only_where_asked(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> None:
    """`make airflow` asks for the live churn example's appender; a plain deployment never gets one."""
    assert not any("example_data" in d for d in _dagbag(monkeypatch).dag_ids)
    monkeypatch.setenv("MODELGATE_EXAMPLE_DATA", "churn,weather_rain")
    bag = _dagbag(monkeypatch)
    assert [d for d in bag.dag_ids if "example_data" in d] == ["modelgate_example_data__churn"]  # no generator else
    example = bag.dags["modelgate_example_data__churn"]
    assert example.catchup is False and type(example.timetable).__name__ == "CronDataIntervalTimetable"
    assert [t.task_id for t in example.tasks] == ["append_rows"]


def test_approval_times_out_closed_notifies_and_names_its_approvers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, airflow_db: Path
) -> None:
    import datetime as dt

    include = tmp_path / "include"
    (include / "models").mkdir(parents=True)
    churn = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    spec = dict(churn, approval="required", approval_timeout="12h", approvers=[{"id": "alice", "name": "Alice"}])
    (include / "models" / "churn.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("MODELGATE_INCLUDE_DIR", str(include))
    approve = _dagbag(monkeypatch).dags["modelgate_retrain__churn"].get_task("approve")
    assert approve.response_timeout == dt.timedelta(hours=12)
    assert approve.defaults == ["Reject"]  # silence is a no
    assert approve.assigned_users == [{"id": "alice", "name": "Alice"}]
    assert [type(n).__name__ for n in approve.notifiers] == ["SpecNotifier"]
    assert approve.notifiers[0].event == "approval"
    assert "Without an answer within 12h the challenger is rejected." in approve.body


def test_without_a_registry_a_task_fails_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

    from modelgate.airflow.factory import _services
    from modelgate.catalog import load_spec

    def missing(*_args, **_kwargs):
        raise AirflowNotFoundException("The conn_id `modelgate_registry` isn't defined")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(missing))
    monkeypatch.delenv("MODELGATE_REGISTRY_URL", raising=False)
    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path))
    spec = load_spec(REPO_ROOT / "include" / "models" / "churn.yaml")
    with pytest.raises(AirflowFailException, match="RegistryNotConfigured: no registry configured for this task"):
        _services(spec, REPO_ROOT / "include")
    assert {p.name for p in tmp_path.iterdir()} <= {"cache"}  # no embedded server was started


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        ("modelgate.deploy.vertex_batch:BatchJobFailed", False),
        ("modelgate.deploy.controller:DeployError", False),
        ("modelgate.quality:ExpectationsFileError", False),
        ("modelgate.registry.errors:RegistryNotConfigured", False),
        ("modelgate.registry.errors:RegistryUnavailable", True),
        ("builtins:ConnectionError", True),
    ],
)
def test_deterministic_errors_fail_without_retries(error: str, retried: bool) -> None:
    import importlib

    from airflow.sdk.exceptions import AirflowFailException

    from modelgate.airflow.factory import fail_fast

    module, _, name = error.partition(":")
    cls = getattr(importlib.import_module(module), name)
    expected = cls if retried else AirflowFailException
    with pytest.raises(expected, match="boom"), fail_fast():
        raise cls("boom")


@pytest.mark.parametrize(
    ("connection", "url"),
    [
        ("postgresql://u%40x:p%2Fw@db.example:6543/reg", "postgresql+psycopg://u%40x:p%2Fw@db.example:6543/reg"),
        ('{"conn_type": "postgres", "host": "/var/run/postgresql"}', "postgresql+psycopg://postgres@/postgres?host="),
        (
            '{"conn_type": "postgres", "host": "db", "login": "mg", "schema": "registry"}',
            "postgresql+psycopg://mg@db/registry",
        ),
    ],
)
def test_registry_connections_become_urls_through_the_postgres_hook(
    monkeypatch: pytest.MonkeyPatch, connection: str, url: str
) -> None:
    from modelgate.airflow.runtime import connection_url
    from modelgate.registry.connection import normalize_url

    monkeypatch.setenv("AIRFLOW_CONN_MG_TEST", connection)
    built = connection_url("mg_test")
    assert built is not None and built.startswith(url)
    assert normalize_url(built) == built  # what the registry's engine is built from, unchanged
    assert connection_url("mg_undefined") is None


def test_the_evaluation_outcome_survives_the_xcom_round_trip() -> None:
    import json

    from modelgate.pipeline import EvaluationOutcome, PrimaryComparison

    outcome = EvaluationOutcome(
        promote=True,
        reason="challenger better",
        challenger_version=3,
        champion_seen=2,
        primary=PrimaryComparison("roc_auc", 0.71, 0.74, (0.01, float("nan"))),
        report="reports/churn/evaluation/v3.html",
        settled=False,
    )
    xcom = json.loads(json.dumps(outcome.as_xcom(), allow_nan=False))  # what any worker reads back
    assert xcom["primary"]["ci"] == [0.01, None]
    back = EvaluationOutcome.from_xcom(xcom)
    assert back.challenger_version == 3 and back.primary is not None and back.primary.ci == (0.01, None)
    assert outcome.recorded("promote", "ana")["approver"] == "ana"
    assert "settled" not in outcome.recorded("promote", None)
    with pytest.raises(ValueError, match="challenger_version"):
        EvaluationOutcome.from_xcom({**xcom, "challenger_version": "three"})


@pytest.mark.parametrize(
    ("dag_id", "model"),
    [
        ("modelgate_retrain__churn", "churn"),
        ("modelgate_batch_predict__weather_rain", "weather_rain"),
        ("modelgate_monitor__a__b", "a__b"),  # a model name may hold a double underscore; a stage never does
        ("modelgate_retrain__", None),
        ("modelgate___churn", None),
        ("other_dag__churn", None),
        ("modelgate_retrain_churn", None),
    ],
)
def test_a_dag_id_names_its_model(dag_id: str, model: str | None) -> None:
    from modelgate.airflow.factory import model_of_dag

    assert model_of_dag(dag_id) == model


_PARSE_PROBE = (
    "import importlib.util, json; s = importlib.util.spec_from_file_location('dags', {file!r}); "
    "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
    "print(json.dumps([sorted(m._dags), [str(e) for e in m.SPEC_ERRORS]]))"
)


def _parse_dag_file(file: Path, root: Path, dag_id: str | None = None) -> tuple[list[str], str]:
    """One DAG file parsed in a fresh interpreter against `root`/include, as the DAG processor (no `dag_id`)
    or a task runner (Airflow's parsing context names `dag_id`) does: the DAG ids built, the spec errors."""
    env = {k: v for k, v in os.environ.items() if k != "_AIRFLOW_PARSING_CONTEXT_DAG_ID"}
    env |= {
        "MODELGATE_INCLUDE_DIR": str(root / "include"),
        "PYTHONPATH": str(REPO_ROOT / "plugins"),
        "MODELGATE_HOME": str(root / "home"),
        "MODELGATE_PROJECT_DIR": str(root),
        **({"_AIRFLOW_PARSING_CONTEXT_DAG_ID": dag_id} if dag_id else {}),
    }
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_PROBE.format(file=str(file))], capture_output=True, text=True, check=True, env=env
    )
    dags, errors = json.loads(result.stdout.strip().splitlines()[-1])
    return dags, " ".join(errors)


def test_a_task_runner_parses_only_its_own_model(tmp_path: Path) -> None:
    """Airflow's parsing context names the DAG a task runner needs: only that model's spec is read."""
    models = tmp_path / "include" / "models"
    models.mkdir(parents=True)
    churn = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    (models / "churn.yaml").write_text(yaml.safe_dump(churn))
    (models / "other.yaml").write_text(yaml.safe_dump(dict(churn, name="other")))
    (models / "broken.yaml").write_text("name: broken\nwindow_days: [")

    def parse(dag_id: str | None) -> tuple[list[str], str]:
        return _parse_dag_file(DAGS_DIR / "modelgate_dags.py", tmp_path, dag_id)

    dags, errors = parse("modelgate_retrain__other")
    assert dags == sorted(
        f"modelgate_{stage}__other" for stage in ("backtest", "batch_predict", "deploy", "monitor", "retrain")
    )
    assert errors == ""  # the broken spec is not even read
    dags, errors = parse(None)  # the DAG processor: every model, the broken one reported
    assert "modelgate_retrain__churn" in dags and "modelgate_retrain__other" in dags and "broken.yaml" in errors
    dags, errors = parse("some_other_teams_dag")  # not ours: the whole folder, as without a context
    assert "modelgate_retrain__churn" in dags and "broken.yaml" in errors
    dags, errors = parse("modelgate_retrain__broken")
    assert dags == [] and "broken.yaml" in errors


def test_shard_files_split_the_models_and_a_task_parses_only_its_own_shard(tmp_path: Path) -> None:
    from modelgate.catalog import lay_out_shards, shard_of

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "modelgate_dags.py").write_bytes((DAGS_DIR / "modelgate_dags.py").read_bytes())
    lay_out_shards(dags, 3)
    models = tmp_path / "include" / "models"
    models.mkdir(parents=True)
    churn = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    names = [f"m{i}" for i in range(9)]
    for name in names:
        (models / f"{name}.yaml").write_text(yaml.safe_dump(dict(churn, name=name)))

    def parse(shard: str, dag_id: str | None = None) -> set[str]:
        return set(_parse_dag_file(dags / shard, tmp_path, dag_id)[0])

    files = ["modelgate_dags.py", "modelgate_dags_1.py", "modelgate_dags_2.py"]
    built = [parse(file) for file in files]
    for k, dag_ids in enumerate(built):
        assert {d.split("__", 1)[1] for d in dag_ids} == {n for n in names if shard_of(n, 3) == k}
    assert sum(map(len, built)) == len(set().union(*built)) == 5 * len(names)  # each DAG in one file only
    model = names[0]
    own = files[shard_of(model, 3)]
    assert {d.split("__", 1)[1] for d in parse(own, f"modelgate_retrain__{model}")} == {model}
    other = next(f for f in files if f != own)
    assert parse(other, f"modelgate_retrain__{model}") == set()
