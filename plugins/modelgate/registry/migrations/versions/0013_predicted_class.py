"""Multiclass batch scores: `batch_prediction.predicted_class`, the class a multiclass model predicted.

`label` keeps the class's position in the spec's `classes` and `score` its probability; the class itself is
kept as text, so a consumer needs no spec to read it. Empty for binary classifiers and regressors.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batch_prediction", sa.Column("predicted_class", sa.Text))


def downgrade() -> None:
    op.drop_column("batch_prediction", "predicted_class")
