"""Refit: a version may keep the model fitted without its holdout beside the served, refit one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_version", sa.Column("holdout_artifact_uri", sa.Text))
    op.add_column("model_version", sa.Column("holdout_artifact_sha256", sa.String(64)))
    op.create_check_constraint(
        "ck_model_version_holdout_artifact_pair",
        "model_version",
        "(holdout_artifact_uri IS NULL) = (holdout_artifact_sha256 IS NULL)",
    )


def downgrade() -> None:
    op.drop_constraint("ck_model_version_holdout_artifact_pair", "model_version", type_="check")
    op.drop_column("model_version", "holdout_artifact_sha256")
    op.drop_column("model_version", "holdout_artifact_uri")
