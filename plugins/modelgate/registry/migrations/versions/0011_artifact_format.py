"""Safe model files: how a version's artifact is serialized, and the types it may hold.

- `artifact_format`: `skops` (the default for models trained from now on; loading runs no pickle and builds
  only types skops trusts or the version lists) or `joblib` (a pickle, for what skops can't represent and
  for every version registered before this revision, which keep loading as they did).
- `trusted_types`: the types beyond skops' own trusted set that the artifact (and its holdout fit) holds,
  listed when the version was registered; loading refuses any other type.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "model_version", sa.Column("artifact_format", sa.Text, nullable=False, server_default=sa.text("'joblib'"))
    )
    op.add_column(
        "model_version", sa.Column("trusted_types", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb"))
    )
    op.create_check_constraint(
        "ck_model_version_artifact_format", "model_version", "artifact_format IN ('joblib', 'skops')"
    )


def downgrade() -> None:
    op.drop_constraint("ck_model_version_artifact_format", "model_version", type_="check")
    op.drop_column("model_version", "trusted_types")
    op.drop_column("model_version", "artifact_format")
