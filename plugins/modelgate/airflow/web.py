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

No `from __future__ import annotations` here: FastAPI reads the routes' annotations (`Query`, `Request`, the
user) as objects, and they are imported inside `create_app`, out of reach of a string's evaluation.
"""

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


def report_url(path: str, *, store: "ReportStore", base_url: str) -> str:
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


def can_edit(user: Any, model: str) -> bool:
    """Whether Airflow's auth manager lets `user` edit the model's DAGs (retrain and deploy): who may act on it."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    manager = get_auth_manager()
    return all(
        manager.is_authorized_dag(method="PUT", details=DagDetails(id=f"modelgate_{stage}__{model}"), user=user)
        for stage in ("retrain", "deploy")
    )


def _signing_key() -> bytes:
    """The api-server's own secret (shared by its workers), for the forms' tokens."""
    from airflow.configuration import conf

    return (conf.get("api_auth", "jwt_secret", fallback="") or conf.get("api", "secret_key", fallback="")).encode()


APPROVAL_ANSWERS = ("Approve", "Reject")  # the approve task's options (the standard provider's ApprovalOperator)


def answer_approval(user: Any, dag_id: str, run_id: str, answer: str) -> str:
    """Answer a waiting `approve` task as Airflow's own Required Actions page does (its PATCH of the task's
    human-in-the-loop detail, with its checks: edit rights on the DAG's HITL details, an assigned respondent,
    a valid option, no second answer). One line saying what happened; HTTPException when it is refused."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session
    from fastapi import HTTPException

    if answer not in APPROVAL_ANSWERS:
        raise HTTPException(status_code=400, detail=f"answer with one of {', '.join(APPROVAL_ANSWERS)}")
    allowed = get_auth_manager().is_authorized_dag(
        method="PUT", access_entity=DagAccessEntity.HITL_DETAIL, details=DagDetails(id=dag_id), user=user
    )
    if not allowed:
        raise HTTPException(status_code=403, detail=f"answering {dag_id}'s approvals needs edit rights on it")
    with create_session() as session:
        update_hitl_detail(
            dag_id=dag_id,
            dag_run_id=run_id,
            task_id="approve",
            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[answer]),
            user=user,
            session=session,
        )
    return f"answered {answer} in {run_id}: the run goes on"


def trigger_deploy(model: str, version: int, user_name: str) -> str:
    """A run of the model's deploy DAG for `version`, as the UI's Trigger button makes one; one line saying so."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound
    from airflow.utils.types import DagRunTriggeredByType

    dag_id = f"modelgate_deploy__{model}"
    try:
        run = trigger_dag(
            dag_id, triggered_by=DagRunTriggeredByType.UI, triggering_user_name=user_name, conf={"version": version}
        )
    except DagNotFound:
        return f"no {dag_id} DAG here: traffic did not move"
    return f"{dag_id} run {run.run_id if run else '?'} deploys v{version}"


def experiment_action(registry: Any, name: str, form: dict[str, str], actor: str) -> str:
    """Start or stop NAME's A/B experiment from the model page's form; one line saying what was done.

    Start reads the model's spec from the include directory (its `ab:` rules and deploy target) and has the
    local target serve the experiment, as `modelgate ab start` does."""
    from modelgate import ab
    from modelgate.actions import version_number
    from modelgate.catalog import load_spec, spec_file
    from modelgate.config import include_dir, serving_root
    from modelgate.registry.errors import InvalidInput

    what = form.get("do", "")
    if what == "stop":
        reason = " ".join(form.get("reason", "").split())[:500]
        if not reason:
            raise InvalidInput("stopping an experiment needs a reason: it goes in the audit log")
        ended = ab.stop(registry, name, reason=reason, actor=actor, serving_root=serving_root())
        return f"stopped experiment #{ended.id}: v{ended.champion_version} serves every key"
    if what != "start":
        raise InvalidInput(f"unknown experiment action {what[:20]!r}: start or stop")
    raw_version, raw_split = form.get("challenger", "").strip().lstrip("v"), form.get("split", "").strip()
    challenger = version_number(raw_version, "the challenger")
    if challenger is None:
        raise InvalidInput("the challenger must be a version number, got ''")
    if not raw_split.isdigit() or not 1 <= int(raw_split) <= 99:
        raise InvalidInput(f"the split must be a whole percent from 1 to 99, got {raw_split[:20]!r}")
    path = spec_file(include_dir() / "models", name)
    if path is None:
        raise InvalidInput(f"no spec for {name} in the include directory: an experiment needs its `ab:` rules")
    experiment = ab.start(
        registry, load_spec(path), challenger=challenger, split=int(raw_split), actor=actor,
        serving_root=serving_root(),
    )  # fmt: skip
    return f"started experiment #{experiment.id}: v{experiment.challenger_version} on {int(raw_split)} % of keys"


def create_app() -> Any:
    import os
    import secrets
    from urllib.parse import quote, urlparse

    from airflow.api_fastapi.core_api.security import GetUserDep, requires_authenticated
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, RedirectResponse, Response
    from starlette.concurrency import run_in_threadpool

    from modelgate import actions, ui
    from modelgate.airflow.runtime import registry_url, report_store
    from modelgate.registry.errors import InvalidInput, InvalidModelName, ModelNotFound, RegistryError, VersionNotFound
    from modelgate.registry.store import Registry

    # no /docs, /redoc or /openapi.json: these routes are pages, not an API to browse. Every route needs a
    # logged-in user but the plotly library's, which a sandboxed report loads without the session cookie (and
    # the Models view's charts load from /static).
    app = FastAPI(title="modelgate", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    signed_in = [Depends(requires_authenticated())]
    registry: list[Registry] = []
    writers: list[Registry] = []
    key = _signing_key()

    def reader() -> Registry:
        if not registry:
            registry.append(Registry.connect(os.environ.get(UI_REGISTRY_URL_ENV) or registry_url(), pool_size=2))
        return registry[0]

    def writer() -> Registry:  # actions write with the tasks' registry login, never the reader's
        if not writers:
            writers.append(Registry.connect(registry_url(), pool_size=1))
        return writers[0]

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
    def model(name: str, user: GetUserDep, done: str = "", error: str = "") -> HTMLResponse:
        try:
            page = ui.model_page(reader(), name, pending_approvals())
        except (ModelNotFound, InvalidModelName):
            raise HTTPException(status_code=404, detail="no such model") from None
        editor = can_edit(user, name)
        acting = ui.ActionsView(
            allowed=editor,
            token=actions.action_token(key, user.get_id(), name) if editor else "",
            user=user.get_name(),
            done=done[:300],
            error=error[:300],
        )
        return html(lambda nonce: ui.render_model_page(page, URL_PREFIX, nonce=nonce, url_of=url_of, actions=acting))

    async def posted_form(request: Request, user: Any, name: str) -> dict[str, str]:
        """The model page's form as posted: from this origin, with this server's token for this user and model
        (403 otherwise)."""
        origin = request.headers.get("origin")
        if origin and urlparse(origin).netloc != request.headers.get("host"):
            raise HTTPException(status_code=403, detail="the form was posted from another site")
        form = {k: str(v) for k, v in (await request.form()).items()}
        if not actions.token_ok(key, form.get("token", ""), user.get_id(), name):
            raise HTTPException(status_code=403, detail="the form is stale or not this server's: reload the page")
        return form

    @app.post("/models/{name}/actions", dependencies=signed_in)
    async def act(name: str, request: Request, user: GetUserDep) -> RedirectResponse:
        """promote, rollback, archive or deploy, from the model page's form: the user may edit the model's
        DAGs, the form is this server's for this user and model (token), posted from this origin."""
        if not await run_in_threadpool(can_edit, user, name):
            raise HTTPException(status_code=403, detail=f"acting on {name} needs edit rights on its DAGs")
        form = await posted_form(request, user, name)
        page = f"{URL_PREFIX}/models/{quote(name)}"
        try:
            checked = actions.parse_action(name, form)
            outcome = await run_in_threadpool(actions.perform, writer(), checked, actor=f"airflow:{user.get_name()}")
            message = outcome.message
            if outcome.deploy_version is not None:
                deployed = await run_in_threadpool(trigger_deploy, name, outcome.deploy_version, user.get_name())
                message = f"{message}; {deployed}"
        except RegistryError as exc:  # a conflict, a refused transition, an unknown version, a bad field
            return RedirectResponse(f"{page}?error={quote(str(exc)[:300])}#actions", status_code=303)
        return RedirectResponse(f"{page}?done={quote(message[:300])}#actions", status_code=303)

    @app.post("/models/{name}/experiment", dependencies=signed_in)
    async def experiment(name: str, request: Request, user: GetUserDep) -> RedirectResponse:
        """Start or stop the model's A/B experiment (same rights, token and origin checks as the actions)."""
        from modelgate.deploy.controller import DeployError
        from modelgate.spec import InvalidSpec

        if not await run_in_threadpool(can_edit, user, name):
            raise HTTPException(status_code=403, detail=f"acting on {name} needs edit rights on its DAGs")
        form = await posted_form(request, user, name)
        page = f"{URL_PREFIX}/models/{quote(name)}"
        try:
            message = await run_in_threadpool(experiment_action, writer(), name, form, f"airflow:{user.get_name()}")
        except (RegistryError, DeployError, InvalidSpec) as exc:
            return RedirectResponse(f"{page}?error={quote(str(exc)[:300])}#experiment", status_code=303)
        return RedirectResponse(f"{page}?done={quote(message[:300])}#experiment", status_code=303)

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

    @app.post("/models/{name}/approvals", dependencies=signed_in)
    async def approve(name: str, request: Request, user: GetUserDep) -> RedirectResponse:
        """Approve or Reject a challenger waiting in one of the model's retrain runs (same token and origin
        checks as the actions; the answer goes through Airflow's own human-in-the-loop update)."""
        form = await posted_form(request, user, name)
        page = f"{URL_PREFIX}/models/{quote(name)}"
        dag_id = f"modelgate_retrain__{name}"
        try:
            message = await run_in_threadpool(
                answer_approval, user, dag_id, form.get("run_id", "")[:250], form.get("answer", "")
            )
        except HTTPException as exc:
            if exc.status_code == 403:
                raise
            return RedirectResponse(f"{page}?error={quote(str(exc.detail)[:300])}#actions", status_code=303)
        return RedirectResponse(f"{page}?done={quote(message)}#actions", status_code=303)

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
