"""Batch prediction: score an interval's rows with the champion, stamp each row with the version.

The champion's artifact is checked against the registry's sha256 before anything is scored; the rows of
the interval are replaced in one transaction, so re-running an interval leaves exactly one set of rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from modelgate.data import Interval, load_window
from modelgate.registry import schema as t
from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.errors import NoChampion
from modelgate.registry.store import Registry
from modelgate.spec import ModelSpec, Task

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class BatchResult:
    model: str
    version: int
    rows: int
    interval: Interval


def risk_tiers(spec: ModelSpec, scores: np.ndarray) -> list[str | None]:
    """The highest tier whose cut-off the score reaches (spec.risk_tiers: name -> lower bound)."""
    if not spec.risk_tiers:
        return [None] * len(scores)
    ordered = sorted(spec.risk_tiers.items(), key=lambda kv: kv[1])
    tiers: list[str | None] = []
    for score in scores:
        tier = None
        for name, cutoff in ordered:
            if score >= cutoff:
                tier = name
        tiers.append(tier)
    return tiers


def score_frame(spec: ModelSpec, estimator: Any, frame: Any) -> np.ndarray:
    import numpy as np

    parts = []
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS][spec.feature_names]
        if spec.task is Task.BINARY:
            parts.append(estimator.predict_proba(chunk)[:, 1])
        else:
            parts.append(estimator.predict(chunk))
    return np.concatenate(parts) if parts else np.array([], dtype=float)


def batch_predict(
    spec: ModelSpec, interval: Interval, *, registry: Registry, artifacts: ArtifactStore, data_url: str | None
) -> BatchResult:
    champion = registry.get_champion(spec.name)
    if champion is None:
        raise NoChampion(f"{spec.name} has no champion to score with")
    estimator = artifacts.load(champion.artifact_uri, champion.artifact_sha256)  # refuses a tampered file
    frame = load_window(spec, interval, url=data_url)
    scores = score_frame(spec, estimator, frame)
    labels = (scores >= 0.5).astype(float) if spec.task is Task.BINARY else scores
    write_predictions(
        registry, spec, interval, champion.version, frame[spec.id_column].astype(str).to_numpy(), scores, labels
    )
    log.info("scored %s rows of %s with v%s for %s", len(frame), spec.name, champion.version, interval)
    return BatchResult(spec.name, champion.version, len(frame), interval)


def write_predictions(
    registry: Registry,
    spec: ModelSpec,
    interval: Interval,
    version: int,
    row_ids: Any,
    scores: np.ndarray | None,
    labels: Any,
) -> None:
    """Replace the interval's rows with these, in one transaction (COPY inside it).

    `scores` None: the scorer gave labels only (Vertex AI's prebuilt container answers `predict()`): the rows
    keep `score` and `risk_tier` empty rather than pass a label off as a probability.
    """
    import io

    import pandas as pd

    out = pd.DataFrame(
        {
            "model": spec.name,
            "interval_start": interval.start.isoformat(),
            "interval_end": interval.end.isoformat(),
            "row_id": row_ids,
            "score": scores,
            "label": labels,
            "risk_tier": None if scores is None else risk_tiers(spec, scores),
            "model_version": version,
        }
    )
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, header=False, na_rep="")
    p = t.batch_prediction.c
    with registry.db.transaction("write batch predictions") as conn:
        conn.execute(
            sa.delete(t.batch_prediction).where(
                p.model == spec.name, p.interval_start == interval.start, p.interval_end == interval.end
            )
        )
        # COPY in the same transaction: the interval's rows are replaced all at once or not at all.
        driver = conn.connection.driver_connection
        assert driver is not None
        columns = ", ".join(out.columns)
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY batch_prediction ({columns}) FROM STDIN WITH (FORMAT csv)") as copy,
        ):
            copy.write(buffer.getvalue())
