"""The report store the api-server serves: path containment, local and gs://, and the URLs extra links carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgate.airflow.web import report_url
from modelgate.report_store import ReportStore, contained
from tests.fakes.gcs import FakeGCS


def test_only_files_inside_the_reports_directory_are_served(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    (reports / "churn" / "drift").mkdir(parents=True)
    page = reports / "churn" / "drift" / "w1.html"
    page.write_text("<html></html>")
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (reports / "link.html").symlink_to(secret)
    assert contained(reports, "churn/drift/w1.html") == page.resolve()
    for escape in ("../secret.txt", "churn/../../secret.txt", str(secret), "link.html", "churn", "", "missing.html"):
        assert contained(reports, escape) is None, escape
    store = ReportStore(str(reports))
    found = store.read("churn/drift/w1.html")
    assert found is not None and found.content == b"<html></html>" and found.media_type == "text/html"
    assert store.read("../secret.txt") is None and store.read("link.html") is None


def test_report_urls_point_at_the_api_server(tmp_path: Path) -> None:
    store = ReportStore(str(tmp_path / "reports"))
    inside = str(tmp_path / "reports" / "churn" / "evaluation" / "v2.html")
    assert report_url(inside, store=store, base_url="http://af:8080/") == (
        "http://af:8080/modelgate/reports/churn/evaluation/v2.html"
    )
    assert report_url("gs://bucket/r.html", store=store, base_url="http://af:8080") == "gs://bucket/r.html"
    assert report_url("/elsewhere/r.html", store=store, base_url="http://af:8080") == "file:///elsewhere/r.html"


@pytest.fixture
def gcs_store(tmp_path: Path) -> tuple[ReportStore, FakeGCS]:
    fake = FakeGCS(tmp_path / "gcs")
    return ReportStore("gs://reports-bucket/team/reports", staging=tmp_path / "staging", gcs_hook=fake), fake


def test_a_gcs_report_store_publishes_and_serves_reports(gcs_store: tuple[ReportStore, FakeGCS]) -> None:
    store, fake = gcs_store
    written = store.local_dir / "churn" / "evaluation" / "v3.html"
    written.parent.mkdir(parents=True)
    written.write_text("<html>v3</html>")
    location = store.publish(written)
    assert location == "gs://reports-bucket/team/reports/churn/evaluation/v3.html"
    assert fake.path_of(location).read_text() == "<html>v3</html>"
    docs = store.local_dir / "churn" / "quality" / "training" / "w1"
    (docs / "validations" / "suite").mkdir(parents=True)
    (docs / "validations" / "suite" / "run.html").write_text("docs")
    (docs / "index.html").write_text("index")
    assert store.publish(docs) == "gs://reports-bucket/team/reports/churn/quality/training/w1"
    assert store.first_page("churn/quality/training/w1") == "churn/quality/training/w1/validations/suite/run.html"

    assert store.relative(location) == "churn/evaluation/v3.html"
    assert report_url(location, store=store, base_url="http://af") == (
        "http://af/modelgate/reports/churn/evaluation/v3.html"
    )
    found = store.read("churn/evaluation/v3.html")
    assert found is not None and found.content == b"<html>v3</html>"
    # nothing outside the store's prefix, however it is spelled
    (fake.root / "reports-bucket" / "team" / "secret.txt").write_text("no")
    for escape in ("../secret.txt", "churn/../../secret.txt", "/team/secret.txt", "", "churn\\..\\x", "missing.html"):
        assert store.read(escape) is None, escape
    assert store.relative("gs://reports-bucket/team/secret.txt") is None
    assert store.relative("gs://reports-bucket/team/reports/../secret.txt") is None


def test_a_data_docs_folder_linked_outside_the_store_has_no_first_page(tmp_path: Path) -> None:
    reports, outside = tmp_path / "reports", tmp_path / "outside"
    (outside / "validations" / "suite").mkdir(parents=True)
    (outside / "validations" / "suite" / "run.html").write_text("not ours")
    (reports / "churn" / "quality" / "training").mkdir(parents=True)
    (reports / "churn" / "quality" / "training" / "w1").symlink_to(outside, target_is_directory=True)
    inside = reports / "churn" / "quality" / "training" / "w2" / "validations" / "s"
    inside.mkdir(parents=True)
    (inside / "run.html").write_text("ours")
    store = ReportStore(str(reports))
    assert store.first_page("churn/quality/training/w1") is None  # was a ValueError: a 500 on the version page
    assert store.first_page("churn/quality/training/w2") == "churn/quality/training/w2/validations/s/run.html"


def test_every_response_carries_the_security_headers() -> None:
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, Response
    from fastapi.testclient import TestClient

    from modelgate.airflow.web import REPORT_POLICY, SecurityHeaders, page_policy, report_headers

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)

    @app.get("/page")
    def page() -> HTMLResponse:
        return HTMLResponse("<p>x</p>", headers={"Content-Security-Policy": page_policy("n0nce")})

    @app.get("/report.html")
    def report() -> Response:
        return Response("<p>r</p>", media_type="text/html", headers=report_headers("text/html"))

    client = TestClient(app)
    own = client.get("/page")
    assert own.headers["content-security-policy"] == page_policy("n0nce")
    assert "script-src 'nonce-n0nce'" in own.headers["content-security-policy"]
    assert "unsafe-inline" not in own.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    served = client.get("/report.html")
    assert served.headers["content-security-policy"] == REPORT_POLICY
    assert REPORT_POLICY.startswith("sandbox allow-scripts") and "allow-same-origin" not in REPORT_POLICY
    missing = client.get("/nothing-here")  # errors get the sandbox too: nothing served runs in Airflow's origin
    assert missing.status_code == 404 and missing.headers["content-security-policy"] == REPORT_POLICY
    for response in (own, served, missing):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404
    assert report_headers("application/json") == {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
