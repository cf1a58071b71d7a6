"""What a person may do to a model from the Models view: promote, roll back, archive, deploy.

Each action is the registry's own compare-and-swap (the champion the person saw on the page must still be the
champion), recorded in the audit log with the Airflow user as the actor; `deploy` (and the traffic that
follows a rollback) is a run of the model's deploy DAG, the same path every deployment takes. Forms carry a
token bound to the user, the model and the time (`action_token`), so another site cannot post one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from modelgate.registry.errors import InvalidInput

if TYPE_CHECKING:
    from modelgate.registry.store import Registry

Action = Literal["promote", "rollback", "archive", "deploy"]
ACTIONS: tuple[Action, ...] = ("promote", "rollback", "archive", "deploy")
TOKEN_SECONDS = 4 * 3600  # how long a page's forms stay good
REASON_MAX = 500


@dataclass(frozen=True)
class ActionRequest:
    """One submitted form, checked (`parse_action`)."""

    model: str
    action: Action
    version: int | None  # promote, archive, deploy: the version; rollback: the target (None: the previous one)
    expected_champion: int | None  # the champion the page showed
    reason: str


@dataclass(frozen=True)
class ActionOutcome:
    message: str  # one line for the page
    deploy_version: int | None = None  # a deploy DAG run to trigger for this version


def action_token(key: bytes, user_id: str, model: str, *, now: float | None = None) -> str:
    """A form token: when it was issued and an HMAC of (user, model, then) under the api-server's secret."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_digest(key, user_id, model, issued)}"


def token_ok(key: bytes, token: str, user_id: str, model: str, *, now: float | None = None) -> bool:
    """The token was issued to this user for this model, by this api-server's secret, within TOKEN_SECONDS."""
    issued_text, _, digest = token.partition(".")
    if not issued_text.isdigit() or not key:
        return False
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    return 0 <= age <= TOKEN_SECONDS and hmac.compare_digest(_digest(key, user_id, model, issued), digest)


def _digest(key: bytes, user_id: str, model: str, issued: int) -> str:
    return hmac.new(key, f"{user_id}\x00{model}\x00{issued}".encode(), hashlib.sha256).hexdigest()


def version_number(raw: str | None, what: str) -> int | None:
    """A form's version field (None when left empty); InvalidInput naming `what` when it is not one."""
    if raw is None or raw.strip() in ("", "none"):
        return None
    if not raw.strip().isdigit() or len(raw.strip()) > 9:
        raise InvalidInput(f"{what} must be a version number, got {raw[:20]!r}")
    return int(raw)


def parse_action(model: str, form: dict[str, str]) -> ActionRequest:
    """The form's fields as an ActionRequest; InvalidInput (one line) naming what is wrong."""
    action = form.get("action", "")
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action[:20]!r}: use one of {', '.join(ACTIONS)}")
    version = version_number(form.get("version"), "version")
    if version is None and action != "rollback":
        raise InvalidInput(f"{action} needs a version")
    reason = " ".join(form.get("reason", "").split())
    if not reason and action != "deploy":
        raise InvalidInput(f"{action} needs a reason: it goes in the audit log")
    if len(reason) > REASON_MAX:
        raise InvalidInput(f"the reason is over {REASON_MAX} characters")
    return ActionRequest(
        model, action, version, version_number(form.get("expected_champion"), "expected_champion"), reason
    )


def perform(registry: Registry, request: ActionRequest, *, actor: str) -> ActionOutcome:
    """Apply a checked request through the registry (compare-and-swap on the champion the page showed).

    Registry errors (a conflict, an illegal transition, an unknown version) propagate with their own message.
    """
    name, version, expected = request.model, request.version, request.expected_champion
    if request.action == "promote":
        assert version is not None  # (parse_action)
        change = registry.promote(name, version, expected_champion=expected, actor=actor, reason=request.reason)
        done = f"v{version} is the champion" if change.changed else f"v{version} already was the champion"
        return ActionOutcome(f"{done}; deploy it to move traffic")
    if request.action == "rollback":
        change = registry.rollback(name, version, actor=actor, reason=request.reason, expected_champion=expected)
        return ActionOutcome(
            f"rolled back to v{change.version} (was v{change.previous_version})", deploy_version=change.version
        )
    if request.action == "archive":
        assert version is not None
        registry.archive(name, version, actor=actor, reason=request.reason)
        return ActionOutcome(f"v{version} archived")
    assert version is not None
    registry.servable_version(name, version)  # (a rejected or unknown version is refused here, not in the DAG)
    return ActionOutcome(f"deploying v{version}", deploy_version=version)
