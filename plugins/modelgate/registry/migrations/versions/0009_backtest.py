"""Backtests: what `modelgate backtest` (or its DAG) found on a model's own history, kept against the model.

One row per run (`model`, `run_id`): the range replayed, the recommended policy with why and its spec diff, the
per-policy scores (tuning and held-out parts) and the HTML report. Re-running the same Airflow run overwrites.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backtest_run",
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
    op.create_index("ix_backtest_run_model_created", "backtest_run", ["model", "created_at"])
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'modelgate_writer') THEN
                GRANT ALL ON backtest_run TO modelgate_owner;
                GRANT SELECT ON backtest_run TO modelgate_reader, modelgate_writer;
                GRANT INSERT, UPDATE, DELETE ON backtest_run TO modelgate_writer;
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    op.drop_table("backtest_run")
