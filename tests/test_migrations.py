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


def test_versions_registered_before_skops_keep_loading_as_joblib(empty_db_url: str) -> None:
    """0011 adds the artifact format: a row that existed before it reads as joblib, trusting nothing more."""
    from dataclasses import replace

    from modelgate.registry import InvalidInput

    engine = create_registry_engine(empty_db_url)
    upgrade(engine)
    Registry(engine).register("churn", replace(draft(), artifact_format="skops", trusted_types=("a.B", "a.A", "a.B")))
    assert Registry(engine).get_version("churn", 1).trusted_types == ("a.A", "a.B")  # sorted, once each
    downgrade(engine, "0010")  # the row stays, its new columns go
    with engine.begin() as conn:
        assert "artifact_format" not in {c["name"] for c in sa.inspect(conn).get_columns("model_version")}
    upgrade(engine)
    old = Registry(engine).get_version("churn", 1)
    assert (old.artifact_format, old.trusted_types) == ("joblib", ())
    with pytest.raises(InvalidInput, match="artifact_format must be joblib or skops, got 'pickle'"):
        Registry(engine).register("churn", replace(draft(), artifact_format="pickle"))  # type: ignore[arg-type]
    engine.dispose()
