"""Point-in-time reads: every audit event says which moment of the data it acted for.

- `registry_event.as_of`: the end of the data interval the run that wrote the event acted for (an Airflow
  run's data interval end; `now()` for the CLI). The champion "as of" a moment is the last promotion or
  rollback with `as_of` at or before it, so a backfill of October reads October's champion whatever was
  promoted since. Events written before this revision have none: readers take `at` for them.
- `hold`: a passing verdict that was not promoted (a dry run, a backfill, or a newer champion exists).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KINDS = ("register", "promote", "reject", "archive", "rollback", "deploy", "evaluate")


def upgrade() -> None:
    op.add_column("registry_event", sa.Column("as_of", sa.DateTime(timezone=True)))
    op.execute("CREATE INDEX ix_registry_event_model_kind_as_of ON registry_event (model, kind, (COALESCE(as_of, at)))")
    op.drop_constraint("ck_registry_event_kind", "registry_event", type_="check")
    kinds = ", ".join(f"'{k}'" for k in (*KINDS, "hold"))
    op.create_check_constraint("ck_registry_event_kind", "registry_event", f"kind IN ({kinds})")


def downgrade() -> None:
    # registry_event is append-only: hold events stay, so the old constraint is put back NOT VALID
    op.drop_constraint("ck_registry_event_kind", "registry_event", type_="check")
    kinds = ", ".join(f"'{k}'" for k in KINDS)
    op.execute(f"ALTER TABLE registry_event ADD CONSTRAINT ck_registry_event_kind CHECK (kind IN ({kinds})) NOT VALID")
    op.execute("DROP INDEX ix_registry_event_model_kind_as_of")
    op.drop_column("registry_event", "as_of")
