"""Data quality with Great Expectations 1.x: a suite generated from the spec, plus optional custom ones.

Each expectation carries a severity in its meta: `critical` failures stop the run (the task fails naming
each expectation and its observed value), `warning` failures are recorded and the run goes on.
GX's HTML Data Docs for the run are written to a directory of the caller's.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelgate.spec import ModelSpec, Task

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Severity = Literal["critical", "warning"]
FINITE = sys.float_info.max  # the bounds of the "no infinities" expectation
ANY_VALUE = 1e-12  # `mostly` of the "not entirely null" expectation: any non-null value passes
NUMERIC_TYPES = [
    "int",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float",
    "float16",
    "float32",
    "float64",
    "Int64",
    "Int32",
    "Float64",
]


@dataclass(frozen=True)
class ExpectationDef:
    type: str
    kwargs: dict[str, Any]
    severity: Severity = "critical"

    @property
    def label(self) -> str:
        column = self.kwargs.get("column")
        return f"{self.type}({column})" if column else self.type


@dataclass(frozen=True)
class QualityIssue:
    expectation: str
    column: str | None
    severity: Severity
    observed: str

    def __str__(self) -> str:
        where = f"({self.column})" if self.column else ""
        return f"{self.expectation}{where}: observed {self.observed}"


@dataclass(frozen=True)
class QualityResult:
    passed: bool
    rows: int
    evaluated: int
    failures: list[QualityIssue] = field(default_factory=list)
    warnings: list[QualityIssue] = field(default_factory=list)
    docs_path: str | None = None

    def summary(self) -> str:
        head = (
            f"{self.evaluated} expectations on {self.rows} rows: {len(self.failures)} critical failures, "
            f"{len(self.warnings)} warnings"
        )
        lines = [head, *[f"  FAILED {f}" for f in self.failures], *[f"  warning {w}" for w in self.warnings]]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "failures": [str(f) for f in self.failures],
            "warnings": [str(w) for w in self.warnings],
            "docs_path": self.docs_path,
        }


class QualityGateFailed(RuntimeError):
    """Critical expectations failed; the message names each one and its observed value."""

    def __init__(self, model: str, result: QualityResult) -> None:
        self.result = result
        super().__init__(f"data quality gate failed for {model}: {result.summary()}")


def build_suite(spec: ModelSpec, custom: list[ExpectationDef] | None = None) -> list[ExpectationDef]:
    """The spec's expectations: columns, types, not-null, ranges and categories, row counts, target domain."""
    q = spec.quality
    suite = [
        ExpectationDef("expect_table_row_count_to_be_between", {"min_value": q.min_rows, "max_value": q.max_rows}),
    ]
    for column in [spec.id_column, spec.time_column, spec.target, *spec.feature_names]:
        suite.append(ExpectationDef("expect_column_to_exist", {"column": column}))
    suite.append(ExpectationDef("expect_column_values_to_be_unique", {"column": spec.id_column}))
    suite.append(ExpectationDef("expect_column_values_to_not_be_null", {"column": spec.time_column}))
    target_nulls: dict[str, Any] = {"column": spec.target}
    if q.max_target_null_fraction > 0:
        target_nulls["mostly"] = 1 - q.max_target_null_fraction
    suite.append(ExpectationDef("expect_column_values_to_not_be_null", target_nulls))
    if spec.task is Task.BINARY:
        suite.append(ExpectationDef("expect_column_values_to_be_in_set", {"column": spec.target, "value_set": [0, 1]}))
    elif spec.task is Task.MULTICLASS:
        classes = list(spec.classes or [])
        suite.append(ExpectationDef("expect_column_values_to_be_in_set", {"column": spec.target, "value_set": classes}))
    else:
        suite.append(
            ExpectationDef(
                "expect_column_values_to_be_in_type_list", {"column": spec.target, "type_list": NUMERIC_TYPES}
            )
        )
    for feature in spec.features:
        if not feature.nullable:
            suite.append(ExpectationDef("expect_column_values_to_not_be_null", {"column": feature.name}))
        else:  # nulls allowed, but a feature with no value at all is a broken feed (critical)
            suite.append(
                ExpectationDef("expect_column_values_to_not_be_null", {"column": feature.name, "mostly": ANY_VALUE})
            )
        if feature.type == "numeric":
            suite.append(
                ExpectationDef(
                    "expect_column_values_to_be_in_type_list", {"column": feature.name, "type_list": NUMERIC_TYPES}
                )
            )
            suite.append(  # infinities pass type checks and break models and drift statistics (critical)
                ExpectationDef(
                    "expect_column_values_to_be_between",
                    {"column": feature.name, "min_value": -FINITE, "max_value": FINITE},
                )
            )
            if feature.min is not None or feature.max is not None:
                suite.append(
                    ExpectationDef(
                        "expect_column_values_to_be_between",
                        {"column": feature.name, "min_value": feature.min, "max_value": feature.max},
                        "warning",
                    )
                )
        elif feature.categories:
            suite.append(
                ExpectationDef(
                    "expect_column_values_to_be_in_set",
                    {"column": feature.name, "value_set": list(feature.categories)},
                    "warning",
                )
            )
    return suite + list(custom or [])


class ExpectationsFileError(ValueError):
    """A malformed expectations file: a spec problem, not a passing one (the task fails without retries)."""


def load_custom_expectations(path: Path) -> list[ExpectationDef]:
    """`include/expectations/<model>.json`: a list (or `{"expectations": [...]}`) of
    `{"type": "expect_…", "kwargs": {…}, "severity": "critical" | "warning"}` objects."""
    from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

    class Item(BaseModel):
        model_config = ConfigDict(extra="forbid")
        type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
        kwargs: dict[str, Any] = Field(default_factory=dict)
        severity: Severity = "critical"

    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExpectationsFileError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ExpectationsFileError(f"{path}: cannot be read as UTF-8 text: {exc}") from None
    items = raw.get("expectations", raw) if isinstance(raw, dict) else raw
    try:
        parsed = TypeAdapter(list[Item]).validate_python(items)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ExpectationsFileError(
            f"{path}: {'item ' + where if where else 'the file'}: {first['msg']}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
        ) from None
    return [ExpectationDef(item.type, item.kwargs, item.severity) for item in parsed]


def _observed(result: Any) -> str:
    info = result.exception_info or {}
    nested = [v for v in info.values() if isinstance(v, dict)] if "raised_exception" not in info else [info]
    for entry in nested:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message", "")).splitlines()
            return f"error: {message[0] if message else 'raised'}"
    res = result.result or {}
    if "observed_value" in res and res["observed_value"] is not None:
        return repr(res["observed_value"])
    if res.get("unexpected_count") is not None:
        sample = res.get("partial_unexpected_list") or []
        pct = res.get("unexpected_percent")
        pct_text = f" ({pct:.2f}%)" if isinstance(pct, int | float) else ""
        return f"{res['unexpected_count']} unexpected{pct_text}, e.g. {sample[:5]!r}"
    if result.expectation_config.type == "expect_column_to_exist":
        return "column missing"
    return "failed"


def _replace_dir(new: Path, target: Path) -> None:
    """Put `new` where `target` is, with two renames (the old folder is removed after)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def validate(
    spec: ModelSpec, frame: pd.DataFrame, suite: list[ExpectationDef], *, docs_dir: Path | None = None
) -> QualityResult:
    """Run the suite on the frame with GX; write Data Docs for this run only to `docs_dir` when given.

    The context is ephemeral (nothing read from or written to a project folder), the suite is built in one
    piece, and the Data Docs site is a staging folder beside `docs_dir`, renamed into place once rendered
    (readers, such as the Models view, never see a half-written or emptied folder while a re-run renders):
    per run, GX does the validation and the
    rendering and nothing else.
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # progress bars are cosmetic
        log.debug("could not disable GX progress bars", exc_info=True)
    for site in list(context.get_site_names()):
        context.delete_data_docs_site(site)
    staging = None
    if docs_dir is not None:
        docs_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{docs_dir.name}.", dir=docs_dir.parent))
        store = {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(staging)}
        context.add_data_docs_site(
            "modelgate",
            {
                "class_name": "SiteBuilder",
                "store_backend": store,
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    source = context.data_sources.add_pandas("modelgate")
    batch_definition = source.add_dataframe_asset(name=spec.name).add_batch_definition_whole_dataframe("window")
    expectations = []
    for item in suite:
        kwargs = {k: v for k, v in item.kwargs.items() if v is not None or k in ("min_value", "max_value")}
        config = ExpectationConfiguration(type=item.type, kwargs=kwargs, meta={"severity": item.severity})
        expectations.append(config.to_domain_obj())
    gx_suite = context.suites.add(gx.ExpectationSuite(name=f"{spec.name}_window", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch_definition, suite=gx_suite, name=f"{spec.name}_validation")
    )
    actions: list[Any] = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs_dir else []
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{spec.name}_checkpoint",
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "SUMMARY"},
        )
    )
    # One copy consolidates the frame's blocks (a column assigned after loading leaves it fragmented); GX
    # filters the whole frame per metric, and on a fragmented frame pandas re-merges the blocks every time:
    # 11 s instead of 6 s at 1M rows.
    try:
        outcome = checkpoint.run(batch_parameters={"dataframe": frame.copy()})
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    failures: list[QualityIssue] = []
    warnings: list[QualityIssue] = []
    evaluated = 0
    for run_result in outcome.run_results.values():
        for result in run_result.results:
            evaluated += 1
            if result.success:
                continue
            failed = result.expectation_config
            if failed is None:
                continue
            severity = (failed.meta or {}).get("severity", "critical")
            issue = QualityIssue(failed.type, failed.kwargs.get("column"), severity, _observed(result))
            (failures if severity == "critical" else warnings).append(issue)
    docs_path = None
    if docs_dir is not None and staging is not None:
        _replace_dir(staging, docs_dir)  # this run's docs only
    if docs_dir is not None and docs_dir.is_dir():
        pages = sorted(docs_dir.glob("validations/**/*.html"))
        docs_path = str(pages[-1] if pages else docs_dir / "index.html")
    return QualityResult(not failures, len(frame), evaluated, failures, warnings, docs_path)
