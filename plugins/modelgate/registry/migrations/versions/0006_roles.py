"""Roles and a TRUNCATE guard: the audit log cannot be wiped, and each caller gets only what it needs.

- `registry_event` refuses TRUNCATE with a statement trigger (UPDATE and DELETE already raise, 0002), and
  so do the tables of versions and aliases, which a TRUNCATE … CASCADE would otherwise wipe.
- Three NOLOGIN group roles, created when missing (roles are cluster-wide; several registries share them):
  `modelgate_owner` owns the tables and may change the schema (migrations); `modelgate_writer` (DAG tasks)
  reads and writes rows but never truncates, never updates or deletes events and has no DDL;
  `modelgate_reader` (UI, `serve`, CLI reads) only reads. Log-in users join one of them
  (`CREATE ROLE tasks LOGIN PASSWORD '…' IN ROLE modelgate_writer`).

`batch_prediction.score` may be empty: Vertex AI batch rows of a classifier carry the predicted label only.

A migrating user that may not create roles (neither superuser nor CREATEROLE) gets the trigger only; the
roles are then left to the DBA (docs/security.md shows the statements).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = [
    "registered_model",
    "model_version",
    "model_alias",
    "registry_event",
    "drift_result",
    "retrain_decision",
    "deployment",
    "batch_prediction",
    "alembic_version",
]
GUARDED = ["registered_model", "model_version", "model_alias"]  # registry_event has its own message
ROWS = [t for t in TABLES if t not in ("registry_event", "alembic_version")]


def upgrade() -> None:
    # Vertex AI's prebuilt container gives labels, not probabilities: such rows leave the score empty
    op.alter_column("batch_prediction", "score", nullable=True)
    op.execute(
        """
        CREATE TRIGGER trg_registry_event_no_truncate
        BEFORE TRUNCATE ON registry_event
        FOR EACH STATEMENT EXECUTE FUNCTION modelgate_registry_event_append_only()
        """
    )
    op.execute(
        """
        CREATE FUNCTION modelgate_no_truncate() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% holds registry history: TRUNCATE refused', TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END;
        $$
        """
    )
    for table in GUARDED:
        op.execute(
            f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION modelgate_no_truncate()"
        )
    tables = ", ".join(TABLES)
    rows = ", ".join(ROWS)
    quoted = ", ".join(f"'{t}'" for t in TABLES)
    op.execute(
        f"""
        DO $$
        DECLARE
            may boolean;
            t text;
        BEGIN
            SELECT rolsuper OR rolcreaterole INTO may FROM pg_roles WHERE rolname = current_user;
            IF NOT may THEN
                RAISE NOTICE 'modelgate: % may not create roles; skipping modelgate_owner/writer/reader', current_user;
                RETURN;
            END IF;
            BEGIN  -- another registry in this cluster may create it at the same moment
                CREATE ROLE modelgate_owner NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
            BEGIN  -- another registry in this cluster may create it at the same moment
                CREATE ROLE modelgate_writer NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
            BEGIN  -- another registry in this cluster may create it at the same moment
                CREATE ROLE modelgate_reader NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
            EXECUTE format('GRANT CONNECT ON DATABASE %I TO modelgate_owner, modelgate_writer, modelgate_reader',
                           current_database());
            EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO modelgate_owner', current_schema());
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO modelgate_writer, modelgate_reader', current_schema());
            GRANT ALL ON {tables} TO modelgate_owner;
            GRANT SELECT ON {tables} TO modelgate_reader, modelgate_writer;
            GRANT INSERT ON registry_event TO modelgate_writer;
            GRANT INSERT, UPDATE, DELETE ON {rows} TO modelgate_writer;
            EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO modelgate_writer, modelgate_owner',
                           current_schema());
            IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                FOREACH t IN ARRAY ARRAY[{quoted}] LOOP
                    EXECUTE format('ALTER TABLE %I OWNER TO modelgate_owner', t);
                END LOOP;
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    tables = ", ".join(TABLES)
    quoted = ", ".join(f"'{t}'" for t in TABLES)
    op.execute(
        f"""
        DO $$
        DECLARE
            t text;
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'modelgate_writer') THEN
                FOREACH t IN ARRAY ARRAY[{quoted}] LOOP
                    EXECUTE format('ALTER TABLE %I OWNER TO %I', t, current_user);
                END LOOP;
                REVOKE ALL ON {tables} FROM modelgate_owner, modelgate_writer, modelgate_reader;
                EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM modelgate_owner, modelgate_writer',
                               current_schema());
                EXECUTE format('REVOKE ALL ON SCHEMA %I FROM modelgate_owner, modelgate_writer, modelgate_reader',
                               current_schema());
                EXECUTE format('REVOKE ALL ON DATABASE %I FROM modelgate_owner, modelgate_writer, modelgate_reader',
                               current_database());
            END IF;
        END
        $$
        """
    )
    for table in GUARDED:
        op.execute(f"DROP TRIGGER trg_{table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION modelgate_no_truncate()")
    op.execute("DROP TRIGGER trg_registry_event_no_truncate ON registry_event")
    op.execute("UPDATE batch_prediction SET score = label WHERE score IS NULL")  # 0005's meaning: label as score
    op.alter_column("batch_prediction", "score", nullable=False)
