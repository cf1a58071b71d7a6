"""The registry as pages: what the Models view in the Airflow UI shows, gathered and rendered without Airflow.

`overview()` (one page of the Models index) and `model_page()` read the registry, each read bounded (the
newest of each kind, counts of the rest), into frozen dataclasses; `render()` turns them into HTML with the
templates beside this module (autoescaped Jinja). `modelgate.airflow.web` serves them behind Airflow's auth;
tests and the bench call them directly.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.registry.entities import EventKind, ModelVersion, RegistryEvent

if TYPE_CHECKING:
    from jinja2 import Environment

    from modelgate.deploy.store import Deployment
    from modelgate.registry.experiments import Experiment, LookRow
    from modelgate.registry.monitoring import BacktestRow, DecisionRow, DriftCells, DriftRow
    from modelgate.registry.store import Registry
    from modelgate.report_store import ReportStore

TEMPLATES = Path(__file__).with_name("ui_templates")
HEATMAP_INTERVALS = 365  # the newest drift runs in the heatmap (a year of daily runs; wider is unreadable)
REPORTS_URL = "/modelgate/reports"  # where the api-server serves the report store (modelgate.airflow.web)
EVENTS_SHOWN = 200  # the newest audit events on the page (the CLI's `history` has them all)


@dataclass(frozen=True)
class PendingApproval:
    """A retrain run whose `approve` task waits for a human (read from Airflow by the web layer)."""

    model: str
    dag_id: str
    run_id: str
    since: dt.datetime | None

    @property
    def url(self) -> str:
        return f"/dags/{self.dag_id}/runs/{self.run_id}/tasks/approve/required_actions"


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str | None
    champion: int | None
    versions: int
    last_verdict: RegistryEvent | None  # the newest evaluate (promote) or reject event with a verdict
    last_drift: DriftRow | None
    pending: tuple[PendingApproval, ...]
    verdict_state: str = ""  # what became of the last verdict: promoted, held (why), rejected, backfill ...


@dataclass(frozen=True)
class MetricPoint:
    """The champion's primary metric as re-scored at one evaluation (and the challenger's beside it)."""

    at: dt.datetime  # the end of the interval the verdict was for
    champion_version: int | None
    champion: float | None
    challenger_version: int | None
    challenger: float | None
    promoted: bool


@dataclass(frozen=True)
class Heatmap:
    """Drift per feature × interval: `cells[i][j]` is feature j at interval i (score / threshold, alarm)."""

    features: tuple[str, ...]
    intervals: tuple[dt.datetime, ...]
    cells: tuple[tuple[tuple[float, bool] | None, ...], ...]

    def as_data(self) -> dict[str, list[Any]]:
        """Plain data for the page's script; the template serialises it with Jinja's HTML-safe `tojson`."""
        return {
            "features": list(self.features),
            "intervals": [i.strftime("%Y-%m-%d %H:%M") for i in self.intervals],
            "cells": [[None if c is None else [c[0], c[1]] for c in row] for row in self.cells],
        }

    @property
    def cell_count(self) -> int:
        return sum(1 for row in self.cells for cell in row if cell is not None)


@dataclass(frozen=True)
class ModelPage:
    summary: ModelSummary
    metric: str
    versions: tuple[ModelVersion, ...]
    champion_timeline: tuple[RegistryEvent, ...]
    metric_series: tuple[MetricPoint, ...]
    heatmap: Heatmap
    decisions: tuple[DecisionRow, ...]
    deployments: tuple[Deployment, ...]
    events: tuple[RegistryEvent, ...]  # the newest EVENTS_SHOWN
    event_count: int
    drift_count: int  # drift runs in all; the heatmap shows the newest HEATMAP_INTERVALS
    backtest: BacktestRow | None = None  # the newest `modelgate backtest` kept for the model
    experiment: Experiment | None = None  # the newest A/B experiment, running or ended
    experiment_looks: tuple[LookRow, ...] = ()  # its newest looks, oldest first


def _last_verdict(events: list[RegistryEvent]) -> RegistryEvent | None:
    judged = [e for e in events if e.kind in (EventKind.EVALUATE, EventKind.REJECT) and e.verdict]
    return judged[-1] if judged else None


VERDICT_KINDS = [EventKind.EVALUATE.value, EventKind.REJECT.value, EventKind.PROMOTE.value, EventKind.HOLD.value]


def verdict_state(events: list[RegistryEvent]) -> str:
    """What became of the newest verdict in `events` (oldest first): true as of now, whatever the verdict said."""
    from modelgate.policy import INSUFFICIENT_EVIDENCE

    verdict = _last_verdict(events)
    if verdict is None:
        return ""
    backfill = " (backfill)" if (verdict.verdict or {}).get("run_type") == "backfill" else ""
    if verdict.kind is EventKind.REJECT:
        if (verdict.reason or "").startswith(INSUFFICIENT_EVIDENCE):
            return "insufficient evidence: not promoted" + backfill
        decided_by = (verdict.verdict or {}).get("approver")
        return (f"rejected by {decided_by}" if decided_by else "rejected") + backfill
    for event in events:
        if event.id <= verdict.id or event.to_version != verdict.to_version:
            continue
        if event.kind is EventKind.PROMOTE:
            return "promoted" + backfill
        if event.kind is EventKind.HOLD:
            return f"held: {(event.verdict or {}).get('held') or 'not promoted'}" + backfill
        if event.kind is EventKind.REJECT:
            return f"rejected by {event.actor}" + backfill
    return "passed, not promoted yet (awaiting approval or promotion)" + backfill


MODELS_PER_PAGE = 50  # cards on one page of the Models index
VERDICT_EVENTS = 50  # a model's newest verdict events, enough to tell what became of the last verdict


@dataclass(frozen=True)
class ModelsIndex:
    """One page of the Models index: the models matching `search` by name, `per_page` at a time."""

    models: tuple[ModelSummary, ...]
    total: int  # models matching the search
    page: int  # 1-based
    per_page: int
    search: str

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def overview(
    registry: Registry,
    pending: list[PendingApproval] | None = None,
    *,
    search: str = "",
    page: int = 1,
    per_page: int = MODELS_PER_PAGE,
) -> ModelsIndex:
    """A page of models: champion, version count, last verdict, last drift result and pending approvals.

    Four reads whatever the number of models: the page, the count, the page's verdict events, its drift."""
    from modelgate.registry.monitoring import MonitoringStore

    search = search.strip()
    total = registry.count_models(search=search or None)
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    models = registry.list_models(search=search or None, limit=per_page, offset=(page - 1) * per_page)
    names = [m.name for m in models]
    events = registry.recent_events(names, kinds=VERDICT_KINDS, limit=VERDICT_EVENTS) if names else {}
    drift = MonitoringStore(registry).latest_drift(names) if names else {}
    summaries = tuple(
        ModelSummary(
            model.name,
            model.description,
            model.champion_version,
            model.version_count,
            _last_verdict(events[model.name]),
            drift.get(model.name),
            tuple(p for p in pending or [] if p.model == model.name),
            verdict_state(events[model.name]),
        )
        for model in models
    )
    return ModelsIndex(summaries, total, page, per_page, search)


def _primary(verdict: dict[str, Any]) -> dict[str, Any]:
    evaluation = verdict.get("evaluation") or {}
    primary = evaluation.get("primary") or {}
    return primary if isinstance(primary, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def metric_series(events: list[RegistryEvent]) -> tuple[str, tuple[MetricPoint, ...]]:
    """From each verdict: the champion re-scored on that holdout, and the challenger, over time."""
    points = []
    metric = ""
    for event in events:
        if event.kind not in (EventKind.EVALUATE, EventKind.REJECT) or not event.verdict:
            continue
        primary = _primary(event.verdict)
        metric = primary.get("metric") or metric
        points.append(
            MetricPoint(
                event.as_of,  # the interval it judged: a backfill's verdicts spread over their history
                event.verdict.get("champion_version"),
                _number(primary.get("champion")),
                event.verdict.get("challenger_version"),
                _number(primary.get("challenger")),
                event.kind is EventKind.EVALUATE,
            )
        )
    return metric, tuple(points)


def heatmap(rows: list[DriftCells]) -> Heatmap:
    """Features in first-seen order (a feature missing from a run is an empty cell)."""
    features: dict[str, int] = {}
    for row in rows:
        for name in row.features:
            features.setdefault(name, len(features))
    cells = []
    for row in rows:
        line: list[tuple[float, bool] | None] = [None] * len(features)
        for name, ratio, alarm in zip(row.features, row.ratios, row.alarms, strict=True):
            line[features[name]] = (0.0 if ratio is None else ratio, alarm)
        cells.append(tuple(line))
    return Heatmap(tuple(features), tuple(r.interval_end for r in rows), tuple(cells))


SERIES_POINTS = 260  # the newest verdicts in the metric chart: five years of weekly runs


def model_page(registry: Registry, name: str, pending: list[PendingApproval] | None = None) -> ModelPage:
    """Everything the model page shows, each read bounded: the newest of each kind, and counts of the rest.
    Its cost does not grow with the model's age."""
    from modelgate.deploy.store import DeploymentStore
    from modelgate.registry.experiments import ExperimentStore
    from modelgate.registry.monitoring import MonitoringStore

    monitoring = MonitoringStore(registry)
    experiments = ExperimentStore(registry)
    model = registry.get_model(name)
    experiment = experiments.latest(name)
    versions = registry.list_versions(name, newest=EVENTS_SHOWN)
    events = registry.history(name, limit=EVENTS_SHOWN)
    verdicts = registry.history(name, kinds=VERDICT_KINDS, limit=SERIES_POINTS)
    changes = registry.history(name, kinds=[EventKind.PROMOTE.value, EventKind.ROLLBACK.value], limit=EVENTS_SHOWN)
    drift = monitoring.drift_timeline(name, limit=1)
    metric, series = metric_series(verdicts)
    summary = ModelSummary(
        model.name,
        model.description,
        model.champion_version,
        model.version_count,
        _last_verdict(verdicts),
        drift[-1] if drift else None,
        tuple(p for p in pending or [] if p.model == name),
        verdict_state(verdicts[-VERDICT_EVENTS:]),
    )
    return ModelPage(
        summary,
        metric,
        tuple(versions),
        tuple(changes),
        series,
        heatmap(monitoring.drift_cells(name, limit=HEATMAP_INTERVALS)),
        tuple(monitoring.decisions(name, limit=EVENTS_SHOWN)),
        tuple(DeploymentStore(registry).history(name, limit=EVENTS_SHOWN)),
        tuple(events),
        registry.count_events(name),
        monitoring.drift_count(name),
        monitoring.latest_backtest(name),
        experiment,
        tuple(experiments.looks(experiment.id, limit=SERIES_POINTS)) if experiment else (),
    )


@cache
def _environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
    env.filters["when"] = lambda value: "" if value is None else value.strftime("%Y-%m-%d %H:%M")
    env.filters["num"] = lambda value: "" if not isinstance(value, int | float) else f"{value:.4g}"
    return env


def render(template: str, *, nonce: str = "", **context: Any) -> str:
    """A page; `nonce` goes on its inline scripts (the server's Content-Security-Policy allows only those)."""
    return _environment().get_template(template).render(nonce=nonce, **context)


@dataclass(frozen=True)
class ReportLink:
    what: str
    when: dt.datetime | None
    label: str
    url: str | None  # None: the file is not in the report store the server can read


def version_reports(
    registry: Registry, version: ModelVersion, url_of: Any, store: ReportStore | None = None
) -> list[ReportLink]:
    """The reports about this version: the Data Docs of its training window, the comparison reports of its
    verdicts, and the drift reports and Data Docs of the intervals it was champion for (newest first; the
    newest year of daily runs at most)."""
    from modelgate.data import Interval
    from modelgate.registry.monitoring import MonitoringStore

    out = []
    if store is not None and version.window_start and version.window_end:
        # the gate checked the window the decision started from (it holds this version's rows), named in a tag
        label = version.tags.get("quality_window") or Interval(version.window_start, version.window_end).label
        docs = _data_docs(store, version.model, "training", label)
        if docs is not None:
            out.append(ReportLink("training data quality (Data Docs)", version.window_end, *docs))
    judged = registry.history(
        version.model, kinds=[EventKind.EVALUATE.value, EventKind.REJECT.value], to_version=version.version
    )
    for event in judged:
        if event.verdict and event.verdict.get("report"):
            path = str(event.verdict["report"])
            out.append(ReportLink("champion vs challenger", event.at, Path(path).name, url_of(path)))
    served = MonitoringStore(registry).drift_timeline(
        version.model, champion_version=version.version, limit=HEATMAP_INTERVALS
    )
    for row in reversed(served):
        if row.report_uri:
            out.append(ReportLink("drift", row.interval_end, Path(row.report_uri).name, url_of(row.report_uri)))
        if store is not None:
            docs = _data_docs(store, version.model, "monitor", Interval(row.interval_start, row.interval_end).label)
            if docs is not None:
                out.append(ReportLink("data quality (Data Docs)", row.interval_end, *docs))
    return out


def _data_docs(store: ReportStore, model: str, stage: str, label: str) -> tuple[str, str] | None:
    """(name, URL) of the Data Docs validation page a quality check stored for this window label, if any."""
    page = store.first_page(f"{model}/quality/{stage}/{label}")
    return None if page is None else (Path(page).name, f"{REPORTS_URL}/{page}")


@dataclass(frozen=True)
class ActionsView:
    """What the model page offers its reader: the action form (with its token) only to users who may edit the
    model's DAGs, and the outcome of the last action (`done` or `error`, one line each)."""

    allowed: bool = False
    token: str = ""
    user: str = ""
    done: str = ""
    error: str = ""


def render_model_page(
    page: ModelPage, prefix: str, *, nonce: str = "", url_of: Any = None, actions: ActionsView | None = None
) -> str:
    series = [
        {
            "at": p.at.strftime("%Y-%m-%d %H:%M"),
            "champion": p.champion,
            "challenger": p.challenger,
            "champion_version": p.champion_version,
            "challenger_version": p.challenger_version,
            "promoted": p.promoted,
        }
        for p in page.metric_series
    ]
    backtest = page.backtest
    report = url_of(backtest.report_uri) if url_of and backtest and backtest.report_uri else None
    looks = [
        {
            "at": look.interval_end.strftime("%Y-%m-%d %H:%M"),
            "estimate": look.look.get("estimate"),
            "lower": look.look.get("lower"),
            "upper": look.look.get("upper"),
            "action": look.action,
        }
        for look in page.experiment_looks
    ]
    return render(
        "model.html",
        page=page,
        series=series,
        prefix=prefix,
        nonce=nonce,
        backtest_url=report,
        looks=looks,
        actions=actions or ActionsView(),
    )


COMPARE_MAX = 6  # versions side by side on one page (wider is unreadable)


@dataclass(frozen=True)
class CompareRow:
    section: str  # status, metric, param, data, verdict
    label: str
    values: tuple[Any, ...]
    differs: bool


@dataclass(frozen=True)
class ComparePage:
    model: str
    versions: tuple[int, ...]
    rows: tuple[CompareRow, ...]


def _verdict_of(registry: Registry, name: str, version: int) -> tuple[str, str]:
    """The newest verdict about `version` as (decision, reason): what the compare page shows per version."""
    events = registry.history(name, kinds=VERDICT_KINDS, to_version=version, limit=1)
    if not events:
        return "", ""
    event = events[-1]
    decision = {"evaluate": "passed", "promote": "promoted", "reject": "rejected", "hold": "held"}[event.kind.value]
    return f"{decision} {event.as_of:%Y-%m-%d %H:%M}", event.reason or ""


def compare_page(registry: Registry, name: str, versions: list[int]) -> ComparePage:
    """Versions side by side (`Registry.compare`'s rows and each one's newest verdict), differing rows marked.

    InvalidInput when fewer than two distinct versions or more than COMPARE_MAX are asked for."""
    from modelgate.registry.errors import InvalidInput

    chosen = list(dict.fromkeys(versions))
    if len(chosen) > COMPARE_MAX:
        raise InvalidInput(f"compare at most {COMPARE_MAX} versions at once, got {len(chosen)}")
    comparison = registry.compare(name, chosen)
    found: list[tuple[str, str, list[Any]]] = [("status", "status", list(comparison.statuses))]
    sections: tuple[tuple[str, dict[str, list[Any]]], ...] = (
        ("metric", dict(comparison.metrics)),
        ("param", comparison.params),
        ("data", dict(comparison.windows)),
    )
    for section, by_key in sections:
        found += [(section, key, list(values)) for key, values in by_key.items()]
    verdicts = [_verdict_of(registry, name, v) for v in comparison.versions]
    found += [("verdict", "verdict", [v[0] for v in verdicts]), ("verdict", "reason", [v[1] for v in verdicts])]
    marked = tuple(CompareRow(s, label, tuple(values), comparison.differs(values)) for s, label, values in found)
    return ComparePage(name, tuple(comparison.versions), marked)
