"""Batch prediction: score an interval's rows with the champion, stamp each row with the version.

The champion's artifact is checked against the registry's sha256 before anything is scored. Rows stream
through read → score → write in Arrow record batches, so memory stays flat whatever the interval's size:
a Postgres source is read with ADBC (binary COPY under the hood) on a thread of its own, starting while the
model loads; each batch is scored on a second thread as it arrives; and the main thread ingests the scored
batches (binary COPY again) into `batch_prediction` in one transaction that first deletes the interval's
old rows. Re-running an interval leaves exactly one set of rows; a failure part-way leaves the old ones.
The same transaction appends each row to the `prediction_log` (source `batch`, at the interval's end) unless
the interval's key is there already, so outcomes that arrive later join batch scores as they join served ones.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelgate.data import Interval, bigquery_frames, load_window, source_url
from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.entities import ModelVersion
from modelgate.registry.errors import NoChampion
from modelgate.registry.store import Registry
from modelgate.spec import BigQuerySource, ModelSpec, PostgresSource, Task

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
PREFETCH_BATCHES = 2  # read-ahead while the previous batch is scored and written: bounds memory
BATCH_BYTES = 8 << 20  # the size of the Arrow batches the reader asks the driver for


@dataclass(frozen=True)
class BatchResult:
    model: str
    version: int
    rows: int
    interval: Interval


def risk_tiers(spec: ModelSpec, scores: np.ndarray) -> list[str | None]:
    """The highest tier whose cut-off the score reaches (spec.risk_tiers: name -> lower bound)."""
    return _tiers(spec, scores).tolist()


def _tiers(spec: ModelSpec, scores: np.ndarray) -> np.ndarray:
    """`risk_tiers` for a whole array at once (np.searchsorted over the sorted cut-offs); NaN has no tier."""
    import numpy as np

    if not spec.risk_tiers:
        return np.full(len(scores), None, dtype=object)
    ordered = sorted(spec.risk_tiers.items(), key=lambda kv: kv[1])
    cutoffs = np.array([cutoff for _, cutoff in ordered], dtype=float)
    names = np.array([None, *(name for name, _ in ordered)], dtype=object)
    reached = np.searchsorted(cutoffs, scores, side="right")  # how many cut-offs are <= the score
    reached[np.isnan(scores)] = 0
    return names[reached]


def score_frame(spec: ModelSpec, estimator: Any, frame: Any) -> np.ndarray:
    """Scores of a frame's rows: the positive class's probability for classifiers, the prediction otherwise."""
    import numpy as np

    parts = []
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS][spec.feature_names]
        if spec.task is Task.BINARY:
            parts.append(estimator.predict_proba(chunk)[:, 1])
        elif spec.task is Task.MULTICLASS:
            from modelgate.training import class_probabilities

            parts.append(class_probabilities(spec, estimator, chunk))
        else:
            parts.append(estimator.predict(chunk))
    if not parts:
        return np.zeros((0, len(spec.class_names))) if spec.task is Task.MULTICLASS else np.array([], dtype=float)
    return np.concatenate(parts)


def top_classes(spec: ModelSpec, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A multiclass model's answer per row: the most probable class's probability, its position in the spec's
    `classes`, and the class itself (as text)."""
    import numpy as np

    positions = probabilities.argmax(axis=1) if len(probabilities) else np.array([], dtype=np.int64)
    names = spec.class_names
    return probabilities.max(axis=1, initial=0.0), positions.astype(float), [names[i] for i in positions]


def scoring_champion(registry: Registry, model: str, interval: Interval) -> ModelVersion:
    """The version that scores an interval: the champion that served it (as the audit log has it), so a
    re-run or a backfill stamps the same version whatever was promoted since. An interval from before the
    first champion is scored by the first champion, once there is one: a backfill of batch_predict over the
    intervals that were skipped for want of a champion fills them in."""
    champion = registry.champion_at(model, interval.end)
    if champion is None:
        promotions = registry.history(model, kinds=["promote"])  # oldest first; ModelNotFound before any
        if promotions and promotions[0].to_version is not None:
            champion = registry.get_version(model, promotions[0].to_version)
    if champion is None:
        raise NoChampion(f"{model} has no champion to score {interval} with")
    return champion


def batch_predict(
    spec: ModelSpec,
    interval: Interval,
    *,
    registry: Registry,
    artifacts: ArtifactStore,
    data_url: str | None,
    chunk_rows: int = CHUNK_ROWS,
) -> BatchResult:
    champion = scoring_champion(registry, spec.name, interval)
    # reading starts while the model loads
    with _ReadAhead(_frames(spec, interval, data_url, chunk_rows), name="read") as ahead:
        estimator = artifacts.load_version(champion)  # refuses a tampered file or an unlisted type

        def scored() -> Iterator[pa.RecordBatch]:
            for frame in ahead:
                scores = score_frame(spec, estimator, frame)
                classes = None
                if spec.task is Task.MULTICLASS:
                    scores, labels, classes = top_classes(spec, scores)
                else:
                    labels = (scores >= 0.5).astype(float) if spec.task is Task.BINARY else scores
                ids = frame[spec.id_column].astype(str).to_numpy()
                yield prediction_batch(spec, interval, champion.version, ids, scores, labels, classes)

        # scoring on a thread too: it overlaps the COPY of earlier batches
        with _ReadAhead(scored(), name="score") as ready:
            rows = write_batches(registry, spec, interval, ready)
    log.info("scored %s rows of %s with v%s for %s", rows, spec.name, champion.version, interval)
    return BatchResult(spec.name, champion.version, rows, interval)


def _frames(spec: ModelSpec, interval: Interval, data_url: str | None, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The interval's rows (id and features) in frames of at most `chunk_rows`."""
    if isinstance(spec.source, PostgresSource):
        yield from _postgres_frames(spec, spec.source, interval, source_url(spec, data_url), chunk_rows)
    elif isinstance(spec.source, BigQuerySource):  # page by page over the REST API
        yield from bigquery_frames(spec, spec.source, interval, [spec.id_column, *spec.feature_names], chunk_rows)
    else:
        frame = load_window(spec, interval, url=data_url)
        for start in range(0, len(frame), chunk_rows):
            yield frame.iloc[start : start + chunk_rows]


def _postgres_frames(
    spec: ModelSpec, source: PostgresSource, interval: Interval, url: str, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """Stream the window with ADBC: Arrow record batches straight from a binary COPY, no per-row Python.

    Text columns arrive as Python strings (ids and categories keep their exact text, NULL stays None,
    distinct from ''); numeric features become float64, as the training frames have them.
    """
    import adbc_driver_postgresql.dbapi as adbc
    import pandas as pd
    import sqlalchemy as sa

    from modelgate.data import DataError
    from modelgate.registry.connection import normalize_url
    from modelgate.registry.db import is_adbc_error, libpq_uri

    columns = [spec.id_column, *spec.feature_names]
    quoted = ", ".join(_ident(c) for c in columns)
    table = f"{_ident(source.db_schema)}.{_ident(source.table)}"
    time = _ident(spec.time_column)
    # The bounds are inlined (our own aware datetimes, as ISO literals): with bound parameters the driver
    # cannot use COPY and returns the whole window as one batch, so memory would grow with the interval.
    bounds = f"'{interval.start.isoformat()}'::timestamptz AND {time} < '{interval.end.isoformat()}'::timestamptz"
    query = f"SELECT {quoted} FROM {table} WHERE {time} >= {bounds}"
    numeric = [f for f in spec.numeric_features if f in columns]
    uri = libpq_uri(sa.engine.make_url(normalize_url(url)))
    try:
        with adbc.connect(uri) as conn, conn.cursor() as cursor:
            cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})
            cursor.execute(query)
            pending: list[pd.DataFrame] = []
            held = 0
            for batch in cursor.fetch_record_batch():
                frame = batch.to_pandas()
                for column in numeric:
                    frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
                pending.append(frame)
                held += len(frame)
                if held >= chunk_rows:
                    yield pd.concat(pending, ignore_index=True)
                    pending, held = [], 0
            if pending:
                yield pd.concat(pending, ignore_index=True)
    except Exception as exc:
        if is_adbc_error(exc):
            first = str(exc).strip().splitlines()[0]
            raise DataError(f"{spec.name}: reading {source.db_schema}.{source.table} failed: {first}") from exc
        raise


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _ReadAhead:
    """Iterate `frames` on a thread of its own, at most `depth` ahead: reading overlaps loading the model,
    scoring and writing. The thread starts at once; leaving the `with` block stops it.

    An error in the reader is raised where the frames are iterated; stopping early (an error downstream, or
    the model refused before any frame was asked for) stops the reader.
    """

    def __init__(self, frames: Iterator[Any], *, name: str, depth: int = PREFETCH_BATCHES) -> None:
        self._box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._frames = frames
        self._reader = threading.Thread(target=self._read, name=f"modelgate-batch-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for frame in self._frames:
                while not self._stop.is_set():
                    try:
                        self._box.put(("frame", frame), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._box.put(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._box.put(("error", exc))

    def __iter__(self) -> Iterator[Any]:
        while True:
            kind, item = self._box.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        deadline = time.monotonic() + 30  # a reader blocked on a full box sees the stop within 0.1 s
        while self._reader.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._box.get_nowait()
            self._reader.join(timeout=0.1)


def prediction_batch(
    spec: ModelSpec,
    interval: Interval,
    version: int,
    row_ids: Any,
    scores: np.ndarray | None,
    labels: Any,
    classes: list[str] | None = None,
) -> pa.RecordBatch:
    """Rows of `batch_prediction` as an Arrow batch, typed as the table's columns are.

    `scores` None: the scorer gave labels only (Vertex AI's prebuilt container answers `predict()`): the rows
    keep `score` and `risk_tier` empty rather than pass a label off as a probability. `classes`: a multiclass
    model's predicted class per row (`labels` holds its position in the spec's `classes`).
    """
    import numpy as np
    import pyarrow as pa

    n = len(row_ids)
    stamp = pa.timestamp("us", tz="UTC")
    tiers = pa.nulls(n, pa.string()) if scores is None else pa.array(_tiers(spec, scores), pa.string())
    return pa.RecordBatch.from_pydict(
        {
            "model": pa.repeat(pa.scalar(spec.name, pa.string()), n),
            "interval_start": pa.repeat(pa.scalar(interval.start, stamp), n),
            "interval_end": pa.repeat(pa.scalar(interval.end, stamp), n),
            "row_id": pa.array(row_ids, pa.string()),
            "score": pa.nulls(n, pa.float64()) if scores is None else pa.array(scores, pa.float64()),
            "label": pa.array(np.asarray(labels, dtype=float), pa.float64()),
            "risk_tier": tiers,
            "model_version": pa.array(np.full(n, version, dtype=np.int32)),
            "predicted_class": pa.nulls(n, pa.string()) if classes is None else pa.array(classes, pa.string()),
        }
    )


def write_batches(registry: Registry, spec: ModelSpec, interval: Interval, batches: Iterable[pa.RecordBatch]) -> int:
    """Replace the interval's rows with these batches in one transaction; the number of rows written.

    The batches are pulled as the COPY consumes them, so they may be produced (read and scored) on the fly.
    """
    import pyarrow as pa

    counted = [0]
    failed: list[BaseException] = []  # what the producer raised, as ADBC hands it back only as text
    schema = prediction_batch(spec, interval, 0, [], None, []).schema

    def counting() -> Iterator[pa.RecordBatch]:
        try:
            for batch in batches:
                counted[0] += batch.num_rows
                yield batch
        except BaseException as exc:
            failed.append(exc)
            raise

    try:
        with registry.db.arrow_transaction("write batch predictions") as conn, conn.cursor() as cursor:
            cursor.execute(
                "DELETE FROM batch_prediction WHERE model = $1 AND interval_start = $2 AND interval_end = $3",
                parameters=(spec.name, interval.start, interval.end),
            )
            reader = pa.RecordBatchReader.from_batches(schema, counting())
            cursor.adbc_ingest("batch_prediction", reader, mode="append")
            # the prediction log (what A/B analysis and outcome joins read): each key once per interval, the
            # first scoring kept (the log is append-only), in the same transaction as the rows themselves
            cursor.execute(
                "INSERT INTO prediction_log (model, request_key, version, score, source, predicted_at) "
                "SELECT model, row_id, model_version, score, 'batch', interval_end FROM batch_prediction "
                "WHERE model = $1 AND interval_start = $2 AND interval_end = $3 "
                "ON CONFLICT (model, request_key, predicted_at) WHERE source = 'batch' DO NOTHING",
                parameters=(spec.name, interval.start, interval.end),
            )
    except Exception:
        if failed:  # reading or scoring failed, not the database: say so (the transaction is rolled back)
            raise failed[0] from None
        raise
    return counted[0]


def write_predictions(
    registry: Registry,
    spec: ModelSpec,
    interval: Interval,
    version: int,
    row_ids: Any,
    scores: np.ndarray | None,
    labels: Any,
    classes: list[str] | None = None,
) -> None:
    """Replace the interval's rows with these (one batch), in one transaction."""
    batch = prediction_batch(spec, interval, version, row_ids, scores, labels, classes)
    write_batches(registry, spec, interval, [batch])
