"""modelgate's pages inside the Airflow api-server: the reports tasks write, served over HTTP behind Airflow's auth.

Mounted by `plugins/modelgate_plugin.py` at /modelgate. Every route needs an authenticated Airflow user (the
same login, the same token cookie or bearer token as the UI and REST API). Files are read only from the
reports directory: a path that resolves outside it is not found, whatever it spells.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

URL_PREFIX = "/modelgate"
REPORTS_ROUTE = "/reports"


def contained(root: Path, relative: str) -> Path | None:
    """The file `relative` names under `root`, or None when it is not a file inside root (.., links, absolute)."""
    base = root.resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if target != base and base not in target.parents:
        return None
    return target if target.is_file() else None


def report_url(path: str, *, reports_dir: Path, base_url: str) -> str:
    """The browser URL of a report: under the api-server when it lives in the reports dir, else as it is."""
    if "://" in path:
        return path
    try:
        relative = Path(path).resolve().relative_to(reports_dir.resolve())
    except ValueError:
        return f"file://{path}"
    return f"{base_url.rstrip('/')}{URL_PREFIX}{REPORTS_ROUTE}/{relative.as_posix()}"


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


def create_app() -> Any:
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse

    from modelgate.airflow.runtime import reports_dir

    app = FastAPI(title="modelgate", dependencies=[Depends(requires_authenticated())])

    @app.get(REPORTS_ROUTE + "/{relative:path}")
    def report(relative: str) -> FileResponse:
        found = contained(reports_dir(), relative)
        if found is None:
            raise HTTPException(status_code=404, detail="no such report")
        media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        return FileResponse(found, media_type=media_type)

    return app
