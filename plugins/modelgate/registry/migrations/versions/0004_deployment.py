"""Deployments and batch predictions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("previous_version", sa.Integer),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("endpoint", sa.Text),
        sa.Column("deployed_ids", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("traffic", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_deployment"),
        sa.ForeignKeyConstraint(
            ["model", "version"], ["model_version.model", "model_version.version"], name="fk_deployment_version"
        ),
        sa.CheckConstraint("status IN ('deploying', 'live', 'failed', 'superseded')", name="ck_deployment_status"),
    )
    op.create_index("ix_deployment_model_id", "deployment", ["model", "id"])
    op.create_table(
        "batch_prediction",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("interval_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_id", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("label", sa.Float),
        sa.Column("risk_tier", sa.Text),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("model", "interval_start", "interval_end", "row_id", name="pk_batch_prediction"),
        sa.ForeignKeyConstraint(
            ["model", "model_version"],
            ["model_version.model", "model_version.version"],
            name="fk_batch_prediction_version",
        ),
    )


def downgrade() -> None:
    op.drop_table("batch_prediction")
    op.drop_index("ix_deployment_model_id", table_name="deployment")
    op.drop_table("deployment")
