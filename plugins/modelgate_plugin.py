"""Registers modelgate's operator extra link with Airflow (so the API server can show it)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from modelgate.airflow.links import ModelgateReportLink


class ModelgatePlugin(AirflowPlugin):
    name = "modelgate"
    operator_extra_links = [ModelgateReportLink()]
