"""modelgate's pages inside the Airflow api-server: the Models view and the reports tasks write.

Mounted by `plugins/modelgate_plugin.py` at /modelgate (and linked as "Models" in the UI's navigation).
Every route needs an authenticated Airflow user (the same login, the same token cookie or bearer token as
the UI and REST API). Pages are read-only and read the registry through `MODELGATE_UI_REGISTRY_URL` when
set (a login in the `modelgate_reader` role), else the tasks' registry connection. Files are read only from
the reports directory: a path that resolves outside it is not found, whatever it spells.

These pages share the api-server's origin, where Airflow's token cookie authorises its REST API, so every
response carries a Content-Security-Policy: the Models view runs only its own scripts (a nonce per
response), and reports (Evidently, Data Docs, plotly) are served sandboxed, so their scripts run in an opaque
origin that can read no cookie and call no API. `X-Content-Type-Options: nosniff` and a same-origin
`Referrer-Policy` go on everything.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from modelgate.report_store import ReportStore

URL_PREFIX = "/modelgate"
REPORTS_ROUTE = "/reports"

COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
REPORT_POLICY = (
    # an opaque origin: no cookie, no storage, no same-origin request; no fetch, form or plugin either
    "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox allow-downloads; "
    "default-src 'none'; script-src 'self' 'unsafe-inline' 'unsafe-eval' https:; "
    "style-src 'self' 'unsafe-inline' https:; img-src 'self' data: blob:; font-src 'self' data: https:; "
    "connect-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)


PLOTLY_JS = "plotly.min.js"  # what the comparison reports load, written beside them


@functools.cache
def _plotly_js() -> bytes:
    import plotly.offline

    return plotly.offline.get_plotlyjs().encode()


def page_policy(nonce: str) -> str:
    """The Models view's policy: only the page's own scripts (by nonce), nothing else executes or loads."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'; object-src 'none'"
    )


def report_headers(media_type: str) -> dict[str, str]:
    """Headers of a file from the report store: sandboxed when a browser could run it as a page."""
    headers = dict(COMMON_HEADERS)
    if media_type.startswith(("text/html", "application/xhtml", "image/svg")) or "xml" in media_type:
        headers["Content-Security-Policy"] = REPORT_POLICY
    return headers


class SecurityHeaders:
    """ASGI middleware: the common headers on every response, and the sandbox policy on any response that
    did not set its own Content-Security-Policy (errors, redirects, files)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {name.lower() for name, _ in headers}
                for name, value in COMMON_HEADERS.items():
                    if name.lower().encode() not in names:
                        headers.append((name.lower().encode(), value.encode()))
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", REPORT_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def report_url(path: str, *, store: ReportStore, base_url: str) -> str:
    """The browser URL of a report: under the api-server when it lives in the report store, else as it is."""
    relative = store.relative(path)
    if relative is not None:
        return f"{base_url.rstrip('/')}{URL_PREFIX}{REPORTS_ROUTE}/{relative}"
    return path if "://" in path else f"file://{path}"


class LazyApp:
    """An ASGI app that builds the FastAPI app on its first request.

    Every Airflow component imports plugins (the scheduler, the dag-processor, each task), but only the
    api-server ever serves these routes: building the app at import would cost each of them ~0.8 s.
    """

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


UI_REGISTRY_URL_ENV = "MODELGATE_UI_REGISTRY_URL"


def pending_approvals() -> list[Any]:
    """Retrain runs whose `approve` task waits for a human, from Airflow's own database (api-server side)."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    from modelgate.ui import PendingApproval

    prefix = "modelgate_retrain__"
    with create_session() as session:
        rows = session.execute(
            sa.select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.start_date).where(
                TaskInstance.task_id == "approve",
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                TaskInstance.dag_id.startswith(prefix),
            )
        ).all()
    return [PendingApproval(dag_id.removeprefix(prefix), dag_id, run_id, start) for dag_id, run_id, start in rows]


def create_app() -> Any:
    import os
    import secrets

    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends, FastAPI, HTTPException, Query
    from fastapi.responses import HTMLResponse, RedirectResponse, Response

    from modelgate import ui
    from modelgate.airflow.runtime import registry_url, report_store
    from modelgate.registry.errors import InvalidInput, InvalidModelName, ModelNotFound, VersionNotFound
    from modelgate.registry.store import Registry

    # no /docs, /redoc or /openapi.json: these routes are pages, not an API to browse. Every route needs a
    # logged-in user but the plotly library's, which a sandboxed report loads without the session cookie (and
    # the Models view's charts load from /static).
    app = FastAPI(title="modelgate", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    signed_in = [Depends(requires_authenticated())]
    registry: list[Registry] = []

    def reader() -> Registry:
        if not registry:
            registry.append(Registry.connect(os.environ.get(UI_REGISTRY_URL_ENV) or registry_url(), pool_size=2))
        return registry[0]

    store = report_store()

    def url_of(path: str) -> str | None:
        relative = store.relative(path)
        return None if relative is None else f"{URL_PREFIX}{REPORTS_ROUTE}/{relative}"

    def html(render: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        headers = {**COMMON_HEADERS, "Content-Security-Policy": page_policy(nonce)}
        return HTMLResponse(render(nonce), headers=headers)

    @app.get("/", response_class=HTMLResponse, dependencies=signed_in)
    def models(q: str = "", page: int = 1) -> HTMLResponse:
        index = ui.overview(reader(), pending_approvals(), search=q[:200], page=page)
        return html(lambda nonce: ui.render("models.html", index=index, prefix=URL_PREFIX, nonce=nonce))

    @app.get("/models/{name}", response_class=HTMLResponse, dependencies=signed_in)
    def model(name: str) -> HTMLResponse:
        try:
            page = ui.model_page(reader(), name, pending_approvals())
        except (ModelNotFound, InvalidModelName):
            raise HTTPException(status_code=404, detail="no such model") from None
        return html(lambda nonce: ui.render_model_page(page, URL_PREFIX, nonce=nonce, url_of=url_of))

    @app.get("/models/{name}/versions/{version}", response_class=HTMLResponse, dependencies=signed_in)
    def version(name: str, version: int) -> HTMLResponse:
        try:
            entry = reader().get_version(name, version)
        except (ModelNotFound, VersionNotFound, InvalidModelName):
            raise HTTPException(status_code=404, detail="no such version") from None
        reports = ui.version_reports(reader(), entry, url_of, store)
        return html(
            lambda nonce: ui.render("version.html", version=entry, reports=reports, prefix=URL_PREFIX, nonce=nonce)
        )

    @app.get("/models/{name}/compare", response_class=HTMLResponse, dependencies=signed_in)
    def compare(name: str, v: Annotated[list[int] | None, Query()] = None) -> HTMLResponse:
        try:
            page = ui.compare_page(reader(), name, v or [])
        except (ModelNotFound, VersionNotFound, InvalidModelName):
            raise HTTPException(status_code=404, detail="no such model or version") from None
        except InvalidInput as exc:  # fewer than two versions, or too many
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return html(lambda nonce: ui.render("compare.html", page=page, prefix=URL_PREFIX, nonce=nonce))

    @app.get("/models", include_in_schema=False, dependencies=signed_in)
    def models_redirect() -> RedirectResponse:
        return RedirectResponse(f"{URL_PREFIX}/")

    @app.get("/static/" + PLOTLY_JS)
    def page_plotly() -> Response:
        """plotly.js for the Models view's charts (the installed plotly package's): a public library."""
        headers = {**COMMON_HEADERS, "Cache-Control": "public, max-age=86400"}
        return Response(_plotly_js(), media_type="text/javascript", headers=headers)

    @app.get(REPORTS_ROUTE + "/{folder:path}/" + PLOTLY_JS)
    def plotly_library(folder: str) -> Response:
        """plotly.js as the installed plotly package ships it, whatever the report store holds there: the
        same public library for every report, so it needs no login (a sandboxed report's script requests
        carry no session cookie)."""
        return Response(_plotly_js(), media_type="text/javascript", headers=dict(COMMON_HEADERS))

    @app.get(REPORTS_ROUTE + "/{relative:path}", dependencies=signed_in)
    def report(relative: str) -> Response:
        found = store.read(relative)  # only inside the store, local or gs://
        if found is None:
            raise HTTPException(status_code=404, detail="no such report")
        return Response(found.content, media_type=found.media_type, headers=report_headers(found.media_type))

    return app
