"""Loading windows from a Postgres source: COPY gives exactly what read_sql would; bad sources are named."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from modelgate.data import DataError, Interval, _finish, load_window
from modelgate.datasets.churn import write_days
from modelgate.spec import parse_spec
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

SPEC = parse_spec((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
WINDOW = Interval(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC))


def test_copy_reader_matches_read_sql(registry_url: str) -> None:
    write_days(registry_url, dt.date(2026, 1, 1), dt.date(2026, 1, 4), rows_per_day=50)
    engine = sa.create_engine(registry_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # the awkward cases: NULLs, an empty string, a numeric-looking id
        conn.execute(
            sa.text(
                "UPDATE churn_events SET monthly_charges = NULL, contract = NULL WHERE customer_id = '2026-01-01-00001'"
            )
        )
        conn.execute(sa.text("UPDATE churn_events SET payment_method = '' WHERE customer_id = '2026-01-01-00002'"))
        conn.execute(sa.text("UPDATE churn_events SET customer_id = '007' WHERE customer_id = '2026-01-01-00003'"))
    columns = ", ".join([SPEC.id_column, SPEC.time_column, *SPEC.feature_names, SPEC.target])
    with engine.connect() as conn:
        expected = pd.read_sql(
            sa.text(f"SELECT {columns} FROM churn_events WHERE event_time >= :s AND event_time < :e"),
            conn,
            params={"s": WINDOW.start, "e": WINDOW.end},
        )
    engine.dispose()
    got = load_window(SPEC, WINDOW, url=registry_url)
    pd.testing.assert_frame_equal(got, _finish(SPEC, expected), check_dtype=True)
    assert len(got) == 100
    row = got.set_index("customer_id")
    assert pd.isna(row.loc["2026-01-01-00001", "monthly_charges"]) and pd.isna(row.loc["2026-01-01-00001", "contract"])
    assert row.loc["2026-01-01-00002", "payment_method"] == ""
    assert "007" in row.index


def test_missing_table_and_time_column_are_named(registry_url: str) -> None:
    with pytest.raises(DataError, match="table public.churn_events does not exist"):
        load_window(SPEC, WINDOW, url=registry_url)
    with pytest.raises(DataError, match="a Postgres source needs a database URL"):
        load_window(SPEC, WINDOW, url=None)
    with pytest.raises(DataError, match="empty interval"):
        Interval(WINDOW.end, WINDOW.start)
    with pytest.raises(DataError, match="timezone-aware"):
        Interval(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))


def _champion(registry_url: str, tmp_path) -> tuple:  # type: ignore[no-untyped-def]
    from modelgate.registry import ArtifactStore, Registry, Source, VersionDraft
    from modelgate.registry.connection import create_registry_engine
    from modelgate.training import train

    registry = Registry(create_registry_engine(registry_url))
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    (stored,) = artifacts.save_models(train(SPEC, load_window(SPEC, WINDOW, url=registry_url)).pipeline)
    draft = VersionDraft(
        stored.uri,
        stored.sha256,
        stored.size,
        Source("tests", "r", "train"),
        artifact_format=stored.format,
        trusted_types=stored.trusted,
    )
    version = registry.register(SPEC.name, draft).version
    registry.promote(SPEC.name, version, expected_champion=None, actor="tests")
    return registry, artifacts


def test_streamed_batch_scoring_matches_scoring_the_loaded_window(registry_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ADBC batches, scored as they arrive, give every row the score of the COPY-loaded window: the same
    NULLs, empty strings and numeric-looking ids, whatever the chunking."""
    import numpy as np

    from modelgate.deploy.batch import batch_predict, risk_tiers, score_frame

    write_days(registry_url, dt.date(2026, 1, 1), dt.date(2026, 1, 4), rows_per_day=150)
    engine = sa.create_engine(registry_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE churn_events SET monthly_charges = NULL, contract = NULL WHERE customer_id = '2026-01-01-00001'"
            )
        )
        conn.execute(sa.text("UPDATE churn_events SET payment_method = '' WHERE customer_id = '2026-01-01-00002'"))
        conn.execute(sa.text("UPDATE churn_events SET customer_id = '007' WHERE customer_id = '2026-01-01-00003'"))
    registry, artifacts = _champion(registry_url, tmp_path)
    frame = load_window(SPEC, WINDOW, url=registry_url)
    champion = registry.get_champion(SPEC.name)
    assert champion.artifact_format == "skops"  # the registry keeps the format and the types it may build
    assert champion.trusted_types == tuple(sorted(champion.trusted_types)) and champion.trusted_types
    model = artifacts.load_version(champion)
    expected = pd.Series(score_frame(SPEC, model, frame), index=frame[SPEC.id_column].astype(str))
    for chunk_rows in (37, 1_000_000):  # many batches through the read-ahead thread, and one
        result = batch_predict(
            SPEC, WINDOW, registry=registry, artifacts=artifacts, data_url=registry_url, chunk_rows=chunk_rows
        )
        assert result.rows == 300
        with engine.connect() as conn:
            stored = pd.read_sql(sa.text("SELECT row_id, score, label, risk_tier FROM batch_prediction"), conn)
        assert len(stored) == 300 and "007" in set(stored.row_id)
        got = stored.set_index("row_id")
        np.testing.assert_allclose(got.loc[expected.index, "score"].to_numpy(), expected.to_numpy(), rtol=1e-12)
        assert got.loc[expected.index, "risk_tier"].tolist() == risk_tiers(SPEC, expected.to_numpy())
        assert ((got.score >= 0.5).astype(float) == got.label).all()
    engine.dispose()
    registry.close()


def test_batch_rows_are_replaced_all_at_once_or_not_at_all(registry_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from modelgate.deploy.batch import prediction_batch, write_batches

    write_days(registry_url, dt.date(2026, 1, 1), dt.date(2026, 1, 3), rows_per_day=20)
    registry, _ = _champion(registry_url, tmp_path)
    old = prediction_batch(SPEC, WINDOW, 1, ["a", "b"], np.array([0.1, 0.9]), [0.0, 1.0])
    assert write_batches(registry, SPEC, WINDOW, [old]) == 2

    def failing_part_way():  # type: ignore[no-untyped-def]
        yield prediction_batch(SPEC, WINDOW, 1, ["c"], np.array([0.5]), [1.0])
        raise RuntimeError("the scorer died on the second batch")

    with pytest.raises(RuntimeError, match="second batch"):
        write_batches(registry, SPEC, WINDOW, failing_part_way())
    with registry.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT row_id, risk_tier FROM batch_prediction ORDER BY row_id")).all()
    assert [tuple(r) for r in rows] == [("a", "low"), ("b", "high")]  # the delete was rolled back with the rest
    registry.close()


def test_a_refused_model_stops_the_read_ahead_and_writes_nothing(registry_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Reading starts while the model loads; a tampered artifact is refused, the reader stops, old rows stay."""
    import threading
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    import numpy as np

    from modelgate.deploy.batch import batch_predict, prediction_batch, write_batches
    from modelgate.registry import ArtifactIntegrityError

    write_days(registry_url, dt.date(2026, 1, 1), dt.date(2026, 1, 3), rows_per_day=400)
    registry, artifacts = _champion(registry_url, tmp_path)
    write_batches(registry, SPEC, WINDOW, [prediction_batch(SPEC, WINDOW, 1, ["a"], np.array([0.1]), [0.0])])
    champion = registry.get_champion(SPEC.name)
    path = Path(unquote(urlparse(champion.artifact_uri).path))
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        batch_predict(SPEC, WINDOW, registry=registry, artifacts=artifacts, data_url=registry_url, chunk_rows=10)
    assert not [t for t in threading.enumerate() if t.name.startswith("modelgate-batch-")]  # stopped, not leaked
    with registry.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT row_id FROM batch_prediction")).scalars().all()
    assert rows == ["a"]
    registry.close()


def test_risk_tiers_are_vectorised_and_nan_has_none() -> None:
    import numpy as np

    from modelgate.deploy.batch import risk_tiers

    scores = np.array([np.nan, -1.0, 0.0, 0.3, 0.6, 2.0])
    loop = [
        None
        if np.isnan(s)
        else max((n for n, c in SPEC.risk_tiers.items() if s >= c), key=SPEC.risk_tiers.get, default=None)
        for s in scores
    ]
    assert risk_tiers(SPEC, scores) == loop
