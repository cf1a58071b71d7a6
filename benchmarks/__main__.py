"""`make bench`: each benchmark prints its ratio against a baseline measured in the same run.

Performance targets live here, never in timed tests. Results also go to bench-results/latest.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from modelgate.registry import schema
from modelgate.registry.connection import create_registry_engine, normalize_url
from modelgate.registry.entities import RunRef, Source, VersionDraft
from modelgate.registry.migrate import upgrade
from modelgate.registry.store import ANY_CHAMPION, Registry

ADMIN_URL_ENV = "MODELGATE_BENCH_PG_URL"


def _timed(fn: Callable[[], Any], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def _scratch_database() -> tuple[str, Callable[[], None]]:
    """A throwaway database on the bench server: $MODELGATE_BENCH_PG_URL, else the embedded one."""
    admin = os.environ.get(ADMIN_URL_ENV)
    if not admin:
        from modelgate.registry.embedded import start_embedded

        admin = start_embedded().replace("/modelgate?", "/postgres?")
    admin_engine = sa.create_engine(normalize_url(admin), isolation_level="AUTOCOMMIT")
    name = f"mg_bench_{uuid.uuid4().hex[:8]}"
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(normalize_url(admin)).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()

    return url, drop


@contextmanager
def _scratch_registry() -> Iterator[Registry]:
    """A migrated registry in a throwaway database (`_scratch_database`), dropped afterwards."""
    url, drop = _scratch_database()
    engine = create_registry_engine(url)
    try:
        upgrade(engine)
        yield Registry(engine)
    finally:
        engine.dispose()
        drop()


def bench_registry(repeat: int = 200) -> dict[str, Any]:
    """Promotion and registration cost against one-statement transactions on the same server."""
    with _scratch_registry() as registry:
        for i in range(2):
            registry.register("bench", _draft(f"seed-{i}"))
        registry.promote("bench", 1, expected_champion=None, actor="bench")

        def baseline() -> None:
            with registry.engine.begin() as conn:
                conn.execute(sa.text("UPDATE registered_model SET description = 'x' WHERE name = 'bench'"))

        state = {"champion": 1}

        def promote() -> None:
            target = 2 if state["champion"] == 1 else 1
            registry.promote("bench", target, expected_champion=state["champion"], actor="bench")
            state["champion"] = target

        counter = iter(range(10**9))
        base = _timed(baseline, repeat)
        promote_s = _timed(promote, repeat)
        register_s = _timed(lambda: registry.register("bench", _draft(f"r-{next(counter)}")), repeat)
        return {
            "baseline_single_update_ms": round(base * 1e3, 3),
            "promote_ms": round(promote_s * 1e3, 3),
            "register_ms": round(register_s * 1e3, 3),
            "promote_vs_baseline": round(promote_s / base, 2),
            "register_vs_baseline": round(register_s / base, 2),
        }


def _draft(run_id: str) -> VersionDraft:
    import hashlib

    sha = hashlib.sha256(run_id.encode()).hexdigest()
    return VersionDraft(
        artifact_uri=f"file:///bench/{sha}", artifact_sha256=sha, artifact_size=1, source=Source("bench", run_id, "t")
    )


def bench_ui(versions: int = 500, drift_rows: int = 5000, features: int = 12, repeat: int = 7) -> dict[str, Any]:
    """The Models view's model page: server time (registry reads + render) for a long-lived model (500 versions,
    5,000 drift runs, five years of weekly decisions), vs 300 ms."""
    import datetime as dt

    from modelgate import ui
    from modelgate.registry.monitoring import DecisionRow, MonitoringStore

    with _scratch_registry() as registry:
        monitoring = MonitoringStore(registry)
        for i in range(versions):
            version = registry.register("bench", _draft(f"v-{i}")).version
            verdict = {
                "champion_version": version - 1 or None,
                "challenger_version": version,
                "evaluation": {"primary": {"metric": "roc_auc", "champion": 0.7, "challenger": 0.71}},
            }
            if i % 3 == 0:
                registry.promote("bench", version, expected_champion=ANY_CHAMPION, actor="bench", verdict=verdict)
            else:
                registry.reject("bench", version, actor="bench", reason="lost", verdict=verdict)
        start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        names = [f"feature_{j}" for j in range(features)]
        with registry.engine.begin() as conn:  # bulk: one statement, as 5,000 monitor runs would have left them
            rows = []
            for i in range(drift_rows):
                end = start + dt.timedelta(hours=i + 1)
                scores = {
                    n: {"score": (i * j % 17) / 100, "threshold": 0.1, "drifted": False} for j, n in enumerate(names)
                }
                rows.append(
                    {
                        "model": "bench",
                        "interval_start": end - dt.timedelta(hours=1),
                        "interval_end": end,
                        "champion_version": 1,
                        "scores": scores,
                        "share": 0.0,
                        "drifted": False,
                        "reference_rows": 1000,
                        "current_rows": 100,
                    }
                )
            conn.execute(sa.insert(schema.drift_result), rows)
        for i in range(260):  # five years of weekly decisions
            end = start + dt.timedelta(weeks=i + 1)
            monitoring.record_decision(
                DecisionRow("bench", end - dt.timedelta(weeks=1), end, False, "no_trigger", "-", {})
            )

        def page() -> None:
            ui.render_model_page(ui.model_page(registry, "bench"), "/modelgate")

        page()  # warm: templates compiled, pool connected
        seconds = sorted(_timed(page, 1) for _ in range(repeat))[repeat // 2]
        html = ui.render_model_page(ui.model_page(registry, "bench"), "/modelgate")
        return {
            "versions": versions,
            "drift_rows": drift_rows,
            "features": features,
            "model_page_ms": round(seconds * 1e3, 1),
            "html_kb": round(len(html) / 1024),
            "vs_limit_300ms": round(seconds / 0.3, 2),
        }


def _child_json(*args: str, timeout: int = 1800) -> dict[str, Any]:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def bench_drift(rows: int | None = None) -> dict[str, Any]:
    """The monitor's drift step on 1M x 25 frames vs Evidently's DataDriftPreset on the same full frames."""
    rows = rows or int(os.environ.get("MODELGATE_BENCH_DRIFT_ROWS", "1000000"))
    module = "benchmarks.drift_bench"
    with tempfile.TemporaryDirectory(prefix="modelgate-drift-bench-") as tmp:
        subprocess.run([sys.executable, "-m", module, "make", tmp, str(rows)], check=True, timeout=900)
        ours = _child_json("-m", module, "ours", tmp)
        theirs = _child_json("-m", module, "evidently", tmp)
    return {
        "rows_per_frame": rows,
        "columns": 25,
        "modelgate_seconds": round(ours["seconds"], 2),
        "evidently_full_seconds": round(theirs["seconds"], 2),
        "speedup_vs_evidently": round(theirs["seconds"] / ours["seconds"], 1),
        "frames_rss_mb": round(ours["frames_rss_mb"]),
        "modelgate_step_peak_rss_mb": round(ours["peak_rss_mb"]),
        "modelgate_step_added_mb": round(ours["peak_rss_mb"] - ours["frames_rss_mb"]),
        "evidently_step_peak_rss_mb": round(theirs["peak_rss_mb"]),
        "same_columns_flagged": ours["drifted"] == theirs["drifted"],
        "flagged": ",".join(ours["drifted"]),
        "goal": "<= 10 s, <= 1 GB, >= 13x, same columns",
    }


def bench_drift_weather() -> dict[str, Any]:
    """weather.csv: first ten years as reference vs each later decade; verdicts must equal Evidently's."""
    from modelgate.config import project_dir

    path = project_dir() / ".." / "shared" / "data" / "weather.csv"
    if not path.is_file():
        return {"skipped": f"{path} is absent"}
    import pandas as pd

    from benchmarks.drift_bench import bench_spec
    from modelgate.drift import compute_drift

    weather = pd.read_csv(path)
    features = [c for c in weather.columns if c != "target"]
    spec = bench_spec([(c, "numeric") for c in features])
    reference = weather.iloc[:3650]
    agree = 0
    checks = 0
    start = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=features)
    for offset in range(3650, len(weather) - 3650 + 1, 3650):
        current = weather.iloc[offset : offset + 3650]
        ours = {c.column: c.drifted for c in compute_drift(spec, reference, current).columns}
        snapshot = Report([DataDriftPreset(columns=features)]).run(
            Dataset.from_pandas(current[features], data_definition=definition),
            Dataset.from_pandas(reference[features], data_definition=definition),
        )
        for metric in snapshot.dict()["metrics"]:
            config = metric.get("config", {})
            if "ValueDrift" in str(metric.get("metric_name")) and config.get("column"):
                checks += 1
                agree += ours[config["column"]] == (float(metric["value"]) >= float(config["threshold"]))
    return {
        "column_verdicts": checks,
        "agreeing_with_evidently": agree,
        "seconds": round(time.perf_counter() - start, 1),
    }


def bench_parse(repeat: int = 5) -> dict[str, Any]:
    """Parse time of the DAG file vs a file with one empty airflow.sdk DAG, each in a fresh interpreter."""
    from modelgate.config import project_dir

    root = project_dir()
    empty = "from airflow.sdk import DAG\nDAG('empty', schedule=None)\n"
    ours = f"import sys\nsys.path.insert(0, {str(root / 'dags')!r})\nimport modelgate_dags\n"
    env = {**os.environ, "PYTHONPATH": str(root / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

    def median(code: str) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    baseline, ours_s = median(empty), median(ours)
    return {
        "empty_dag_s": round(baseline, 3),
        "modelgate_dags_s": round(ours_s, 3),
        "ratio": round(ours_s / baseline, 3),
        "goal": "<= 1.2",
    }


def bench_scale(counts: tuple[int, ...] = (1, 100, 1000), shards: int = 16) -> dict[str, Any]:
    """N copies of the churn spec: the DAG file's parse by the DAG processor (a fresh spec cache, then a warm
    one; each in a fresh interpreter, timed from Airflow imported) against `dagbag_import_timeout`, and a task
    runner's parse for one DAG against the 1-spec case; at the largest N, the same models over `shards` DAG
    files (`modelgate dags shard`): the slowest file; modelgate's own share per spec (reading the specs);
    decide at 10 vs 260 intervals of history; the Models index over N models."""
    import yaml

    from modelgate.config import project_dir

    root = project_dir()
    timeout = float(os.environ.get("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "30"))
    churn = yaml.safe_load((root / "include" / "models" / "churn.yaml").read_text())
    # Airflow's DAG processor and task runner have Airflow imported when they import a DAG file (and
    # `dagbag_import_timeout` times that import alone): the file's time is counted after `import airflow.sdk`
    probe = (
        "import time; import airflow.sdk; start = time.perf_counter(); import sys; sys.path.insert(0, {dags!r}); "
        "import modelgate_dags as m; print(len(m._dags), len(m.SPEC_ERRORS), time.perf_counter() - start)"
    ).format(dags=str(root / "dags"))
    own_probe = (
        "import time; from pathlib import Path; from modelgate.catalog import load_specs; "
        "start = time.perf_counter(); specs, _ = load_specs(Path({models!r})); print(time.perf_counter() - start)"
    )
    out: dict[str, Any] = {"dagbag_import_timeout_s": timeout}
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="modelgate-scale-bench-") as tmp:
            models = Path(tmp) / "include" / "models"
            models.mkdir(parents=True)
            for i in range(count):
                name = "churn" if i == 0 else f"churn{i:04d}"
                (models / f"{name}.yaml").write_text(yaml.safe_dump(dict(churn, name=name)))
            env = {
                **os.environ,
                "PYTHONPATH": str(root / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "MODELGATE_INCLUDE_DIR": str(Path(tmp) / "include"),
                "MODELGATE_HOME": str(Path(tmp) / "home"),
            }

            def parse(dag_id: str | None, env: dict[str, str] = env) -> tuple[int, int, float]:
                context = {} if dag_id is None else {"_AIRFLOW_PARSING_CONTEXT_DAG_ID": dag_id}
                found = subprocess.run(
                    [sys.executable, "-c", probe], env=env | context, check=True, capture_output=True, text=True
                ).stdout.split()
                return int(found[-3]), int(found[-2]), float(found[-1])

            dags, errors, cold = parse(None)
            _, _, warm = parse(None)
            own = subprocess.run(  # modelgate's own part of a parse: reading the specs (the cache warm)
                [sys.executable, "-c", own_probe.format(models=str(models))],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            out[f"{count}_specs_own_ms_per_spec"] = round(float(own) * 1e3 / count, 2)
            task = min(parse("modelgate_retrain__churn")[2] for _ in range(5))
            if count == counts[-1]:
                out.update(_sharded_parse(root, env, shards))
        out[f"{count}_specs_dags"] = dags
        out[f"{count}_specs_import_errors"] = errors
        out[f"{count}_specs_parse_cold_s"] = round(cold, 2)
        out[f"{count}_specs_parse_warm_s"] = round(warm, 2)
        out[f"{count}_specs_parse_of_timeout"] = round(warm / timeout, 3)
        out[f"{count}_specs_task_parse_s"] = round(task, 3)
    one = out[f"{counts[0]}_specs_task_parse_s"]
    for count in counts[1:]:
        out[f"{count}_specs_task_start_vs_{counts[0]}"] = round(out[f"{count}_specs_task_parse_s"] / one, 2)
    out.update(_decide_by_history())
    out.update(_models_index(counts[-1]))
    out["goals"] = (
        "largest file's parse_of_timeout <= 0.1 at 1000 specs; task_start_vs_1 <= 1.1; own_ms_per_spec <= 5; "
        "decide_260_vs_10 <= 1.2; models_index_ms <= 300"
    )
    return out


def _decide_by_history(histories: tuple[int, int] = (10, 260), repeat: int = 9) -> dict[str, Any]:
    """`pipeline.decide` for one interval of the churn example, after `histories` weekly intervals of recorded
    decisions, drift runs and rejected challengers: the two registries side by side, timed in turns (median of
    `repeat` each), the same data window and champion in both."""
    from contextlib import ExitStack

    from modelgate.pipeline import RetrainParams, decide

    with ExitStack() as stack:
        worlds = [(weeks, *_decide_world(stack, weeks)) for weeks in histories]
        for _, spec, run, services in worlds:
            decide(spec, run, services, RetrainParams())  # warm: connections, imports
        times: dict[int, list[float]] = {weeks: [] for weeks in histories}
        for _ in range(repeat):
            for weeks, spec, run, services in worlds:
                start = time.perf_counter()
                decide(spec, run, services, RetrainParams())
                times[weeks].append(time.perf_counter() - start)
    out: dict[str, Any] = {f"decide_{w}_intervals_ms": round(sorted(t)[repeat // 2] * 1e3) for w, t in times.items()}
    low, high = histories
    out[f"decide_{high}_vs_{low}"] = round(out[f"decide_{high}_intervals_ms"] / out[f"decide_{low}_intervals_ms"], 2)
    return out


def _decide_world(stack: Any, weeks: int) -> tuple[Any, Any, Any]:
    """A scratch registry where the churn champion has served `weeks` weekly intervals: (spec, run, services)."""
    import datetime as dt

    from modelgate.data import Interval
    from modelgate.pipeline import RunInfo, Services
    from modelgate.registry.monitoring import DecisionRow, DriftRow
    from modelgate.report_store import ReportStore

    spec, interval, registry, artifacts, tmp, url = stack.enter_context(_churn_scratch(days=35, rows_per_day=300))
    services = Services(registry, url, artifacts, ReportStore(str(Path(tmp) / "reports")))
    run = RunInfo(
        "modelgate_retrain__churn", "bench", "decide", Interval(interval.end - dt.timedelta(weeks=1), interval.end)
    )
    first = run.interval.start - dt.timedelta(weeks=weeks)
    trained = registry.get_champion(spec.name)
    assert trained is not None
    champion = registry.register(  # the example's model, as if trained on the weeks before the history
        spec.name,
        dataclasses.replace(
            _draft("champion"),
            artifact_uri=trained.artifact_uri,
            artifact_sha256=trained.artifact_sha256,
            window_start=first - dt.timedelta(days=28),
            window_end=first,
            row_count=8_400,
            metrics={"holdout_roc_auc": 0.72},
        ),
    ).version
    registry.promote(
        spec.name, champion, expected_champion=ANY_CHAMPION, actor="bench", run=RunRef("bench", "c", "p", first)
    )
    for k in range(weeks):
        start = first + dt.timedelta(weeks=k)
        end = start + dt.timedelta(weeks=1)
        retrain = k % 4 == 0
        services.monitoring.record_decision(
            DecisionRow(spec.name, start, end, retrain, "drift" if retrain else "no_trigger", "-", {})
        )
        services.monitoring.upsert_drift(DriftRow(spec.name, start, end, champion, {}, 0.1, k % 3 == 0, 9, 9, None))
        if retrain:  # its challenger lost: the champion served on
            draft = dataclasses.replace(_draft(f"h-{k}"), window_start=start, window_end=end, row_count=500)
            version = registry.register(spec.name, draft).version
            verdict = {"champion_version": champion, "window": [start.isoformat(), end.isoformat()]}
            registry.reject(spec.name, version, actor="bench", reason="lost", verdict=verdict, run=RunRef(as_of=end))
    return spec, run, services


def _models_index(models: int, repeat: int = 7) -> dict[str, Any]:
    """The Models index (a page of 50 cards, then a search) over `models` models, each with a champion, a
    rejected challenger and a drift run: server time (registry reads + render), median of `repeat`."""
    import datetime as dt

    from modelgate import ui
    from modelgate.registry.monitoring import DriftRow, MonitoringStore

    with _scratch_registry() as registry:
        monitoring = MonitoringStore(registry)
        end = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
        for i in range(models):
            name = f"model_{i:04d}"
            registry.create_model(name, description=f"team {i % 20}")
            champion = registry.register(name, _draft(f"{name}-1")).version
            registry.promote(name, champion, expected_champion=None, actor="bench")
            challenger = registry.register(name, _draft(f"{name}-2")).version
            verdict = {"champion_version": champion, "challenger_version": challenger}
            registry.reject(name, challenger, actor="bench", reason="lost", verdict=verdict)
            monitoring.upsert_drift(
                DriftRow(name, end - dt.timedelta(weeks=1), end, 1, {}, 0.2, i % 7 == 0, 9, 9, None)
            )

        def index(search: str = "") -> None:
            ui.render("models.html", index=ui.overview(registry, search=search, page=2), prefix="/modelgate")

        index()  # warm
        page = sorted(_timed(index, 1) for _ in range(repeat))[repeat // 2]
        found = sorted(_timed(lambda: index("team 7"), 1) for _ in range(repeat))[repeat // 2]
        return {
            "models_index_models": models,
            "models_index_ms": round(page * 1e3, 1),
            "models_index_search_ms": round(found * 1e3, 1),
            "models_index_vs_300ms": round(max(page, found) / 0.3, 2),
        }


def _sharded_parse(root: Path, env: dict[str, str], shards: int) -> dict[str, Any]:
    """Each of `shards` DAG files parsed in a fresh interpreter (the spec cache warm): DAGs found, the slowest."""
    from modelgate.catalog import DAG_FILE, lay_out_shards

    timeout = float(os.environ.get("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "30"))
    probe = (
        "import time; import airflow.sdk; start = time.perf_counter(); import importlib.util; "
        "s = importlib.util.spec_from_file_location('shard', {file!r}); m = importlib.util.module_from_spec(s); "
        "s.loader.exec_module(m); print(len(m._dags), time.perf_counter() - start)"
    )
    with tempfile.TemporaryDirectory(prefix="modelgate-shards-") as tmp:
        dags = Path(tmp)
        (dags / f"{DAG_FILE}.py").write_bytes((root / "dags" / f"{DAG_FILE}.py").read_bytes())
        lay_out_shards(dags, shards)
        found, slowest = 0, 0.0
        for file in sorted(dags.glob(f"{DAG_FILE}*.py")):
            count, seconds = subprocess.run(
                [sys.executable, "-c", probe.format(file=str(file))],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-2:]
            found += int(count)
            slowest = max(slowest, float(seconds))
    return {
        f"{shards}_shards_dags": found,
        f"{shards}_shards_slowest_parse_s": round(slowest, 2),
        f"{shards}_shards_slowest_of_timeout": round(slowest / timeout, 3),
    }


def bench_demo() -> dict[str, Any]:
    """Wall time of the full demo loop (12 weekly intervals, monitor + retrain each)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "modelgate.demo"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return {"demo_wall_s": round(time.perf_counter() - start, 1), "intervals": 12}


def _churn_world(url: str, tmp: str, days: int, rows_per_day: int) -> tuple[Any, Any, Any, Any]:
    """A scratch registry with churn rows, a trained champion, and its spec and interval."""
    import datetime as dt

    from modelgate.catalog import load_spec
    from modelgate.config import project_dir
    from modelgate.data import Interval, load_window
    from modelgate.datasets.churn import write_days
    from modelgate.registry.artifacts import ArtifactStore
    from modelgate.training import train

    spec = load_spec(project_dir() / "include" / "models" / "churn.yaml")
    start = dt.date(2026, 1, 1)
    write_days(url, start, start + dt.timedelta(days=days), rows_per_day=rows_per_day)
    first = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    interval = Interval(first, first + dt.timedelta(days=days))
    first_day = Interval(interval.start, interval.start + dt.timedelta(days=1))  # enough to train on
    frame = load_window(spec, first_day, url=url)
    registry = Registry(create_registry_engine(url))
    artifacts = ArtifactStore(tmp)
    (stored,) = artifacts.save_models(train(spec, frame.head(20_000)).pipeline)  # a skops file, as the loop's
    version = registry.register(
        spec.name,
        VersionDraft(
            artifact_uri=stored.uri,
            artifact_sha256=stored.sha256,
            artifact_size=stored.size,
            source=Source("bench", "r", "t"),
            feature_schema={f: "any" for f in spec.feature_names},
            artifact_format=stored.format,
            trusted_types=stored.trusted,
        ),
    )
    registry.promote(spec.name, version.version, expected_champion=None, actor="bench")
    return spec, interval, registry, artifacts


@contextmanager
def _churn_scratch(days: int, rows_per_day: int) -> Iterator[tuple[Any, Any, Any, Any, str, str]]:
    """A throwaway registry database with churn rows and a champion: (spec, interval, registry, artifacts,
    tmp dir, url); everything is dropped afterwards."""
    url, drop = _scratch_database()
    engine = create_registry_engine(url)
    try:
        upgrade(engine)
        with tempfile.TemporaryDirectory() as tmp:
            spec, interval, registry, artifacts = _churn_world(url, tmp, days=days, rows_per_day=rows_per_day)
            try:
                yield spec, interval, registry, artifacts, tmp, url
            finally:
                registry.close()
    finally:
        engine.dispose()
        drop()


def bench_batch() -> dict[str, Any]:
    """Postgres source -> batch_prediction, against the serial floor measured in the same run on the same rows:
    an ADBC read of the window, predict_proba, and an ADBC write of the scores, one after the other."""
    import adbc_driver_postgresql.dbapi as adbc
    import psycopg
    import pyarrow as pa

    from modelgate.deploy.batch import batch_predict, prediction_batch, score_frame
    from modelgate.registry.db import libpq_uri

    rows_per_day = int(os.environ.get("MODELGATE_BENCH_BATCH_ROWS_PER_DAY", "5000"))
    with _churn_scratch(days=20, rows_per_day=rows_per_day) as (spec, interval, registry, artifacts, _, url):
        champion = registry.get_champion(spec.name)
        assert champion is not None
        model = artifacts.load_version(champion)
        uri = libpq_uri(registry.engine.url)
        columns = ", ".join(f'"{c}"' for c in [spec.id_column, *spec.feature_names])
        with adbc.connect(uri) as conn, conn.cursor() as cursor:
            # the same table as batch_prediction: its key index, and its foreign key to the version stamped
            cursor.execute("CREATE TABLE bench_floor (LIKE batch_prediction INCLUDING ALL)")
            cursor.execute(
                "ALTER TABLE bench_floor ADD FOREIGN KEY (model, model_version) "
                "REFERENCES model_version (model, version)"
            )
            conn.commit()
            start = time.perf_counter()
            cursor.execute(
                f"SELECT {columns} FROM churn_events WHERE event_time >= $1 AND event_time < $2",
                parameters=(interval.start, interval.end),
            )
            frame = cursor.fetch_arrow_table().to_pandas()
            read = time.perf_counter() - start
            start = time.perf_counter()
            scores = score_frame(spec, model, frame)
            predict = time.perf_counter() - start
            batch = prediction_batch(
                spec, interval, champion.version, frame[spec.id_column].to_numpy(), scores, scores >= 0.5
            )
            start = time.perf_counter()
            cursor.adbc_ingest("bench_floor", pa.RecordBatchReader.from_batches(batch.schema, [batch]), mode="append")
            conn.commit()
            write = time.perf_counter() - start
        timings = []
        for _ in range(3):  # each run writes the interval afresh, as the floor did (the delete is not timed)
            with psycopg.connect(uri, autocommit=True) as conn:
                conn.execute("DELETE FROM batch_prediction")
                conn.execute("VACUUM batch_prediction")
            start = time.perf_counter()
            result = batch_predict(spec, interval, registry=registry, artifacts=artifacts, data_url=url)
            timings.append(time.perf_counter() - start)
        ours = sorted(timings)[1]
    n = result.rows
    floor = read + predict + write
    return {
        "rows": n,
        "adbc_read_rows_per_s": round(n / read),
        "predict_proba_rows_per_s": round(n / predict),
        "adbc_write_rows_per_s": round(n / write),
        "serial_floor_rows_per_s": round(n / floor),
        "batch_rows_per_s": round(n / ours),
        "batch_vs_serial_floor": round(floor / ours, 3),
        "goal": ">= 0.8 (>= 1.0 with read, score and write overlapped)",
    }


def bench_serve(requests: int = 500) -> dict[str, Any]:
    """`modelgate serve` (its own process, as users run it) on loopback, against the same pipeline called
    in-process on the same rows: the server's overhead at p50, for 1-row and 100-row requests, with every
    prediction logged to the registry (the default) and, beside it, with `--no-log-predictions`."""
    import httpx
    import pandas as pd

    from modelgate.data import load_window
    from modelgate.deploy.local import LocalTarget, deploy_local

    with _churn_scratch(days=2, rows_per_day=500) as (spec, interval, registry, artifacts, tmp, url):
        target = LocalTarget(Path(tmp) / "serving")
        champion = registry.get_champion(spec.name)
        assert champion is not None
        deploy_local(
            registry,
            artifacts,
            target,
            model=spec.name,
            version=champion.version,
            features=spec.feature_names,
            task=spec.task.value,
            steps=[100],
        )
        model = artifacts.load_version(champion)
        rows = load_window(spec, interval, url=url)[spec.feature_names].head(100).to_dict("records")
        out: dict[str, Any] = {}
        local: dict[str, float] = {}
        for label, batch in (("1_row", rows[:1]), ("100_rows", rows)):
            timings = []
            for _ in range(requests):
                t0 = time.perf_counter()
                model.predict_proba(pd.DataFrame.from_records(batch, columns=spec.feature_names))
                timings.append(time.perf_counter() - t0)
            local[label] = sorted(timings)[len(timings) // 2]
        for mode, flags in (("", ["--log-predictions"]), ("unlogged_", ["--no-log-predictions"])):
            port = _free_port()
            env = {**os.environ, "MODELGATE_SERVING_DIR": str(target.root), "MODELGATE_REGISTRY_URL": url}
            command = [
                str(Path(sys.executable).with_name("modelgate")), "serve", spec.name, "--port", str(port), *flags
            ]  # fmt: skip
            server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            try:
                with httpx.Client() as client:
                    for _ in range(200):
                        try:
                            if client.get(f"{base}/health").status_code == 200:
                                break
                        except httpx.HTTPError:
                            time.sleep(0.05)
                    for label, batch in (("1_row", rows[:1]), ("100_rows", rows)):
                        keys = [f"k{i}" for i in range(len(batch))]
                        latencies = []
                        start = time.perf_counter()
                        for _ in range(requests):
                            t0 = time.perf_counter()
                            response = client.post(f"{base}/predict", json={"instances": batch, "keys": keys})
                            latencies.append(time.perf_counter() - t0)
                            assert response.status_code == 200
                        total = time.perf_counter() - start
                        latencies.sort()
                        p50, in_process = latencies[len(latencies) // 2], local[label]
                        out[f"{mode}{label}_p50_ms"] = round(p50 * 1e3, 2)
                        out[f"{mode}{label}_p99_ms"] = round(latencies[int(len(latencies) * 0.99) - 1] * 1e3, 2)
                        out[f"{mode}{label}_overhead_p50_ms"] = round((p50 - in_process) * 1e3, 2)
                        if not mode:
                            out[f"{label}_in_process_p50_ms"] = round(in_process * 1e3, 2)
                            out[f"{label}_overhead_vs_2ms_limit"] = round((p50 - in_process) / 0.002, 2)
                        out[f"{mode}{label}_requests_per_s"] = round(requests / total, 1)
            finally:
                server.terminate()
                server.wait(timeout=30)
        with registry.engine.connect() as conn:
            logged = conn.execute(sa.text("SELECT count(*) FROM prediction_log")).scalar_one()
        out["rows_logged"] = int(logged)
        out["rows_logged_vs_sent"] = round(int(logged) / (requests * 101), 3)
        for label in ("1_row", "100_rows"):
            out[f"{label}_logging_cost_ms"] = round(out[f"{label}_p50_ms"] - out[f"unlogged_{label}_p50_ms"], 2)
    out["goal"] = "overhead <= 2 ms at p50 with every prediction logged (ratio <= 1.0); every row logged (1.0)"
    return out


def bench_batch_memory() -> dict[str, Any]:
    """Peak RSS of batch scoring in a fresh process, for an interval ten times the size of another: streamed,
    the peak stays where it is ($MODELGATE_BENCH_BATCH_MEMORY_ROWS rows a day over 20 days, default 50k)."""
    rows_per_day = int(os.environ.get("MODELGATE_BENCH_BATCH_MEMORY_ROWS", "50000"))
    out: dict[str, Any] = {}
    with _churn_scratch(days=20, rows_per_day=rows_per_day) as (spec, interval, registry, artifacts, tmp, url):
        small = interval.start + (interval.end - interval.start) / 10
        for label, end in (("tenth", small), ("full", interval.end)):
            found = _child_json("-m", "benchmarks.batch_memory", url, tmp, interval.start.isoformat(), end.isoformat())
            out[f"{label}_rows"] = found["rows"]
            out[f"{label}_peak_rss_mb"] = found["peak_rss_mb"]
            out[f"{label}_rows_per_s"] = round(found["rows"] / found["seconds"])
    out["full_vs_tenth_peak"] = round(out["full_peak_rss_mb"] / out["tenth_peak_rss_mb"], 2)
    out["goal"] = "flat: about 1.0 (10M rows in <= 1 GB)"
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loop_include(tmp: Path) -> Path:
    import yaml

    from modelgate.config import project_dir

    include = tmp / "include"
    (include / "models").mkdir(parents=True)
    (include / "expectations").mkdir()
    spec = yaml.safe_load((project_dir() / "include" / "models" / "churn.yaml").read_text())
    spec.update(start_date="2025-01-05", catchup=False, paused_upon_creation=False, deploy={"target": "none"})
    (include / "models" / "churn.yaml").write_text(yaml.safe_dump(spec))
    return include


def _loop_on(executor: str, intervals: int) -> dict[str, Any]:
    """Monitor then retrain, interval after interval, triggered through the REST API of a running stack."""
    import datetime as dt
    import shutil
    import statistics

    from modelgate.config import project_dir
    from modelgate.datasets.churn import last_weekly_boundary, seed_until
    from modelgate.stack import AirflowClient, StackConfig, prepare, running

    registry_url, drop_registry = _scratch_database()
    metadata_url, drop_metadata = _scratch_database()
    tmp = Path(tempfile.mkdtemp(prefix="modelgate-bench-loop-"))
    try:
        config = StackConfig(
            airflow_home=tmp / "airflow",
            metadata_url=metadata_url,
            registry_url=registry_url,
            modelgate_home=tmp / "home",
            repo_root=project_dir(),
            include_dir=_loop_include(tmp),
            executor="celery" if executor == "celery" else "local",
            broker_url=os.environ.get("MODELGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
            port=_free_port(),
        )
        password = prepare(config)
        now = dt.datetime.now(dt.UTC)
        seed_until(registry_url, now, history_days=28 + 7 * (intervals + 1), drift_weeks_ago=1)
        boundary = last_weekly_boundary(now)
        walls: list[float] = []
        tasks: dict[str, list[float]] = {}
        with running(config):
            api = AirflowClient(config.base_url, config.username, password)
            deadline = time.monotonic() + 120
            while not {"modelgate_monitor__churn", "modelgate_retrain__churn"} <= api.dag_ids():
                if time.monotonic() > deadline:
                    raise TimeoutError("the bench DAGs were not parsed")
                time.sleep(1)
            # the scheduler's own first run of each DAG (the latest interval) is warm-up, not measured
            for dag_id in ("modelgate_monitor__churn", "modelgate_retrain__churn"):
                for run in api.runs(dag_id):
                    api.wait_run(dag_id, run["dag_run_id"], timeout=600)
            for week in range(intervals, 0, -1):
                end = boundary - week * dt.timedelta(days=7)  # not the warm-up run's interval
                started = time.perf_counter()
                for dag_id in ("modelgate_monitor__churn", "modelgate_retrain__churn"):
                    # a minute past the interval's end: the same interval, a logical date of its own
                    moment = end + dt.timedelta(minutes=1)
                    run_id = api.trigger(
                        dag_id, {"force": True} if "retrain" in dag_id else {}, logical_date=moment.isoformat()
                    )
                    run = api.wait_run(dag_id, run_id, timeout=600)
                    if run["state"] != "success":
                        raise RuntimeError(f"{dag_id} {run_id}: {api.task_states(dag_id, run_id)}")
                    for ti in api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]:
                        if ti["state"] == "success" and ti["duration"] is not None:
                            tasks.setdefault(ti["task_id"], []).append(float(ti["duration"]))
                walls.append(time.perf_counter() - started)
        task_total = sum(statistics.median(v) for v in tasks.values())
        return {
            f"{executor}_interval_s_median": round(statistics.median(walls), 1),
            f"{executor}_interval_s_each": [round(w, 1) for w in walls],
            f"{executor}_tasks_s_median": {k: round(statistics.median(v), 2) for k, v in sorted(tasks.items())},
            f"{executor}_in_tasks_share": round(task_total / statistics.median(walls), 2),
            f"{executor}_vs_goal_30s": round(statistics.median(walls) / 30, 2),
        }
    finally:
        drop_registry()
        drop_metadata()
        shutil.rmtree(tmp, ignore_errors=True)


def bench_loop(intervals: int = 3) -> dict[str, Any]:
    """One churn interval end to end (monitor + retrain) under the real scheduler, LocalExecutor and Celery.

    The ratio is against the goal (30 s an interval on a 2-core machine); the per-task medians show where the
    time goes, and `in_tasks_share` how much of the wall time the tasks themselves account for (the rest is
    scheduling and queueing).
    """
    from modelgate.stack import redis_answers

    out = _loop_on("local", intervals)
    broker = os.environ.get("MODELGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(broker):
        out.update(_loop_on("celery", intervals))
    else:
        out["celery"] = f"skipped: no Redis at {broker}"
    return out


def _policy_row(name: str, spec: Any, frame: Any, steps: list[Any]) -> dict[str, Any]:
    from modelgate.replay import Policy, ReplayCache, replay

    cache = ReplayCache()  # the baselines and the loop share fits of the same windows: the same results, sooner
    policies: tuple[Policy, ...] = ("modelgate", "never", "every", "label_rule")
    results = {policy: replay(spec, frame, steps, policy, cache=cache) for policy in policies}
    common = set.intersection(*(r.scored for r in results.values()))
    metric = spec.evaluation.primary_metric
    mine, every, rule = results["modelgate"], results["every"], results["label_rule"]
    row: dict[str, Any] = {f"{policy}_accuracy": round(r.accuracy(common), 4) for policy, r in results.items()}
    row.update({f"{policy}_{metric}": round(r.primary(metric, common), 4) for policy, r in results.items()})
    row.update(
        {
            "intervals": len(steps),
            "modelgate_retrains": mine.retrains,
            "modelgate_promotions": mine.promotions,
            "modelgate_alarms": mine.alarms,
            "every_retrains": every.retrains,
            "label_rule_retrains": rule.retrains,
            "accuracy_vs_every": round(mine.accuracy(common) - every.accuracy(common), 6),  # a 1-row tie shows
            f"{metric}_vs_every": round(mine.primary(metric, common) - every.primary(metric, common), 6),
            "accuracy_vs_label_rule": round(mine.accuracy(common) - rule.accuracy(common), 6),
            "retrains_vs_every": round(mine.retrains / max(every.retrains, 1), 3),
            "alarms_per_50": round(50 * mine.alarms / max(len(steps), 1), 2),
        }
    )
    print(f"  {name:<22} {json.dumps(row)}", flush=True)
    return row


def _weekly(times: Any, window_days: int) -> list[Any]:
    """Weekly intervals ending on Sundays, from the first full window to the stream's last row."""
    import datetime as dt

    from modelgate.replay import intervals

    first = times.iloc[0].to_pydatetime().replace(hour=0, minute=0, second=0, microsecond=0)
    first += dt.timedelta(days=window_days)
    first += dt.timedelta(days=(6 - first.weekday()) % 7)
    return intervals(first, times.iloc[-1].to_pydatetime(), dt.timedelta(days=7))


@dataclasses.dataclass(frozen=True)
class _Stream:
    """One stream of the policy benchmark: its spec (and the YAML it was read from), rows and weekly steps."""

    key: str
    label: str
    spec: Any
    text: str
    frame: Any
    steps: list[Any]


def _policy_streams(seeds: list[int], *, stationary: bool = True) -> Iterator[_Stream | str]:
    """The synthetic streams for `seeds`, weather.csv (a skip message when absent), flights and electricity,
    each followed by its shuffled (stationary) copy when `stationary`, which also adds the issue's stationary
    case per seed: 1,000 rows a day, 96 daily intervals, a 4-day window, `max_iter: 100`."""
    import datetime as dt

    from modelgate.catalog import load_spec
    from modelgate.config import project_dir
    from modelgate.datasets.streams import (
        ELECTRICITY_FEATURES,
        FEATURES,
        FLIGHT_FEATURES,
        START,
        default_spec,
        default_spec_text,
        nyc_flights,
        shuffled,
        synthetic,
        synthetic_spec,
        vic_electricity,
        weather,
    )
    from modelgate.replay import intervals
    from modelgate.spec import parse_spec

    spec = synthetic_spec()
    text = default_spec_text("stream", [(name, "numeric") for name in FEATURES], time_column="t", target="y")
    weeks = 80
    steps = intervals(START + dt.timedelta(days=spec.window_days), START + dt.timedelta(weeks=weeks), dt.timedelta(7))
    for kind in ("abrupt", "gradual", "recurring"):
        for seed in seeds:
            frame = synthetic(kind, seed=seed, weeks=weeks)
            yield _Stream(f"{kind}_s{seed}", f"{kind} seed {seed}", spec, text, frame, steps)
            if stationary:
                copy = shuffled(frame, "t", seed=seed)
                yield _Stream(f"{kind}_s{seed}_shuffled", f"{kind} seed {seed} shuffled", spec, text, copy, steps)
    if stationary:  # the stationary case: 1,000 rows a day, 96 daily intervals, a 4-day window
        columns = [(name, "numeric") for name in FEATURES]
        dtext = default_spec_text(
            "stream", columns, time_column="t", target="y", schedule="@daily", window_days=4, max_iter=100
        )
        dspec = parse_spec(dtext)
        day = dt.timedelta(days=1)
        dsteps = intervals(START + 4 * day, START + 100 * day, day)
        for seed in seeds:
            frame = shuffled(synthetic("gradual", seed=seed, weeks=15, rows_per_week=7000), "t", seed=seed)
            yield _Stream(f"daily_s{seed}_shuffled", f"daily seed {seed} shuffled", dspec, dtext, frame, dsteps)
    path = project_dir().parent / "shared" / "data" / "weather.csv"
    if path.is_file():
        wpath = project_dir() / "include" / "models" / "weather_rain.yaml"
        wspec, wtext = load_spec(wpath), wpath.read_text()
        frame = weather(path)
        wsteps = _weekly(frame["day"], wspec.window_days)
        yield _Stream("weather", "weather weekly", wspec, wtext, frame, wsteps)
        if stationary:
            yield _Stream("weather_shuffled", "weather shuffled", wspec, wtext, shuffled(frame, "day"), wsteps)
    else:
        yield f"skipped: {path} is absent"
    for name, load, features, target in (
        ("flights", nyc_flights, FLIGHT_FEATURES, "late"),
        ("electricity", vic_electricity, ELECTRICITY_FEATURES, "up"),
    ):
        frame = load()
        rspec = default_spec(name, features, time_column="t", target=target)
        rtext = default_spec_text(name, features, time_column="t", target=target)
        rsteps = _weekly(frame["t"], rspec.window_days)
        yield _Stream(name, f"{name} weekly", rspec, rtext, frame, rsteps)
        if stationary:
            yield _Stream(f"{name}_shuffled", f"{name} shuffled", rspec, rtext, shuffled(frame, "t"), rsteps)


def _seeds(default: str = "0,1") -> list[int]:
    return [int(s) for s in os.environ.get("MODELGATE_BENCH_POLICY_SEEDS", default).split(",")]


def bench_policy() -> dict[str, Any]:
    """The loop's defaults replayed over streams, against never retraining and retraining every interval.

    Targets: on drifting streams, accuracy at least retrain-every-interval's with at most a third of its
    retrains; on the shuffled (stationary) copies, at most one drift alarm in 50 windows.
    """
    out: dict[str, Any] = {}
    for stream in _policy_streams(_seeds()):
        if isinstance(stream, str):
            out["weather"] = stream
        else:
            out[stream.key] = _policy_row(stream.label, stream.spec, stream.frame, stream.steps)
    drifting = [v for k, v in out.items() if isinstance(v, dict) and not k.endswith("shuffled")]
    stationary = [v for k, v in out.items() if isinstance(v, dict) and k.endswith("shuffled")]
    out["targets"] = {
        "drifting_within_half_a_point_of_every": all(
            r["accuracy_vs_every"] >= -0.005 and r["roc_auc_vs_every"] >= -0.005 for r in drifting
        ),
        "drifting_retrains_at_most_half": all(r["retrains_vs_every"] <= 1 / 2 for r in drifting),
        "drifting_ahead_of_the_label_rule": all(r["accuracy_vs_label_rule"] >= 0 for r in drifting),
        "stationary_retrains_at_most_3_in_96": all(
            r["modelgate_retrains"] <= 3 * r["intervals"] / 96 + 1
            for r in stationary  # the first model too
        ),
        "drifting_accuracy_at_least_every": all(r["accuracy_vs_every"] >= 0 for r in drifting),
        "drifting_retrains_at_most_a_third": all(r["retrains_vs_every"] <= 1 / 3 for r in drifting),
        "stationary_alarms_at_most_1_in_50": all(r["alarms_per_50"] <= 1 for r in stationary),
        "worst_accuracy_vs_every": min(r["accuracy_vs_every"] for r in drifting),
    }
    return out


def bench_backtest() -> dict[str, Any]:
    """`backtest.run` on each drifting stream of the policy benchmark (seeds: MODELGATE_BENCH_POLICY_SEEDS,
    default 0): the policy it recommends from the first two thirds against retrain-every-interval on the
    held-out last third, which the choice never saw.

    Target: on every stream, at least retrain-every's held-out accuracy with at most a third of its retrains.
    """
    from modelgate import backtest

    out: dict[str, Any] = {}
    for stream in _policy_streams(_seeds("0"), stationary=False):
        if isinstance(stream, str):
            out["weather"] = stream
            continue
        started = time.perf_counter()
        result = backtest.run(stream.spec, stream.frame, spec_text=stream.text)
        chosen = result.result(result.recommendation.name).held_out
        every, spec = result.result("every").held_out, result.result("spec").held_out
        row = {
            "intervals": result.intervals,
            "held_out_intervals": chosen.intervals,
            "recommended": result.recommendation.name,
            "metric": result.metric,
            "accuracy": round(chosen.accuracy, 4),
            "every_accuracy": round(every.accuracy, 4),
            "spec_accuracy": round(spec.accuracy, 4),
            "accuracy_vs_every": round(chosen.accuracy - every.accuracy, 6),
            "primary_vs_every": round(chosen.primary - every.primary, 6),
            "retrains": chosen.retrains,
            "every_retrains": every.retrains,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"  {stream.key:<22} {json.dumps(row)}", flush=True)  # on the spec's schedule, not weekly
        out[stream.key] = row
    rows = [v for v in out.values() if isinstance(v, dict)]
    out["targets"] = {
        "held_out_accuracy_at_least_every": all(r["accuracy_vs_every"] >= 0 for r in rows),
        "held_out_retrains_at_most_a_third": all(r["retrains"] <= r["every_retrains"] / 3 for r in rows),
        "worst_accuracy_vs_every": min(r["accuracy_vs_every"] for r in rows),
    }
    return out


def bench_backtest_churn(days: int = 365, runs: int = 2) -> dict[str, Any]:
    """`modelgate backtest churn` as a user runs it, on a year of the example's rows in a scratch registry:
    `runs` runs in fresh processes (every policy, the default worker count), each timed whole against the
    2-minute limit, and whether they recommend the same (seeded, they must)."""
    url, drop = _scratch_database()
    env = dict(os.environ, MODELGATE_REGISTRY_URL=url)
    cli = [sys.executable, "-m", "modelgate.cli"]
    out: dict[str, Any] = {"days": days}
    try:
        subprocess.run([*cli, "example-data", "churn", "--days", str(days)], env=env, check=True, capture_output=True)
        found = []
        for i in range(runs):
            started = time.perf_counter()
            args = [*cli, "backtest", "churn", "--json"]
            done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            seconds = time.perf_counter() - started
            result = json.loads(done.stdout)
            found.append((result["recommendation"]["name"], result["diff"]))
            out[f"run{i + 1}_s"] = round(seconds, 1)
            out[f"run{i + 1}_vs_120s_limit"] = round(seconds / 120, 2)
        out["intervals"] = result["intervals"]
        out["policies"] = len(result["results"])
        out["recommended"] = found[0][0]
        out["same_recommendation"] = all(f == found[0] for f in found)
    finally:
        drop()
    return out


def _busy(stop: Any) -> None:
    """A competing task slot: one core kept busy until told to stop."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def bench_threads(repeat: int = 3) -> dict[str, Any]:
    """One HistGradientBoosting fit of a churn window with the slot's one thread against OpenMP's default (every
    core), on a quiet machine and with every core busy with another slot's work, as on a loaded worker."""
    import datetime as dt
    import multiprocessing

    import pandas as pd

    from modelgate.catalog import load_spec
    from modelgate.config import project_dir
    from modelgate.datasets.churn import generate_day
    from modelgate.training import train

    spec = load_spec(project_dir() / "include" / "models" / "churn.yaml")
    frame = pd.concat([generate_day(dt.date(2026, 1, 1) + dt.timedelta(days=d)) for d in range(28)])
    cores = os.cpu_count() or 1
    one = spec.model_copy(update={"estimator": spec.estimator.model_copy(update={"threads": 1})})
    every = spec.model_copy(update={"estimator": spec.estimator.model_copy(update={"threads": cores})})
    out: dict[str, Any] = {"cores": cores, "rows": len(frame)}
    for load in ("quiet", "loaded"):
        stop = multiprocessing.Event()
        hogs = [multiprocessing.Process(target=_busy, args=(stop,)) for _ in range(cores if load == "loaded" else 0)]
        for hog in hogs:
            hog.start()
        try:
            out[f"{load}_1_thread_s"] = round(_timed(lambda: train(one, frame), repeat), 3)
            out[f"{load}_{cores}_threads_s"] = round(_timed(lambda: train(every, frame), repeat), 3)
        finally:
            stop.set()
            for hog in hogs:
                hog.join()
        out[f"{load}_all_cores_vs_1"] = round(out[f"{load}_{cores}_threads_s"] / out[f"{load}_1_thread_s"], 2)
    return out


def bench_quality() -> dict[str, Any]:
    """The quality gate (the churn suite, Data Docs included) in fresh processes, against its limits."""
    out: dict[str, Any] = {}
    for rows, limit in ((10_000, 3.0), (1_000_000, 5.0)):
        with tempfile.TemporaryDirectory(prefix="modelgate-quality-bench-") as tmp:
            found = _child_json("-m", "benchmarks.quality_bench", str(rows), str(Path(tmp) / "docs"))
        label = f"{rows // 1000}k" if rows < 1_000_000 else f"{rows // 1_000_000}M"
        out[f"{label}_gate_s"] = found["gate_s"]
        out[f"{label}_gx_import_s"] = found["gx_import_s"]
        out[f"{label}_validate_s"] = found["validate_s"]
        out[f"{label}_vs_{limit:g}s_limit"] = round(found["gate_s"] / limit, 2)
    return out


def bench_ab() -> dict[str, Any]:
    """200 A/A and 200 A/B experiments (2 points of accuracy) with delayed outcomes, looked at every day."""
    from benchmarks.ab_bench import run

    return run(200)


BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {
    "registry": bench_registry,
    "drift": bench_drift,
    "drift_weather": bench_drift_weather,
    "parse": bench_parse,
    "scale": bench_scale,
    "demo": bench_demo,
    "batch": bench_batch,
    "serve": bench_serve,
    "loop": bench_loop,
    "policy": bench_policy,
    "backtest": bench_backtest,
    "backtest_churn": bench_backtest_churn,
    "threads": bench_threads,
    "ui": bench_ui,
    "quality": bench_quality,
    "batch_memory": bench_batch_memory,
    "ab": bench_ab,
}


def main() -> None:
    os.chdir(Path(__file__).resolve().parents[1])  # children run `-m benchmarks.…` and results land here
    selected = os.environ.get("MODELGATE_BENCH", ",".join(BENCHMARKS)).split(",")
    results: dict[str, Any] = {}
    for name in selected:
        print(f"== {name}", flush=True)
        results[name] = BENCHMARKS[name]()
        for key, value in results[name].items():
            print(f"  {key:<32} {value}")
    import datetime as dt

    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    text = json.dumps({"machine": _machine(), "results": results}, indent=2)
    (out / f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H%M%S}.json").write_text(text)
    (out / "latest.json").write_text(text)


def _machine() -> dict[str, Any]:
    import platform

    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}


if __name__ == "__main__":
    main()
