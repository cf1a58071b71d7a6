"""The loop's steps as plain functions: what each Airflow task calls, runnable and testable without Airflow.

Every step is idempotent per (model, window): registration is keyed by the training window, verdicts and
drift rows are upserts or deduplicated events, so re-running an interval changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelgate.data import Interval, fingerprint, load_window, training_window
from modelgate.loop import (
    ChampionScore,
    DecisionMark,
    DriftMark,
    absolute_performance,
    calibration_evidence,
    champion_score,
    decay_evidence,
    decision_reach,
    growth_lost,
    last_drift_retrain,
    live_drift_flags,
    shorter_window,
    training_span,
    unsettled_change,
    window_growth,
)
from modelgate.policy import (
    RetrainDecision,
    RetrainInputs,
    RetrainReason,
    Verdict,
    champion_doubt,
    decide_retrain,
)
from modelgate.registry.artifacts import ArtifactStore
from modelgate.registry.entities import ModelVersion, RunRef, Source, VersionDraft, VersionStatus
from modelgate.registry.errors import ModelNotFound
from modelgate.registry.estimators import library_versions
from modelgate.registry.monitoring import DecisionRow, DriftRow, MonitoringStore
from modelgate.registry.store import Registry
from modelgate.report_store import ReportStore
from modelgate.spec import ModelSpec, Task

if TYPE_CHECKING:
    import pandas as pd

    from modelgate.deploy.store import Deployment
    from modelgate.drift import DriftResult

log = logging.getLogger(__name__)

BACKFILL = "backfill"


@dataclass(frozen=True)
class RunInfo:
    """The Airflow run (or a test's stand-in) a step executes for."""

    dag_id: str
    run_id: str
    task_id: str
    interval: Interval
    run_type: str = "scheduled"
    try_number: int | None = None

    def ref(self, task_id: str | None = None) -> RunRef:
        """The run behind an event: recorded as of the interval's end, the data time it acted for."""
        return RunRef(self.dag_id, self.run_id, task_id or self.task_id, self.interval.end)

    @property
    def is_backfill(self) -> bool:
        return self.run_type == BACKFILL


@dataclass
class Services:
    """What the steps need from the outside world; built by the Airflow glue, or by tests."""

    registry: Registry
    data_url: str | None
    artifacts: ArtifactStore
    reports: ReportStore
    expectations_dir: Path | None = None
    _monitoring: MonitoringStore | None = field(default=None, repr=False)

    @property
    def monitoring(self) -> MonitoringStore:
        if self._monitoring is None:
            self._monitoring = MonitoringStore(self.registry)
        return self._monitoring


@dataclass(frozen=True)
class RetrainParams:
    force: bool = False
    window_days: int | None = None
    dry_run: bool = False
    approval: str | None = None  # None: as the spec says; "auto" | "required"
    promote_on_backfill: bool = False

    @classmethod
    def from_mapping(cls, params: dict[str, Any]) -> RetrainParams:
        approval = params.get("approval")
        return cls(
            force=bool(params.get("force", False)),
            window_days=int(params["window_days"]) if params.get("window_days") else None,
            dry_run=bool(params.get("dry_run", False)),
            approval=None if approval in (None, "", "spec") else str(approval),
            promote_on_backfill=bool(params.get("promote_on_backfill", False)),
        )


SHORTENED_TAG = "window_shortened"  # "true" on a version `choose_window` trained on a shorter window


def window_key(window: Interval) -> str:
    return f"window:{window.start.isoformat()}/{window.end.isoformat()}"


# --------------------------------------------------------------------------------------------- quality


def check_quality(spec: ModelSpec, window: Interval, services: Services, *, stage: str) -> dict[str, Any]:
    """Validate the window's rows; raise QualityGateFailed on a critical failure (nothing downstream runs)."""
    from modelgate.quality import QualityGateFailed, build_suite, load_custom_expectations, validate

    frame = load_window(spec, window, url=services.data_url)
    custom = []
    if services.expectations_dir is not None:
        custom = load_custom_expectations(
            Path(spec.quality.expectations_file)
            if spec.quality.expectations_file
            else services.expectations_dir / f"{spec.name}.json"
        )
    docs_dir = services.reports.local_dir / spec.name / "quality" / stage / window.label
    result = validate(spec, frame, build_suite(spec, custom), docs_dir=docs_dir)
    if result.docs_path:  # into the report store, failures included: their Data Docs explain them
        folder = services.reports.publish(docs_dir)
        page = Path(result.docs_path).resolve().relative_to(docs_dir.resolve()).as_posix()
        result = dataclasses.replace(result, docs_path=f"{folder}/{page}")
    for warning in result.warnings:
        log.warning("data quality warning for %s: %s", spec.name, warning)
    if result.docs_path:
        log.info("Great Expectations Data Docs: %s", result.docs_path)
    if not result.passed:
        raise QualityGateFailed(spec.name, result)
    return result.as_dict()


# --------------------------------------------------------------------------------------------- drift


def monitor_drift(spec: ModelSpec, run: RunInfo, services: Services) -> dict[str, Any]:
    """Drift of the run's interval against the champion's reference sample; upserted into the timeline."""
    from modelgate.drift import compare

    champion = _champion(services, spec, run.interval.end)
    if champion is None or not champion.reference_uri or not champion.reference_sha256:
        log.info("%s has no champion with a reference sample yet: no drift to measure", spec.name)
        return {"measured": False, "drifted": False, "reason": "no champion reference"}
    reference = services.artifacts.load(champion.reference_uri, champion.reference_sha256)
    current = load_window(spec, run.interval, url=services.data_url)
    reference, current = _with_predicted_class(spec, services, champion, reference, current)
    report = services.reports.local_dir / spec.name / "drift" / f"{run.interval.label}.html"
    result = compare(spec, reference, current, report_path=report)
    if result.report_path:
        result = dataclasses.replace(result, report_path=services.reports.publish(Path(result.report_path)))
    services.monitoring.upsert_drift(_drift_row(spec, run.interval, champion, result), run_id=run.run_id)
    log.info("drift report: %s", result.report_path)
    return {
        "measured": True,
        "drifted": result.dataset_drift,
        "share": round(result.share, 4),
        "columns": result.drifted_columns,
        "champion_version": champion.version,
        "report": result.report_path,
    }


def _with_predicted_class(
    spec: ModelSpec, services: Services, champion: ModelVersion, reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`loop.with_predicted_class` with the champion's model loaded (only for a multiclass spec)."""
    if spec.task is not Task.MULTICLASS or current.empty:
        return reference, current
    from modelgate.loop import with_predicted_class

    model = services.artifacts.load_version(champion)  # refuses a tampered file or an unlisted type
    return with_predicted_class(spec, model, reference), with_predicted_class(spec, model, current)


def _drift_row(spec: ModelSpec, interval: Interval, champion: ModelVersion, result: DriftResult) -> DriftRow:
    """The timeline row of one drift result, with its report when one was written."""
    return DriftRow(
        model=spec.name,
        interval_start=interval.start,
        interval_end=interval.end,
        champion_version=champion.version,
        scores=result.scores(),
        share=result.share,
        drifted=result.dataset_drift,
        reference_rows=result.reference_rows,
        current_rows=result.current_rows,
        report_uri=result.report_path,
    )


def _champion(services: Services, spec: ModelSpec, end: dt.datetime) -> ModelVersion | None:
    """The champion that served the interval ending at `end` (as the audit log has it: whatever was promoted
    since, a run for a past interval judges against the world as it stood then); None before the first."""
    return services.registry.champion_at(spec.name, end)


# --------------------------------------------------------------------------------------------- retrain decision


ASSET_TRIGGERED = "asset_triggered"


def decide(spec: ModelSpec, run: RunInfo, services: Services, params: RetrainParams) -> RetrainDecision:
    """Gather the trigger inputs, decide, and record the decision for this interval.

    Everything is read as of the interval's end: the champion that served it, the decisions and drift runs
    of earlier intervals. A drift run of the last `drift_runs_n` intervals that the monitor has not recorded
    yet is measured here (the same engine, upserted), so the decision never depends on which DAG ran first.
    """
    champion = _champion(services, spec, run.interval.end)
    marks = _decision_marks(services, spec, through=run.interval.end, champion=champion)
    prior = _before(marks, run.interval.end)
    if run.run_type == ASSET_TRIGGERED and prior and prior[-1].interval_end < run.interval.start:
        detail = (
            f"the interval before {run.interval} is not decided yet (last decided: the one ending "
            f"{prior[-1].interval_end:%Y-%m-%d %H:%M}); its scheduled run decides this one in order"
        )
        log.info("%s: drift-triggered run deferred: %s", spec.name, detail)
        return RetrainDecision(False, RetrainReason.DEFERRED, detail)
    window = _windows(spec, marks, run.interval.end, params).quality
    policy = spec.retrain
    inputs_extra: dict[str, Any] = {}
    drift_flags: list[bool] = []
    performance = None
    new_rows = None
    age_days = None
    decay = None
    calibration = None
    change = None
    growth = None
    if champion is not None and not params.force:
        decisions = prior
        rearmed = last_drift_retrain(decisions)
        fixed = training_window(spec, run.interval.end, params.window_days)
        _measure_missing_drift(spec, run, services)
        change = unsettled_change(
            decisions,
            champion_window=(champion.window_start, champion.window_end),
            window_start=fixed.start,
            window=fixed.end - fixed.start,
        )
        timeline = _drift_marks(services, spec, champion, rearmed, run.interval.end)
        drift_flags = live_drift_flags(
            timeline,
            champion_version=champion.version,
            champion_window_end=champion.window_end,
            last_drift_retrain=rearmed,
            runs=policy.drift_runs_n,
        )
        reference = _holdout_score(spec, champion)
        confirmed = _last_measured(services, spec, champion, run.interval.end)
        if confirmed is not None:  # age since the champion was last measured on fresh rows (trained or re-scored)
            age_days = (run.interval.end - confirmed).total_seconds() / 86400
        frame = load_window(spec, window, url=services.data_url)
        if champion.window_end is not None and not frame.empty:
            new_rows = int((frame[spec.time_column] >= champion.window_end).sum())
        newest = _newest_trained(services, spec, champion, run.interval.end)
        if params.window_days is None and newest is not None:  # the param fixes the window: it cannot grow
            lost = growth_lost(decisions, newest_rejected=newest.status is VersionStatus.REJECTED)
            growth = window_growth(
                spec, window, frame, trained_rows=newest.row_count, trained_end=newest.window_end, lost=lost
            )
        calibrates = policy.calibration_check and champion.window_end is not None
        if (policy.performance_metric or reference is not None or calibrates) and not frame.empty:
            model = services.artifacts.load_version(champion)
            performance = absolute_performance(spec, model, frame, fixed)
            decay = decay_evidence(spec, model, reference, frame, run.interval.start)
            if calibrates and champion.window_end is not None:  # (mypy: the window end is known here)
                calibration = calibration_evidence(spec, model, frame, champion.window_end, run.interval.start)
        inputs_extra = {
            "champion_version": champion.version,
            "drift_rearmed_after": rearmed,
            "unsettled_change": change,
            "window": [window.start, window.end],
        }
    inputs = RetrainInputs(
        force=params.force,
        has_champion=champion is not None,
        champion_age_days=age_days,
        drift_flags=drift_flags,
        champion_performance=performance,
        new_rows=new_rows,
        decay=decay,
        calibration=calibration,
        unsettled_change=change,
        growth=growth,
    )
    decision = decide_retrain(policy, inputs)
    services.monitoring.record_decision(
        DecisionRow(
            model=spec.name,
            interval_start=run.interval.start,
            interval_end=run.interval.end,
            retrain=decision.retrain,
            reason=decision.reason.value,
            detail=decision.detail,
            inputs={
                **inputs_extra,
                "force": inputs.force,
                "drift_flags": list(inputs.drift_flags),
                "champion_performance": performance,
                "champion_age_days": age_days,
                "new_rows": new_rows,
                "growth": None if growth is None else dataclasses.asdict(growth),
                "decay": None if decay is None else dataclasses.asdict(decay),
                "calibration": None if calibration is None else dataclasses.asdict(calibration),
            },
        ),
        run_id=run.run_id,
    )
    log.info("retrain decision for %s: %s (%s)", spec.name, decision.reason.value, decision.detail)
    return decision


def monitor_intervals(spec: ModelSpec, end: dt.datetime, count: int) -> list[Interval]:
    """The monitor's last `count` intervals ending at or before `end`, oldest first (none unscheduled)."""
    from croniter import croniter

    if spec.cron is None or count < 1:
        return []
    ticks = croniter(spec.cron, end + dt.timedelta(microseconds=1))
    ends = [ticks.get_prev(dt.datetime) for _ in range(count + 1)]
    ends = [e if e.tzinfo else e.replace(tzinfo=dt.UTC) for e in ends]
    return [Interval(ends[i + 1], ends[i]) for i in reversed(range(count))]


def _measure_missing_drift(spec: ModelSpec, run: RunInfo, services: Services) -> None:
    """Drift of the recent monitor intervals the monitor has not recorded yet, measured as it would have."""
    from modelgate.drift import compute_drift

    wanted = monitor_intervals(spec, run.interval.end, spec.retrain.drift_runs_n)
    if not wanted:
        return
    have = {
        (row.interval_start, row.interval_end)
        for row in services.monitoring.drift_timeline(spec.name, until=run.interval.end, limit=len(wanted) + 2)
    }
    for interval in wanted:
        if (interval.start, interval.end) in have:
            continue
        champion = _champion(services, spec, interval.end)
        if champion is None or not champion.reference_uri or not champion.reference_sha256:
            continue
        current = load_window(spec, interval, url=services.data_url)
        if current.empty:
            continue
        reference = services.artifacts.load(champion.reference_uri, champion.reference_sha256)
        reference, current = _with_predicted_class(spec, services, champion, reference, current)
        result = compute_drift(spec, reference, current)
        # no report: the monitor's run adds its report when it runs
        services.monitoring.upsert_drift(_drift_row(spec, interval, champion, result), run_id=run.run_id)
        log.info("%s: measured the drift of %s for this decision (no monitor run yet)", spec.name, interval)


def _decision_marks(
    services: Services, spec: ModelSpec, *, through: dt.datetime, champion: ModelVersion | None = None
) -> list[DecisionMark]:
    """The recorded retrain decisions the decision ending at `through` reads (`loop.DecisionReach`: those of
    the longest window before it, those `champion`'s window holds, the newest retrains), with the windows
    that `choose_window` shortened (as the versions trained for them record). Bounded however old the model."""
    reach = decision_reach(spec, through, None if champion is None else (champion.window_start, champion.window_end))
    try:  # only a shortened window inside the longest window can start one
        versions = services.registry.list_versions(spec.name, tags={SHORTENED_TAG: "true"}, window_from=reach.since)
    except ModelNotFound:  # nothing trained yet
        versions = []
    shortened = {v.window_end: v.window_start for v in versions if v.window_end}
    rows = services.monitoring.decisions_within(
        spec.name, end=reach.end, since=reach.since, champion_window=reach.champion_window
    )
    return [
        DecisionMark(d.interval_start, d.interval_end, d.retrain, d.reason, shortened.get(d.interval_end)) for d in rows
    ]


def _before(marks: list[DecisionMark], end: dt.datetime) -> list[DecisionMark]:
    """The decisions a run's own decision starts from: a re-run must not see the one its first try recorded."""
    return [m for m in marks if m.interval_end < end]


@dataclass(frozen=True)
class RunWindows:
    """The two windows of a retrain run, from the same recorded decisions (`loop.training_span`)."""

    quality: Interval  # the one the decision starts from, checked before it: it holds every row trained on
    training: Interval  # after this interval's decision (which may restart it): trained and judged on
    shorter: Interval | None = None  # weighed against `training` before training (`loop.shorter_window`)


def run_windows(spec: ModelSpec, run: RunInfo, services: Services, params: RetrainParams) -> RunWindows:
    """The windows of this interval's retrain: grown since the last change, or fixed by the `window_days` param.

    The same for every task of the run, and for every re-run of it."""
    return _windows(spec, _decision_marks(services, spec, through=run.interval.end), run.interval.end, params)


def _windows(spec: ModelSpec, marks: list[DecisionMark], end: dt.datetime, params: RetrainParams) -> RunWindows:
    """`run_windows` from the decisions recorded through `end` (this interval's own included, once made)."""
    return RunWindows(
        quality=training_span(spec, _before(marks, end), end, window_days=params.window_days),
        training=training_span(spec, marks, end, window_days=params.window_days),
        shorter=None if params.window_days is not None else shorter_window(spec, marks, end),
    )


def _newest_trained(
    services: Services, spec: ModelSpec, champion: ModelVersion, end: dt.datetime
) -> ModelVersion | None:
    """The newest model trained up to `end`: the champion, or a challenger registered after it (rejected or
    waiting). A grown window is measured against it, so a rejected challenger is not trained again at once."""
    return services.registry.newest_trained(spec.name, from_version=champion.version, until=end)


def _drift_marks(
    services: Services, spec: ModelSpec, champion: ModelVersion, rearmed: dt.datetime | None, end: dt.datetime
) -> list[DriftMark]:
    """The drift runs `live_drift_flags` reads, oldest first: the last `drift_runs_n` through `end`, and when a
    drift-triggered retrain left this champion in place, its first run without drift since (the episode's end)."""
    rows = services.monitoring.drift_timeline(spec.name, until=end, limit=spec.retrain.drift_runs_n)
    if rearmed is not None and champion.window_end is not None and champion.window_end < rearmed:
        clean = services.monitoring.first_clean_drift(
            spec.name, champion_version=champion.version, after=rearmed, until=end
        )
        if clean is not None and all(r.interval_end != clean.interval_end for r in rows):
            rows = sorted([clean, *rows], key=lambda r: r.interval_end)
    return [DriftMark(row.interval_end, row.drifted, row.champion_version) for row in rows]


def _holdout_score(spec: ModelSpec, champion: ModelVersion) -> ChampionScore | None:
    """The decay reference: the champion's holdout score when it was trained (a verdict never moves it)."""
    if champion.window_end is None:
        return None
    return champion_score(spec, champion.metrics, champion.window_end)


def _last_measured(services: Services, spec: ModelSpec, champion: ModelVersion, end: dt.datetime) -> dt.datetime | None:
    """When the champion was last measured on fresh rows before `end`: trained, or re-scored by a verdict."""
    rescored = services.registry.last_rescored(spec.name, champion.version, before=end)
    if champion.window_end is None or (rescored is not None and rescored > champion.window_end):
        return rescored
    return champion.window_end


# --------------------------------------------------------------------------------------------- training


def train_challenger(spec: ModelSpec, run: RunInfo, services: Services, params: RetrainParams) -> int:
    """Train on the window's earlier rows and register the challenger; the same window twice trains once."""
    from modelgate.loop import choose_window, fit_challenger
    from modelgate.training import code_provenance, code_version

    windows = run_windows(spec, run, services, params)
    source = Source(run.dag_id, window_key(windows.training), "train_challenger", run.try_number)
    existing = services.registry.find_by_source(spec.name, source)
    if existing is not None:
        log.info("%s v%s already trained for %s: not training again", spec.name, existing.version, windows.training)
        return existing.version
    frame = load_window(spec, windows.training, url=services.data_url)
    choice = choose_window(spec, frame, windows.training, windows.shorter)
    window = choice.span
    if window != windows.training:
        frame = frame[frame[spec.time_column] >= window.start].reset_index(drop=True)
    if choice.detail:
        log.info("training window for %s: %s", spec.name, choice.detail)
    challenger = fit_challenger(spec, frame)
    served = challenger.served
    for warning in served.warnings:
        log.warning("training warning for %s: %s", spec.name, warning)
    holdout_artifact = None
    if challenger.holdout_model is not None:  # evaluation scores the fit that never saw the holdout
        model_artifact, holdout_artifact = services.artifacts.save_models(served.pipeline, challenger.holdout_model)
    else:
        (model_artifact,) = services.artifacts.save_models(served.pipeline)
    made_by = code_provenance(spec, served.pipeline)
    reference = services.artifacts.save(challenger.reference, suffix=".reference.joblib")
    version = services.registry.register(
        spec.name,
        VersionDraft(
            artifact_uri=model_artifact.uri,
            artifact_sha256=model_artifact.sha256,
            artifact_size=model_artifact.size,
            source=source,
            framework="scikit-learn",
            library_versions={**library_versions(), **made_by.packages},
            params={"estimator": spec.estimator.label, "seed": spec.seed, **served.params},
            metrics={
                k: round(v, 6) for k, v in {**served.metrics, **challenger.holdout_metrics}.items() if math.isfinite(v)
            },
            tags={
                "run_type": run.run_type,
                "airflow_run_id": run.run_id,
                "holdout_rows": str(challenger.holdout_rows),
                "task": spec.task.value,
                "refit": "true" if holdout_artifact is not None else "false",
                "quality_window": windows.quality.label,  # where its Data Docs are
                **({"window_choice": choice.detail} if choice.detail else {}),
                **({SHORTENED_TAG: "true"} if window != windows.training else {}),
                **made_by.tags,
            },
            window_start=window.start,
            window_end=window.end,
            data_fingerprint=fingerprint(frame),
            row_count=len(frame),
            feature_schema=served.feature_schema,
            code_version=code_version(),
            reference_uri=reference.uri,
            reference_sha256=reference.sha256,
            holdout_artifact_uri=holdout_artifact.uri if holdout_artifact else None,
            holdout_artifact_sha256=holdout_artifact.sha256 if holdout_artifact else None,
            artifact_format=model_artifact.format,
            trusted_types=model_artifact.trusted,
            created_by=f"airflow:{run.dag_id}",
        ),
        description=spec.description,
    )
    log.info(
        "registered %s v%s (challenger) trained on %s rows of %s%s",
        spec.name,
        version.version,
        challenger.train_rows,
        window,
        ", served refit on the whole window" if holdout_artifact else "",
    )
    return version.version


# --------------------------------------------------------------------------------------------- evaluation


def evaluate_challenger(
    spec: ModelSpec, run: RunInfo, services: Services, params: RetrainParams, challenger_version: int
) -> EvaluationOutcome:
    """Champion (re-scored now) vs challenger on the same fresh holdout; a recorded, fail-closed verdict."""
    from modelgate.loop import judge
    from modelgate.reports import write_evaluation_report

    registry = services.registry
    challenger = registry.get_version(spec.name, challenger_version)
    champion = _champion(services, spec, run.interval.end)
    if challenger.status is VersionStatus.CHAMPION or (champion is not None and champion.version == challenger.version):
        return _settled(spec, challenger, "already the champion", promote=True)
    if challenger.status is VersionStatus.REJECTED:
        return _settled(spec, challenger, "already rejected", promote=False)
    window = _trained_on(challenger) or run_windows(spec, run, services, params).training
    frame = load_window(spec, window, url=services.data_url)
    challenger_model = services.artifacts.load_version(challenger, evaluation=True)  # never the one refit on it
    champion_model = None
    if champion is not None:
        champion_model = services.artifacts.load_version(champion)
    decided = services.monitoring.decisions(spec.name, interval_end=run.interval.end)
    judged = judge(
        spec,
        frame,
        challenger_model,
        champion_model,
        champion_version=champion.version if champion else None,
        champion_window_end=champion.window_end if champion else None,
        challenger_version=challenger.version,
        doubt=champion_doubt(decided[0].reason) if decided else None,
    )
    verdict = judged.verdict
    written = services.reports.local_dir / spec.name / "evaluation" / f"v{challenger.version}-{window.label}.html"
    write_evaluation_report(
        spec, verdict, judged.y, judged.champion_scores, judged.challenger_scores, judged.holdout, written
    )
    report = services.reports.publish(written)
    payload = verdict.as_dict()
    held_out = judged.holdout[spec.time_column]
    payload.update(
        {
            "window": [window.start.isoformat(), window.end.isoformat()],
            # the rows judged on: from here to the window's end, none of them fitted on by either model
            "holdout_from": None if held_out.empty else held_out.min().isoformat(),
            "champion_window_end": None
            if champion is None or champion.window_end is None
            else champion.window_end.isoformat(),
            "report": report,
            "run_type": run.run_type,
            "airflow_run_id": run.run_id,
        }
    )
    evaluate_ref = RunRef(run.dag_id, window_key(window), "evaluate", run.interval.end)
    if verdict.promote:
        registry.record_event(
            spec.name,
            "evaluate",
            actor=f"airflow:{run.dag_id}",
            from_version=verdict.champion_version,
            to_version=challenger.version,
            reason=verdict.reason,
            verdict=payload,
            run=evaluate_ref,
            dedupe=True,
        )
    else:
        registry.reject(
            spec.name,
            challenger.version,
            actor=f"airflow:{run.dag_id}",
            reason=verdict.reason,
            verdict=payload,
            run=evaluate_ref,
        )
    log.info(
        "verdict for %s v%s: %s (%s); report %s",
        spec.name,
        challenger.version,
        "promote" if verdict.promote else "reject",
        verdict.reason,
        report,
    )
    return _outcome(verdict, report)


def _trained_on(version: ModelVersion) -> Interval | None:
    """The window a version was trained on, as recorded: evaluation holds out that window's newest rows."""
    if version.window_start is None or version.window_end is None:
        return None
    return Interval(version.window_start, version.window_end)


@dataclass(frozen=True)
class PrimaryComparison:
    """The primary metric of both models on the shared holdout, with the CI of the difference."""

    metric: str
    champion: float | None
    challenger: float | None  # None: nothing was compared (too few holdout rows since the champion's window)
    ci: tuple[float | None, float | None]


@dataclass(frozen=True)
class EvaluationOutcome:
    """What evaluate_challenger hands the promotion tasks: the verdict, the champion it was judged against
    (the promotion's compare-and-swap expects it), and the report. Crosses tasks as plain JSON (`as_xcom`)."""

    promote: bool
    reason: str
    challenger_version: int
    champion_seen: int | None = None
    primary: PrimaryComparison | None = None
    report: str | None = None
    settled: bool = False  # nothing was evaluated: the challenger already was champion, or already rejected

    def as_xcom(self) -> dict[str, Any]:
        """A JSON mapping, so every worker can read it without registering modelgate classes with Airflow."""
        from modelgate.jsonable import jsonable

        return dict(jsonable(self))

    @classmethod
    def from_xcom(cls, data: Any) -> EvaluationOutcome:
        from pydantic import TypeAdapter

        return TypeAdapter(cls).validate_python(data)

    def recorded(self, decision: str, approver: str | None) -> dict[str, Any]:
        """The verdict stored with a promote or reject event."""
        fields = {k: v for k, v in self.as_xcom().items() if k != "settled"}
        return {"decision": decision, "approver": approver, **fields}


def _outcome(verdict: Verdict, report: str) -> EvaluationOutcome:
    primary = verdict.evaluation.primary
    return EvaluationOutcome(
        promote=verdict.promote,
        reason=verdict.reason,
        challenger_version=verdict.challenger_version,
        champion_seen=verdict.champion_version,
        primary=PrimaryComparison(
            primary.metric, primary.champion, primary.challenger, (primary.ci_low, primary.ci_high)
        ),
        report=str(report),
        settled=False,
    )


def _settled(spec: ModelSpec, version: ModelVersion, why: str, *, promote: bool) -> EvaluationOutcome:
    log.info("%s v%s %s: nothing to evaluate again", spec.name, version.version, why)
    return EvaluationOutcome(promote=promote, reason=why, challenger_version=version.version, settled=True)


# --------------------------------------------------------------------------------------------- promotion


def promotion_route(
    spec: ModelSpec, run: RunInfo, params: RetrainParams, outcome: EvaluationOutcome, *, newer: int | None = None
) -> str:
    """Where a verdict goes: 'rejected', 'hold' (dry run, backfill, a newer champion), 'approval' or 'auto'.

    `newer` is a champion recorded as of a time after this run's interval (`hold_reason` names it): a run for
    a past interval never promotes over it, `promote_on_backfill` or not."""
    if outcome.promote and hold_reason(run, params, outcome, newer=newer):
        return "hold"
    return _route(spec, params, outcome)


def _route(spec: ModelSpec, params: RetrainParams, outcome: EvaluationOutcome) -> str:
    if not outcome.promote:
        return "rejected"
    approval = params.approval or spec.approval
    return "approval" if approval == "required" else "auto"


def hold_reason(run: RunInfo, params: RetrainParams, outcome: EvaluationOutcome, *, newer: int | None) -> str | None:
    """Why a passing verdict is held, not promoted (None: it may be promoted)."""
    if outcome.settled:
        return outcome.reason
    if params.dry_run:
        return "dry run"
    if newer is not None:
        return f"v{newer} became champion after this interval: history is recorded, never promoted over"
    if run.is_backfill and not params.promote_on_backfill:
        return "backfill run (promote_on_backfill is off)"
    return None


def newer_champion(spec: ModelSpec, run: RunInfo, services: Services) -> int | None:
    """The newest champion recorded as of a time after this run's interval, if any."""
    changes = services.registry.champion_changes_after(spec.name, run.interval.end)
    return None if not changes else changes[-1].to_version


def record_hold(spec: ModelSpec, run: RunInfo, services: Services, outcome: EvaluationOutcome, why: str) -> None:
    """A passing verdict that is not promoted, in the audit log (the Models view and `history` show it held)."""
    if outcome.settled:
        return
    services.registry.record_event(
        spec.name,
        "hold",
        actor=f"airflow:{run.dag_id}",
        from_version=outcome.champion_seen,
        to_version=outcome.challenger_version,
        reason=f"held ({why}): {outcome.reason}",
        verdict={**outcome.recorded("hold", None), "held": why, "run_type": run.run_type},
        run=run.ref("hold_promotion"),
        dedupe=True,
    )


def promote(
    spec: ModelSpec, run: RunInfo, services: Services, outcome: EvaluationOutcome, *, approver: str | None
) -> bool:
    """Compare-and-swap against the champion seen at evaluation; False when nothing changed."""
    actor = approver or f"airflow:{run.dag_id}"
    reason = outcome.reason if approver is None else f"approved by {approver}: {outcome.reason}"
    newer = newer_champion(spec, run, services)  # promoted since the verdict was routed: never over it
    if newer is not None:
        record_hold(spec, run, services, outcome, hold_reason(run, RetrainParams(), outcome, newer=newer) or "")
        return False
    change = services.registry.promote(
        spec.name,
        outcome.challenger_version,
        expected_champion=outcome.champion_seen,
        actor=actor,
        reason=reason,
        verdict=outcome.recorded("promote", approver),
        run=run.ref("promote"),
    )
    return change.changed


APPROVAL_TIMED_OUT = "approval timed out"  # the approver of an approval nobody answered in time


def record_human_rejection(
    spec: ModelSpec, run: RunInfo, services: Services, outcome: EvaluationOutcome, *, approver: str
) -> bool:
    """An approver said no (or nobody answered in time): the challenger is rejected, with who and why in the
    event. False if already so."""
    if approver == APPROVAL_TIMED_OUT:
        why = f"no approval within {spec.approval_timeout}: rejected, failing closed"
    else:
        why = f"rejected by approver {approver}"
    return services.registry.reject(
        spec.name,
        outcome.challenger_version,
        actor=approver,
        reason=f"{why} (verdict was: {outcome.reason})",
        verdict=outcome.recorded("reject", approver),
        run=run.ref("record_human_rejection"),
    )


def deploy_champion(
    spec: ModelSpec,
    run: RunInfo,
    services: Services,
    *,
    serving_root: Path,
    version: int | None = None,
    steps: list[int] | None = None,
    rollback: bool = False,
) -> dict[str, Any]:
    """Deploy the champion (or `version`) to the spec's target (local or Vertex AI) through canary steps.

    With `rollback`, the registry goes back to the previous champion first and traffic follows at once.
    A failed rollout puts traffic back; the registry champion is rolled back only if the spec says so.
    """
    from modelgate.deploy.controller import DeployError

    registry = services.registry
    actor = f"airflow:{run.dag_id}"
    if rollback:
        change = registry.rollback(
            spec.name, actor=actor, reason="rollback requested on the deploy DAG", run=run.ref("deploy")
        )
        version, steps = change.version, [100]
    if version is None:
        champion = registry.get_champion(spec.name)
        if champion is None:
            raise DeployError(f"{spec.name} has no champion to deploy")
        version = champion.version
    window = training_window(spec, run.interval.end)
    probe_rows = load_window(spec, window, url=services.data_url).tail(max(200, spec.deploy.probe_rows))
    if probe_rows.empty:
        raise DeployError(f"{spec.name}: no recent rows in {window} to probe the new version with")
    try:
        deployment = deploy_to_target(
            spec,
            services,
            model=spec.name,
            version=version,
            steps=steps or spec.deploy.canary_steps,
            probe_rows=probe_rows,
            serving_root=serving_root,
            actor=actor,
            run=run.ref("deploy"),
        )
    except DeployError:
        if spec.deploy.rollback_registry_on_failure and not rollback:
            registry.rollback(spec.name, actor=actor, reason=f"deployment of v{version} failed", run=run.ref("deploy"))
        raise
    if deployment is None:
        return {"version": version, "changed": False}
    return {"version": version, "changed": True, "deployment_id": deployment.id, "traffic": deployment.traffic}


def deploy_to_target(
    spec: ModelSpec | None,
    services: Services,
    *,
    model: str,
    version: int,
    steps: list[int],
    probe_rows: Any | None,
    serving_root: Path,
    actor: str,
    run: RunRef | None = None,
) -> Deployment | None:
    """One rollout to the model's target: the function the deploy DAG and `modelgate deploy/rollback` share.

    The shared canary controller walks the steps; the spec (or, without one, the local target) says where.
    """
    from modelgate.deploy.controller import rollout
    from modelgate.deploy.targets import build_target

    target = build_target(
        spec,
        registry=services.registry,
        artifacts=services.artifacts,
        serving_root=serving_root,
        probe_rows=probe_rows,
    )
    return rollout(services.registry, target, model=model, version=version, steps=steps, actor=actor, run=run)


# --------------------------------------------------------------------------------------------- backtest


def backtest_model(
    spec: ModelSpec,
    run: RunInfo,
    services: Services,
    *,
    spec_text: str,
    intervals: int | None = None,
    policies: list[str] | None = None,
) -> dict[str, Any]:
    """The backtest DAG's task: the model's history up to the run's interval end, replayed under the
    candidate policies (in this task's slot: one process, the spec's threads), kept in the registry with its
    HTML report."""
    from modelgate import backtest
    from modelgate.registry.monitoring import BacktestRow
    from modelgate.reports import write_backtest_report

    frame = backtest.history(spec, url=services.data_url, until=run.interval.end)
    result = backtest.run(spec, frame, spec_text=spec_text, policies=policies, intervals=intervals, jobs=1)
    path = services.reports.local_dir / spec.name / "backtest" / f"{run.run_id.replace('/', '_')}.html"
    report = services.reports.publish(write_backtest_report(result, path))
    services.monitoring.record_backtest(
        BacktestRow(
            model=spec.name,
            run_id=run.run_id,
            first_start=result.first,
            split_at=result.split,
            last_end=result.last,
            intervals=result.intervals,
            recommended=result.recommendation.name,
            why=result.recommendation.why,
            diff=result.diff,
            result=backtest.as_json(result),
            report_uri=report,
        )
    )
    log.info("%s backtest: recommended %s (%s); report %s", spec.name, result.recommendation.name,
             result.recommendation.why, report)  # fmt: skip
    return {"recommended": result.recommendation.name, "why": result.recommendation.why, "report": report}
