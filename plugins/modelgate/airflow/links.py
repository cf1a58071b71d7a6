"""The task's extra link to what it produced: GX Data Docs, the drift report, the evaluation report."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseOperatorLink

REPORT_XCOM_KEY = "modelgate_report"
log = logging.getLogger(__name__)


class ModelgateReportLink(BaseOperatorLink):
    """Evaluated by the worker when the task finishes; the URL is what the task pushed under REPORT_XCOM_KEY."""

    name = "modelgate report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.bases.xcom import BaseXCom

        value = BaseXCom.get_value(ti_key=ti_key, key=REPORT_XCOM_KEY)
        return str(value) if value else ""


def push_report_link(context: Any, path: str | None) -> None:
    """Keep the report's browser URL for the task's extra link: served by the api-server (modelgate plugin)."""
    if not path:
        return
    from airflow.sdk import conf

    from modelgate.airflow.runtime import report_store
    from modelgate.airflow.web import report_url

    base_url = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    url = report_url(path, store=report_store(), base_url=base_url)
    context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=url)
    log.info("modelgate report: %s", url)  # the task's log, where a user looks first; also its extra link
