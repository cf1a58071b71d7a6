"""Notifications through Airflow notifiers named in the spec (default: the task log).

Callbacks are built at parse time but import the configured notifier classes only when they fire, so an
optional provider never slows or breaks DAG parsing.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from airflow.sdk import BaseNotifier

from modelgate.spec import ModelSpec, Notifier

log = logging.getLogger("modelgate.notify")


class LogNotifier(BaseNotifier):
    """Writes the notification to the task log: the default, needs nothing configured."""

    template_fields = ("message",)

    def __init__(self, *, message: str = "") -> None:
        super().__init__()
        self.message = message

    def notify(self, context: Any) -> None:
        log.warning("modelgate notification: %s", self.message)


def _build(config: Notifier, message: str) -> Any:
    if config.name == "log":
        return LogNotifier(message=message)
    module_name, _, class_name = config.name.rpartition(".")
    if not module_name:
        raise ValueError(f"notifier {config.name!r} must be 'log' or a dotted class path")
    cls = getattr(importlib.import_module(module_name), class_name)
    params = dict(config.params)
    if "message" not in params and "text" not in params:
        params["message"] = message
    return cls(**params)


def send(spec: ModelSpec, event: str, message: str, context: Any) -> None:
    """Send `message` through every notifier of the spec subscribed to `event`; a broken one never fails the run."""
    for config in spec.notifiers:
        if event not in config.on:
            continue
        try:
            _build(config, f"[{spec.name}] {event}: {message}")(context)
        except Exception:
            log.exception("notifier %s failed for %s", config.name, event)


class SpecNotifier(BaseNotifier):
    """The spec's notifiers subscribed to `event`, as one Airflow notifier (e.g. a HITL operator's `notifiers`).

    The message is built when it fires (`message(context)`), so nothing is imported at parse time.
    """

    def __init__(self, spec: ModelSpec, event: str, message: Any) -> None:
        super().__init__()
        self.spec = spec
        self.event = event
        self.message = message

    def notify(self, context: Any) -> None:
        send(self.spec, self.event, self.message(context), context)


class FailureCallback:
    """on_failure_callback for a spec's DAGs."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def __call__(self, context: Any) -> None:
        ti = context.get("ti")
        error = context.get("exception")
        where = f"{ti.dag_id}.{ti.task_id}" if ti is not None else "a task"
        send(self.spec, "failure", f"{where} failed: {error}", context)
