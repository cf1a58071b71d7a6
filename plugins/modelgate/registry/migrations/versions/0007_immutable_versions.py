"""Versions are immutable in the database itself, and a deployment left `deploying` by a dead process can end.

- `model_version` refuses DELETE, and any UPDATE other than of `status` and `tags`, with a row trigger: an
  artifact's URI and sha256, its metrics, window and lineage stay what was registered, whoever connects.
  Status moves only the ways the lifecycle does: challenger → champion, rejected or archived; champion →
  archived; archived → champion (a rollback). A rejected version stays rejected.
- `modelgate_writer` also loses DELETE on `model_version` (the trigger refuses it for every role).
- `deployment.status` may be `abandoned`: an attempt whose process died mid-rollout (kill -9), closed by the
  next rollout of the model once no rollout holds the model's lock.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION modelgate_version_immutable() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'model_version rows are immutable (DELETE of %/v% refused): archive it instead',
                    OLD.model, OLD.version USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            IF (to_jsonb(NEW) - 'status' - 'tags') IS DISTINCT FROM (to_jsonb(OLD) - 'status' - 'tags') THEN
                RAISE EXCEPTION 'model_version rows are immutable (% of %/v% may change status and tags only): '
                    'register a new version', TG_OP, OLD.model, OLD.version
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
                (OLD.status = 'challenger' AND NEW.status IN ('champion', 'rejected', 'archived'))
                OR (OLD.status = 'champion' AND NEW.status = 'archived')
                OR (OLD.status = 'archived' AND NEW.status = 'champion')
            ) THEN
                RAISE EXCEPTION 'model_version %/v% cannot go from % to %', OLD.model, OLD.version, OLD.status,
                    NEW.status USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER trg_model_version_immutable
        BEFORE UPDATE OR DELETE ON model_version
        FOR EACH ROW EXECUTE FUNCTION modelgate_version_immutable()
        """
    )
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'modelgate_writer') THEN
                REVOKE DELETE ON model_version FROM modelgate_writer;
            END IF;
        END
        $$
        """
    )
    op.drop_constraint("ck_deployment_status", "deployment", type_="check")
    op.create_check_constraint(
        "ck_deployment_status", "deployment", "status IN ('deploying', 'live', 'failed', 'superseded', 'abandoned')"
    )


def downgrade() -> None:
    op.execute("UPDATE deployment SET status = 'failed' WHERE status = 'abandoned'")
    op.drop_constraint("ck_deployment_status", "deployment", type_="check")
    op.create_check_constraint(
        "ck_deployment_status", "deployment", "status IN ('deploying', 'live', 'failed', 'superseded')"
    )
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'modelgate_writer') THEN
                GRANT DELETE ON model_version TO modelgate_writer;
            END IF;
        END
        $$
        """
    )
    op.execute("DROP TRIGGER trg_model_version_immutable ON model_version")
    op.execute("DROP FUNCTION modelgate_version_immutable()")
