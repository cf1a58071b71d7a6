"""Initial registry: models, versions, aliases, audit events.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_EMPTY = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.create_table(
        "registered_model",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("name", name="pk_registered_model"),
        sa.CheckConstraint(r"name ~ '^[a-z][a-z0-9_-]{0,63}$'", name="ck_registered_model_name"),
    )
    op.create_table(
        "model_version",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_size", sa.BigInteger, nullable=False),
        sa.Column("framework", sa.Text, nullable=False),
        sa.Column("library_versions", JSONB, nullable=False, server_default=_EMPTY),
        sa.Column("params", JSONB, nullable=False, server_default=_EMPTY),
        sa.Column("metrics", JSONB, nullable=False, server_default=_EMPTY),
        sa.Column("tags", JSONB, nullable=False, server_default=_EMPTY),
        sa.Column("window_start", sa.DateTime(timezone=True)),
        sa.Column("window_end", sa.DateTime(timezone=True)),
        sa.Column("data_fingerprint", sa.Text),
        sa.Column("row_count", sa.BigInteger),
        sa.Column("feature_schema", JSONB, nullable=False, server_default=_EMPTY),
        sa.Column("code_version", sa.Text),
        sa.Column("reference_uri", sa.Text),
        sa.Column("reference_sha256", sa.String(64)),
        sa.Column("description", sa.Text),
        sa.Column("source_dag_id", sa.Text, nullable=False),
        sa.Column("source_run_id", sa.Text, nullable=False),
        sa.Column("source_task_id", sa.Text, nullable=False),
        sa.Column("source_try", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.Text),
        sa.PrimaryKeyConstraint("model", "version", name="pk_model_version"),
        sa.ForeignKeyConstraint(["model"], ["registered_model.name"], name="fk_model_version_model"),
        sa.UniqueConstraint(
            "model", "source_dag_id", "source_run_id", "source_task_id", name="uq_model_version_source"
        ),
        sa.CheckConstraint(
            "status IN ('challenger', 'champion', 'archived', 'rejected')", name="ck_model_version_status"
        ),
        sa.CheckConstraint("version > 0", name="ck_model_version_positive"),
        sa.CheckConstraint("artifact_sha256 ~ '^[0-9a-f]{64}$'", name="ck_model_version_sha256"),
    )
    # Whatever the code does, the database allows one champion per model.
    op.create_index(
        "uq_model_version_one_champion",
        "model_version",
        ["model"],
        unique=True,
        postgresql_where=sa.text("status = 'champion'"),
    )
    op.create_index("ix_model_version_model_status", "model_version", ["model", "status"])
    op.create_table(
        "model_alias",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("alias", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("model", "alias", name="pk_model_alias"),
        sa.ForeignKeyConstraint(
            ["model", "version"],
            ["model_version.model", "model_version.version"],
            name="fk_model_alias_version",
        ),
    )
    op.create_table(
        "registry_event",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_registry_event"),
        sa.ForeignKeyConstraint(["model"], ["registered_model.name"], name="fk_registry_event_model"),
        sa.CheckConstraint(
            "kind IN ('register', 'promote', 'reject', 'archive', 'rollback', 'deploy', 'evaluate')",
            name="ck_registry_event_kind",
        ),
    )
    op.create_index("ix_registry_event_model_id", "registry_event", ["model", "id"])


def downgrade() -> None:
    op.drop_index("ix_registry_event_model_id", table_name="registry_event")
    op.drop_table("registry_event")
    op.drop_table("model_alias")
    op.drop_index("ix_model_version_model_status", table_name="model_version")
    op.drop_index("uq_model_version_one_champion", table_name="model_version")
    op.drop_table("model_version")
    op.drop_table("registered_model")
