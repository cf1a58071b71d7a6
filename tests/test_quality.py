"""The GX suite from the spec: critical failures name the expectation and what was observed."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from modelgate.datasets.churn import generate_day
from modelgate.quality import (
    FINITE,
    ExpectationsFileError,
    QualityGateFailed,
    QualityResult,
    build_suite,
    load_custom_expectations,
    validate,
)
from modelgate.spec import parse_spec
from tests.conftest import REPO_ROOT

SPEC = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.concat([generate_day(dt.date(2026, 1, 1) + dt.timedelta(days=i)) for i in range(3)], ignore_index=True)


def test_suite_covers_columns_types_ranges_categories_rows_and_target() -> None:
    suite = build_suite(SPEC)
    labels = {e.label for e in suite}
    assert "expect_table_row_count_to_be_between" in labels
    assert "expect_column_to_exist(contract)" in labels
    assert "expect_column_values_to_be_in_set(churned)" in labels
    assert "expect_column_values_to_be_unique(customer_id)" in labels
    between = [e for e in suite if e.type == "expect_column_values_to_be_between"]
    ranges = [e for e in between if e.kwargs["min_value"] != -FINITE]
    assert all(e.severity == "warning" for e in ranges) and len(ranges) == 5
    finite = [e for e in between if e.kwargs["min_value"] == -FINITE]
    assert {e.kwargs["column"] for e in finite} == set(SPEC.numeric_features)
    assert all(e.severity == "critical" for e in finite)


def test_clean_window_passes_and_writes_data_docs(frame: pd.DataFrame, tmp_path: Path) -> None:
    result = validate(SPEC, frame, build_suite(SPEC), docs_dir=tmp_path / "docs")
    assert result.passed and result.failures == [] and result.evaluated == len(build_suite(SPEC))
    assert result.docs_path is not None and Path(result.docs_path).is_file()
    assert "churn" in Path(result.docs_path).read_text()


def test_missing_column_and_null_targets_are_critical(frame: pd.DataFrame) -> None:
    broken = frame.drop(columns=["contract"])
    broken.loc[:9, "churned"] = None
    broken.loc[0, "tenure_months"] = 500  # out of range: a warning only
    result = validate(SPEC, broken, build_suite(SPEC))
    assert not result.passed
    failures = {str(f) for f in result.failures}
    assert "expect_column_to_exist(contract): observed column missing" in failures
    assert any(f.startswith("expect_column_values_to_not_be_null(churned): observed 10 unexpected") for f in failures)
    warnings = {w.expectation + (w.column or "") for w in result.warnings}
    assert "expect_column_values_to_be_betweentenure_months" in warnings
    error = QualityGateFailed("churn", result)
    assert "data quality gate failed for churn" in str(error) and "FAILED expect_column_to_exist" in str(error)


def test_infinities_and_an_entirely_null_feature_are_critical(frame: pd.DataFrame) -> None:
    broken = frame.copy()
    broken["monthly_charges"] = broken["monthly_charges"].astype(float)
    broken.loc[3, "monthly_charges"] = float("inf")
    broken.loc[4, "monthly_charges"] = float("-inf")
    broken["contract"] = None
    result = validate(SPEC, broken, build_suite(SPEC))
    assert not result.passed
    failures = {f.expectation + "(" + (f.column or "") + ")" for f in result.failures}
    assert "expect_column_values_to_be_between(monthly_charges)" in failures
    assert "expect_column_values_to_not_be_null(contract)" in failures
    # some nulls in a nullable feature are still fine
    partial = frame.copy()
    partial.loc[:5, "contract"] = None
    assert validate(SPEC, partial, build_suite(SPEC)).passed


def test_empty_window_fails_on_row_count() -> None:
    empty = generate_day(dt.date(2026, 1, 1)).iloc[0:0]
    result = validate(SPEC, empty, build_suite(SPEC))
    assert any(str(f) == "expect_table_row_count_to_be_between: observed 0" for f in result.failures)


def test_custom_expectations(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "churn.json"
    path.write_text(
        json.dumps(
            [
                {
                    "type": "expect_column_max_to_be_between",
                    "kwargs": {"column": "support_tickets", "max_value": 1},
                    "severity": "critical",
                }
            ]
        )
    )
    custom = load_custom_expectations(path)
    result: QualityResult = validate(SPEC, frame, build_suite(SPEC, custom))
    assert [f.expectation for f in result.failures] == ["expect_column_max_to_be_between"]
    shipped = load_custom_expectations(REPO_ROOT / "include" / "expectations" / "churn.json")
    assert len(shipped) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{x", "not valid JSON"),
        ('[{"type": "nope"}]', "item 0.type: String should match pattern '^expect_[a-z0-9_]+$'"),
        ('[{"type": "expect_x", "severity": "fatal"}]', "item 0.severity: Input should be 'critical' or 'warning'"),
        ('{"expectations": 3}', "the file: Input should be a valid list"),
        ('[{"type": "expect_x", "kwarg": {}}]', "item 0.kwarg: Extra inputs are not permitted"),
        ('[{"type": "expect_x", "kwargs": []}, {"type": 1}]', "item 0.kwargs: Input should be a valid dictionary"),
    ],
)
def test_bad_custom_expectation_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(ExpectationsFileError, match=re.escape(message)):
        load_custom_expectations(path)
