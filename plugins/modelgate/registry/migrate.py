"""Schema management with Alembic, run programmatically against the registry's own engine."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from modelgate.registry.errors import SchemaOutOfDate

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
UPGRADE_COMMAND = "modelgate db upgrade"


def _config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)


def downgrade(engine: sa.Engine, revision: str = "base") -> None:
    with engine.begin() as conn:
        command.downgrade(_config(conn), revision)


def ensure_current(engine: sa.Engine) -> None:
    """Refuse to run on a schema that is not at head, naming the command that fixes it."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"registry schema is at revision {current or 'none (empty database)'}, this modelgate needs "
            f"{head}: run `{UPGRADE_COMMAND}`"
        )
