"""ModelSpec: one YAML file per model under include/models/, validated with pydantic.

`load_specs(dir)` returns the valid specs and, separately, one `SpecError` per invalid file (file, field,
reason), so one broken spec never stops the other models' DAGs from loading.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelgate.names import check_model_name

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
    "r2": True,
    "balanced_accuracy": True,
    "macro_f1": True,
    "weighted_f1": True,
}
CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
RELATIVE_START = re.compile(r"-(\d{1,4})([dw])")
CLASSIFICATION_METRICS = {"roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}
MULTICLASS_METRICS = {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "log_loss"}
# A/B experiments judge per prediction: name -> higher is better
AB_CLASSIFIER_METRICS = {"accuracy": True, "brier": False, "log_loss": False}
AB_REGRESSOR_METRICS = {"squared_error": False, "absolute_error": False}
AB_METRICS = {**AB_CLASSIFIER_METRICS, **AB_REGRESSOR_METRICS}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(enum.StrEnum):
    BINARY = "binary_classification"
    MULTICLASS = "multiclass_classification"
    REGRESSION = "regression"

    @property
    def classifier(self) -> bool:
        return self is not Task.REGRESSION

    @property
    def metrics(self) -> set[str]:
        """The metrics that apply to the task's models."""
        return {
            Task.BINARY: CLASSIFICATION_METRICS,
            Task.MULTICLASS: MULTICLASS_METRICS,
            Task.REGRESSION: REGRESSION_METRICS,
        }[self]


def label_text(value: Any) -> str:
    """How a class label is matched, whatever its type: 2, 2.0 (a numeric column with gaps) and "2" alike."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return label_text(value.item())
    return str(value)


# the primary metric of a spec that names none
DEFAULT_PRIMARY = {"binary_classification": "roc_auc", "multiclass_classification": "macro_f1"}


class PostgresSource(_Strict):
    kind: Literal["postgres"]
    table: str
    db_schema: str = Field("public", alias="schema")
    conn_id: str = "modelgate_registry"

    @field_validator("table", "db_schema")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
            raise ValueError(f"{value!r} is not a plain SQL identifier")
        return value


class FileSource(_Strict):
    kind: Literal["files"]
    path: str
    format: Literal["csv", "parquet"] | None = None
    gcp_conn_id: str = "google_cloud_default"
    rows_start_at: str | None = Field(
        None, description="for time-ordered files without timestamps: the first row's time (ISO date)"
    )
    rows_every: str = Field("1D", description="with rows_start_at: the spacing of rows (a pandas offset)")

    @property
    def resolved_format(self) -> str:
        if self.format:
            return self.format
        return "parquet" if self.path.endswith((".parquet", ".pq")) else "csv"


_BIGQUERY_TABLE = re.compile(
    r"(?:(?P<project>(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9])\.)?"
    r"(?P<dataset>[A-Za-z0-9_]{1,1024})\.(?P<table>[A-Za-z0-9_-]{1,1024})"
)


class BigQuerySource(_Strict):
    """Rows of a BigQuery table, queried in standard SQL through the Google provider's BigQueryHook."""

    kind: Literal["bigquery"]
    table: str = Field(description="`project.dataset.table`, or `dataset.table` in the query's project")
    gcp_conn_id: str = "google_cloud_default"
    project: str | None = Field(None, description="the project that runs (and pays for) the query")
    location: str | None = Field(None, description="the dataset's location, e.g. `EU` (default: BigQuery's)")

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not _BIGQUERY_TABLE.fullmatch(value):
            raise ValueError(f"{value!r} is not a BigQuery table: write project.dataset.table or dataset.table")
        return value

    def table_id(self, default_project: str) -> str:
        """`project.dataset.table`, in the query's project when the spec names none."""
        found = _BIGQUERY_TABLE.fullmatch(self.table)
        assert found is not None  # validated
        return f"{found['project'] or default_project}.{found['dataset']}.{found['table']}"


class Feature(_Strict):
    name: str
    type: Literal["numeric", "categorical"]
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    nullable: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.type == "categorical" and (self.min is not None or self.max is not None):
            raise ValueError(f"feature {self.name!r}: min/max apply to numeric features only")
        if self.type == "numeric" and self.categories is not None:
            raise ValueError(f"feature {self.name!r}: categories apply to categorical features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} is above max {self.max}")
        return self


FACTORY_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class Estimator(_Strict):
    """One of modelgate's estimators by `name`, or your own by `factory`: a function you write that returns an
    unfitted scikit-learn-compatible estimator or `Pipeline`, called with `params`."""

    name: Literal["logistic_regression", "hist_gradient_boosting", "random_forest"] | None = None
    factory: str | None = Field(
        None,
        description="`package.module:function`, imported from the include folder ($MODELGATE_INCLUDE_DIR) or the "
        "environment; it returns an unfitted estimator or Pipeline",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    preprocessing: Literal["modelgate", "none"] = Field(
        "modelgate",
        description="`modelgate`: impute, scale and encode by feature type in front of the estimator; `none`: the "
        "estimator (your Pipeline) gets the raw feature columns as a DataFrame",
    )
    numeric_preprocessing: Literal["standard", "passthrough"] = "standard"
    categorical_preprocessing: Literal["onehot", "ordinal"] = "onehot"
    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="threads one fit may use (OpenMP, n_jobs); default $MODELGATE_TRAINING_THREADS, else 1: a "
        "worker runs several task slots at once, and OpenMP's default (every core) makes them fight",
    )

    @model_validator(mode="after")
    def _one_estimator(self) -> Estimator:
        if (self.name is None) == (self.factory is None):
            raise ValueError(
                "give either name (logistic_regression, hist_gradient_boosting, random_forest) or factory "
                "(package.module:function), not both"
                if self.name is not None
                else "give name (logistic_regression, hist_gradient_boosting, random_forest) or factory "
                "(package.module:function)"
            )
        if self.factory is not None and not FACTORY_PATH.fullmatch(self.factory):
            raise ValueError(f"factory {self.factory[:80]!r} is not a path like my_models.churn:build")
        if self.preprocessing == "none" and self.factory is None:
            raise ValueError("preprocessing: none hands the raw columns to your own factory; name one")
        return self

    @property
    def label(self) -> str:
        """What made the model: the estimator's name or the factory's path."""
        return self.name or self.factory or ""


class Guardrail(_Strict):
    metric: str
    tolerance: float = Field(ge=0, description="how much worse than the champion it may get")


class SliceSpec(_Strict):
    column: str
    tolerance: float = Field(0.05, ge=0)
    min_rows: int = Field(30, ge=1)


class Evaluation(_Strict):
    primary_metric: str = "roc_auc"
    direction: Literal["maximize", "minimize"] | None = None
    min_improvement: float = Field(0.0, ge=0)
    significance_level: float = Field(0.05, gt=0, lt=1)
    non_inferiority_margin: float | None = Field(
        0.01,
        ge=0,
        description="when the retrain was triggered by evidence against the champion (its measured decay, or a "
        "change its window straddles), the challenger needs only to be non-inferior: its primary metric at most "
        "this much below the champion's and not significantly worse (null: always require a significant win); "
        "a shorter training window must be ahead of the whole one by more than this (null: min_improvement)",
    )
    bootstrap_samples: int = Field(1000, ge=100, le=100_000)
    min_holdout_rows: int = Field(
        100,
        ge=1,
        description="fewest holdout rows neither model was fitted on (from the champion's window end on) to "
        "judge by; fewer is the verdict insufficient_evidence (not promoted)",
    )
    guardrails: list[Guardrail] = Field(default_factory=list)
    slices: list[SliceSpec] = Field(default_factory=list)
    absolute_thresholds: dict[str, float] = Field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        if self.direction is not None:
            return self.direction == "maximize"
        return HIGHER_IS_BETTER[self.primary_metric]


class Quality(_Strict):
    min_rows: int = Field(50, ge=1)
    max_rows: int | None = None
    max_target_null_fraction: float = Field(0.0, ge=0, le=1)
    expectations_file: str | None = None


class Drift(_Strict):
    drift_share: float = Field(0.5, gt=0, le=1)
    threshold: float | None = Field(None, gt=0, description="overrides each method's default threshold")
    reference_sample_size: int = Field(5000, ge=100)
    report_sample_size: int = Field(10_000, ge=100)
    alarm: Literal["calibrated", "evidently"] = Field(
        "calibrated",
        description="calibrated: a column alarms when its two-sample test is significant after Holm's "
        "correction over the features AND its Evidently distance is past its threshold; evidently: "
        "Evidently's default per-column verdict alone",
    )
    significance: float = Field(0.01, gt=0, lt=0.5, description="family-wise false-alarm rate of one window")


class Retrain(_Strict):
    drift_runs_k: int = Field(1, ge=1)
    drift_runs_n: int = Field(1, ge=1)
    performance_metric: str | None = None
    performance_threshold: float | None = None
    max_age_days: float | None = Field(None, gt=0)
    new_rows_threshold: int | None = Field(None, ge=1)
    decay_tolerance: float | None = Field(
        0.05,
        ge=0,
        lt=1,
        description="label-aware trigger: retrain when the champion's metric on the labelled rows it has not seen "
        "(all of them, and the newest interval's alone) is significantly more than this fraction below its own "
        "holdout score (null: off)",
    )
    decay_significance: float = Field(
        0.05, gt=0, lt=0.5, description="one-sided level of the decay test, split between its two looks"
    )
    decay_min_rows: int = Field(50, ge=1, description="fewer labelled rows in a look: no decay test on it")
    calibration_check: bool = Field(
        True,
        description="binary classifiers: retrain when the champion's predicted rate of positives is significantly "
        "more than decay_tolerance (of the rarer class's rate) off the labels, since its window and in the newest "
        "interval alike, in the same direction (decay_significance; off with decay_tolerance: null)",
    )
    decay_on_accuracy: bool = Field(
        True,
        description="classifiers whose decay metric ranks (roc_auc, pr_auc, log_loss, brier): the decay test watches "
        "accuracy at the served threshold too, against the champion's holdout accuracy, with the same tolerance "
        "and its level shared between the two metrics; only while that accuracy, down by the tolerance, is still "
        "above always answering the commonest class",
    )
    settle_after_change: bool = Field(
        True,
        description="a champion promoted in answer to decay or drift, but trained partly on rows from before the "
        "change, is retrained once when the window holds only rows since the change",
    )

    @model_validator(mode="after")
    def _k_of_n(self) -> Retrain:
        if self.drift_runs_k > self.drift_runs_n:
            raise ValueError(f"drift_runs_k ({self.drift_runs_k}) cannot exceed drift_runs_n ({self.drift_runs_n})")
        if (self.performance_metric is None) != (self.performance_threshold is None):
            raise ValueError("performance_metric and performance_threshold go together")
        return self


NotifyOn = Literal["failure", "drift", "promotion", "rejection", "approval"]


def _all_events() -> list[NotifyOn]:
    return ["failure", "drift", "promotion", "rejection", "approval"]


_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = dt.timedelta(days=3660)  # ten years: longer waits are a typo, and timedelta overflows past ~2.7M years


def parse_duration(value: str) -> dt.timedelta:
    """`90s`, `30m`, `12h`, `3d`, `2w` as a timedelta, at most ten years (ValueError otherwise)."""
    match = _DURATION.fullmatch(value.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{value[:40]!r} is not a duration like 30m, 12h, 3d or 2w")
    digits = match.group(1).lstrip("0")
    seconds = int(digits) * _UNIT_SECONDS[match.group(2)] if len(digits) <= 12 else math.inf
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{value!r} is longer than ten years ({MAX_DURATION.days}d)")
    return dt.timedelta(seconds=seconds)


def _checked_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


def optional_duration(value: str | None) -> dt.timedelta | None:
    return None if value is None else parse_duration(value)


# a spec field holding a duration as written (`3d`), checked when the spec loads; null: none
Duration = Annotated[str | None, AfterValidator(_checked_duration)]


class Approver(_Strict):
    """An Airflow user who may answer the approval (the auth manager's user id, and a display name)."""

    id: str = Field(min_length=1)
    name: str | None = None


class Notifier(_Strict):
    """An Airflow notifier class by dotted path with its kwargs; `log` is the built-in task-log notifier."""

    name: str = "log"
    params: dict[str, Any] = Field(default_factory=dict)
    on: list[NotifyOn] = Field(default_factory=_all_events)


class Deploy(_Strict):
    """Where the champion serves. `vertex` needs project, region, gcs_prefix and a serving container."""

    target: Literal["local", "vertex", "none"] = "local"
    canary_steps: list[int] = Field(default_factory=lambda: [10, 50, 100])
    project: str | None = None
    region: str | None = None
    endpoint_display_name: str | None = Field(None, description="defaults to modelgate-<model>")
    model_display_name: str | None = Field(None, description="the parent Vertex model; defaults to modelgate-<model>")
    serving_container_image_uri: str | None = None
    gcs_prefix: str | None = Field(None, description="gs://bucket/path the serving artifacts are copied under")
    machine_type: str = "n1-standard-2"
    min_replica_count: int = Field(1, ge=1)
    max_replica_count: int = Field(1, ge=1)
    operation_timeout_seconds: float = Field(1800, gt=0, description="upper bound on one Vertex operation")
    probe_rows: int = Field(20, ge=1, le=1000, description="rows per probe request between canary steps")
    probe_max_requests: int = Field(100, ge=1, description="requests per step to reach the canary")
    min_probe_agreement: float = Field(
        0.99, ge=0, le=1, description="share of probe rows Vertex must score as modelgate does"
    )
    batch_prediction_job: bool = Field(False, description="batch-score through a Vertex batch prediction job")
    keep_predictions: Duration = Field(
        None,
        description="how long the prediction log keeps what `modelgate serve` answered (e.g. 90d): older rows, "
        "except a running experiment's, and the outcomes no logged prediction names any more are deleted after "
        "each batch_predict interval (null: kept forever)",
    )
    rollback_registry_on_failure: bool = False
    gcp_conn_id: str = "google_cloud_default"

    @property
    def keep_predictions_for(self) -> dt.timedelta | None:
        return optional_duration(self.keep_predictions)

    @field_validator("canary_steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if not steps or steps[-1] != 100 or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError("canary_steps must increase and end at 100")
        if any(s <= 0 or s > 100 for s in steps):
            raise ValueError("canary_steps are percentages in (0, 100]")
        return steps

    @field_validator("gcs_prefix")
    @classmethod
    def _gcs(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("gs://") or len(value) <= 5 or value[5] == "/"):
            raise ValueError(f"gcs_prefix {value!r} must look like gs://bucket[/path]")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _vertex_needs(self) -> Deploy:
        if self.target == "vertex":
            missing = [
                name
                for name in ("project", "region", "gcs_prefix", "serving_container_image_uri")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"deploy.target vertex needs {', '.join(missing)}")
        if self.batch_prediction_job and self.target != "vertex":
            raise ValueError("batch_prediction_job runs on Vertex: it needs deploy.target vertex")
        if self.min_replica_count > self.max_replica_count:
            raise ValueError("min_replica_count cannot exceed max_replica_count")
        return self


def check_schedule(value: str | None) -> str | None:
    """A preset (`@daily`) or a 5-field cron expression; None stays None."""
    if value is None:
        return None
    if value.startswith("@"):
        if value not in CRON_PRESETS:
            raise ValueError(f"unknown schedule preset {value!r}: use one of {', '.join(CRON_PRESETS)} or a cron")
        return value
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"schedule {value!r} is not a 5-field cron expression")
    from croniter import croniter

    if not croniter.is_valid(value):
        raise ValueError(f"schedule {value!r} is not a valid cron expression (minute hour day month weekday)")
    return value


def cron_of(schedule: str) -> str:
    return CRON_PRESETS.get(schedule, schedule)


class AbSpec(_Strict):
    """How the model's A/B experiments are judged (`modelgate ab start`); copied into each experiment when it
    starts, so editing the spec never changes a running experiment's rules."""

    metric: str | None = Field(
        None, description="per-prediction metric on labelled outcomes (default: accuracy, or absolute_error)"
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="classifiers: the score at which accuracy calls 1")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="false promote rate, however often the test is looked at")
    minimum_effect: float = Field(
        0.02, gt=0, description="the size of difference the test is tuned to find (its mixture's spread)"
    )
    min_labelled: int = Field(100, ge=2, description="labelled predictions per arm before any decision")
    max_looks: int = Field(28, ge=1, description="looks (intervals) before an undecided experiment stops")
    srm_alpha: float = Field(0.001, gt=0, lt=0.5, description="a split this unlikely stops the experiment")
    guardrails: list[Guardrail] = Field(default_factory=list)
    schedule: str | None = Field("@daily", description="when modelgate_ab__<model> analyses the experiment")
    outcomes_from_source: bool = Field(
        True,
        description="before each look, read the interval's labelled rows from the spec's source as outcomes "
        "(key: the id column, observed: the time column)",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return check_schedule(value)

    @model_validator(mode="after")
    def _metrics(self) -> AbSpec:
        for name in [self.metric, *(g.metric for g in self.guardrails)]:
            if name is not None and name not in AB_METRICS:
                raise ValueError(f"ab: unknown per-prediction metric {name!r}; known: {', '.join(AB_METRICS)}")
        return self


class ModelSpec(_Strict):
    name: str
    description: str | None = None
    source: Annotated[PostgresSource | FileSource | BigQuerySource, Field(discriminator="kind")]
    time_column: str
    id_column: str
    target: str
    task: Task = Task.BINARY
    classes: list[str | int] | None = Field(
        None,
        description="multiclass_classification: the target's values, in the order probabilities are reported "
        "(at least three; a label outside them fails the quality gate)",
    )
    features: list[Feature] = Field(min_length=1)
    schedule: str | None = "@daily"
    retrain_schedule: str | None = Field(None, description="defaults to `schedule`; drift also triggers it")
    start_date: dt.date | str = Field(
        dt.date(2024, 1, 1),
        description="first data interval's start: a date, or `-<N>d` / `-<N>w` before today (UTC midnight)",
    )
    catchup: bool = Field(False, description="run every interval since start_date, in order, once unpaused")
    paused_upon_creation: bool = Field(True, description="whether a new Airflow sees the model's DAGs paused")
    window_days: int = Field(28, ge=1)
    max_window_days: int | None = Field(
        None,
        ge=1,
        description="how far the training window may grow while no change is detected (default 4 x window_days; "
        "equal to window_days: a fixed window)",
    )
    holdout_fraction: float = Field(0.25, gt=0, lt=0.9)
    refit: bool = Field(
        True,
        description="serve a model refit on the whole window (the holdout included); the one fitted without "
        "the holdout is kept for evaluation",
    )
    seed: int = 42
    estimator: Estimator
    evaluation: Evaluation = Field(default_factory=Evaluation)
    quality: Quality = Field(default_factory=Quality)
    drift: Drift = Field(default_factory=Drift)
    retrain: Retrain = Field(default_factory=Retrain)
    approval: Literal["auto", "required"] = "auto"
    approval_timeout: Duration = Field(
        "3d",
        description="how long an approval waits for an answer; then the challenger is rejected, recorded as "
        "timed out (null: wait forever, blocking later intervals of the retrain DAG)",
    )
    approvers: list[Approver] = Field(default_factory=list, description="who may answer (default: any user)")
    deploy: Deploy = Field(default_factory=Deploy)
    ab: AbSpec | None = Field(
        None, description="A/B experiments on live outcomes: declaring it (even `ab: {}`) adds modelgate_ab__<model>"
    )
    notifiers: list[Notifier] = Field(default_factory=lambda: [Notifier()])
    risk_tiers: dict[str, float] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_model_name(value)

    @property
    def approval_wait(self) -> dt.timedelta | None:
        return optional_duration(self.approval_timeout)

    @property
    def longest_window_days(self) -> int:
        """The most a training window may span: `max_window_days`, by default four windows."""
        return self.max_window_days if self.max_window_days is not None else 4 * self.window_days

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """A multiclass spec that names no primary metric gets macro F1 (ROC AUC is the binary default)."""
        if not isinstance(data, dict) or data.get("task") != Task.MULTICLASS.value:
            return data
        evaluation = data.get("evaluation")
        if evaluation is None:
            return {**data, "evaluation": {"primary_metric": DEFAULT_PRIMARY[Task.MULTICLASS.value]}}
        if isinstance(evaluation, dict) and "primary_metric" not in evaluation:
            return {**data, "evaluation": {**evaluation, "primary_metric": DEFAULT_PRIMARY[Task.MULTICLASS.value]}}
        return data

    @property
    def class_names(self) -> list[str]:
        """The `classes` as text, in their order (how predicted classes are reported); empty for other tasks."""
        return [str(c) for c in self.classes or []]

    def class_index(self) -> dict[str, int]:
        """Each class's position in `classes`, keyed by its text (how labels of any type are matched)."""
        return {label_text(c): i for i, c in enumerate(self.classes or [])}

    @model_validator(mode="after")
    def _cross_checks(self) -> ModelSpec:
        if self.task is Task.MULTICLASS:
            texts = [label_text(c) for c in self.classes or []]
            if len(set(texts)) < 3:
                raise ValueError(
                    "task multiclass_classification needs classes: the target's values, at least three "
                    "(two classes: task binary_classification with a 0/1 target)"
                )
            if len(set(texts)) != len(texts):
                raise ValueError(f"classes repeat: {', '.join(sorted({t for t in texts if texts.count(t) > 1}))}")
            if self.ab is not None:
                raise ValueError("ab: experiments judge binary classifiers and regressors; not multiclass models yet")
            if self.risk_tiers:
                raise ValueError("risk_tiers cut a binary classifier's probability; a multiclass model has classes")
        elif self.classes is not None:
            raise ValueError(f"classes apply to task multiclass_classification, not {self.task.value}")
        if self.max_window_days is not None and self.max_window_days < self.window_days:
            raise ValueError(f"max_window_days ({self.max_window_days}) is below window_days ({self.window_days})")
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {', '.join(duplicates)}")
        reserved = {self.time_column, self.id_column, self.target}
        clash = reserved & set(names)
        if clash:
            raise ValueError(f"features must not include the time, id or target column: {', '.join(sorted(clash))}")
        ab_allowed = AB_CLASSIFIER_METRICS if self.task.classifier else AB_REGRESSOR_METRICS
        ab = self.ab or AbSpec()
        ab_wrong = sorted({m for m in [ab.metric, *(g.metric for g in ab.guardrails)] if m} - set(ab_allowed))
        if ab_wrong:
            raise ValueError(
                f"ab: {', '.join(ab_wrong)} does not fit a {self.task.value} model; use {', '.join(ab_allowed)}"
            )
        allowed = self.task.metrics
        metrics = {self.evaluation.primary_metric} | {g.metric for g in self.evaluation.guardrails}
        metrics |= set(self.evaluation.absolute_thresholds)
        if self.retrain.performance_metric:
            metrics.add(self.retrain.performance_metric)
        unknown = sorted(metrics - allowed)
        if unknown:
            raise ValueError(
                f"metrics {', '.join(unknown)} do not apply to {self.task.value}; use {', '.join(sorted(allowed))}"
            )
        slice_columns = {s.column for s in self.evaluation.slices}
        per_class = {self.target} if self.task is Task.MULTICLASS else set()  # each class's F1, in every verdict
        missing = sorted(slice_columns - set(names) - per_class)
        if missing:
            raise ValueError(f"slices name unknown features: {', '.join(missing)}")
        if self.task is Task.REGRESSION and self.estimator.name == "logistic_regression":
            raise ValueError("logistic_regression is a classifier; regression needs another estimator")
        return self

    @field_validator("start_date")
    @classmethod
    def _start_date(cls, value: dt.date | str) -> dt.date | str:
        if isinstance(value, dt.date) or RELATIVE_START.fullmatch(value):
            return value
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"start_date {value!r} is neither a date (YYYY-MM-DD) nor relative (-28d, -5w)") from None

    def start(self, now: dt.datetime | None = None) -> dt.datetime:
        """The start date as UTC midnight, or, when relative, counted back from the schedule's last tick.

        `-5w` on a weekly schedule is exactly the last five intervals whatever the weekday `now` (default: the
        current time) falls on; without a schedule it counts back from today's UTC midnight. A relative start
        moves forward once an interval; with catchup that is harmless, since the scheduler continues after the
        last run it made, so an interval that has run is never created again.
        """
        value = self.start_date
        if not isinstance(value, str):
            return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
        match = RELATIVE_START.fullmatch(value)
        assert match is not None  # validated
        count, unit = int(match.group(1)), match.group(2)
        moment = now or dt.datetime.now(dt.UTC)
        if self.cron is None:
            base = dt.datetime.combine(moment.date(), dt.time(), tzinfo=dt.UTC)
        else:
            from croniter import croniter

            # the last tick at or before `moment` (get_prev alone would skip a tick `moment` sits on)
            base = croniter(self.cron, moment + dt.timedelta(microseconds=1)).get_prev(dt.datetime)
        return base - dt.timedelta(days=count * (7 if unit == "w" else 1))

    @field_validator("schedule", "retrain_schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return check_schedule(value)

    @property
    def cron(self) -> str | None:
        return None if self.schedule is None else CRON_PRESETS.get(self.schedule, self.schedule)

    def span_before(self, end: dt.datetime) -> dt.timedelta:
        """The length of the schedule's interval that ends at or just before `end` (a day when unscheduled).

        Runs without a data interval (manual and asset-triggered ones) look back this far. croniter walks the
        schedule itself, so `*/15 * * * *`, `0 */6 * * *` and weekday-only crons get their real spacing.
        """
        from croniter import croniter

        ticks = croniter(self.cron or "0 0 * * *", end)
        later = ticks.get_prev(dt.datetime)
        earlier = ticks.get_prev(dt.datetime)
        return later - earlier

    def last_complete_interval(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
        """The newest interval of the retrain schedule that has ended by `now` (None when unscheduled): what a
        run triggered at `now` judges, as Airflow's timetable infers a manual run's data interval."""
        from croniter import croniter

        cron = self.retrain_cron
        if cron is None:
            return None
        ticks = croniter(cron, now + dt.timedelta(microseconds=1))  # a tick at `now` itself has ended
        end = ticks.get_prev(dt.datetime)
        return ticks.get_prev(dt.datetime), end

    @property
    def retrain_cron(self) -> str | None:
        value = self.retrain_schedule or self.schedule
        return None if value is None else CRON_PRESETS.get(value, value)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)


@dataclass(frozen=True)
class SpecError:
    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


class InvalidSpec(ValueError):
    """A spec that does not validate; the message lists file, field and reason of each problem."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


MAX_SPEC_BYTES = 1 << 20  # a spec is a page of YAML; a megabyte is a mistake or an attack
MAX_SPEC_DEPTH = 32  # the deepest real spec nests 4 levels
MAX_SPEC_NODES = 100_000  # values after aliases are expanded (an alias "bomb" expands exponentially)


def _bounded_yaml(text: str, file: str) -> Any:
    """`yaml.safe_load`, refusing documents too large, too deep or too wide once aliases are expanded.

    The document is composed first (its size is linear in the text), then walked without recursion counting
    every value as many times as aliases repeat it, stopping at the first bound; only then is it built, from
    the same composed nodes.
    """
    if len(text) > MAX_SPEC_BYTES:
        raise InvalidSpec([SpecError(file, "<file>", f"is over {MAX_SPEC_BYTES} bytes; a spec is a page of YAML")])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise InvalidSpec([SpecError(file, "<yaml>", f"not valid YAML: {exc}".replace("\n", " "))]) from exc
    except RecursionError:
        raise InvalidSpec([SpecError(file, "<yaml>", f"nests deeper than {MAX_SPEC_DEPTH} levels")]) from None
    if node is None:
        return None
    count, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        count += 1
        if depth > MAX_SPEC_DEPTH:
            raise InvalidSpec([SpecError(file, "<yaml>", f"nests deeper than {MAX_SPEC_DEPTH} levels")])
        if count > MAX_SPEC_NODES:
            raise InvalidSpec(
                [SpecError(file, "<yaml>", f"holds over {MAX_SPEC_NODES} values once its aliases are expanded")]
            )
        if isinstance(current, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in current.value)
        elif isinstance(current, yaml.MappingNode):
            stack.extend((part, depth + 1) for pair in current.value for part in pair)
    try:
        return loader.construct_document(node)  # bounded now: aliases share what they repeat; parsed once
    except yaml.YAMLError as exc:
        raise InvalidSpec([SpecError(file, "<yaml>", f"not valid YAML: {exc}".replace("\n", " "))]) from exc


def parse_spec(text: str, file: str = "<string>") -> ModelSpec:
    raw = _bounded_yaml(text, file)
    if not isinstance(raw, dict):
        raise InvalidSpec([SpecError(file, "<root>", "a spec is a YAML mapping")])
    try:
        return ModelSpec.model_validate(raw)
    except ValidationError as exc:
        errors = [
            SpecError(file, ".".join(str(p) for p in err["loc"])[:200] or "<root>", err["msg"][:500])
            for err in exc.errors()
        ]
        raise InvalidSpec(errors) from exc
    except (OverflowError, RecursionError, ValueError) as exc:  # a validator past pydantic's own wrapping
        raise InvalidSpec([SpecError(file, "<root>", f"cannot be read as a spec: {type(exc).__name__}")]) from None
