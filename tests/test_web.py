"""The api-server's report pages: path containment and the URLs the extra links carry."""

from __future__ import annotations

from pathlib import Path

from modelgate.airflow.web import contained, report_url


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


def test_report_urls_point_at_the_api_server(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    inside = str(reports / "churn" / "evaluation" / "v2.html")
    assert report_url(inside, reports_dir=reports, base_url="http://af:8080/") == (
        "http://af:8080/modelgate/reports/churn/evaluation/v2.html"
    )
    assert report_url("gs://bucket/r.html", reports_dir=reports, base_url="http://af:8080") == "gs://bucket/r.html"
    assert report_url("/elsewhere/r.html", reports_dir=reports, base_url="http://af:8080") == "file:///elsewhere/r.html"
