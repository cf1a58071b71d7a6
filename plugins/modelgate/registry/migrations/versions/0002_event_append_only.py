"""Make registry_event append-only: UPDATE and DELETE raise in the database itself.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION modelgate_registry_event_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'registry_event is append-only (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER trg_registry_event_append_only
        BEFORE UPDATE OR DELETE ON registry_event
        FOR EACH ROW EXECUTE FUNCTION modelgate_registry_event_append_only()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER trg_registry_event_append_only ON registry_event")
    op.execute("DROP FUNCTION modelgate_registry_event_append_only()")
