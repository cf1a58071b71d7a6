"""Every registry operation and error path, against the real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from modelgate.registry import (
    ANY_CHAMPION,
    EventKind,
    InvalidInput,
    InvalidModelName,
    InvalidTransition,
    ModelNotFound,
    NoChampion,
    PromotionConflict,
    Registry,
    RunRef,
    SchemaOutOfDate,
    VersionNotFound,
    VersionStatus,
)
from modelgate.registry.connection import create_registry_engine, normalize_url
from modelgate.registry.migrate import downgrade
from tests.helpers import draft

pytestmark = pytest.mark.integration

UTC = dt.UTC


def _two_versions(registry: Registry) -> None:
    registry.register("churn", draft("r1"))
    registry.register("churn", draft("r2"))


@pytest.mark.parametrize("bad", ["", "Churn", "1churn", "churn model", "a" * 65, "churn!", "_x"])
def test_model_name_is_validated(registry: Registry, bad: str) -> None:
    with pytest.raises(InvalidModelName, match="invalid model name"):
        registry.register(bad, draft())


def test_database_refuses_bad_names_even_without_the_code(registry: Registry) -> None:
    with registry.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="ck_registered_model_name"):
        conn.execute(sa.text("INSERT INTO registered_model(name) VALUES ('Bad Name')"))


def test_register_allocates_consecutive_versions_and_records_everything(registry: Registry) -> None:
    start, end = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 29, tzinfo=UTC)
    v1 = registry.register(
        "churn",
        draft(
            "r1",
            window_start=start,
            window_end=end,
            data_fingerprint="fp1",
            row_count=1000,
            feature_schema={"tenure": "numeric"},
            tags={"team": "growth"},
            code_version="abc123",
            library_versions={"scikit-learn": "1.9"},
        ),
        description="telco churn",
    )
    v2 = registry.register("churn", draft("r2"))
    assert (v1.version, v2.version) == (1, 2)
    assert v1.status is VersionStatus.CHALLENGER
    assert v1.window_start == start and v1.window_end == end
    assert v1.row_count == 1000 and v1.data_fingerprint == "fp1" and v1.code_version == "abc123"
    assert v1.feature_schema == {"tenure": "numeric"} and v1.tags == {"team": "growth"}
    assert v1.source.run_id == "r1" and v1.source.try_number == 1
    assert registry.get_model("churn").description == "telco churn"
    assert registry.get_version("churn", 1) == v1


def test_registration_is_idempotent_on_source_key(registry: Registry) -> None:
    results = [registry.register("churn", draft("same-run")) for _ in range(3)]
    assert {r.version for r in results} == {1}
    assert len(registry.list_versions("churn")) == 1
    assert [e.kind for e in registry.history("churn")] == [EventKind.REGISTER]


def test_versions_are_numbered_per_model(registry: Registry) -> None:
    registry.register("churn", draft("a"))
    registry.register("churn", draft("b"))
    other = registry.register("fraud", draft("a"))
    assert other.version == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"artifact_sha256": "xyz"}, "artifact_sha256 must be 64 lowercase hex"),
        ({"artifact_size": -1}, "artifact_size must be >= 0"),
        ({"artifact_uri": ""}, "artifact_uri is required"),
        ({"metrics": {"auc": "high"}}, "metric 'auc' must be a finite number"),
        ({"metrics": {"auc": float("nan")}}, "metric 'auc' must be a finite number"),
        (
            {
                "window_start": dt.datetime(2026, 2, 1, tzinfo=UTC),
                "window_end": dt.datetime(2026, 1, 1, tzinfo=UTC),
            },
            "window_start is after window_end",
        ),
    ],
)
def test_register_rejects_bad_drafts_and_writes_nothing(registry: Registry, overrides: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        registry.register("churn", draft(**overrides))
    assert registry.list_models() == []


def test_first_promotion_needs_expected_none(registry: Registry) -> None:
    _two_versions(registry)
    change = registry.promote("churn", 1, expected_champion=None, actor="alice", reason="first")
    assert change.changed and change.previous_version is None
    champion = registry.get_champion("churn")
    assert champion is not None and champion.version == 1 and champion.status is VersionStatus.CHAMPION


def test_promotion_archives_old_champion_and_appends_one_event(registry: Registry) -> None:
    _two_versions(registry)
    registry.promote("churn", 1, expected_champion=None, actor="a")
    verdict = {"decision": "promote", "primary": {"champion": 0.8, "challenger": 0.85}}
    run = RunRef("modelgate_retrain__churn", "scheduled__2026-01-29", "promote")
    change = registry.promote(
        "churn", 2, expected_champion=1, actor="airflow", reason="better", verdict=verdict, run=run
    )
    assert change.previous_version == 1
    assert registry.get_version("churn", 1).status is VersionStatus.ARCHIVED
    assert registry.get_version("churn", 2).status is VersionStatus.CHAMPION
    last = registry.history("churn")[-1]
    assert (last.kind, last.from_version, last.to_version) == (EventKind.PROMOTE, 1, 2)
    assert last.verdict == verdict and last.run == run and last.reason == "better" and last.actor == "airflow"


def test_promotion_compare_and_swap_conflict_changes_nothing(registry: Registry) -> None:
    _two_versions(registry)
    registry.register("churn", draft("r3"))
    registry.promote("churn", 1, expected_champion=None, actor="a")
    events_before = len(registry.history("churn"))
    with pytest.raises(PromotionConflict, match="expected no champion, found v1; v2 was not promoted"):
        registry.promote("churn", 2, expected_champion=None, actor="b")
    with pytest.raises(PromotionConflict, match="expected v3, found v1"):
        registry.promote("churn", 2, expected_champion=3, actor="b")
    assert registry.get_champion("churn").version == 1  # type: ignore[union-attr]
    assert registry.get_version("churn", 2).status is VersionStatus.CHALLENGER
    assert len(registry.history("churn")) == events_before


def test_promoting_the_champion_again_is_a_no_op(registry: Registry) -> None:
    _two_versions(registry)
    registry.promote("churn", 1, expected_champion=None, actor="a")
    events = len(registry.history("churn"))
    again = registry.promote("churn", 1, expected_champion=None, actor="a")  # a retry after a lost ack
    assert not again.changed and again.event_id is None
    assert len(registry.history("churn")) == events


def test_any_champion_skips_the_compare_and_swap(registry: Registry) -> None:
    _two_versions(registry)
    registry.promote("churn", 1, expected_champion=None, actor="a")
    assert registry.promote("churn", 2, expected_champion=ANY_CHAMPION, actor="ops").changed


def test_rejected_version_cannot_become_champion(registry: Registry) -> None:
    _two_versions(registry)
    assert registry.reject("churn", 2, actor="policy", reason="worse", verdict={"decision": "reject"})
    assert not registry.reject("churn", 2, actor="policy")  # idempotent
    with pytest.raises(InvalidTransition, match="v2 of 'churn' was rejected"):
        registry.promote("churn", 2, expected_champion=None, actor="a")
    events = [e.kind for e in registry.history("churn")]
    assert events.count(EventKind.REJECT) == 1


def test_reject_and_archive_refuse_the_champion(registry: Registry) -> None:
    _two_versions(registry)
    registry.promote("churn", 1, expected_champion=None, actor="a")
    with pytest.raises(InvalidTransition, match="is the champion"):
        registry.reject("churn", 1, actor="x")
    with pytest.raises(InvalidTransition, match="is the champion"):
        registry.archive("churn", 1, actor="x")
    assert registry.archive("churn", 2, actor="x", reason="stale")
    assert not registry.archive("churn", 2, actor="x")
    with pytest.raises(InvalidTransition, match="only a challenger can be rejected"):
        registry.reject("churn", 2, actor="x")


def test_rollback_returns_to_previous_champion_then_further_back(registry: Registry) -> None:
    for run in ("r1", "r2", "r3"):
        registry.register("churn", draft(run))
    registry.promote("churn", 1, expected_champion=None, actor="a")
    registry.promote("churn", 2, expected_champion=1, actor="a")
    registry.promote("churn", 3, expected_champion=2, actor="a")
    first = registry.rollback("churn", actor="ops", reason="bad canary")
    assert (first.previous_version, first.version) == (3, 2)
    second = registry.rollback("churn", actor="ops", reason="still bad")
    assert (second.previous_version, second.version) == (2, 1)  # walks back the chain, no 3<->2 toggle
    with pytest.raises(NoChampion, match="v1 is the first champion"):
        registry.rollback("churn", actor="ops")
    assert registry.get_version("churn", 3).status is VersionStatus.ARCHIVED
    kinds = [e.kind for e in registry.history("churn", kinds=["rollback"])]
    assert kinds == [EventKind.ROLLBACK, EventKind.ROLLBACK]


def test_rollback_to_named_version(registry: Registry) -> None:
    for run in ("r1", "r2", "r3"):
        registry.register("churn", draft(run))
    registry.promote("churn", 1, expected_champion=None, actor="a")
    registry.promote("churn", 3, expected_champion=1, actor="a")
    change = registry.rollback("churn", 2, actor="ops", reason="pin v2")
    assert change.version == 2 and registry.get_champion("churn").version == 2  # type: ignore[union-attr]
    with pytest.raises(InvalidTransition, match="already is the champion"):
        registry.rollback("churn", 2, actor="ops")
    with pytest.raises(VersionNotFound, match="has no version 9"):
        registry.rollback("churn", 9, actor="ops")


def test_rollback_without_champion(registry: Registry) -> None:
    registry.register("churn", draft())
    with pytest.raises(NoChampion, match="no champion to roll back from"):
        registry.rollback("churn", actor="ops")


def test_unknown_model_and_version(registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match="model 'ghost' is not registered"):
        registry.get_champion("ghost")
    with pytest.raises(ModelNotFound, match="'ghost'"):
        registry.promote("ghost", 1, expected_champion=None, actor="a")
    with pytest.raises(ModelNotFound, match="'ghost'"):
        registry.history("ghost")
    registry.register("churn", draft())
    with pytest.raises(VersionNotFound, match="model 'churn' has no version 7"):
        registry.get_version("churn", 7)
    with pytest.raises(InvalidInput, match="version must be an integer"):
        registry.get_version("churn", "1")  # type: ignore[arg-type]


def test_list_versions_filters(registry: Registry) -> None:
    jan = dt.datetime(2026, 1, 1, tzinfo=UTC)
    feb = dt.datetime(2026, 2, 1, tzinfo=UTC)
    mar = dt.datetime(2026, 3, 1, tzinfo=UTC)
    registry.register("churn", draft("r1", window_start=jan, window_end=feb, tags={"kind": "scheduled"}))
    registry.register("churn", draft("r2", window_start=feb, window_end=mar, tags={"kind": "backfill"}))
    registry.promote("churn", 1, expected_champion=None, actor="a")
    assert [v.version for v in registry.list_versions("churn", status="champion")] == [1]
    assert [v.version for v in registry.list_versions("churn", status=VersionStatus.CHALLENGER)] == [2]
    assert [v.version for v in registry.list_versions("churn", tags={"kind": "backfill"})] == [2]
    assert [v.version for v in registry.list_versions("churn", window_from=feb)] == [2]
    assert [v.version for v in registry.list_versions("churn", window_to=feb)] == [1]
    with pytest.raises(InvalidInput, match="unknown status 'live'"):
        registry.list_versions("churn", status="live")


def test_list_models_shows_champion_and_counts(registry: Registry) -> None:
    _two_versions(registry)
    registry.promote("churn", 2, expected_champion=None, actor="a")
    registry.create_model("fraud", "card fraud")
    models = {m.name: m for m in registry.list_models()}
    assert models["churn"].champion_version == 2 and models["churn"].version_count == 2
    assert models["fraud"].champion_version is None and models["fraud"].version_count == 0


def test_compare_side_by_side(registry: Registry) -> None:
    registry.register("churn", draft("r1", metrics={"roc_auc": 0.8, "brier": 0.2}, params={"C": 1.0}))
    registry.register("churn", draft("r2", metrics={"roc_auc": 0.85}, params={"C": 0.1, "penalty": "l2"}))
    comparison = registry.compare("churn", [1, 2])
    assert comparison.metrics == {"brier": [0.2, None], "roc_auc": [0.8, 0.85]}
    assert comparison.params == {"C": [1.0, 0.1], "penalty": [None, "l2"]}
    assert comparison.statuses == ["challenger", "challenger"]
    with pytest.raises(InvalidInput, match="at least two versions"):
        registry.compare("churn", [1])
    with pytest.raises(VersionNotFound, match="no version 5"):
        registry.compare("churn", [1, 5])


def test_history_limit_and_record_event(registry: Registry) -> None:
    _two_versions(registry)
    event = registry.record_event("churn", "evaluate", actor="airflow", to_version=2, verdict={"decision": "reject"})
    assert event.kind is EventKind.EVALUATE and event.verdict == {"decision": "reject"}
    assert [e.kind for e in registry.history("churn", limit=2)] == [EventKind.REGISTER, EventKind.EVALUATE]
    with pytest.raises(InvalidInput, match="unknown event kind 'party'"):
        registry.record_event("churn", "party", actor="x")


def test_verdicts_with_nan_and_dates_are_stored(registry: Registry) -> None:
    _two_versions(registry)
    verdict = {"ci_low": float("nan"), "at": dt.datetime(2026, 1, 1, tzinfo=UTC)}
    registry.promote("churn", 1, expected_champion=None, actor="a", verdict=verdict)
    stored = registry.history("churn")[-1].verdict
    assert stored == {"ci_low": None, "at": "2026-01-01T00:00:00Z"}  # ISO 8601, as the CLI prints it


def test_event_log_is_append_only(registry: Registry) -> None:
    registry.register("churn", draft())
    with registry.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="append-only"):
        conn.execute(sa.text("UPDATE registry_event SET actor = 'mallory'"))
    with registry.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="append-only"):
        conn.execute(sa.text("DELETE FROM registry_event"))
    assert len(registry.history("churn")) == 1


def test_database_allows_one_champion_whatever_the_code_does(registry: Registry) -> None:
    _two_versions(registry)
    registry.promote("churn", 1, expected_champion=None, actor="a")
    with registry.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="uq_model_version_one_champion"):
        conn.execute(sa.text("UPDATE model_version SET status = 'champion' WHERE version = 2"))
    with registry.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="pk_model_alias"):
        conn.execute(sa.text("INSERT INTO model_alias(model, alias, version) VALUES ('churn', 'champion', 2)"))


def test_stale_schema_is_refused_naming_the_upgrade_command(registry_url: str) -> None:
    engine = create_registry_engine(registry_url)
    downgrade(engine, "0001")
    with pytest.raises(SchemaOutOfDate, match=r"at revision 0001.*run `modelgate db upgrade`"):
        Registry(engine)
    downgrade(engine, "base")
    with pytest.raises(SchemaOutOfDate, match=r"none \(empty database\).*modelgate db upgrade"):
        Registry(engine)
    engine.dispose()


def test_unreachable_database_is_a_clear_error() -> None:
    engine = create_registry_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(Exception, match="registry database unavailable during schema check"):
        Registry(engine)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_urls_are_normalized_to_psycopg3(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_non_postgres_url_is_refused() -> None:
    with pytest.raises(InvalidInput, match="the registry must be PostgreSQL"):
        normalize_url("sqlite:///x.db")


def test_find_by_source(registry: Registry) -> None:
    from modelgate.registry import Source

    assert registry.find_by_source("churn", Source("modelgate_retrain__churn", "run-1", "train")) is None  # no model
    created = registry.register("churn", draft("run-1"))
    found = registry.find_by_source("churn", Source("modelgate_retrain__churn", "run-1", "train"))
    assert found == created
    assert registry.find_by_source("churn", Source("modelgate_retrain__churn", "run-2", "train")) is None
