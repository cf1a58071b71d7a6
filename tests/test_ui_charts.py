"""The model page's charts in Debian's Chromium: axes with dates and the metric's name, readable interval and
feature labels on the heatmap, one evaluation drawn as a round point, and no script error."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelgate import ui
from modelgate.airflow.web import PLOTLY_JS, _plotly_js
from modelgate.registry import Registry
from tests.browser import chromium
from tests.test_ui import FEATURES, START, _fill

pytestmark = pytest.mark.integration


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served on loopback, with plotly.js where the page asks the api-server for it."""
    static = tmp_path / "modelgate" / "static"
    static.mkdir(parents=True)
    (static / PLOTLY_JS).write_bytes(_plotly_js())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _open(browser: Any, site: tuple[Path, str], registry: Registry) -> tuple[Any, list[str]]:
    root, base = site
    (root / "model.html").write_text(ui.render_model_page(ui.model_page(registry, "churn"), "/modelgate"))
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/model.html", wait_until="load")
    page.wait_for_selector("#metric-chart .main-svg")
    return page, errors


def test_metric_chart_and_heatmap_have_axes_dates_and_labels(
    registry: Registry, site: tuple[Path, str], browser: Any
) -> None:
    _fill(registry)  # six weekly verdicts (v1, v3, v5 promoted) and six drift runs, the last one alarmed
    page, errors = _open(browser, site, registry)
    chart = page.locator("#metric-chart")
    assert chart.locator(".ytitle").text_content() == "roc_auc"
    assert chart.locator(".xtitle").text_content() == "interval end"
    dates = " ".join(chart.locator(".xtick text").all_text_contents())
    assert "Jan" in dates and "2026" in dates  # a date axis, not indexes
    assert len(chart.locator(".ytick text").all_text_contents()) >= 3  # values on the y axis
    assert chart.locator(".scatterlayer .trace").nth(0).locator(".point").count() == 5  # the champion re-scored
    assert chart.locator(".scatterlayer .trace").nth(1).locator(".point").count() == 3  # promoted challengers
    assert chart.locator(".scatterlayer .trace").nth(2).locator(".point").count() == 3  # rejected ones
    assert "champion, re-scored" in chart.locator(".legend").text_content()

    heat = page.locator("#heatmap")
    heat.locator(".main-svg").first.wait_for()
    assert heat.get_attribute("data-cells") == str(6 * len(FEATURES))
    assert sorted(heat.locator(".ytick text").all_text_contents()) == sorted(FEATURES)
    assert "2026-01" in " ".join(heat.locator(".xtick text").all_text_contents())  # interval labels as dates
    alarms = heat.locator(".scatterlayer .point")
    assert alarms.count() == len(FEATURES)  # the last run alarmed on every feature, each outlined
    assert errors == []
    page.close()


def test_one_evaluation_is_a_round_point(registry: Registry, site: tuple[Path, str], browser: Any) -> None:
    _fill(registry, weeks=1)  # the first champion's verdict: one challenger, no champion to re-score
    page, errors = _open(browser, site, registry)
    point = page.locator("#metric-chart .scatterlayer .point")  # (plotly draws no layer for an empty trace)
    assert point.count() == 1
    box = point.bounding_box()
    assert box is not None and box["width"] > 5 and abs(box["width"] - box["height"]) < 1  # not squashed
    assert "2026" in " ".join(page.locator("#metric-chart .xtick text").all_text_contents())
    assert errors == []
    page.close()


def test_the_experiment_chart_draws_each_look_with_its_interval(
    registry: Registry, site: tuple[Path, str], browser: Any
) -> None:
    from modelgate.registry.experiments import ExperimentStore, LookRow
    from tests.helpers import draft

    _fill(registry)
    registry.register("churn", draft("r-ab"))
    store = ExperimentStore(registry)
    experiment = store.start("churn", challenger=7, split_percent=10, settings={"metric": "accuracy"}, actor="t")
    arm = {"version": 5, "keys": 10, "labelled": 8, "total": 6.0, "total_sq": 6.0, "missing": 2, "late": 0}
    for day, estimate in enumerate((0.0, 0.01, 0.03), start=1):
        look = {"champion": arm, "challenger": {**arm, "version": 7}, "estimate": estimate, "lower": estimate - 0.02,
                "upper": estimate + 0.02, "p_value": 0.5, "srm_p": 0.5, "looks": day, "guardrails": []}  # fmt: skip
        store.record_look(LookRow(experiment.id, START + dt.timedelta(days=50 + day), look, "continue", "no decision"))
    page, errors = _open(browser, site, registry)
    chart = page.locator("#experiment-chart")
    chart.locator(".main-svg").first.wait_for()
    assert chart.locator(".scatterlayer .point").count() == 3
    assert chart.locator(".errorbar").count() == 3  # each look's always-valid interval
    assert chart.locator(".ytitle").text_content() == "challenger − champion"
    assert errors == []
    page.close()
