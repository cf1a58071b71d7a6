"""A notifier for tests: appends each message to a file (named in the spec's notifier params)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier


class FileNotifier(BaseNotifier):
    template_fields = ("message",)

    def __init__(self, *, path: str, message: str = "") -> None:
        super().__init__()
        self.path = path
        self.message = message

    def notify(self, context: Any) -> None:
        with Path(self.path).open("a") as fh:
            fh.write(self.message.replace("\\n", " ") + "\\n")
