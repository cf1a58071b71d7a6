"""modelgate's Airflow plugin: the tasks' extra link, and the Models pages and reports mounted in the api-server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from modelgate.airflow.links import ModelgateReportLink
from modelgate.airflow.web import URL_PREFIX, LazyApp


class ModelgatePlugin(AirflowPlugin):
    name = "modelgate"
    operator_extra_links = [ModelgateReportLink()]
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "modelgate"}]
    external_views = [
        {
            "name": "Models",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "modelgate",
            "nav_top_level": True,
        }
    ]
