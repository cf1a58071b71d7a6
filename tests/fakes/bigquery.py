"""A fake BigQuery: the REST API (v2) that google-cloud-bigquery's client speaks, served over HTTP on 127.0.0.1.

The provider's real BigQueryHook builds the real client; only its credentials are replaced (anonymous), and
`BIGQUERY_EMULATOR_HOST` (honoured by the client itself) points it here. Tables are pandas frames with a
BigQuery schema; a query runs on SQLite after its backquoted names and `@parameters` are translated, so the
fake answers whatever plain SELECT the code under test sends, not one canned shape. Results come back as
BigQuery does: `{"f": [{"v": "..."}]}` rows, int64 microsecond timestamps when asked, pages of `maxResults`
with a page token and a job to continue from.

Faults: `fail_next(route, status, reason)` answers the next request to a route with a Google error body.
Every request is kept in `calls` so tests can assert on what Google would have received.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd

PREFIX = "/bigquery/v2"
TEMPORAL = {"TIMESTAMP", "DATETIME"}


@dataclass(frozen=True)
class Call:
    method: str
    route: str  # tables.get, jobs.query, jobs.getQueryResults, jobs.get
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]


@dataclass
class _Result:
    schema: list[dict[str, str]]
    rows: list[list[Any]]
    location: str


@dataclass
class FakeBigQuery:
    project: str = "test-project"
    location: str = "US"
    tables: dict[str, tuple[dict[str, str], pd.DataFrame]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    results: dict[str, _Result] = field(default_factory=dict)
    faults: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _server: ThreadingHTTPServer | None = None

    # -- the state tests set up ------------------------------------------------------------------------
    def put_table(self, table_id: str, frame: pd.DataFrame, schema: dict[str, str] | None = None) -> None:
        """`project.dataset.table` holds these rows; the schema (column -> BigQuery type) is inferred if absent."""
        self.tables[table_id] = (schema or {c: _bq_type(frame[c]) for c in frame.columns}, frame.copy())

    def fail_next(self, route: str, status: int, reason: str, message: str = "injected") -> None:
        self.faults.setdefault(route, []).append((status, f"{reason}: {message}"))

    def routes(self) -> list[str]:
        return [c.route for c in self.calls]

    # -- the server ------------------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                status, payload = fake.handle(method, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the API ---------------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parsed = urlparse(raw_path)
        path = parsed.path.removeprefix(PREFIX)
        query = parse_qs(parsed.query)
        routes = [
            ("GET", r"/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", "tables.get", self._get_table),
            ("POST", r"/projects/([^/]+)/queries", "jobs.query", self._query),
            ("GET", r"/projects/([^/]+)/queries/([^/]+)", "jobs.getQueryResults", self._query_results),
            ("GET", r"/projects/([^/]+)/jobs/([^/]+)", "jobs.get", self._get_job),
        ]
        for verb, pattern, route, action in routes:
            found = re.fullmatch(pattern, path)
            if verb == method and found:
                self.calls.append(Call(method, route, path, query, body))
                if self.faults.get(route):
                    status, message = self.faults[route].pop(0)
                    return status, _error(status, message)
                try:
                    return 200, action(*found.groups(), query=query, body=body)
                except _ApiError as exc:
                    return exc.status, _error(exc.status, exc.message)
        self.calls.append(Call(method, "unknown", path, query, body))
        return 501, _error(501, f"notImplemented: the fake has no {method} {path}")

    def _get_table(self, project: str, dataset: str, table: str, **_: Any) -> dict[str, Any]:
        table_id = f"{project}.{dataset}.{table}"
        if table_id not in self.tables:
            raise _ApiError(404, f"notFound: Not found: Table {project}:{dataset}.{table}")
        schema, frame = self.tables[table_id]
        return {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{table}",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": [{"name": n, "type": t, "mode": "NULLABLE"} for n, t in schema.items()]},
            "numRows": str(len(frame)),
            "type": "TABLE",
            "location": self.location,
        }

    def _query(self, project: str, *, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        if body.get("useLegacySql", True):
            raise _ApiError(400, "invalidQuery: the fake speaks standard SQL only (useLegacySql false)")
        result = self._run(body["query"], body.get("queryParameters", []))
        job_id = f"job_{next(self._ids)}"
        self.results[job_id] = result
        int64_time = bool(body.get("formatOptions", {}).get("useInt64Timestamp"))
        page = self._page(result, 0, body.get("maxResults"), int64_time)
        return {
            "kind": "bigquery#queryResponse",
            "jobReference": {"projectId": project, "jobId": job_id, "location": result.location},
            "jobComplete": True,
            **page,
        }

    def _query_results(self, project: str, job_id: str, *, query: dict[str, list[str]], **_: Any) -> dict[str, Any]:
        if job_id not in self.results:
            raise _ApiError(404, f"notFound: Not found: Job {project}:{job_id}")
        result = self.results[job_id]
        start = int((query.get("pageToken") or query.get("startIndex") or ["0"])[0])
        limit = query.get("maxResults")
        int64_time = (query.get("formatOptions.useInt64Timestamp") or ["false"])[0].lower() == "true"
        page = self._page(result, start, int(limit[0]) if limit else None, int64_time)
        return {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": {"projectId": project, "jobId": job_id, "location": result.location},
            "jobComplete": True,
            **page,
        }

    def _get_job(self, project: str, job_id: str, **_: Any) -> dict[str, Any]:
        if job_id not in self.results:
            raise _ApiError(404, f"notFound: Not found: Job {project}:{job_id}")
        return {
            "kind": "bigquery#job",
            "id": f"{project}:{self.location}.{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id, "location": self.location},
            "configuration": {"jobType": "QUERY", "query": {"useLegacySql": False}},
            "status": {"state": "DONE"},
            "statistics": {"query": {"statementType": "SELECT", "totalBytesProcessed": "0"}},
        }

    # -- the engine ------------------------------------------------------------------------------------
    def _run(self, sql: str, parameters: list[dict[str, Any]]) -> _Result:
        db = sqlite3.connect(":memory:")
        try:
            names: dict[str, str] = {}
            types: dict[str, str] = {}

            def table_name(found: re.Match[str]) -> str:
                table_id = ".".join(found.groups())
                if table_id not in self.tables:
                    raise _ApiError(404, f"notFound: Not found: Table {table_id}")
                if table_id not in names:
                    names[table_id] = f"t{len(names)}"
                    schema, frame = self.tables[table_id]
                    types.update(schema)
                    _to_sqlite(frame, schema).to_sql(names[table_id], db, index=False)
                return names[table_id]

            translated = re.sub(r"`([^`]+)`\.`([^`]+)`\.`([^`]+)`", table_name, sql)
            translated = re.sub(r"`([^`]+)`", r'"\1"', translated)
            translated = re.sub(r"@(\w+)", r":\1", translated)
            values = {p["name"]: _parameter(p) for p in parameters}
            try:
                cursor = db.execute(translated, values)
            except sqlite3.Error as exc:
                raise _ApiError(400, f"invalidQuery: {exc}") from None
            columns = [d[0] for d in cursor.description]
            schema = [{"name": c, "type": types.get(c, "STRING"), "mode": "NULLABLE"} for c in columns]
            return _Result(schema, [list(row) for row in cursor.fetchall()], self.location)
        finally:
            db.close()

    def _page(self, result: _Result, start: int, limit: int | None, int64_time: bool) -> dict[str, Any]:
        stop = len(result.rows) if limit is None else min(len(result.rows), start + limit)
        rows = [
            {"f": [{"v": _cell(v, f["type"], int64_time)} for v, f in zip(row, result.schema, strict=True)]}
            for row in result.rows[start:stop]
        ]
        page: dict[str, Any] = {"schema": {"fields": result.schema}, "totalRows": str(len(result.rows))}
        if rows or limit != 0:
            page["rows"] = rows
        if stop < len(result.rows):
            page["pageToken"] = str(stop)
        return page


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> dict[str, Any]:
    reason, _, text = message.partition(": ")
    return {"error": {"code": status, "message": text or message, "errors": [{"reason": reason, "message": text}]}}


def _bq_type(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "BOOL"
    if pd.api.types.is_integer_dtype(column):
        return "INT64"
    if pd.api.types.is_float_dtype(column):
        return "FLOAT64"
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return "TIMESTAMP"
    if pd.api.types.is_datetime64_dtype(column):
        return "DATETIME"
    return "STRING"


def _micros(value: Any) -> int:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1000)


def _to_sqlite(frame: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """Temporal columns as int64 microseconds (UTC), so comparisons with parameters are exact."""
    out = frame.copy()
    for column, kind in schema.items():
        if kind in TEMPORAL:
            out[column] = [None if pd.isna(v) else _micros(v) for v in out[column]]
    return out


def _parameter(parameter: dict[str, Any]) -> Any:
    kind = parameter["parameterType"]["type"]
    value = parameter["parameterValue"].get("value")
    if value is None:
        return None
    if kind in TEMPORAL:
        return _micros(value)
    if kind == "INT64":
        return int(value)
    if kind == "FLOAT64":
        return float(value)
    return value


def _cell(value: Any, kind: str, int64_time: bool) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if kind == "TIMESTAMP":
        return str(value) if int64_time else repr(value / 1e6)
    if kind == "DATETIME":
        return pd.Timestamp(value * 1000).strftime("%Y-%m-%dT%H:%M:%S.%f")
    if kind == "BOOL":
        return "true" if value else "false"
    return str(value)


def patch_bigquery_hook(monkeypatch: Any, address: str, project: str) -> None:
    """Point the real client at the fake (the client's own emulator variable) with anonymous credentials."""
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", address)

    def anonymous(self: Any) -> tuple[Any, str]:
        return AnonymousCredentials(), self._get_field("project", None) or project

    monkeypatch.setattr(BigQueryHook, "get_credentials_and_project_id", anonymous)
