"""Schema management with Alembic, run programmatically against the registry's own engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from modelgate.registry.errors import InvalidInput, RegistryUnavailable, SchemaOutOfDate

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


def _known(revision: str) -> str:
    """The revision if Alembic knows it (an id, `head` or `base`); else a one-line error listing the known ones."""
    script = ScriptDirectory.from_config(_config())
    known = [r.revision for r in reversed(list(script.walk_revisions()))]
    if revision in ("head", "base", *known):
        return revision
    raise InvalidInput(f"unknown registry schema revision {revision!r}; known: base, {', '.join(known)}, head")


def _run(engine: sa.Engine, step: Callable[[Config], None]) -> None:
    try:
        with engine.begin() as conn:
            step(_config(conn))
    except sa.exc.OperationalError as exc:
        raise RegistryUnavailable(f"registry database unreachable: {str(exc.orig).strip().splitlines()[0]}") from None


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    revision = _known(revision)
    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: sa.Engine, revision: str = "base") -> None:
    revision = _known(revision)
    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def ensure_current(engine: sa.Engine) -> None:
    """Refuse to run on a schema that is not at head, naming the command that fixes it."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"registry schema is at revision {current or 'none (empty database)'}, this modelgate needs "
            f"{head}: run `{UPGRADE_COMMAND}`"
        )
