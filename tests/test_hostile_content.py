"""Hostile strings never run as script in what modelgate serves from Airflow's origin.

Hypothesis puts strings built around script breakouts (`</script>`, quotes, `</`, event handlers, unicode line
separators) into every field a user or a data row controls: feature names and category values, descriptions,
tags, params, reasons, approver and run names, deployment errors. Each Models page and each report is rendered
and loaded in Debian's Chromium from a plain HTTP server *without* our Content-Security-Policy, so the test
checks the escaping itself; any dialog a payload opens fails it (our own scripts open none). A second test
serves a report with the policy the api-server sends, and checks its charts still draw while its scripts can
read no cookie.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelgate import ui
from modelgate.airflow.web import report_headers
from modelgate.registry import ANY_CHAMPION, Registry
from modelgate.registry.connection import create_registry_engine
from modelgate.registry.entities import Source
from modelgate.registry.monitoring import DecisionRow, DriftRow, MonitoringStore
from tests.browser import chromium
from tests.conftest import REPO_ROOT, _db_url, _drop_database, _new_database
from tests.helpers import draft

pytestmark = pytest.mark.integration

PAYLOADS = [
    "</script><script>alert(1)</script>",
    "</SCRIPT ><script>alert(1)</script>",
    "<!--</script><script>alert(1)//-->",
    '"><img src=x onerror=alert(1)>',
    "'><svg/onload=alert(1)>",
    "<img src=x onerror=alert(1)>",
    "</title><script>alert(1)</script>",
    "</style><script>alert(1)</script>",
    "</textarea><script>alert(1)</script>",
    '<iframe srcdoc="<script>parent.alert(1)</script>"></iframe>',
    "javascript:alert(1)",
    "\u2028alert(1)//",
    '\\";alert(1);//',
    "'};alert(1);//",
    "<a href=javascript:alert(1)>x</a>",
    "<details open ontoggle=alert(1)>",
]
# no NUL: PostgreSQL's text and jsonb cannot hold it (the registry refuses it before anything renders)
_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=6)
hostile = st.builds(lambda a, p, b: a + p + b, _text, st.sampled_from(PAYLOADS), _text)
START = dt.datetime(2026, 1, 4, tzinfo=dt.UTC)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Headers(_Quiet):
    """Serves files with the headers the api-server gives the report store's files."""

    def end_headers(self) -> None:
        media_type = self.guess_type(self.path)
        for name, value in report_headers(media_type).items():
            self.send_header(name, value)
        super().end_headers()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder and the URL it is served at (plain HTTP on loopback, no security headers), with plotly.js where
    the Models view asks the api-server for it: hostile names go through the charts too, with no CSP to help."""
    from modelgate.airflow.web import PLOTLY_JS, _plotly_js

    root = tmp_path_factory.mktemp("site")
    (root / "modelgate" / "static").mkdir(parents=True)
    (root / "modelgate" / "static" / PLOTLY_JS).write_bytes(_plotly_js())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shared_registry(template_db: str) -> Iterator[Registry]:
    """One registry for every example (each example registers its own model)."""
    name = _new_database(template_db)
    registry = Registry(create_registry_engine(_db_url(name)))
    yield registry
    registry.close()
    _drop_database(name)


def _dialogs(browser: Any, url: str) -> list[str]:
    """What dialogs loading the page opened (our own scripts open none)."""
    page = browser.new_page()
    opened: list[str] = []
    page.on("dialog", lambda dialog: (opened.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(url, wait_until="load")
        page.wait_for_timeout(50)  # handlers such as onerror and ontoggle fire just after load
    finally:
        page.close()
    return opened


_names = (f"hostile{i}" for i in itertools.count())


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=st.fixed_dictionaries({k: hostile for k in (
    "description", "tag_key", "tag", "param", "param_value", "run_id", "dag_id", "version_description",
    "approver", "promote_reason", "reject_reason", "feature", "decision_reason", "decision_detail",
    "deploy_error", "pending_run", "metric",
)}))  # fmt: skip
def test_no_hostile_field_runs_as_script_in_the_models_view(
    f: dict[str, str], shared_registry: Registry, site: tuple[Path, str], browser: Any
) -> None:
    from modelgate.deploy.store import DeploymentStore

    registry, (root, base) = shared_registry, site
    name = next(_names)
    end = START + dt.timedelta(weeks=1)
    first = draft(
        f["run_id"],
        source=Source(f["dag_id"], f["run_id"], "train", 1),
        tags={f["tag_key"]: f["tag"], "quality_window": f["tag"]},
        params={f["param"]: f["param_value"]},
        metrics={"holdout_roc_auc": 0.8, f["metric"]: 0.5},
        feature_schema={f["feature"]: "categorical"},
        window_start=START,
        window_end=end,
        description=f["version_description"],
    )
    v1 = registry.register(name, first, description=f["description"]).version
    v2 = registry.register(name, draft(f["run_id"] + "2", description=f["version_description"])).version
    verdict = {
        "champion_version": None,
        "challenger_version": v1,
        "evaluation": {"primary": {"metric": f["metric"], "champion": None, "challenger": 0.8}},
        "report": f"/nowhere/{f['feature']}.html",
    }
    registry.promote(
        name, v1, expected_champion=ANY_CHAMPION, actor=f["approver"], reason=f["promote_reason"], verdict=verdict
    )
    registry.record_event(
        name, "evaluate", actor=f["approver"], to_version=v1, reason=f["promote_reason"], verdict=verdict
    )
    registry.reject(
        name, v2, actor=f["approver"], reason=f["reject_reason"], verdict={**verdict, "challenger_version": v2}
    )
    monitoring = MonitoringStore(registry)
    scores = {f["feature"]: {"score": 0.2, "threshold": 0.1, "drifted": True}, "plain": {"score": 0.01}}
    monitoring.upsert_drift(DriftRow(name, START, end, v1, scores, 0.5, True, 100, 100, None))
    monitoring.record_decision(
        DecisionRow(name, START, end, True, f["decision_reason"], f["decision_detail"], {"why": f["decision_detail"]})
    )
    deployments = DeploymentStore(registry)
    attempt = deployments.start(name, v1, None, "local", f["run_id"])
    deployments.finish(attempt, status="failed", traffic={f["tag"]: 100}, actor=f["approver"], error=f["deploy_error"])
    pending = [ui.PendingApproval(name, f"modelgate_retrain__{name}", f["pending_run"], None)]

    pages = {
        "index.html": ui.render("models.html", index=ui.overview(registry, pending), prefix="/modelgate"),
        "model.html": ui.render_model_page(ui.model_page(registry, name, pending), "/modelgate"),
        "version.html": ui.render(
            "version.html",
            version=registry.get_version(name, v1),
            reports=[ui.ReportLink(f["feature"], end, f["tag"], f"/modelgate/reports/{f['tag']}")],
            prefix="/modelgate",
        ),
    }
    for file, html in pages.items():
        (root / f"{name}-{file}").write_text(html, encoding="utf-8")
        assert _dialogs(browser, f"{base}/{name}-{file}") == [], f"a hostile field ran as script in {file}: {f}"


def _hostile_spec(feature: str, category: str, description: str, **changes: Any) -> Any:
    from modelgate.spec import parse_spec

    doc = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
    doc["description"] = description
    doc["features"] = [
        {"name": "tenure_months", "type": "numeric", "min": 0, "max": 120},
        {"name": feature, "type": "categorical"},
    ]
    doc["evaluation"]["slices"] = [{"column": feature, "tolerance": 0.05, "min_rows": 10}]
    doc["quality"] = {"min_rows": 10}
    doc["estimator"] = {"name": "logistic_regression"}
    doc = {key: value for key, value in {**doc, **changes}.items() if value is not None}  # None: field left out
    return parse_spec(yaml.safe_dump(doc))


def _frame(spec: Any, category: str, start: dt.datetime, shift: float) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 1500
    cats = np.array([category, "plain", category + "2"], dtype=object)
    column = cats[rng.integers(0, 3, n) if shift == 0 else rng.choice(3, n, p=[0.7, 0.2, 0.1])]
    tenure = rng.uniform(0, 120, n) + shift * 30
    churned = (rng.uniform(size=n) < 1 / (1 + np.exp((tenure - 60) / 20))).astype(int)
    return pd.DataFrame(
        {
            spec.time_column: pd.date_range(start, periods=n, freq="h", tz="UTC"),
            spec.id_column: [f"c{i}" for i in range(n)],
            "tenure_months": tenure,
            spec.categorical_features[0]: column,
            spec.target: churned,
        }
    )


def _write_reports(feature: str, category: str, description: str, folder: Path) -> tuple[Path, Path]:
    spec = _hostile_spec(feature, category, description)
    reference = _frame(spec, category, START.replace(tzinfo=None), 0.0)
    current = _frame(spec, category, (START + dt.timedelta(days=30)).replace(tzinfo=None), 1.0)
    return _reports_for(spec, reference, current, folder)


def _reports_for(spec: Any, reference: Any, current: Any, folder: Path) -> tuple[Path, Path]:
    """A first challenger's evaluation report on `reference`, and the drift report from it to `current` (with
    a multiclass model's predicted class mix as a column, as the DAGs measure it)."""
    from modelgate.drift import compare
    from modelgate.loop import fit_challenger, judge, with_predicted_class
    from modelgate.reports import write_evaluation_report

    challenger = fit_challenger(spec, reference)
    judged = judge(spec, reference, challenger.evaluation_model, None, champion_version=None, challenger_version=1)
    evaluation = write_evaluation_report(
        spec,
        judged.verdict,
        judged.y,
        judged.champion_scores,
        judged.challenger_scores,
        judged.holdout,
        folder / "evaluation.html",
    )
    model = challenger.served.pipeline
    drift = folder / "drift.html"
    predicted = (with_predicted_class(spec, model, frame) for frame in (reference, current))
    compare(spec, *predicted, report_path=drift)
    return evaluation, drift


_reports = (f"reports{i}" for i in itertools.count())


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(feature=hostile, category=hostile, description=hostile)
def test_no_hostile_feature_name_or_category_runs_as_script_in_the_reports(
    feature: str, category: str, description: str, site: tuple[Path, str], browser: Any
) -> None:
    root, base = site
    folder = root / next(_reports)
    folder.mkdir()
    evaluation, drift = _write_reports(feature, category, description, folder)
    for report in (evaluation, drift):
        url = f"{base}/{report.relative_to(root).as_posix()}"
        assert _dialogs(browser, url) == [], (
            f"a hostile value ran as script in {report.name}: {feature!r}, {category!r}"
        )


def _multiclass_reports(classes: list[str], folder: Path) -> tuple[Path, Path]:
    """A multiclass model whose class names are hostile: its evaluation report (per-class slices, confusion
    matrices) and a drift report with the predicted class mix as a column."""
    import numpy as np

    slices = [{"column": "churned", "tolerance": 0.05, "min_rows": 10}]  # per-class F1, by class name
    spec = _hostile_spec(
        "segment",
        "retail",
        "classes",
        task="multiclass_classification",
        classes=classes,
        evaluation={"slices": slices},
        retrain={},  # the churn spec's decay reads roc_auc, a binary metric
        risk_tiers=None,
    )
    frames = []
    for start, shift in ((START, 0.0), (START + dt.timedelta(days=30), 1.0)):
        frame = _frame(spec, "retail", start.replace(tzinfo=None), shift)
        tiers = np.digitize(frame["tenure_months"], [40, 80])  # three classes the tenure tells apart
        frames.append(frame.assign(**{spec.target: [classes[i] for i in tiers]}))
    return _reports_for(spec, *frames, folder)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(classes=st.lists(hostile, min_size=3, max_size=3, unique_by=lambda c: c.strip().casefold()))
def test_no_hostile_class_name_runs_as_script_in_the_reports(
    classes: list[str], site: tuple[Path, str], browser: Any
) -> None:
    root, base = site
    folder = root / next(_reports)
    folder.mkdir()
    evaluation, drift = _multiclass_reports(classes, folder)
    assert "predicted class per true class" in evaluation.read_text()  # the confusion matrix drew the names
    for report in (evaluation, drift):
        url = f"{base}/{report.relative_to(root).as_posix()}"
        assert _dialogs(browser, url) == [], f"a hostile class name ran as script in {report.name}: {classes!r}"


def test_reports_served_sandboxed_still_draw_and_read_no_cookie(tmp_path: Path, browser: Any) -> None:
    evaluation, drift = _write_reports("contract", "month-to-month", "churn", tmp_path)
    assert 'href="/modelgate/models/churn" target="_top">← Models › churn</a>' in evaluation.read_text()  # a way back
    probe = (
        "<script>document.title = (function () { try { return 'cookie:' + document.cookie; } "
        "catch (e) { return 'blocked'; } })();</script>"
    )
    evaluation.write_text(evaluation.read_text().replace("</body>", probe + "</body>"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Headers, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = browser.new_page()
        response = page.goto(f"{base}/evaluation.html", wait_until="load")
        assert response is not None and "sandbox allow-scripts" in response.headers["content-security-policy"]
        assert "allow-same-origin" not in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        page.wait_for_selector(".main-svg", timeout=15_000)  # plotly.min.js loaded and drew the ROC curve
        assert page.title() == "blocked"  # an opaque origin: no cookie to read
        page.goto(f"{base}/drift.html", wait_until="load")
        page.wait_for_selector(f"#root_{_dashboard_id(drift)} *", timeout=30_000)  # Evidently drew its dashboard
        page.close()
    finally:
        server.shutdown()


def _dashboard_id(report: Path) -> str:
    import re

    found = re.search(r"window\.drawDashboard\((metric_[0-9a-f]{32}),", report.read_text())
    assert found is not None
    return found.group(1)
