"""`modelgate serve MODEL`: JSON predictions from the locally deployed champion.

A watcher thread re-reads serving/<model>/state.json when it changes, loads the new models first and then
swaps one immutable snapshot: a request in flight keeps the snapshot it started with, so a switch under load
drops nothing. A canary takes its share of requests at random. Every response names the version it used.

Bodies over `max_body_bytes` are refused with 413 before any of them is parsed; error bodies name the
problem, never the input; with a token (`--token-file` or $MODELGATE_SERVE_TOKEN) every endpoint wants
`Authorization: Bearer <token>`. Values the model cannot take (a 400-digit integer) and predictions that are
not finite numbers are a 422, never a 500 or invalid JSON.

The server answers each state it reads in `serving/<model>/served-<pid>-<id>.json`: the revision it now
serves, or the one-line reason it could not load it (a staged copy whose sha256 no longer matches). It keeps
serving its last good snapshot then, `/health` says `stale` with that reason, and it does not retry the same
state file: one log line, not a traceback per poll.

Connections that send no complete request within `header_timeout` seconds are closed, and past
`max_connections` the oldest idle connection makes room, so idle or slow sockets cannot lock `/health` out.

`/metrics` (Prometheus' text format, behind the same token) counts requests and rows per version and outcome,
and keeps histograms of the handler's latency and, for classifiers, of the scores each version gave.

Each instance may carry a request key (`keys`, one per instance; the server makes one up when none is sent,
and answers the keys it used). During an A/B experiment (`modelgate ab start`) the challenger answers a fixed
share of keys, chosen by hashing the key with the experiment's salt: one key always sees one arm. With a
prediction log (`PredictionLog`), every answered prediction is appended to the registry's `prediction_log`
with its key, version and score by a background thread in batches (COPY), never on the request's path; if
the database is away the log drops rows, counting them in `/metrics`, and serving goes on.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import random
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from modelgate.deploy.local import LocalTarget, ServedAnswer, ServingState, Slot, load_slot

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MAX_ROWS = 10_000
MAX_BODY_BYTES = 4 * 1024 * 1024  # ~10k rows of a few dozen features; configurable per server
TOKEN_ENV = "MODELGATE_SERVE_TOKEN"
HEADER_TIMEOUT = 10.0  # seconds a connection may take to send a complete request head
MAX_CONNECTIONS = 1000


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


LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class PredictionLog:
    """Appends answered predictions to the registry in the background: a bounded buffer, flushed by COPY.

    `sink` is an ExperimentStore (anything with `log_predictions(rows)`), or a function that makes one: it is
    then called on the first flush with rows, in the background thread, so connecting (or starting the
    embedded registry) never delays serving. While the registry cannot be reached, rows are dropped and
    counted, one log line per 30 s, and the connection is tried again after that."""

    RETRY_SECONDS = 30.0

    def __init__(self, sink: Any, *, flush_seconds: float = 0.25, max_pending: int = 200_000) -> None:
        self._sink = None if callable(sink) and not hasattr(sink, "log_predictions") else sink
        self._make_sink = sink if self._sink is None else None
        self._flush_seconds = flush_seconds
        self._max_pending = max_pending
        self._pending: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelgate-prediction-log", daemon=True)
        self._quiet_until = 0.0
        self.written = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def add(self, rows: list[Any]) -> None:
        with self._lock:
            room = self._max_pending - len(self._pending)
            if room < len(rows):
                self.dropped += len(rows) - max(room, 0)
                rows = rows[: max(room, 0)]
            self._pending.extend(rows)

    def flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        if time.monotonic() < self._quiet_until:  # the registry was away moments ago: don't hammer it
            self.dropped += len(rows)
            return
        try:
            if self._sink is None:
                assert self._make_sink is not None
                self._sink = self._make_sink()
            self._sink.log_predictions(rows)
            self.written += len(rows)
        except Exception as exc:  # the registry is away: serving goes on, the rows are counted as lost
            self.dropped += len(rows)
            self._quiet_until = time.monotonic() + self.RETRY_SECONDS
            why = " ".join(str(exc).split())[:300]
            log.error(
                "prediction log: %d rows not written (retrying in %.0f s): %s", len(rows), self.RETRY_SECONDS, why
            )

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._quiet_until = 0.0  # the last rows get one more try
        self.flush()


def _count(prediction_log: PredictionLog, name: str) -> float:
    return float(getattr(prediction_log, name))


class ServeMetrics:
    """The server's Prometheus metrics, in a registry of its own (two servers in one process stay apart)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelgate_serve_requests", "Prediction requests answered", ["model", "version", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.rows = Counter("modelgate_serve_rows", "Rows scored", ["model", "version"], registry=self.registry)
        self.latency = Histogram(
            "modelgate_serve_latency_seconds", "Time in the /predict handler", ["model", "version"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.scores = Histogram(
            "modelgate_serve_score", "Scores given (classifiers: the positive class's probability)",
            ["model", "version"], buckets=SCORE_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def observe(self, model: str, version: int | None, status: int, seconds: float, scores: list[float]) -> None:
        label = "none" if version is None else str(version)
        self.requests.labels(model, label, str(status)).inc()
        self.latency.labels(model, label).observe(seconds)
        if scores:
            self.rows.labels(model, label).inc(len(scores))
            histogram = self.scores.labels(model, label)
            for score in scores:
                histogram.observe(score)

    def watch(self, prediction_log: PredictionLog) -> None:
        from prometheus_client import Gauge

        for name, what in (("written", "appended to"), ("dropped", "lost before reaching")):
            gauge = Gauge(
                f"modelgate_prediction_log_{name}_rows", f"Predictions {what} the registry's prediction log",
                registry=self.registry,
            )  # fmt: skip
            gauge.set_function(functools.partial(_count, prediction_log, name))

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Snapshot:
    state: ServingState
    models: dict[int, Any]


class PredictRequest(BaseModel):
    instances: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ROWS)
    keys: list[str] | None = Field(None, description="one request key per instance (made up when absent)")


class ModelHolder:
    """Holds the current snapshot and keeps it in step with state.json."""

    def __init__(self, target: LocalTarget, model: str, *, poll_seconds: float = 0.2) -> None:
        self.target = target
        self.model = model
        self.poll_seconds = poll_seconds
        self.snapshot: Snapshot | None = None
        self.error: str | None = None  # why the newest state could not be loaded (the last good one serves)
        self._seen: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"modelgate-watch-{model}", daemon=True)
        self._rng = random.Random()
        self._answers = target.served_path(model, os.getpid(), uuid.uuid4().hex[:8])

    def start(self) -> None:
        try:
            self.refresh()
        finally:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._answers.unlink(missing_ok=True)

    def refresh(self) -> None:
        path = self.target.state_path(self.model)
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if stamp == self._seen:
            return  # served, or refused once already: the same file is not retried every poll
        self._seen = stamp
        state = self.target.read_state(self.model)
        if state is None or state.stable is None:
            return
        current = self.snapshot.models if self.snapshot else {}
        models: dict[int, Any] = {}
        try:
            for slot in (state.stable, state.canary):
                if slot is not None:
                    models[slot.version] = current.get(slot.version) or load_slot(slot)
        except Exception as exc:
            self.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            log.error("%s: keeping %s, cannot load the new serving state: %s", self.model, self._serving(), self.error)
            self._answer(state.revision, self.error)
            return
        self.snapshot = Snapshot(state, models)  # one reference swap: readers see old or new, whole
        self.error = None
        self._answer(state.revision, None)
        log.info("%s now serving %s", self.model, state.traffic())

    def _serving(self) -> str:
        return str(self.snapshot.state.traffic()) if self.snapshot else "nothing"

    def _answer(self, revision: str, error: str | None) -> None:
        from modelgate.fileio import WriteFailed

        try:
            self.target.answer(self._answers, ServedAnswer(os.getpid(), revision, error))
        except WriteFailed as exc:  # a rollout then times out waiting, and restores traffic
            log.error("%s", exc)

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

    @staticmethod
    def arm(snapshot: Snapshot, key: str) -> Slot:
        """During an experiment: the slot that answers `key` (sticky, by hash)."""
        from modelgate.experiments import assign

        state = snapshot.state
        assert state.stable is not None
        if state.canary is not None and assign(key, state.salt, state.canary_percent):
            return state.canary
        return state.stable


def create_app(
    target: LocalTarget,
    model: str,
    *,
    poll_seconds: float = 0.2,
    max_body_bytes: int = MAX_BODY_BYTES,
    token: str | None = None,
    prediction_log: PredictionLog | None = None,
) -> FastAPI:
    import hmac

    holder = ModelHolder(target, model, poll_seconds=poll_seconds)
    metrics = ServeMetrics()
    if prediction_log is not None:
        metrics.watch(prediction_log)

    async def authorised(request: Request) -> None:  # async: no thread hop before the route's own
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        holder.start()
        if prediction_log is not None:
            prediction_log.start()
        yield
        holder.stop()
        if prediction_log is not None:
            prediction_log.stop()

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
        if holder.error is not None:  # still serving the last good state, which is what these numbers say
            return {
                "status": "stale",
                "error": holder.error,
                "model": model,
                "stable": state.stable.version if state.stable else None,
                "canary": state.canary.version if state.canary else None,
                "traffic": state.traffic(),
            }
        return {
            "status": "ok",
            "model": model,
            "stable": state.stable.version if state.stable else None,
            "canary": state.canary.version if state.canary else None,
            "traffic": state.traffic(),
        }

    @app.get("/metrics")
    def prometheus() -> Response:
        body, media_type = metrics.exposition()
        return Response(body, media_type=media_type)

    @app.post("/predict", response_model=None)
    async def predict(request: PredictRequest) -> Response:  # inline: a threadpool hop costs more than it saves
        started = time.perf_counter()
        version: int | None = None
        try:
            response, versions, scores = _predict(request)
        except HTTPException as exc:
            metrics.observe(model, version, exc.status_code, time.perf_counter() - started, [])
            raise
        classifier = holder.snapshot is not None and holder.snapshot.state.task == "binary_classification"
        seconds = time.perf_counter() - started
        for version in dict.fromkeys(versions):  # an experiment's request may be answered by both arms
            mine = [p for v, p in zip(versions, scores, strict=True) if v == version] if classifier else []
            metrics.observe(model, version, 200, seconds, mine)
        return response

    def _score(snapshot: Snapshot, slot: Slot, rows: list[dict[str, Any]]) -> np.ndarray:
        """The rows' scores as floats: a binary model's probability of its positive class and a regressor's
        prediction, one per row; a multiclass model's probabilities, one row each in its `classes_` order."""
        import numpy as np
        import pandas as pd

        estimator = snapshot.models[slot.version]
        try:
            frame = pd.DataFrame.from_records(rows, columns=snapshot.state.features)
            if snapshot.state.task == "binary_classification":
                scores = estimator.predict_proba(frame)[:, 1]
            elif snapshot.state.task == "multiclass_classification":
                scores = estimator.predict_proba(frame)
            else:
                scores = estimator.predict(frame)
            scores = np.asarray(scores, dtype=float)
        except (ValueError, TypeError, OverflowError) as exc:
            log.info("cannot score a request for %s v%s: %s", model, slot.version, type(exc).__name__)
            raise HTTPException(
                422, "cannot score these instances: a feature value has the wrong type or is out of range"
            ) from None
        finite = np.isfinite(scores).reshape(len(scores), -1).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)[:5].tolist()
            raise HTTPException(422, f"v{slot.version} gave no finite prediction for instance(s) {bad}")
        return scores

    def _predict(request: PredictRequest) -> tuple[Response, list[int], list[float]]:
        snapshot = holder.snapshot
        if snapshot is None:
            raise HTTPException(503, f"no deployed version of {model} yet")
        features = snapshot.state.features
        missing = sorted({f for row in request.instances for f in features if f not in row})
        if missing:
            raise HTTPException(422, f"instances lack features: {', '.join(missing)}")
        keys = request.keys
        if keys is not None and len(keys) != len(request.instances):
            raise HTTPException(422, f"{len(keys)} keys for {len(request.instances)} instances: send one key each")
        experiment = snapshot.state.experiment_id
        if keys is None and (experiment is not None or prediction_log is not None):
            keys = [uuid.uuid4().hex for _ in request.instances]  # answered, so outcomes can name them
        if experiment is None:
            slots = [holder.pick(snapshot)] * len(request.instances)
        else:
            assert keys is not None
            slots = [holder.arm(snapshot, key) for key in keys]
        predictions: list[float] = [0.0] * len(request.instances)
        answers: list[Any] = [None] * len(request.instances)  # multiclass: the class each row is given
        probabilities: list[dict[str, float]] = [{} for _ in request.instances]
        multiclass = snapshot.state.task == "multiclass_classification"
        for slot in {s.version: s for s in slots}.values():
            where = [i for i, s in enumerate(slots) if s.version == slot.version]
            scored = _score(snapshot, slot, [request.instances[i] for i in where])
            if multiclass:
                classes = [c.item() if hasattr(c, "item") else c for c in snapshot.models[slot.version].classes_]
                for i, values in zip(where, scored.tolist(), strict=True):
                    top = max(range(len(classes)), key=values.__getitem__)
                    predictions[i], answers[i] = values[top], classes[top]
                    probabilities[i] = {str(c): v for c, v in zip(classes, values, strict=True)}
                continue
            for i, value in zip(where, scored.tolist(), strict=True):
                predictions[i] = value
        versions = [s.version for s in slots]
        body: dict[str, Any] = {"model": model, "version": versions[0], "predictions": predictions}
        if multiclass:  # the class, and each class's probability (the log keeps the class's probability)
            body.update(predictions=answers, probabilities=probabilities)
        if experiment is not None or request.keys is not None or prediction_log is not None:
            body.update(keys=keys, versions=versions)
            if experiment is not None:
                body["experiment"] = experiment
        if prediction_log is not None and keys is not None:
            from modelgate.registry.experiments import LoggedPrediction

            now = dt.datetime.now(dt.UTC)
            prediction_log.add(
                [
                    LoggedPrediction(model, k, v, p, "serve", experiment, now)
                    for k, v, p in zip(keys, versions, predictions, strict=True)
                ]  # fmt: skip
            )
        response = Response(json.dumps(body, allow_nan=False), media_type="application/json")  # plain floats
        return response, versions, predictions

    return app


def connection_cap() -> int:
    """MAX_CONNECTIONS, or fewer when the process may open fewer files (room kept for models and logs)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - 64))


def guarded_protocol(header_timeout: float = HEADER_TIMEOUT, max_connections: int | None = None) -> type:
    """uvicorn's h11 protocol with a request-head deadline and a connection cap (uvicorn has neither).

    A connection must send a complete request head within `header_timeout` seconds of opening, or of its
    last response; a connection past `max_connections` closes the oldest one that has no request in flight.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    cap = connection_cap() if max_connections is None else max_connections

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._opened = time.monotonic()
            self._deadline = self.loop.call_later(header_timeout, self._head_overdue)
            if len(self.connections) > cap:
                idle = [c for c in self.connections if c is not self and getattr(c, "_idle", lambda: False)()]
                if idle:
                    min(idle, key=lambda c: getattr(c, "_opened", 0.0)).transport.close()

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _head_overdue(self) -> None:
            if self._idle() and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._deadline.cancel()
            self._deadline = self.loop.call_later(header_timeout, self._head_overdue)

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol


def serve(
    model: str,
    *,
    host: str,
    port: int,
    root: Path,
    max_body_bytes: int = MAX_BODY_BYTES,
    token: str | None = None,
    prediction_log: PredictionLog | None = None,
) -> None:
    import uvicorn

    app = create_app(
        LocalTarget(root), model, max_body_bytes=max_body_bytes, token=token, prediction_log=prediction_log
    )
    uvicorn.run(app, host=host, port=port, log_level="info", http=guarded_protocol(), timeout_keep_alive=5)
