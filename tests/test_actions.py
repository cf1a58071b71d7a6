"""What a person may do from the Models view: form tokens, form checks, and the registry's own compare-and-swap
with the Airflow user recorded (the api-server's auth check and the browser are in tests/system)."""

from __future__ import annotations

import pytest

from modelgate import ui
from modelgate.actions import TOKEN_SECONDS, ActionRequest, action_token, parse_action, perform, token_ok
from modelgate.registry import Registry
from modelgate.registry.errors import InvalidInput, InvalidTransition, PromotionConflict
from tests.helpers import draft

KEY = b"the api-server's secret"


def test_a_token_is_good_for_its_user_model_and_time_only() -> None:
    token = action_token(KEY, "alice", "churn", now=1_000_000)
    assert token_ok(KEY, token, "alice", "churn", now=1_000_000 + 60)
    assert not token_ok(KEY, token, "bob", "churn", now=1_000_060)  # another user
    assert not token_ok(KEY, token, "alice", "fraud", now=1_000_060)  # another model
    assert not token_ok(KEY, token, "alice", "churn", now=1_000_000 + TOKEN_SECONDS + 1)  # stale
    assert not token_ok(KEY, token, "alice", "churn", now=1_000_000 - 5)  # from the future
    assert not token_ok(b"another server", token, "alice", "churn", now=1_000_060)
    issued, digest = token.split(".")
    assert not token_ok(KEY, f"{int(issued) + 1}.{digest}", "alice", "churn", now=1_000_060)  # tampered time
    for junk in ("", "x", "1.", ".abc", "-1.abc"):
        assert not token_ok(KEY, junk, "alice", "churn", now=1_000_060)
    assert not token_ok(b"", action_token(b"", "alice", "churn"), "alice", "churn")  # no secret: no token


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"action": "drop"}, "unknown action 'drop': use one of promote, rollback, archive, deploy"),
        ({"action": "promote", "reason": "better"}, "promote needs a version"),
        ({"action": "promote", "version": "2"}, "promote needs a reason: it goes in the audit log"),
        ({"action": "archive", "version": "-1", "reason": "x"}, "version must be a version number, got '-1'"),
        ({"action": "promote", "version": "2", "reason": "x" * 501}, "the reason is over 500 characters"),
        (
            {"action": "promote", "version": "2", "reason": "x", "expected_champion": "v1"},
            "expected_champion must be a version number, got 'v1'",
        ),
    ],
)
def test_bad_forms_are_one_line(form: dict[str, str], error: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{error.replace('(', '[(]').replace(')', '[)]')}$"):
        parse_action("churn", form)


def test_forms_parse_to_requests() -> None:
    assert parse_action("churn", {"action": "rollback", "reason": " canary  failed ", "expected_champion": "3"}) == (
        ActionRequest("churn", "rollback", None, 3, "canary failed")
    )
    assert parse_action("churn", {"action": "deploy", "version": "2", "expected_champion": "none"}) == (
        ActionRequest("churn", "deploy", 2, None, "")
    )


@pytest.mark.integration
def test_actions_go_through_the_registry_with_the_user_as_actor(registry: Registry) -> None:
    for run in ("r1", "r2", "r3"):
        registry.register("churn", draft(run))
    registry.promote("churn", 1, expected_champion=None, actor="dag")
    actor = "airflow:alice"
    promoted = perform(registry, ActionRequest("churn", "promote", 2, 1, "better on the holdout"), actor=actor)
    assert promoted.message.startswith("v2 is the champion") and promoted.deploy_version is None
    with pytest.raises(PromotionConflict):  # the page showed v1 as champion: it no longer is
        perform(registry, ActionRequest("churn", "promote", 3, 1, "stale page"), actor=actor)
    rolled = perform(registry, ActionRequest("churn", "rollback", None, 2, "canary failed"), actor=actor)
    assert rolled.message == "rolled back to v1 (was v2)" and rolled.deploy_version == 1  # traffic follows
    assert perform(registry, ActionRequest("churn", "archive", 3, 1, "superseded"), actor=actor).message == (
        "v3 archived"
    )
    assert perform(registry, ActionRequest("churn", "deploy", 2, 1, ""), actor=actor).deploy_version == 2
    registry.register("churn", draft("r4"))
    registry.reject("churn", 4, actor="dag", reason="lost")
    with pytest.raises(InvalidTransition):  # a rejected version never takes traffic
        perform(registry, ActionRequest("churn", "deploy", 4, 1, ""), actor=actor)
    mine = [e for e in registry.history("churn") if e.actor == actor]
    assert [(e.kind.value, e.to_version, e.reason) for e in mine] == [
        ("promote", 2, "better on the holdout"),
        ("rollback", 1, "canary failed"),
        ("archive", 3, "superseded"),
    ]
    assert registry.get_champion("churn").version == 1  # type: ignore[union-attr]


@pytest.mark.integration
def test_the_page_offers_the_form_only_to_editors(registry: Registry) -> None:
    registry.register("churn", draft("r1"))
    page = ui.model_page(registry, "churn")
    editor = ui.render_model_page(page, "/modelgate", actions=ui.ActionsView(True, "123.abc", "alice", done="v1 ok"))
    assert 'action="/modelgate/models/churn/actions"' in editor and 'name="token" value="123.abc"' in editor
    assert 'name="expected_champion" value="none"' in editor and 'id="action-done">v1 ok<' in editor
    assert 'action="/modelgate/models/churn/experiment"' in editor and 'name="do" value="start"' in editor
    waiting = [ui.PendingApproval("churn", "modelgate_retrain__churn", "manual__7", None)]
    pending = ui.model_page(registry, "churn", waiting)
    answering = ui.render_model_page(pending, "/modelgate", actions=ui.ActionsView(True, "123.abc", "alice"))
    assert 'action="/modelgate/models/churn/approvals"' in answering and 'name="run_id" value="manual__7"' in answering
    assert 'name="answer" value="Approve"' in answering and 'name="answer" value="Reject"' in answering
    assert "/approvals" not in ui.render_model_page(pending, "/modelgate", actions=ui.ActionsView(False))
    reader = ui.render_model_page(page, "/modelgate", actions=ui.ActionsView(False, error="<b>no</b>"))
    assert "action-form" not in reader and 'name="token"' not in reader and 'id="action-none"' in reader
    assert "experiment-form" not in reader
    assert "&lt;b&gt;no&lt;/b&gt;" in reader  # the outcome line is text, never markup
