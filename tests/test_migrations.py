"""Alembic revisions: upgrade from empty, downgrade to base, upgrade again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelgate.registry import Registry
from modelgate.registry.connection import create_registry_engine
from modelgate.registry.migrate import MIGRATIONS_DIR, current_revision, downgrade, head_revision, upgrade
from tests.helpers import draft

pytestmark = pytest.mark.integration

TABLES = {"registered_model", "model_version", "model_alias", "registry_event", "drift_result", "retrain_decision"}


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    engine = create_registry_engine(empty_db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _tables(engine) >= TABLES
    Registry(engine).register("churn", draft())

    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert _tables(engine) == set()
    with engine.connect() as conn:
        functions = conn.execute(sa.text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'modelgate_%'")).scalar()
    assert functions == 0

    upgrade(engine)
    registry = Registry(engine)
    assert registry.register("churn", draft()).version == 1  # a clean slate
    engine.dispose()


def test_revision_files_are_named_rev_slug() -> None:
    names = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py"))
    assert names and all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.py", n) for n in names)
    for name in names:
        text = (Path(MIGRATIONS_DIR) / "versions" / name).read_text()
        assert f'revision = "{name[:4]}"' in text
        assert "def downgrade() -> None:\n    pass" not in text  # real downgrades only
