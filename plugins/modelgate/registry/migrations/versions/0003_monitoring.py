"""Monitoring timeline: drift results and retrain decisions, one row per (model, interval).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_result",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("interval_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("champion_version", sa.Integer),
        sa.Column("scores", JSONB, nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("drifted", sa.Boolean, nullable=False),
        sa.Column("reference_rows", sa.Integer, nullable=False),
        sa.Column("current_rows", sa.Integer, nullable=False),
        sa.Column("report_uri", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("model", "interval_start", "interval_end", name="pk_drift_result"),
        sa.ForeignKeyConstraint(["model"], ["registered_model.name"], name="fk_drift_result_model"),
        sa.CheckConstraint("share >= 0 AND share <= 1", name="ck_drift_result_share"),
    )
    op.create_table(
        "retrain_decision",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("interval_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retrain", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("inputs", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("run_id", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("model", "interval_start", "interval_end", name="pk_retrain_decision"),
        sa.ForeignKeyConstraint(["model"], ["registered_model.name"], name="fk_retrain_decision_model"),
    )


def downgrade() -> None:
    op.drop_table("retrain_decision")
    op.drop_table("drift_result")
