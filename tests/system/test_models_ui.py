"""The Models view in a real browser: Debian's Chromium driven by Playwright against the running api-server.

The registry is filled by a real loop run (a forced retrain, then the monitor) of the `churn_browser` model.
Screenshots go to `test-screenshots/` in the checkout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelgate.registry.monitoring import MonitoringStore
from tests.browser import chromium
from tests.conftest import REPO_ROOT
from tests.system.conftest import RunningAirflow

pytestmark = pytest.mark.system

MODEL = "churn_browser"
SHOTS = REPO_ROOT / "test-screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def looped(airflow_stack: RunningAirflow) -> RunningAirflow:
    """One real loop run of MODEL (a forced retrain, then the monitor), shared by this module's tests."""
    _loop_run(airflow_stack)
    return airflow_stack


def _loop_run(airflow_stack: RunningAirflow) -> None:
    api = airflow_stack.api
    for stage, conf in (("retrain", {"force": True}), ("monitor", {})):
        dag_id = f"modelgate_{stage}__{MODEL}"
        api.set_paused(dag_id, False)
        run_id = api.trigger(dag_id, conf)
        run = api.wait_run(dag_id, run_id, timeout=300)
        if run["state"] != "success":
            failed = [t for t, state in api.task_states(dag_id, run_id).items() if state == "failed"]
            logs = {
                t: str(api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{t}/logs/1?full_content=true"))[-3000:]
                for t in failed
            }
            pytest.fail(f"{dag_id} {run['state']}: {logs}")


def test_models_view_in_a_browser(looped: RunningAirflow, browser: Any) -> None:
    airflow_stack = looped
    base, registry = airflow_stack.api.base_url, airflow_stack.registry
    champion = registry.get_champion(MODEL)
    assert champion is not None
    drift = MonitoringStore(registry).drift_timeline(MODEL)
    assert drift, "the monitor run recorded no drift row"
    SHOTS.mkdir(exist_ok=True)

    # nobody logged in: refused, in the browser as by a script
    assert httpx.get(f"{base}/modelgate/").status_code == 401
    anonymous = browser.new_page()
    assert anonymous.goto(f"{base}/modelgate/models/{MODEL}").status == 401
    anonymous.close()

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/auth/login/")
    page.fill('input[name="username"]', "admin")
    page.fill('input[type="password"]', airflow_stack.password)
    page.click('button[type="submit"]')
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)

    # the Models entry in Airflow's navigation opens the view inside the UI
    page.goto(f"{base}/plugin/modelgate")
    frame = page.wait_for_selector("iframe", timeout=30_000).content_frame()
    frame.wait_for_selector(f'.model-card[data-model="{MODEL}"]', timeout=30_000)
    page.screenshot(path=str(SHOTS / "models-in-airflow.png"), full_page=True)

    page.goto(f"{base}/modelgate/")
    card = page.locator(f'.model-card[data-model="{MODEL}"]')
    assert f"v{champion.version}" in card.locator(".champion-version").inner_text()
    page.screenshot(path=str(SHOTS / "models.png"), full_page=True)

    card.locator("h2 a").click()
    page.wait_for_selector("#heatmap .main-svg")  # plotly, from the api-server's /modelgate/static
    assert page.locator("#champion").inner_text() == f"champion v{champion.version}"
    rows = page.locator("#versions tbody tr")
    assert rows.count() == len(registry.list_versions(MODEL))
    assert page.locator("#heatmap").get_attribute("data-cells") == str(sum(len(row.scores) for row in drift))
    assert page.locator("#decisions tbody tr").count() >= 1 and page.locator("#events tbody tr").count() >= 2
    assert page.locator("#metric-chart .scatterlayer .point").count() >= 1  # the first champion's verdict
    assert "interval end" in page.locator("#metric-chart .xtitle").text_content()
    page.locator("#versions th", has_text="version").click()  # tables sort
    assert page.locator("#versions th[aria-sort]").count() == 1
    page.screenshot(path=str(SHOTS / "model.png"), full_page=True)
    compare = f"{base}/modelgate/models/{MODEL}/compare?v={champion.version}"
    assert page.request.get(compare).status == 400  # one version is no comparison
    assert page.request.get(f"{compare}&v=9999").status == 404

    page.locator(f'#versions a[href$="/versions/{champion.version}"]').click()
    assert "training data quality (Data Docs)" in page.locator("#reports").inner_text()
    report = page.locator("#reports tr", has_text="champion vs challenger").locator("a.report").first
    assert "v" in report.inner_text()
    page.screenshot(path=str(SHOTS / "version.png"), full_page=True)
    with page.expect_response(lambda r: "/modelgate/reports/" in r.url and r.url.endswith(".html")) as served:
        report.click()
    page.wait_for_load_state()
    assert "/modelgate/reports/" in page.url and f"v{champion.version}" in page.content()
    policy = served.value.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-scripts") and "allow-same-origin" not in policy
    page.wait_for_selector(".main-svg", timeout=30_000)  # the report's plotly charts still draw, sandboxed
    page.screenshot(path=str(SHOTS / "verdict-report.png"))
    page.close()


def _signed_in(browser: Any, base: str, user: str, password: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/auth/login/")
    page.fill('input[name="username"]', user)
    page.fill('input[type="password"]', password)
    page.click('button[type="submit"]')
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
    return page


def _apply(page: Any, action: str, version: str, reason: str) -> str:
    page.select_option('#action-form select[name="action"]', action)
    page.fill('#action-form input[name="version"]', version)
    page.fill('#action-form input[name="reason"]', reason)
    with page.expect_navigation():
        page.click('#action-form button[type="submit"]')
    done, error = page.locator("#action-done"), page.locator("#action-error")
    return done.inner_text() if done.count() else f"error: {error.inner_text()}"


def test_acting_from_the_models_view(airflow_stack: RunningAirflow, browser: Any) -> None:
    """An editor promotes and rolls back from the page (recorded as her, compare-and-swap on the champion she
    saw); a stale page is refused; a form without this server's token, or posted from another site, is 403;
    a viewer sees no form and her post is 403."""
    import json

    from tests.helpers import draft

    base, registry, model = airflow_stack.api.base_url, airflow_stack.registry, "acted_on"
    for run in ("r1", "r2"):
        registry.register(model, draft(run))
    registry.promote(model, 1, expected_champion=None, actor="dag")
    page = _signed_in(browser, base, "admin", airflow_stack.password)
    page.goto(f"{base}/modelgate/models/{model}")
    assert _apply(page, "promote", "2", "better on the holdout").startswith("v2 is the champion")
    assert registry.get_champion(model).version == 2  # type: ignore[union-attr]
    promoted = registry.history(model, kinds=["promote"])[-1]
    assert (promoted.actor, promoted.reason, promoted.to_version) == ("airflow:admin", "better on the holdout", 2)

    registry.rollback(model, actor="someone else", reason="meanwhile")  # the page still shows v2 as champion
    stale = _apply(page, "rollback", "", "canary failed")
    assert stale.startswith(f"error: champion of '{model}' changed since it was read: expected v2, found v1"), stale
    assert registry.get_champion(model).version == 1  # type: ignore[union-attr]  # nothing applied twice
    page.goto(f"{base}/modelgate/models/{model}")  # a fresh page: the champion it shows is current
    rolled = _apply(page, "promote", "2", "second look")
    assert rolled.startswith("v2 is the champion") and "error" not in rolled
    page.screenshot(path=str(SHOTS / "model-actions.png"), full_page=False)

    form = {"action": "promote", "version": "1", "reason": "forged", "expected_champion": "2"}
    url = f"{base}/modelgate/models/{model}/actions"
    assert page.request.post(url, form=form, max_redirects=0).status == 403  # no token
    token = page.locator('#action-form input[name="token"]').get_attribute("value")
    foreign = page.request.post(url, form={**form, "token": token}, headers={"Origin": "https://evil.example"})
    assert foreign.status == 403
    assert registry.get_champion(model).version == 2  # type: ignore[union-attr]
    page.close()

    passwords = json.loads(airflow_stack.stack.config.password_file.read_text())
    viewer = _signed_in(browser, base, "viewer", passwords["viewer"])
    viewer.goto(f"{base}/modelgate/models/{model}")
    assert viewer.locator("#action-form").count() == 0 and viewer.locator("#action-none").count() == 1
    refused = viewer.request.post(url, form={**form, "token": token}, max_redirects=0)
    assert refused.status == 403 and "edit rights" in refused.text()
    viewer.close()
    assert registry.get_champion(model).version == 2  # type: ignore[union-attr]


def test_the_loop_run_reports_its_lineage(looped: RunningAirflow) -> None:
    """OpenLineage (the provider's file transport): the source window into the monitor's tasks and into
    train_challenger, whose output is the new version's artifact, named by its sha256."""
    events = [json.loads(line) for line in looped.lineage_file.read_text().splitlines() if line.strip()]
    ours = (f"modelgate_retrain__{MODEL}.", f"modelgate_monitor__{MODEL}.")
    done = {}
    for event in events:
        job = event.get("job", {}).get("name", "")
        if event.get("eventType") == "COMPLETE" and job.startswith(ours):
            done[job] = event
    train = done[f"modelgate_retrain__{MODEL}.train_challenger"]
    source = {(d["namespace"], d["name"]) for d in train["inputs"]}
    assert any(ns.startswith("postgres://") and name.endswith(".public.churn_events") for ns, name in source), source
    champion = looped.registry.get_champion(MODEL)
    assert champion is not None
    [model] = train["outputs"]
    assert model["namespace"] == "file" and model["name"].endswith(f"{champion.artifact_sha256}.skops"), model
    quality = done[f"modelgate_monitor__{MODEL}.data_quality"]
    assert {(d["namespace"], d["name"]) for d in quality["inputs"]} == source  # the same window's table
    assert all(e["job"]["namespace"] == "modelgate-system-tests" for e in done.values())
