"""SQLAlchemy Core tables of the registry; the Alembic revisions are the source of truth for DDL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

MODEL_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
STATUSES = ("challenger", "champion", "archived", "rejected")
EVENT_KINDS = ("register", "promote", "reject", "archive", "rollback", "deploy", "evaluate", "hold", "experiment")

metadata = sa.MetaData()

registered_model = sa.Table(
    "registered_model",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

model_version = sa.Table(
    "model_version",
    metadata,
    sa.Column("model", sa.Text, sa.ForeignKey("registered_model.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("artifact_sha256", sa.String(64), nullable=False),
    sa.Column("artifact_size", sa.BigInteger, nullable=False),
    sa.Column("framework", sa.Text, nullable=False),
    sa.Column("library_versions", JSONB, nullable=False),
    sa.Column("params", JSONB, nullable=False),
    sa.Column("metrics", JSONB, nullable=False),
    sa.Column("tags", JSONB, nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True)),
    sa.Column("window_end", sa.DateTime(timezone=True)),
    sa.Column("data_fingerprint", sa.Text),
    sa.Column("row_count", sa.BigInteger),
    sa.Column("feature_schema", JSONB, nullable=False),
    sa.Column("code_version", sa.Text),
    sa.Column("reference_uri", sa.Text),
    sa.Column("reference_sha256", sa.String(64)),
    sa.Column("holdout_artifact_uri", sa.Text),
    sa.Column("holdout_artifact_sha256", sa.String(64)),
    sa.Column("artifact_format", sa.Text, nullable=False, server_default=sa.text("'joblib'")),
    sa.Column("trusted_types", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("description", sa.Text),
    sa.Column("source_dag_id", sa.Text, nullable=False),
    sa.Column("source_run_id", sa.Text, nullable=False),
    sa.Column("source_task_id", sa.Text, nullable=False),
    sa.Column("source_try", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("created_by", sa.Text),
)

model_alias = sa.Table(
    "model_alias",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("alias", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

registry_event = sa.Table(
    "registry_event",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("from_version", sa.Integer),
    sa.Column("to_version", sa.Integer),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("verdict", JSONB),
    sa.Column("dag_id", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("task_id", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("as_of", sa.DateTime(timezone=True)),  # the data time the event acted for (0008); None: `at`
)

drift_result = sa.Table(
    "drift_result",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("interval_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("interval_end", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("champion_version", sa.Integer),
    sa.Column("scores", JSONB, nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("reference_rows", sa.Integer, nullable=False),
    sa.Column("current_rows", sa.Integer, nullable=False),
    sa.Column("report_uri", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

retrain_decision = sa.Table(
    "retrain_decision",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("interval_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("interval_end", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("retrain", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("inputs", JSONB, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

deployment = sa.Table(
    "deployment",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous_version", sa.Integer),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("endpoint", sa.Text),
    sa.Column("deployed_ids", JSONB, nullable=False),
    sa.Column("traffic", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

batch_prediction = sa.Table(
    "batch_prediction",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("interval_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("interval_end", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("row_id", sa.Text, primary_key=True),
    sa.Column("score", sa.Float),  # empty when the scorer gives labels only (Vertex AI)
    sa.Column("label", sa.Float),
    sa.Column("risk_tier", sa.Text),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("predicted_class", sa.Text),  # multiclass: the class `label` is the position of (0013)
)

backtest_run = sa.Table(
    "backtest_run",
    metadata,
    sa.Column("model", sa.Text, sa.ForeignKey("registered_model.name"), primary_key=True),
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("first_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("split_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("intervals", sa.Integer, nullable=False),
    sa.Column("recommended", sa.Text, nullable=False),
    sa.Column("why", sa.Text, nullable=False),
    sa.Column("diff", sa.Text, nullable=False),
    sa.Column("result", JSONB, nullable=False),
    sa.Column("report_uri", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

experiment = sa.Table(
    "experiment",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, sa.ForeignKey("registered_model.name"), nullable=False),
    sa.Column("champion_version", sa.Integer, nullable=False),
    sa.Column("challenger_version", sa.Integer, nullable=False),
    sa.Column("split_percent", sa.Float, nullable=False),
    sa.Column("salt", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("settings", JSONB, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("started_by", sa.Text, nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("ended_by", sa.Text),
    sa.Column("end_reason", sa.Text),
)

experiment_look = sa.Table(
    "experiment_look",
    metadata,
    sa.Column("experiment_id", sa.BigInteger, sa.ForeignKey("experiment.id"), primary_key=True),
    sa.Column("interval_end", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("look", JSONB, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

prediction_log = sa.Table(
    "prediction_log",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("request_key", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("experiment_id", sa.BigInteger),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

outcome = sa.Table(
    "outcome",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("request_key", sa.Text, primary_key=True),
    sa.Column("outcome", sa.Float, nullable=False),
    sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
