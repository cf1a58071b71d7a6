"""A/B experiments on live outcomes: the prediction log, outcomes, experiments and their looks.

- `prediction_log`: every prediction `modelgate serve` answered and every batch-scored row, with its request
  key, version, score and time (and the experiment that routed it). Append-only: UPDATE raises; deleting old
  rows (retention) is allowed. A batch row is logged once per (model, key, time): re-scoring an interval adds
  nothing.
- `outcome`: the label that arrived later for a key, when it was observed and when it was loaded. One per key.
- `experiment`: champion vs challenger on a sticky share of keys; at most one running per model.
- `experiment_look`: one analysis per experiment and interval (re-running an interval rewrites it).
- `registry_event.kind` gains `experiment` (started, stopped, promoted).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

KINDS = ("register", "promote", "reject", "archive", "rollback", "deploy", "evaluate", "hold")
TABLES = ("prediction_log", "outcome", "experiment", "experiment_look")


def upgrade() -> None:
    op.create_table(
        "experiment",
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
        sa.CheckConstraint("status IN ('running', 'promoted', 'stopped')", name="ck_experiment_status"),
        sa.CheckConstraint("split_percent > 0 AND split_percent < 100", name="ck_experiment_split"),
        sa.CheckConstraint("champion_version <> challenger_version", name="ck_experiment_two_versions"),
    )
    op.execute("CREATE UNIQUE INDEX ux_experiment_running ON experiment (model) WHERE status = 'running'")
    op.create_table(
        "experiment_look",
        sa.Column("experiment_id", sa.BigInteger, sa.ForeignKey("experiment.id"), primary_key=True),
        sa.Column("interval_end", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("look", JSONB, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("request_key", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("experiment_id", sa.BigInteger),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("source IN ('serve', 'batch')", name="ck_prediction_log_source"),
    )
    op.create_index("ix_prediction_log_model_key", "prediction_log", ["model", "request_key"])
    op.create_index("ix_prediction_log_experiment", "prediction_log", ["experiment_id", "request_key", "predicted_at"])
    op.execute(
        "CREATE UNIQUE INDEX ux_prediction_log_batch ON prediction_log (model, request_key, predicted_at) "
        "WHERE source = 'batch'"
    )
    op.execute(
        """
        CREATE FUNCTION modelgate_prediction_log_no_update() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'prediction_log is append-only (UPDATE refused)'
                USING ERRCODE = 'integrity_constraint_violation';
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER trg_prediction_log_no_update BEFORE UPDATE ON prediction_log "
        "FOR EACH ROW EXECUTE FUNCTION modelgate_prediction_log_no_update()"
    )
    op.create_table(
        "outcome",
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("request_key", sa.Text, primary_key=True),
        sa.Column("outcome", sa.Float, nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.drop_constraint("ck_registry_event_kind", "registry_event", type_="check")
    kinds = ", ".join(f"'{k}'" for k in (*KINDS, "experiment"))
    op.create_check_constraint("ck_registry_event_kind", "registry_event", f"kind IN ({kinds})")
    tables = ", ".join(TABLES)
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'modelgate_writer') THEN
                GRANT ALL ON {tables} TO modelgate_owner;
                GRANT SELECT ON {tables} TO modelgate_reader, modelgate_writer;
                GRANT INSERT, UPDATE, DELETE ON {tables} TO modelgate_writer;
                GRANT USAGE, SELECT ON SEQUENCE experiment_id_seq, prediction_log_id_seq
                    TO modelgate_writer, modelgate_owner;
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    op.drop_constraint("ck_registry_event_kind", "registry_event", type_="check")
    kinds = ", ".join(f"'{k}'" for k in KINDS)
    op.execute(f"ALTER TABLE registry_event ADD CONSTRAINT ck_registry_event_kind CHECK (kind IN ({kinds})) NOT VALID")
    op.drop_table("outcome")
    op.execute("DROP TRIGGER trg_prediction_log_no_update ON prediction_log")
    op.execute("DROP FUNCTION modelgate_prediction_log_no_update()")
    op.drop_table("prediction_log")
    op.drop_table("experiment_look")
    op.drop_table("experiment")
