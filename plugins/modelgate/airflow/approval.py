"""The standard provider's ApprovalOperator, recording the answer whatever it is.

On "Reject" the stock operator skips downstream tasks without pushing its result, so nothing downstream
could tell who said no. This subclass pushes the answer (options and user) under `answer` first.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

ANSWER_KEY = "answer"


class RecordedApprovalOperator(ApprovalOperator):
    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            context["ti"].xcom_push(
                key=ANSWER_KEY,
                value={
                    "chosen_options": event.get("chosen_options"),
                    "responded_by_user": event.get("responded_by_user"),
                },
            )
        return super().execute_complete(context=context, event=event)
