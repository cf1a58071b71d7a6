"""The Models pages from a real registry: what they gather and what they render (no Airflow needed)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from modelgate import ui
from modelgate.registry import ANY_CHAMPION, Registry, RunRef
from modelgate.registry.monitoring import DecisionRow, DriftRow, MonitoringStore
from modelgate.report_store import ReportStore
from tests.helpers import draft

pytestmark = pytest.mark.integration

START = dt.datetime(2026, 1, 4, tzinfo=dt.UTC)
FEATURES = ["tenure", "charges", "contract"]


def _fill(registry: Registry, weeks: int = 6) -> None:
    monitoring = MonitoringStore(registry)
    for week in range(weeks):
        end = START + dt.timedelta(weeks=week + 1)
        trained = draft(
            f"r{week}",
            metrics={"holdout_roc_auc": 0.7 + week / 100},
            window_start=end - dt.timedelta(weeks=4),
            window_end=end,
        )
        version = registry.register("churn", trained).version
        verdict = {
            "champion_version": version - 1 if week else None,
            "challenger_version": version,
            "evaluation": {"primary": {"metric": "roc_auc", "champion": 0.7 if week else None, "challenger": 0.71}},
            "report": f"/nowhere/churn/evaluation/v{version}.html",
        }
        run = RunRef("modelgate_retrain__churn", f"r{week}", "evaluate", as_of=end)  # the week it judged
        if week % 2 == 0:
            registry.promote("churn", version, expected_champion=ANY_CHAMPION, actor="dag", verdict=verdict, run=run)
            registry.record_event(
                "churn", "evaluate", actor="dag", to_version=version, reason="won", verdict=verdict, run=run
            )
        else:
            registry.reject("churn", version, actor="dag", reason="<b>lost</b>", verdict=verdict, run=run)
        scores = {
            f: {"score": 0.05 * (i + week), "threshold": 0.1, "drifted": week == 5} for i, f in enumerate(FEATURES)
        }
        monitoring.upsert_drift(
            DriftRow("churn", end - dt.timedelta(weeks=1), end, version, scores, 0.3, week == 5, 100, 50, None)
        )
        monitoring.record_decision(
            DecisionRow("churn", end - dt.timedelta(weeks=1), end, True, "drift", "drift in 1 of 1", {})
        )


def test_overview_shows_champion_last_verdict_and_drift(registry: Registry) -> None:
    _fill(registry)
    pending = [ui.PendingApproval("churn", "modelgate_retrain__churn", "manual__1", None)]
    index = ui.overview(registry, pending)
    [summary] = index.models
    assert summary.champion == 5 and summary.versions == 6
    assert summary.last_verdict is not None and summary.last_verdict.kind.value == "reject"
    assert summary.last_drift is not None and summary.last_drift.drifted
    html = ui.render("models.html", index=index, prefix="/modelgate")
    assert 'href="/modelgate/models/churn"' in html and "v5" in html
    assert 'href="/dags/modelgate_retrain__churn/runs/manual__1/tasks/approve/required_actions"' in html


def test_model_page_tables_heatmap_and_metric_series(registry: Registry) -> None:
    _fill(registry)
    page = ui.model_page(registry, "churn")
    assert [v.version for v in page.versions] == [1, 2, 3, 4, 5, 6]
    assert [e.to_version for e in page.champion_timeline] == [1, 3, 5]
    assert page.metric == "roc_auc" and len(page.metric_series) == 6
    assert page.heatmap.features == tuple(sorted(FEATURES)) and page.heatmap.cell_count == 6 * len(FEATURES)
    assert page.heatmap.cells[5][2] == (2.5, True)  # week 5, "tenure": score 0.25 over threshold 0.1, alarmed
    assert page.event_count == len(page.events) and page.drift_count == 6
    html = ui.render_model_page(page, "/modelgate")
    data = json.loads(re.search(r'<script id="heat-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert len(data["intervals"]) == 6 and sum(c is not None for row in data["cells"] for c in row) == 18
    assert html.count("drift in 1 of 1") == 6  # every retrain decision, with its detail
    assert (
        'href="/modelgate/models/churn/versions/6"' in html and 'href="/dags/modelgate_retrain__churn/runs/r5"' in html
    )
    assert "&lt;b&gt;lost&lt;/b&gt;" in html and "<b>lost</b>" not in html  # escaped once, never raw
    assert "&amp;lt;" not in html  # and never twice
    assert 'href="/dags/modelgate_retrain__churn/runs" target="_top"' in html  # the model page reaches its DAGs


def test_long_histories_show_their_newest_part(registry: Registry) -> None:
    _fill(registry, weeks=8)
    monitoring = MonitoringStore(registry)
    assert [c.interval_end for c in monitoring.drift_cells("churn", limit=3)] == [
        START + dt.timedelta(weeks=w) for w in (6, 7, 8)
    ]
    page = ui.model_page(registry, "churn")
    assert page.drift_count == 8 and len(page.heatmap.intervals) == 8


def test_version_page_links_reports_inside_the_store_only(registry: Registry, tmp_path: Path) -> None:
    from modelgate.data import Interval

    _fill(registry)
    entry = registry.get_version("churn", 2)
    assert entry.window_start is not None and entry.window_end is not None
    training = tmp_path / "churn" / "quality" / "training" / Interval(entry.window_start, entry.window_end).label
    (training / "validations" / "suite").mkdir(parents=True)
    (training / "validations" / "suite" / "run.html").write_text("<html>docs</html>")

    def url_of(path: str) -> str | None:
        return None if path.startswith("/nowhere") else "/r/" + path

    links = ui.version_reports(registry, entry, url_of, ReportStore(str(tmp_path)))
    assert [(r.what, r.label) for r in links] == [
        ("training data quality (Data Docs)", "run.html"),
        ("champion vs challenger", "v2.html"),
    ]
    relative = training.relative_to(tmp_path) / "validations" / "suite" / "run.html"
    assert links[0].url == f"/modelgate/reports/{relative.as_posix()}" and links[1].url is None
    html = ui.render("version.html", version=entry, reports=links, prefix="/modelgate")
    assert '<span class="muted">v2.html</span>' in html  # not in the store: named, never linked
    assert html.count('class="report"') == 1


def test_the_models_index_pages_and_searches(registry: Registry) -> None:
    _fill(registry, weeks=2)
    for k in range(119):
        registry.create_model(f"m{k:03d}", description="fraud team" if k % 10 == 0 else f"model {k}_x")
    index = ui.overview(registry, per_page=50)
    assert (index.total, index.pages, len(index.models)) == (120, 3, 50)
    assert [m.name for m in index.models][:2] == ["churn", "m000"]
    churn = index.models[0]
    assert churn.champion == 1 and churn.versions == 2 and churn.last_verdict is not None
    assert churn.last_drift is not None and churn.verdict_state == "rejected"
    last = ui.overview(registry, page=3, per_page=50)
    assert [m.name for m in last.models] == [f"m{k:03d}" for k in range(99, 119)]
    assert ui.overview(registry, page=99, per_page=50).page == 3  # past the end: the last page
    assert ui.overview(registry, page=-4, per_page=50).page == 1
    fraud = ui.overview(registry, search="  FRAUD ")
    assert fraud.total == 12 and fraud.search == "FRAUD" and len(fraud.models) == 12
    assert ui.overview(registry, search="m11").total == 9  # m110 … m118
    assert ui.overview(registry, search="_x").total == 119 - 12  # "_" matches itself, not any character
    assert ui.overview(registry, search="%").total == 0
    html = ui.render("models.html", index=last, prefix="/modelgate")
    assert "page 3 of 3" in html and 'rel="prev" href="/modelgate/?q=&amp;page=2"' in html and 'rel="next"' not in html
    html = ui.render("models.html", index=ui.overview(registry, search="<i>nothing"), prefix="/modelgate")
    assert "No model matches “&lt;i&gt;nothing”" in html


def test_the_model_page_shows_the_newest_of_a_long_history(registry: Registry, monkeypatch) -> None:
    monkeypatch.setattr(ui, "EVENTS_SHOWN", 5)
    _fill(registry, weeks=8)
    page = ui.model_page(registry, "churn")
    assert [v.version for v in page.versions] == [4, 5, 6, 7, 8] and page.summary.versions == 8
    assert len(page.events) == 5 and page.event_count > 5 and page.events[-1].id > page.events[0].id
    assert len(page.decisions) == 5 and page.decisions[-1].interval_end == START + dt.timedelta(weeks=8)
    assert page.summary.champion == 7 and [p.champion_version for p in page.metric_series][-1] == 7
    html = ui.render_model_page(page, "/modelgate")
    assert "The newest 5 of 8 versions" in html


def test_compare_page_marks_what_differs_and_shows_each_verdict(registry: Registry) -> None:
    from modelgate.registry.errors import InvalidInput

    _fill(registry)
    page = ui.compare_page(registry, "churn", [1, 2, 2])  # a repeated version counts once
    assert page.versions == (1, 2)
    rows = {(r.section, r.label): r for r in page.rows}
    assert rows[("metric", "holdout_roc_auc")].values == (0.7, 0.71) and rows[("metric", "holdout_roc_auc")].differs
    assert rows[("status", "status")].values == ("archived", "rejected")
    assert rows[("data", "row_count")].values == (None, None) and not rows[("data", "row_count")].differs
    verdict = rows[("verdict", "verdict")].values
    assert verdict[0].startswith("passed 2026-01-11") and verdict[1].startswith("rejected 2026-01-18")
    assert rows[("verdict", "reason")].values[1] == "<b>lost</b>"
    html = ui.render("compare.html", page=page, prefix="/modelgate")
    assert html.count('<tr class="differs">') == sum(r.differs for r in page.rows) == 6  # each marked
    assert "&lt;b&gt;lost&lt;/b&gt;" in html and "<b>lost</b>" not in html
    assert 'href="/modelgate/models/churn/versions/2"' in html
    with pytest.raises(InvalidInput, match="compare needs at least two versions"):
        ui.compare_page(registry, "churn", [3])
    with pytest.raises(InvalidInput, match="compare at most 6 versions at once, got 7"):
        ui.compare_page(registry, "churn", list(range(1, 8)))
    model = ui.render_model_page(ui.model_page(registry, "churn"), "/modelgate")
    assert 'action="/modelgate/models/churn/compare"' in model and 'name="v" value="6" form="compare-form"' in model


def test_the_model_page_shows_the_experiment_its_arms_and_its_looks(registry: Registry) -> None:
    from modelgate.registry.experiments import ExperimentStore, LookRow

    _fill(registry)
    assert "No experiment yet: <code>modelgate ab start churn" in ui.render_model_page(
        ui.model_page(registry, "churn"), "/modelgate"
    )
    store = ExperimentStore(registry)
    registry.register("churn", draft("r-ab"))  # v7
    experiment = store.start("churn", challenger=7, split_percent=10, settings={"metric": "accuracy"}, actor="ann")
    for day, (estimate, action) in enumerate(((0.01, "continue"), (0.03, "promote")), start=1):
        arm = {"version": 5, "keys": 900, "labelled": 800, "total": 600.0, "total_sq": 600.0, "missing": 100, "late": 3}
        look = {
            "champion": arm,
            "challenger": {**arm, "version": 7, "keys": 100, "labelled": 90, "total": 70.0},
            "estimate": estimate,
            "lower": estimate - 0.02,
            "upper": estimate + 0.02,
            "p_value": 0.2,
            "srm_p": 0.6,
            "looks": day,
            "guardrails": [],
        }
        end = START + dt.timedelta(days=60 + day)
        store.record_look(LookRow(experiment.id, end, look, action, "<img src=x onerror=alert(1)> better"))
    page = ui.model_page(registry, "churn")
    assert page.experiment is not None and page.experiment.id == experiment.id and len(page.experiment_looks) == 2
    html = ui.render_model_page(page, "/modelgate")
    assert "v5 (champion) on 90.0 % of keys vs" in html and "v7 (challenger) on 10.0 %" in html
    arms = re.search(r'<table id="experiment-arms">(.*?)</table>', html, re.S)[1]
    assert "<td>champion</td><td>v5</td><td>900</td><td>800</td><td>100</td><td>3</td><td>0.75</td>" in arms
    assert "<b>promote</b>" in html and "&lt;img src=x onerror=alert(1)&gt; better" in html
    assert "<img src=x" not in html
    looks = json.loads(re.search(r'<script id="looks-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert [lk["action"] for lk in looks] == ["continue", "promote"] and looks[1]["lower"] == pytest.approx(0.01)
