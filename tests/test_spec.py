"""Spec validation: file, field and reason for each problem; one bad spec never hides the others."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelgate.catalog import load_spec, load_specs
from modelgate.spec import InvalidSpec, ModelSpec, parse_spec
from tests.conftest import REPO_ROOT

MODELS = REPO_ROOT / "include" / "models"


def _base() -> dict:
    return yaml.safe_load((MODELS / "churn.yaml").read_text())


def _errors(raw: dict) -> list[str]:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(yaml.safe_dump(raw), "x.yaml")
    return [f"{e.field}: {e.reason}" for e in info.value.errors]


def test_shipped_examples_are_valid() -> None:
    specs, errors = load_specs(MODELS)
    assert errors == []
    assert {s.name for s in specs} == {"churn", "plan_change", "weather_rain"}
    churn = next(s for s in specs if s.name == "churn")
    assert churn.cron == "0 0 * * 0" and churn.evaluation.higher_is_better
    assert churn.categorical_features == ["contract", "internet_service", "payment_method"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.update(name="Churn"), "name: Value error, invalid model name 'Churn'"),
        (lambda r: r.pop("target"), "target: Field required"),
        (lambda r: r["source"].update(kind="s3"), "source: Input tag 's3' found using 'kind' does not match"),
        (lambda r: r["source"].update(table="churn; drop table x"), "is not a plain SQL identifier"),
        (
            lambda r: r.update(task="clustering"),
            "task: Input should be 'binary_classification', 'multiclass_classification' or 'regression'",
        ),
        (lambda r: r["estimator"].update(name="xgboost"), "estimator.name: Input should be"),
        (lambda r: r["features"].append({"name": "tenure_months", "type": "numeric"}), "duplicate feature names"),
        (lambda r: r["features"].append({"name": "churned", "type": "numeric"}), "must not include the time, id"),
        (lambda r: r["features"].append({"name": "x", "type": "numeric", "min": 5, "max": 1}), "min 5.0 is above"),
        (lambda r: r["features"].append({"name": "x", "type": "categorical", "min": 0}), "apply to numeric"),
        (lambda r: r["evaluation"].update(primary_metric="rmse"), "metrics rmse do not apply to binary_class"),
        (lambda r: r["evaluation"]["slices"].append({"column": "ghost"}), "slices name unknown features: ghost"),
        (lambda r: r["retrain"].update(drift_runs_k=3, drift_runs_n=2), "drift_runs_k (3) cannot exceed"),
        (lambda r: r["deploy"].update(canary_steps=[50, 10, 100]), "canary_steps must increase and end at 100"),
        (lambda r: r.update(schedule="@sometimes"), "unknown schedule preset '@sometimes'"),
        (lambda r: r.update(schedule="0 0 *"), "is not a 5-field cron expression"),
        (lambda r: r.update(holdout_fraction=1.5), "holdout_fraction: Input should be less than 0.9"),
        (lambda r: r.update(surprise=1), "surprise: Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_name_field_and_reason(mutate, expected: str) -> None:
    raw = _base()
    mutate(raw)
    errors = _errors(raw)
    assert any(expected in e for e in errors), errors


def test_yaml_errors_and_non_mappings() -> None:
    with pytest.raises(InvalidSpec, match=r"x.yaml: <yaml>: not valid YAML"):
        parse_spec("name: [unclosed", "x.yaml")
    with pytest.raises(InvalidSpec, match=r"x.yaml: <root>: a spec is a YAML mapping"):
        parse_spec("- a\n- b\n", "x.yaml")


def test_name_must_match_file(tmp_path: Path) -> None:
    raw = _base()
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidSpec, match=r"other.yaml: name: must match the file name \('other'\)"):
        load_spec(path)


def test_one_invalid_spec_does_not_stop_the_others(tmp_path: Path) -> None:
    good = _base()
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(good))
    bad = _base()
    bad["name"] = "broken"
    bad.pop("time_column")
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(bad))
    specs, errors = load_specs(tmp_path)
    assert [s.name for s in specs] == ["churn"]
    assert len(errors) == 1 and errors[0].file.endswith("broken.yaml") and errors[0].field == "time_column"
    assert isinstance(specs[0], ModelSpec)


def test_start_date_may_be_relative_to_today() -> None:
    import datetime as dt

    raw = _base()
    raw.update(start_date="-5w", catchup=True)
    spec = parse_spec(yaml.safe_dump(raw))
    assert spec.catchup is True
    sunday, monday = dt.datetime(2026, 11, 29, tzinfo=dt.UTC), dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)
    # counted back from the weekly schedule's last tick: five intervals to catch up, whatever the weekday
    assert spec.start(sunday) == spec.start(monday) == dt.datetime(2026, 10, 25, tzinfo=dt.UTC)
    assert spec.start(sunday - dt.timedelta(microseconds=1)) == dt.datetime(2026, 10, 18, tzinfo=dt.UTC)
    raw.update(start_date="-3d")
    assert parse_spec(yaml.safe_dump(raw)).start(monday) == dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    raw.update(start_date="-3d", schedule=None)  # no schedule: from today's UTC midnight
    assert parse_spec(yaml.safe_dump(raw)).start(monday) == dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    raw.update(start_date="-2d", schedule="0 */6 * * *")
    assert parse_spec(yaml.safe_dump(raw)).start(monday) == dt.datetime(2026, 11, 28, 6, tzinfo=dt.UTC)
    raw.update(start_date="2026-01-04")
    assert parse_spec(yaml.safe_dump(raw)).start() == dt.datetime(2026, 1, 4, tzinfo=dt.UTC)
    for bad in ("5w", "-5m", "yesterday", "2026-13-01"):
        raw.update(start_date=bad)
        assert _errors(raw) == [
            f"start_date: Value error, start_date {bad!r} is neither a date (YYYY-MM-DD) nor relative (-28d, -5w)"
        ]


@pytest.mark.parametrize(
    ("schedule", "end", "span"),
    [
        ("*/15 * * * *", "2026-11-30T10:07", {"minutes": 15}),
        ("0 */6 * * *", "2026-11-30T10:07", {"hours": 6}),
        ("0 0 * * 1-5", "2026-11-30T10:07", {"days": 3}),  # Monday looks back over the weekend to Friday
        ("0 0 * * 1-5", "2026-12-02T10:07", {"days": 1}),
        ("@weekly", "2026-11-30T10:07", {"days": 7}),
        ("@monthly", "2026-11-30T10:07", {"days": 31}),  # November 1 back to October 1
        (None, "2026-11-30T10:07", {"days": 1}),
    ],
)
def test_a_run_without_an_interval_spans_one_schedule_interval(schedule: str | None, end: str, span: dict) -> None:
    import datetime as dt

    raw = _base()
    raw["schedule"] = schedule
    spec = parse_spec(yaml.safe_dump(raw))
    at = dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC)
    assert spec.span_before(at) == dt.timedelta(**span)


_BOMB = "\n".join(
    ['    a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    + [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("approval: auto", "approval_timeout: 99999999999999w", "approval_timeout: .*longer than ten years"),
        ("approval: auto", "approval_timeout: 4000d", "approval_timeout: .*longer than ten years"),
        ("tags: [example, churn]", "tags: " + "[" * 5000 + "]" * 5000, "<yaml>: nests deeper than 32 levels"),
        ("tags: [example, churn]", "tags: " + "[" * 40 + "]" * 40, "<yaml>: nests deeper than 32 levels"),
        (
            "  params: {max_iter: 150, learning_rate: 0.08, max_leaf_nodes: 15}",
            "  params:\n" + _BOMB,
            "<yaml>: holds over 100000 values once its aliases are expanded",
        ),
    ],
    ids=["overflowing-duration", "ten-years", "nested-5000", "nested-40", "alias-bomb"],
)
def test_hostile_specs_are_one_error_for_their_file_and_the_others_load(
    tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    import re

    text = (MODELS / "churn.yaml").read_text()
    (tmp_path / "churn.yaml").write_text(text)
    assert replace in text
    (tmp_path / "hostile.yaml").write_text(text.replace("name: churn", "name: hostile").replace(replace, by))
    specs, errors = load_specs(tmp_path)  # the alias bomb hung for over 90 s before the bound
    assert [s.name for s in specs] == ["churn"]
    assert len(errors) == 1 and errors[0].file.endswith("hostile.yaml"), errors
    assert re.search(expected, f"{errors[0].field}: {errors[0].reason}"), errors[0]


def test_a_valid_spec_is_read_from_the_content_cache_the_second_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelgate.catalog as catalog

    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path / "home"))
    models = tmp_path / "models"
    models.mkdir()
    for shipped in sorted((REPO_ROOT / "include" / "models").glob("*.yaml")):
        (models / shipped.name).write_text(shipped.read_text())
    fresh = {p.name: load_spec(p) for p in sorted(models.glob("*.yaml"))}

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(catalog, "parse_spec", refuse)
    monkeypatch.setattr(catalog, "estimator_params_problem", refuse)
    cached = {p.name: load_spec(p) for p in sorted(models.glob("*.yaml"))}
    assert cached == fresh  # the same specs, field by field, without YAML or scikit-learn
    monkeypatch.undo()
    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path / "home"))

    churn = models / "churn.yaml"
    churn.write_text(churn.read_text().replace("window_days: 28", "window_days: -1"))  # new content: parsed
    with pytest.raises(InvalidSpec, match="window_days"):
        load_spec(churn)
    churn.write_text((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    entry = next((tmp_path / "home" / "cache" / "specs").glob("*.json"))
    entry.write_text("{torn")  # a torn entry is parsed as if absent
    assert {p.name: load_spec(p) for p in sorted(models.glob("*.yaml"))} == fresh


def test_the_data_roots_are_checked_even_when_the_spec_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELGATE_DATA_ROOTS", "*")
    raw = yaml.safe_load((REPO_ROOT / "include" / "models" / "weather_rain.yaml").read_text())
    raw["source"]["path"] = "/etc/weather.csv"
    path = tmp_path / "weather_rain.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_spec(path).source.path == "/etc/weather.csv"  # allowed anywhere, and cached
    monkeypatch.setenv("MODELGATE_DATA_ROOTS", "../shared/data")
    with pytest.raises(InvalidSpec, match="source.path: '/etc/weather.csv' is outside the data roots"):
        load_spec(path)


def test_models_spread_over_the_shard_files_beside_the_dag_file(tmp_path: Path) -> None:
    from modelgate.catalog import dag_shard, lay_out_shards, shard_of

    (tmp_path / "modelgate_dags.py").write_text("# the DAG file\n")
    assert dag_shard(tmp_path / "modelgate_dags.py") == (0, 1)
    assert lay_out_shards(tmp_path, 4) == [f"wrote modelgate_dags_{k}.py" for k in (1, 2, 3)]
    assert lay_out_shards(tmp_path, 4) == []  # laid out already
    assert dag_shard(tmp_path / "modelgate_dags_2.py") == (2, 4)
    names = [f"model{i}" for i in range(400)]
    counts = [sum(shard_of(n, 4) == k for n in names) for k in range(4)]
    assert min(counts) > 70 and [shard_of(n, 4) for n in names] == [shard_of(n, 4) for n in names]
    (tmp_path / "modelgate_dags_1.py").unlink()
    with pytest.raises(ValueError, match=r"without gaps; missing modelgate_dags_1\.py"):
        dag_shard(tmp_path / "modelgate_dags.py")
    assert lay_out_shards(tmp_path, 2) == [
        "wrote modelgate_dags_1.py",
        "removed modelgate_dags_2.py",
        "removed modelgate_dags_3.py",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["modelgate_dags.py", "modelgate_dags_1.py"]
    with pytest.raises(ValueError, match="shards must be between 1 and 256, got 0"):
        lay_out_shards(tmp_path, 0)
    with pytest.raises(ValueError, match="a modelgate DAG file is named"):
        dag_shard(tmp_path / "my_dags.py")
