"""Drift at scale: modelgate's drift step (decision + Evidently report) vs Evidently on the full frames.

Run as a module in child processes so each side's wall time and peak memory are its own:
  python -m benchmarks.drift_bench make DIR ROWS      write reference/current parquet files
  python -m benchmarks.drift_bench ours DIR           modelgate.drift.compare, with the report
  python -m benchmarks.drift_bench evidently DIR      Evidently DataDriftPreset on the full frames
Each measuring command prints one JSON line: seconds, peak RSS, drifted columns.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

NUMERIC = 20
CATEGORICAL = 5


def bench_spec(columns: list[tuple[str, str]]) -> Any:
    from modelgate.spec import ModelSpec

    return ModelSpec.model_validate(
        {
            "name": "drift_bench",
            "source": {"kind": "files", "path": "unused.parquet"},
            "time_column": "ts",
            "id_column": "id",
            "target": "y",
            "features": [{"name": name, "type": kind} for name, kind in columns],
            "estimator": {"name": "logistic_regression"},
            "drift": {"reference_sample_size": 1_000_000, "report_sample_size": 10_000},
        }
    )


def make(directory: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(11)
    shifts = {0: 0.3, 1: 0.2, 2: 0.105, 3: 0.5, 4: 0.15}  # in reference standard deviations
    levels = [list("abcde"), [f"l{i}" for i in range(12)], ["x", "y"], [f"c{i}" for i in range(20)], list("pqr")]

    def frame(current: bool) -> pd.DataFrame:
        data: dict[str, Any] = {"ts": pd.date_range("2026-01-01", periods=rows, freq="s", tz="UTC")}
        for i in range(NUMERIC):
            scale = 1 + i
            shift = shifts.get(i, 0.0) * scale if current else 0.0
            data[f"num_{i:02d}"] = rng.normal(10 * i + shift, scale, rows)
        for j, values in enumerate(levels):
            probs = np.ones(len(values)) / len(values)
            if current and j in (0, 3):
                probs = np.linspace(1, 3, len(values))
                probs /= probs.sum()
            data[f"cat_{j}"] = pd.Categorical(rng.choice(values, rows, p=probs), categories=values)
        return pd.DataFrame(data)

    directory.mkdir(parents=True, exist_ok=True)
    frame(False).to_parquet(directory / "reference.parquet")
    frame(True).to_parquet(directory / "current.parquet")


def _columns(frame: Any) -> list[tuple[str, str]]:
    return [(c, "numeric" if c.startswith("num_") else "categorical") for c in frame.columns if c != "ts"]


def _load(directory: Path) -> tuple[Any, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = []
    for name in ("reference", "current"):
        table = pq.read_table(directory / f"{name}.parquet")
        frames.append(table.to_pandas(self_destruct=True, split_blocks=True))
        del table
    pa.default_memory_pool().release_unused()
    return frames[0], frames[1]


def _current_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


class _RssSampler:
    """Samples this process's RSS every 10 ms: the peak of a step, not of the loading before it."""

    def __init__(self) -> None:
        import threading

        self.peak = _current_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _current_mb())

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _current_mb())


def ours(directory: Path) -> dict[str, Any]:
    reference, current = _load(directory)
    loaded_mb = _current_mb()
    with _RssSampler() as sampler:
        start = time.perf_counter()
        from modelgate.drift import compare

        spec = bench_spec(_columns(reference))
        result = compare(spec, reference, current, report_path=directory / "report.html")
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_mb": sampler.peak,
        "frames_rss_mb": loaded_mb,
        "drifted": sorted(result.drifted_columns),
        "report": result.report_path,
    }


def evidently(directory: Path) -> dict[str, Any]:
    reference, current = _load(directory)
    loaded_mb = _current_mb()
    sampler = _RssSampler().__enter__()
    start = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = _columns(reference)
    definition = DataDefinition(
        numerical_columns=[c for c, k in columns if k == "numeric"],
        categorical_columns=[c for c, k in columns if k == "categorical"],
    )
    names = [c for c, _ in columns]
    snapshot = Report([DataDriftPreset(columns=names)]).run(
        Dataset.from_pandas(current[names], data_definition=definition),
        Dataset.from_pandas(reference[names], data_definition=definition),
    )
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if "ValueDrift" in str(metric.get("metric_name")) and config.get("column"):
            if float(metric["value"]) >= float(config["threshold"]):
                drifted.append(config["column"])
    seconds = time.perf_counter() - start
    sampler.__exit__()
    return {"seconds": seconds, "peak_rss_mb": sampler.peak, "frames_rss_mb": loaded_mb, "drifted": sorted(drifted)}


def main() -> None:
    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "make":
        make(directory, int(sys.argv[3]))
        return
    result = ours(directory) if command == "ours" else evidently(directory)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
