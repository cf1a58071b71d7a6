"""`modelgate serve MODEL`: JSON predictions from the locally deployed champion.

A watcher thread re-reads serving/<model>/state.json when it changes, loads the new models first and then
swaps one immutable snapshot: a request in flight keeps the snapshot it started with, so a switch under load
drops nothing. A canary takes its share of requests at random. Every response names the version it used.

Bodies over `max_body_bytes` are refused with 413 before any of them is parsed; error bodies name the
problem, never the input; with a token (`--token-file` or $MODELGATE_SERVE_TOKEN) every endpoint wants
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from modelgate.deploy.local import LocalTarget, ServingState, Slot, load_slot

log = logging.getLogger(__name__)

MAX_ROWS = 10_000
MAX_BODY_BYTES = 4 * 1024 * 1024  # ~10k rows of a few dozen features; configurable per server
TOKEN_ENV = "MODELGATE_SERVE_TOKEN"


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, by Content-Length or while it streams in."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        seen = 0
        refused = False

        async def counted() -> Any:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # answer now; the app sees the client gone and its reply is dropped
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded_send)

    async def _refuse(self, send: Any) -> None:
        body = f'{{"detail": "request body over the {self.limit}-byte limit"}}'.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Snapshot:
    state: ServingState
    models: dict[int, Any]


class PredictRequest(BaseModel):
    instances: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ROWS)


class ModelHolder:
    """Holds the current snapshot and keeps it in step with state.json."""

    def __init__(self, target: LocalTarget, model: str, *, poll_seconds: float = 0.2) -> None:
        self.target = target
        self.model = model
        self.poll_seconds = poll_seconds
        self.snapshot: Snapshot | None = None
        self._seen: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"modelgate-watch-{model}", daemon=True)
        self._rng = random.Random()

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> None:
        path = self.target.state_path(self.model)
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if stamp == self._seen:
            return
        state = self.target.read_state(self.model)
        if state is None or state.stable is None:
            return
        current = self.snapshot.models if self.snapshot else {}
        models: dict[int, Any] = {}
        for slot in (state.stable, state.canary):
            if slot is not None:
                models[slot.version] = current.get(slot.version) or load_slot(slot)
        self.snapshot = Snapshot(state, models)  # one reference swap: readers see old or new, whole
        self._seen = stamp
        log.info("%s now serving %s", self.model, state.traffic())

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # keep serving the last good snapshot
                log.exception("could not load the new serving state of %s", self.model)

    def pick(self, snapshot: Snapshot) -> Slot:
        state = snapshot.state
        assert state.stable is not None
        if state.canary is not None and self._rng.random() * 100 < state.canary_percent:
            return state.canary
        return state.stable


def create_app(
    target: LocalTarget,
    model: str,
    *,
    poll_seconds: float = 0.2,
    max_body_bytes: int = MAX_BODY_BYTES,
    token: str | None = None,
) -> FastAPI:
    import hmac

    holder = ModelHolder(target, model, poll_seconds=poll_seconds)

    async def authorised(request: Request) -> None:  # async: no thread hop before the route's own
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        holder.start()
        yield
        holder.stop()

    app = FastAPI(title=f"modelgate: {model}", lifespan=lifespan, dependencies=[Depends(authorised)])
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        shown = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
        return JSONResponse({"detail": shown[:5], "errors": len(errors)}, status_code=422)  # never the input

    @app.get("/health")
    def health() -> dict[str, Any]:
        snapshot = holder.snapshot
        if snapshot is None:
            raise HTTPException(503, f"no deployed version of {model} yet")
        state = snapshot.state
        return {
            "status": "ok",
            "model": model,
            "stable": state.stable.version if state.stable else None,
            "canary": state.canary.version if state.canary else None,
            "traffic": state.traffic(),
        }

    @app.post("/predict", response_model=None)
    async def predict(request: PredictRequest) -> Response:  # inline: a threadpool hop costs more than it saves
        import pandas as pd

        snapshot = holder.snapshot
        if snapshot is None:
            raise HTTPException(503, f"no deployed version of {model} yet")
        slot = holder.pick(snapshot)
        features = snapshot.state.features
        missing = sorted({f for row in request.instances for f in features if f not in row})
        if missing:
            raise HTTPException(422, f"instances lack features: {', '.join(missing)}")
        frame = pd.DataFrame.from_records(request.instances, columns=features)
        estimator = snapshot.models[slot.version]
        try:
            if snapshot.state.task == "binary_classification":
                scores = estimator.predict_proba(frame)[:, 1]
            else:
                scores = estimator.predict(frame)
        except (ValueError, TypeError) as exc:
            log.info("cannot score a request for %s v%s: %s", model, slot.version, exc)
            raise HTTPException(422, "cannot score these instances: a feature value has the wrong type") from None
        body = {"model": model, "version": slot.version, "predictions": [float(s) for s in scores]}
        return Response(json.dumps(body), media_type="application/json")  # no encoder pass over plain floats

    return app


def serve(
    model: str, *, host: str, port: int, root: Path, max_body_bytes: int = MAX_BODY_BYTES, token: str | None = None
) -> None:
    import uvicorn

    app = create_app(LocalTarget(root), model, max_body_bytes=max_body_bytes, token=token)
    uvicorn.run(app, host=host, port=port, log_level="info")
