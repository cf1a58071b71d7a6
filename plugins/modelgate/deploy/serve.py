"""`modelgate serve MODEL`: JSON predictions from the locally deployed champion.

A watcher thread re-reads serving/<model>/state.json when it changes, loads the new models first and then
swaps one immutable snapshot: a request in flight keeps the snapshot it started with, so a switch under load
drops nothing. A canary takes its share of requests at random. Every response names the version it used.
"""

from __future__ import annotations

import logging
import random
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from modelgate.deploy.local import LocalTarget, ServingState, Slot, load_slot

log = logging.getLogger(__name__)

MAX_ROWS = 10_000


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


def create_app(target: LocalTarget, model: str, *, poll_seconds: float = 0.2) -> FastAPI:
    holder = ModelHolder(target, model, poll_seconds=poll_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        holder.start()
        yield
        holder.stop()

    app = FastAPI(title=f"modelgate: {model}", lifespan=lifespan)

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

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
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
            raise HTTPException(422, f"cannot score these instances: {exc}") from exc
        return {"model": model, "version": slot.version, "predictions": [float(s) for s in scores]}

    return app


def serve(model: str, *, host: str, port: int, root: Path) -> None:
    import uvicorn

    uvicorn.run(create_app(LocalTarget(root), model), host=host, port=port, log_level="info")
