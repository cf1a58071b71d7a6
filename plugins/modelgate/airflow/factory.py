"""DAG factories: one monitor and one retrain DAG per model spec. Wiring only; logic is in modelgate.pipeline.

Nothing here reads a Connection, a Variable or the database at parse time, and nothing heavy is imported
at module level: each task imports what it needs when it runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from modelgate.airflow.notify import FailureCallback
from modelgate.catalog import load_spec, load_specs, shard_of, spec_file, spec_files
from modelgate.spec import InvalidSpec, ModelSpec, SpecError, cron_of

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2
EARLIER_POKE_SECONDS = 10.0  # a retrain run waiting for the run of the interval before it
EARLIER_TIMEOUT = dt.timedelta(days=7)  # an approval may hold the earlier run that long (or its own wait)
RETRY_DELAY_ENV = "MODELGATE_RETRY_DELAY_SECONDS"


def _retry_delay() -> dt.timedelta:
    return dt.timedelta(seconds=float(os.environ.get(RETRY_DELAY_ENV, "120")))


# Private URI schemes start with "x-": Airflow then skips provider URI-normalizer discovery, which would
# import every provider's asset handlers (GCSHook among them, ~0.75 s) at each parse of the DAG file.
def drift_asset(model: str) -> Asset:
    return Asset(f"x-modelgate://{model}/drift", group="modelgate")


def champion_asset(model: str) -> Asset:
    return Asset(f"x-modelgate://{model}/champion", group="modelgate")


POOL_ENV = "MODELGATE_POOL"  # the Airflow pool every modelgate task runs in (create it first: see docs/scale.md)
# Which work goes first when slots are short (the scheduler then takes older data intervals first): a deploy
# after a promotion, then the monitors that raise alarms, scoring, retraining, and manual backtests last.
STAGE_PRIORITY = {
    "deploy": 5,
    "monitor": 4,
    "ab": 4,
    "batch_predict": 3,
    "retrain": 2,
    "backtest": 1,
    "example_data": 4,
}


def _default_args(spec: ModelSpec, stage: str) -> dict[str, Any]:
    """Retries, the failure notifier, and the scheduling share: `$MODELGATE_POOL` and the stage's priority,
    absolute (not summed over downstream tasks), so a model with more tasks does not outrank the others."""
    pool = os.environ.get(POOL_ENV, "").strip()
    return {
        "owner": "modelgate",
        "retries": DEFAULT_RETRIES,
        "retry_delay": _retry_delay(),
        "on_failure_callback": FailureCallback(spec),
        "priority_weight": STAGE_PRIORITY[stage],
        "weight_rule": "absolute",
        **({"pool": pool} if pool else {}),
    }


def _start(spec: ModelSpec) -> dt.datetime:
    return spec.start()


def _tags(spec: ModelSpec, stage: str) -> list[str]:
    return ["modelgate", stage, f"model:{spec.name}", *spec.tags]


def _model_link(spec: ModelSpec) -> str:
    """The line every DAG's docs end with: the model's page in the Models view (the way back from a DAG)."""
    page = f"/modelgate/models/{spec.name}"
    return f"\n\n**[{spec.name} in the Models view]({page})**: versions, verdicts, drift, decisions, deployments."


def _dag_args(spec: ModelSpec, stage: str) -> dict[str, Any]:
    """What every modelgate DAG shares: id, start, catchup, one run at a time, tags, retries, notifiers."""
    return {
        "dag_id": f"modelgate_{stage}__{spec.name}",
        "start_date": _start(spec),
        "catchup": spec.catchup,
        "is_paused_upon_creation": spec.paused_upon_creation,
        "max_active_runs": 1,
        "tags": _tags(spec, stage),
        "default_args": _default_args(spec, stage),
    }


def _interval_schedule(spec: ModelSpec) -> Any:
    return CronDataIntervalTimetable(spec.cron, timezone="UTC") if spec.cron else None


def _services(spec: ModelSpec, include_dir: Path) -> Any:
    from modelgate.airflow.runtime import services_for

    with fail_fast():  # no registry configured is not worth a retry
        return services_for(spec, include_dir)


def _lineage(
    spec: ModelSpec,
    services: Any,
    *,
    source: bool = True,
    models: tuple[int | None, ...] = (),
    trained: int | None = None,
    predictions: bool = False,
) -> None:
    """OpenLineage (`modelgate.airflow.lineage`): this task read the source window and `models` (versions),
    and wrote the `trained` version's artifact or the predictions table."""
    from modelgate.airflow.lineage import collecting, predictions_uri, report, source_uri
    from modelgate.airflow.runtime import registry_url

    if not collecting():  # OpenLineage off: no registry reads for names nobody will send
        return

    def artifact(version: int | None) -> str | None:
        return services.registry.get_version(spec.name, version).artifact_uri if version else None

    try:
        inputs = [source_uri(spec, services.data_url) if source else None, *map(artifact, models)]
        outputs = [artifact(trained), predictions_uri(registry_url()) if predictions else None]
    except Exception:  # lineage never fails a task
        log.warning("no lineage for this %s task", spec.name, exc_info=True)
        return
    report(inputs=inputs, outputs=outputs)


def _run(spec: ModelSpec, context: Any) -> Any:
    from modelgate.airflow.runtime import run_info

    return run_info(context, span_before=spec.span_before)


@contextmanager
def fail_fast() -> Iterator[None]:
    """Bad data, a bad spec or a refused registry operation fail the task at once: retrying cannot help.

    Only what may pass by itself (a dropped registry connection, a network error) is left to the retries;
    a failed deploy or batch job already had its own retries of the calls that are safe to repeat.
    """
    from modelgate.backtest import BacktestError
    from modelgate.data import DataError
    from modelgate.deploy.controller import DeployError
    from modelgate.drift import DriftError
    from modelgate.evaluation import EvaluationError
    from modelgate.quality import ExpectationsFileError, QualityGateFailed
    from modelgate.registry.errors import RegistryError, RegistryUnavailable
    from modelgate.spec import InvalidSpec
    from modelgate.training import TrainingError

    deterministic = (
        QualityGateFailed,
        ExpectationsFileError,
        InvalidSpec,
        DataError,
        TrainingError,
        EvaluationError,
        DriftError,
        DeployError,  # a rollout already retried what may pass (deploy/vertex.py); BatchJobFailed too
        RegistryError,
        BacktestError,
    )
    try:
        yield
    except RegistryUnavailable:
        raise
    except deterministic as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def _quality(spec: ModelSpec, services: Any, window: Any, stage: str, context: Any) -> dict[str, Any]:
    from modelgate.airflow.links import push_report_link
    from modelgate.pipeline import check_quality
    from modelgate.quality import QualityGateFailed

    try:
        with fail_fast():
            result = check_quality(spec, window, services, stage=stage)
    except AirflowFailException as exc:
        cause = exc.__cause__
        if isinstance(cause, QualityGateFailed):
            push_report_link(context, cause.result.docs_path)  # the Data Docs explain the failure
        raise
    push_report_link(context, result.get("docs_path"))
    return result


def _link_reports(*tasks: Any) -> None:
    """Give these TaskFlow tasks the 'modelgate report' extra link (set on their operators)."""
    from modelgate.airflow.links import ModelgateReportLink

    for xcom_arg in tasks:
        xcom_arg.operator.operator_extra_links = (ModelgateReportLink(),)


def build_monitor_dag(spec: ModelSpec, include_dir: Path) -> DAG:
    @dag(
        **_dag_args(spec, "monitor"),
        description=f"Data quality and drift of {spec.name} over each data interval",
        schedule=_interval_schedule(spec),
        doc_md=f"Monitors `{spec.name}`: Great Expectations on the interval's rows, then Evidently drift against "
        "the champion's training reference; drift emits the model's drift Asset." + _model_link(spec),
    )
    def monitor() -> None:
        @task
        def data_quality(**context: Any) -> dict[str, Any]:
            services = _services(spec, include_dir)
            with fail_fast():
                result = _quality(spec, services, _run(spec, context).interval, "monitor", context)
            _lineage(spec, services)
            return result

        @task
        def detect_drift(**context: Any) -> dict[str, Any]:
            from modelgate.airflow.links import push_report_link
            from modelgate.pipeline import monitor_drift

            services = _services(spec, include_dir)
            with fail_fast():
                result = monitor_drift(spec, _run(spec, context), services)
            push_report_link(context, result.get("report"))
            _lineage(spec, services, models=(result.get("champion_version"),))
            return result

        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def drift_detected(result: dict[str, Any]) -> bool:
            return bool(result.get("drifted"))

        @task(outlets=[drift_asset(spec.name)])
        def signal_drift(result: dict[str, Any], **context: Any) -> dict[str, Any]:
            from modelgate.airflow.notify import send
            from modelgate.airflow.runtime import interval_extra

            # the retrain it triggers judges this interval, not the moment it happens to start
            context["outlet_events"][drift_asset(spec.name)].extra = interval_extra(_run(spec, context).interval)

            columns = ", ".join(result.get("columns", []))
            send(
                spec,
                "drift",
                f"share {result.get('share')} of features drifted ({columns}); {result.get('report')}",
                context,
            )
            return result

        drift = detect_drift()
        quality = data_quality()
        _link_reports(quality, drift)
        quality >> drift
        drift_detected(drift) >> signal_drift(drift)

    return monitor()


def _retrain_params(spec: ModelSpec) -> dict[str, Param]:
    return {
        "force": Param(False, type="boolean", description="Retrain even if no trigger fires."),
        "window_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=3650,
            description=f"Training window in days (default {spec.window_days}).",
        ),
        "dry_run": Param(False, type="boolean", description="Evaluate and record the verdict, never promote."),
        "approval": Param(
            "spec",
            type="string",
            enum=["spec", "auto", "required"],
            description=f"Human approval before promotion (the spec says {spec.approval}).",
        ),
        "promote_on_backfill": Param(
            False, type="boolean", description="Let backfill runs promote (by default they only record verdicts)."
        ),
        "interval_end": Param(
            None,
            type=["null", "string"],
            description="Judge the interval ending at this ISO date-time (a tick of the schedule). Empty: the run's "
            "own data interval; a run triggered here gets the last complete interval before its logical date"
            + _last_complete(spec)
            + ".",
        ),
    }


def _last_complete(spec: ModelSpec) -> str:
    """The interval a run triggered now would judge, for the trigger form (refreshed at each parse, so the
    DAG's serialized form changes once per interval, when a new one completes)."""
    interval = spec.last_complete_interval(dt.datetime.now(dt.UTC))
    if interval is None:
        return ""
    start, end = interval
    return f" (now: {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)"


def _approval(context: Any) -> tuple[str | None, str | None]:
    """(approver, chosen option) from the approve task's result; (None, None) when nobody was asked.

    An answer with no user is the timeout's default ("Reject"): the approver is `APPROVAL_TIMED_OUT`.
    """
    answer = context["ti"].xcom_pull(task_ids="approve", key="answer")
    if not answer:
        return None, None
    from modelgate.pipeline import APPROVAL_TIMED_OUT

    user = answer.get("responded_by_user") or {}
    approver = user.get("name") or user.get("id") or APPROVAL_TIMED_OUT
    chosen = answer.get("chosen_options") or [None]
    return str(approver), chosen[0]


def _asking_message(context: Any) -> str:
    from modelgate.pipeline import EvaluationOutcome

    outcome = EvaluationOutcome.from_xcom(context["ti"].xcom_pull(task_ids="evaluate_challenger"))
    return (
        f"v{outcome.challenger_version} waits for approval in {context['ti'].dag_id} "
        f"({context['ti'].run_id}): {outcome.reason}"
    )


def _earlier_timeout(spec: ModelSpec) -> dt.timedelta:
    """How long a retrain run waits for the run before it: that run may wait for its approval first."""
    return max(EARLIER_TIMEOUT, (spec.approval_wait or dt.timedelta(0)) + dt.timedelta(days=1))


def build_retrain_dag(spec: ModelSpec, include_dir: Path) -> DAG:
    from airflow.providers.standard.operators.empty import EmptyOperator

    from modelgate.airflow.approval import RecordedApprovalOperator
    from modelgate.airflow.ordering import EarlierIntervalSensor

    if spec.retrain_cron:
        schedule: Any = AssetOrTimeSchedule(
            timetable=CronDataIntervalTimetable(spec.retrain_cron, timezone="UTC"), assets=[drift_asset(spec.name)]
        )
    else:
        schedule = [drift_asset(spec.name)]

    @dag(
        **_dag_args(spec, "retrain"),
        description=f"Retrain {spec.name} if needed, evaluate champion vs challenger, promote",
        schedule=schedule,
        params=_retrain_params(spec),
        doc_md=f"Retrains `{spec.name}` when a trigger fires (no champion, drift, decay, staleness, new data, "
        "`force`), evaluates the challenger against the re-scored champion on the same holdout and promotes "
        "it only on a passing, recorded verdict. Backfill runs record verdicts but never promote unless "
        "`promote_on_backfill` is set." + _model_link(spec),
    )
    def retrain() -> None:
        def params_of(context: Any) -> Any:
            from modelgate.pipeline import RetrainParams

            return RetrainParams.from_mapping(dict(context["params"]))

        @task
        def training_data_quality(**context: Any) -> dict[str, Any]:
            from modelgate.pipeline import run_windows

            services = _services(spec, include_dir)
            with fail_fast():
                run = _run(spec, context)
                window = run_windows(spec, run, services, params_of(context)).quality
                result = _quality(spec, services, window, "training", context)
            _lineage(spec, services)
            return result

        @task.branch
        def decide_retrain(**context: Any) -> str:
            from modelgate.pipeline import decide

            with fail_fast():
                decision = decide(spec, _run(spec, context), _services(spec, include_dir), params_of(context))
            context["ti"].xcom_push(key="decision", value=decision.as_dict())
            return "train_challenger" if decision.retrain else "skip_retrain"

        @task
        def skip_retrain(**context: Any) -> str:
            decision = context["ti"].xcom_pull(task_ids="decide_retrain", key="decision")
            log.info("not retraining %s: %s", spec.name, decision["detail"])
            return str(decision["reason"])

        @task
        def train_challenger(**context: Any) -> int:
            from modelgate.pipeline import train_challenger as train

            services = _services(spec, include_dir)
            with fail_fast():
                version = int(train(spec, _run(spec, context), services, params_of(context)))
            _lineage(spec, services, trained=version)  # source window -> this version's artifact
            return version

        @task
        def evaluate_challenger(version: int, **context: Any) -> dict[str, Any]:
            from modelgate.airflow.links import push_report_link
            from modelgate.pipeline import evaluate_challenger as evaluate

            services = _services(spec, include_dir)
            with fail_fast():
                outcome = evaluate(spec, _run(spec, context), services, params_of(context), version)
            push_report_link(context, outcome.report)
            _lineage(spec, services, models=(version, outcome.champion_seen))
            return outcome.as_xcom()

        @task.branch
        def route_verdict(outcome: dict[str, Any], **context: Any) -> str:
            from modelgate.pipeline import EvaluationOutcome, newer_champion, promotion_route

            verdict = EvaluationOutcome.from_xcom(outcome)
            run = _run(spec, context)
            newer = newer_champion(spec, run, _services(spec, include_dir)) if verdict.promote else None
            route = promotion_route(spec, run, params_of(context), verdict, newer=newer)
            return {
                "rejected": "notify_rejection",
                "hold": "hold_promotion",
                "approval": "approve",
                "auto": "auto_approve",
            }[route]

        @task
        def notify_rejection(outcome: dict[str, Any], **context: Any) -> None:
            from modelgate.airflow.notify import send
            from modelgate.pipeline import EvaluationOutcome

            verdict = EvaluationOutcome.from_xcom(outcome)
            send(spec, "rejection", f"challenger v{verdict.challenger_version} rejected: {verdict.reason}", context)

        @task
        def hold_promotion(outcome: dict[str, Any], **context: Any) -> str:
            from modelgate.pipeline import EvaluationOutcome, hold_reason, newer_champion, record_hold

            verdict = EvaluationOutcome.from_xcom(outcome)
            run = _run(spec, context)
            services = _services(spec, include_dir)
            newer = newer_champion(spec, run, services)
            why = hold_reason(run, params_of(context), verdict, newer=newer) or f"{run.run_type} run"
            with fail_fast():
                record_hold(spec, run, services, verdict, why)
            log.info("not promoting %s v%s (%s): verdict recorded", spec.name, verdict.challenger_version, why)
            return why

        from modelgate.airflow.notify import SpecNotifier

        wait = spec.approval_wait
        approve = RecordedApprovalOperator(
            task_id="approve",
            subject=f"Promote {spec.name} challenger?",
            body="{{ ti.xcom_pull(task_ids='evaluate_challenger')['reason'] }}\n\n"
            "Report: {{ ti.xcom_pull(task_ids='evaluate_challenger')['report'] }}"
            + (f"\n\nWithout an answer within {spec.approval_timeout} the challenger is rejected." if wait else ""),
            defaults="Reject" if wait else None,  # fail closed: silence is a no
            response_timeout=wait,
            assigned_users=[{"id": a.id, "name": a.name or a.id} for a in spec.approvers] or None,
            notifiers=[SpecNotifier(spec, "approval", _asking_message)],
            retries=0,
        )
        auto_approve = EmptyOperator(task_id="auto_approve")

        @task(trigger_rule="none_failed_min_one_success", outlets=[champion_asset(spec.name)])
        def promote_champion(**context: Any) -> int:
            # The outcome is pulled, not passed: an XComArg would make evaluate_challenger an upstream and
            # satisfy this trigger rule even when the branch skipped both approval paths.
            from modelgate.airflow.notify import send
            from modelgate.pipeline import EvaluationOutcome, promote

            outcome = EvaluationOutcome.from_xcom(context["ti"].xcom_pull(task_ids="evaluate_challenger"))

            approver, _ = _approval(context)
            with fail_fast():
                changed = promote(spec, _run(spec, context), _services(spec, include_dir), outcome, approver=approver)
            if not changed:
                raise AirflowSkipException(
                    f"v{outcome.challenger_version} not promoted: already the champion, or a newer champion exists"
                )
            send(spec, "promotion", f"v{outcome.challenger_version} is the champion ({outcome.reason})", context)
            return outcome.challenger_version

        @task(trigger_rule="all_done")
        def record_human_rejection(**context: Any) -> str | None:
            """Runs after promotion whatever happened; records a human 'Reject' (the operator only skips)."""
            from modelgate.pipeline import EvaluationOutcome
            from modelgate.pipeline import record_human_rejection as record

            approver, choice = _approval(context)
            if approver is None or choice != "Reject":
                raise AirflowSkipException("no human rejection to record")
            outcome = EvaluationOutcome.from_xcom(context["ti"].xcom_pull(task_ids="evaluate_challenger"))
            with fail_fast():
                record(spec, _run(spec, context), _services(spec, include_dir), outcome, approver=approver)
            return approver

        decision = decide_retrain()
        training_quality = training_data_quality()
        earlier = EarlierIntervalSensor(
            task_id="wait_for_earlier_interval",
            model=spec.name,
            timeout=_earlier_timeout(spec),
            poke_interval=EARLIER_POKE_SECONDS,
        )
        earlier >> training_quality >> decision
        decision >> skip_retrain()
        version = train_challenger()
        decision >> version
        outcome = evaluate_challenger(version)
        _link_reports(training_quality, outcome)
        route = route_verdict(outcome)
        route >> [notify_rejection(outcome), hold_promotion(outcome), approve, auto_approve]
        [approve, auto_approve] >> promote_champion() >> record_human_rejection()

    return retrain()


def build_deploy_dag(spec: ModelSpec, include_dir: Path) -> DAG:
    @dag(
        **_dag_args(spec, "deploy"),
        description=f"Deploy the champion of {spec.name} to its {spec.deploy.target} target",
        schedule=[champion_asset(spec.name)],
        params={
            "version": Param(None, type=["null", "integer"], minimum=1, description="Default: the champion."),
            "canary_steps": Param(
                list(spec.deploy.canary_steps),
                type="array",
                items={"type": "integer", "minimum": 1, "maximum": 100},
                description="Percent of traffic at each step; must end at 100.",
            ),
            "rollback": Param(False, type="boolean", description="Roll the registry back and move traffic too."),
        },
        doc_md=f"Deploys `{spec.name}` when its champion changes (or on demand): canary steps with a probe batch "
        "between them; any failure puts traffic back on the previous version." + _model_link(spec),
    )
    def deploy() -> None:
        @task
        def deploy_champion(**context: Any) -> dict[str, Any]:
            from modelgate.config import serving_root
            from modelgate.deploy.controller import DeployError
            from modelgate.pipeline import deploy_champion as run_deploy

            params = context["params"]
            services = _services(spec, include_dir)
            with fail_fast():
                try:
                    deployed = run_deploy(
                        spec,
                        _run(spec, context),
                        services,
                        serving_root=serving_root(),
                        version=params.get("version"),
                        steps=list(params.get("canary_steps") or []) or None,
                        rollback=bool(params.get("rollback")),
                    )
                except DeployError as exc:
                    raise AirflowFailException(str(exc)) from exc
            _lineage(spec, services, source=False, models=(deployed.get("version"),))
            return deployed

        deploy_champion()

    return deploy()


def build_batch_predict_dag(spec: ModelSpec, include_dir: Path) -> DAG:
    @dag(
        **_dag_args(spec, "batch_predict"),
        description=f"Score each data interval of {spec.name} with the champion",
        schedule=_interval_schedule(spec),
        doc_md=f"Scores the interval's rows of `{spec.name}` with the champion (sha256 checked first), here or "
        "in a Vertex AI batch prediction job (`deploy.batch_prediction_job`), and replaces that interval's rows "
        "in `batch_prediction`, each stamped with the model version; with `deploy.keep_predictions`, then deletes "
        "the prediction log's older rows." + _model_link(spec),
    )
    def batch_predict() -> None:
        @task
        def score_interval(**context: Any) -> dict[str, Any]:
            from modelgate.deploy.batch import batch_predict
            from modelgate.deploy.vertex_batch import vertex_batch_predict
            from modelgate.registry.errors import ModelNotFound, NoChampion

            score = vertex_batch_predict if spec.deploy.batch_prediction_job else batch_predict
            services = _services(spec, include_dir)
            run = _run(spec, context)
            try:
                with fail_fast():
                    result = score(
                        spec,
                        run.interval,
                        registry=services.registry,
                        artifacts=services.artifacts,
                        data_url=services.data_url,
                    )
            except AirflowFailException as exc:
                if isinstance(exc.__cause__, ModelNotFound | NoChampion):  # nothing to score with yet
                    raise AirflowSkipException(f"{exc.__cause__}: nothing scored for {run.interval}") from exc
                raise
            _lineage(spec, services, models=(result.version,), predictions=True)  # source + model -> predictions
            from modelgate.ab import apply_retention

            pruned = apply_retention(spec, services.registry, run.interval.end)  # deploy.keep_predictions
            kept = (
                {} if pruned is None else {"pruned_predictions": pruned.predictions, "pruned_outcomes": pruned.outcomes}
            )
            return {"version": result.version, "rows": result.rows, **kept}

        score_interval()

    return batch_predict()


def wants_ab_dag(spec: ModelSpec) -> bool:
    """A spec that declares `ab:` (with a schedule) gets modelgate_ab__<model>; others carry no idle DAG."""
    return spec.ab is not None and spec.ab.schedule is not None and spec.deploy.target == "local"


def _emit_ab_metrics(model: str, analysis: Any) -> None:
    """Each arm's labelled count and metric mean, and the difference's estimate and bounds, through Airflow's
    metrics (StatsD or OpenTelemetry, as `[metrics]` configures): short fixed names, the model, arm, version
    and experiment as tags (a model's name in the metric name would overrun OpenTelemetry's name limit)."""
    from airflow.sdk.observability.stats import Stats

    summary = analysis.summary()
    base = {"model": model, "experiment": str(analysis.experiment.id)}
    for arm in ("champion", "challenger"):
        sums = summary[arm]
        tags = {**base, "arm": arm, "version": str(sums["version"])}
        Stats.gauge(f"modelgate.ab.{arm}.labelled", sums["labelled"], tags=tags)
        if sums["labelled"]:
            Stats.gauge(f"modelgate.ab.{arm}.mean", sums["total"] / sums["labelled"], tags=tags)
    for bound in ("estimate", "lower", "upper"):
        if summary[bound] is not None:
            Stats.gauge(f"modelgate.ab.difference.{bound}", summary[bound], tags=base)


def build_ab_dag(spec: ModelSpec, include_dir: Path) -> DAG:
    """Each interval: one look at the model's running A/B experiment, acted on (promote, stop or continue)."""
    assert spec.ab is not None and spec.ab.schedule is not None  # wants_ab_dag
    from_source = spec.ab.outcomes_from_source

    @dag(
        **{**_dag_args(spec, "ab"), "catchup": False},
        description=f"Analyse {spec.name}'s A/B experiment on live outcomes and act on it",
        schedule=CronDataIntervalTimetable(cron_of(spec.ab.schedule), timezone="UTC"),
        doc_md=f"One look at `{spec.name}`'s running A/B experiment (`modelgate ab start`) as of the interval's "
        "end: each key's first prediction joined with its outcome, per-arm metric and guardrails, an always-valid "
        "sequential test (safe to look at every interval), then promote (compare-and-swap), stop, or continue. "
        "Skipped while no experiment runs. A manual run looks as of its trigger; a backfill looks without "
        "acting." + _model_link(spec),
    )
    def ab_dag() -> None:
        @task
        def analyse_experiment(**context: Any) -> dict[str, Any]:
            from modelgate.ab import analyse
            from modelgate.config import serving_root

            services = _services(spec, include_dir)
            run = _run(spec, context)
            start, end = run.interval.start, run.interval.end
            if run.run_type == "manual":  # "look now": up to the trigger, not the last complete interval
                end = max(end, dt.datetime.fromtimestamp(context["dag_run"].run_after.timestamp(), tz=dt.UTC))
            if from_source:
                from modelgate.ab import collect_outcomes
                from modelgate.data import Interval

                with fail_fast():
                    collect_outcomes(services.registry, spec, Interval(start, end), data_url=services.data_url)
            with fail_fast():
                analysis = analyse(
                    services.registry,
                    spec.name,
                    interval_end=end,
                    interval_start=start,
                    act=not run.is_backfill,
                    run=run.ref(),
                    serving_root=serving_root(),
                )
            if analysis is None:
                raise AirflowSkipException(f"{spec.name} ran no experiment in {start:%Y-%m-%d %H:%M}..{end:%H:%M}")
            try:
                _emit_ab_metrics(spec.name, analysis)
            except Exception:  # metrics never fail the look
                log.warning("%s: the experiment's metrics were not sent", spec.name, exc_info=True)
            decision = analysis.decision
            log.info(
                "experiment #%s of %s: %s: %s", analysis.experiment.id, spec.name, decision.action, decision.reason
            )
            return {
                "experiment": analysis.experiment.id,
                "action": decision.action.value,
                "reason": decision.reason,
                "acted": analysis.acted,
                **{k: analysis.summary()[k] for k in ("estimate", "lower", "upper", "p_value", "srm_p")},
            }

        @task(outlets=[champion_asset(spec.name)])
        def announce_champion(result: dict[str, Any]) -> str:
            """A promotion is announced like the retrain DAG's: the deploy DAG records and finishes it."""
            if not str(result.get("acted") or "").startswith("promoted"):
                raise AirflowSkipException(f"no new champion: {result['action']}: {result['reason']}")
            return str(result["acted"])

        announce_champion(analyse_experiment())

    return ab_dag()


def build_backtest_dag(spec: ModelSpec, include_dir: Path) -> DAG:
    """`modelgate backtest` on demand: the model's own history under candidate policies, kept as a report."""

    @dag(
        **{**_dag_args(spec, "backtest"), "catchup": False},
        description=f"Replay {spec.name}'s own history under candidate retrain policies and recommend one",
        schedule=None,
        params={
            "intervals": Param(
                None, type=["null", "integer"], minimum=6, description="Replay only the last N intervals."
            ),
            "policies": Param(
                None,
                type=["null", "string"],
                description="Comma-separated: never, every, label_rule, spec, grid, or single grid names (empty: all).",
            ),
        },
        doc_md=f"Replays `{spec.name}`'s history up to the run's interval end with the loop's own functions under "
        "never, every interval, the spec's policy, a naive label rule and one knob of the spec changed at a time; "
        "chooses on the first two thirds and reports the last third, with the recommended spec change. The "
        "report is linked from the Models view." + _model_link(spec),
    )
    def backtest() -> None:
        @task(execution_timeout=dt.timedelta(hours=6))
        def backtest_history(**context: Any) -> dict[str, Any]:
            from modelgate.airflow.links import push_report_link
            from modelgate.pipeline import backtest_model

            params = context["params"]
            names = [p.strip() for p in str(params.get("policies") or "").split(",") if p.strip()] or None
            found = spec_file(include_dir / "models", spec.name)
            text = found.read_text(encoding="utf-8") if found else ""
            with fail_fast():
                result = backtest_model(
                    spec,
                    _run(spec, context),
                    _services(spec, include_dir),
                    spec_text=text,
                    intervals=params.get("intervals"),
                    policies=names,
                )
            push_report_link(context, result.get("report"))
            return result

        _link_reports(backtest_history())

    return backtest()


EXAMPLE_DATA_ENV = "MODELGATE_EXAMPLE_DATA"
EXAMPLES = frozenset({"churn"})  # specs whose rows modelgate.datasets can generate


def build_example_data_dag(spec: ModelSpec) -> DAG:
    """Keeps the bundled churn example live: each hour's rows are appended as the hour ends.

    Generated only where the environment asks for it ($MODELGATE_EXAMPLE_DATA=churn, set by `make airflow`
    and docker-compose), so a production deployment never carries a data generator.
    """

    @dag(
        dag_id=f"modelgate_example_data__{spec.name}",
        description=f"Append the generated {spec.name} example rows of each hour (keeps the example live)",
        schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
        start_date=spec.start(),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=spec.paused_upon_creation,
        tags=_tags(spec, "example"),
        default_args={**_default_args(spec, "example_data"), "on_failure_callback": None},
        doc_md=f"Writes the `{spec.name}` example's generated rows up to the end of the run's interval "
        "(idempotent: rows already there are kept). The same as `modelgate example-data --until`.",
    )
    def example_data() -> None:
        @task
        def append_rows(**context: Any) -> int:
            from modelgate.airflow.runtime import data_url, registry_url
            from modelgate.datasets.churn import seed_until

            url = data_url(spec, registry_url())
            if url is None:
                raise AirflowFailException(f"{spec.name}: the example generator writes to a Postgres source")
            result = seed_until(url, _run(spec, context).interval.end)
            log.info(
                "%s: %s new rows up to %s (%s in all)", spec.name, result.inserted, result.until, result.total_rows
            )
            return result.inserted

        append_rows()

    return example_data()


def model_of_dag(dag_id: str) -> str | None:
    """The model whose DAG `dag_id` is (`modelgate_<stage>__<model>`), or None for a DAG not of ours."""
    stage, sep, model = dag_id.removeprefix("modelgate_").partition("__")
    return model if dag_id.startswith("modelgate_") and sep and stage and model else None


def _specs_for(
    specs_dir: Path, only_dag: str | None, shard: tuple[int, int]
) -> tuple[list[ModelSpec], list[SpecError]]:
    """The specs to build: this shard's, or only the model of `only_dag`, read from its own file alone."""
    index, count = shard
    model = model_of_dag(only_dag) if only_dag else None
    if model is not None and shard_of(model, count) != index:
        return [], []  # another shard's DAG: that file builds it
    files = spec_files(specs_dir, model) if model else []
    if len(files) != 1:  # not one of ours, or a name two files claim: as the full parse does
        return load_specs(specs_dir, keep=None if count == 1 else lambda stem: shard_of(stem, count) == index)
    try:
        return [load_spec(files[0])], []
    except InvalidSpec as exc:
        return [], exc.errors


def build_all(
    specs_dir: Path, include_dir: Path, *, only_dag: str | None = None, shard: tuple[int, int] = (0, 1)
) -> tuple[dict[str, DAG], list[SpecError]]:
    """Every DAG of every valid spec; invalid specs are reported and skipped, the others still load.

    `only_dag` is Airflow's parsing context (`get_parsing_context().dag_id`): a task runner parses the DAG
    file for one DAG, so only that DAG's model is read and built, from its own spec file. A task's start then
    costs the same with a thousand specs as with one, and another model's broken spec cannot fail it.
    `shard` (from `dag_shard`): this DAG file builds only the models that hash to it, so the DAG processor
    parses a thousand specs as n files, each well inside `dagbag_import_timeout`, and a slow or failing file
    costs its own models only.
    """
    specs, errors = _specs_for(specs_dir, only_dag, shard)
    for error in errors:
        log.error("modelgate: invalid model spec, its DAGs are not generated: %s", error)
    dags: dict[str, DAG] = {}
    for spec in specs:
        built_dags = [
            build_monitor_dag(spec, include_dir),
            build_retrain_dag(spec, include_dir),
            build_batch_predict_dag(spec, include_dir),
            build_backtest_dag(spec, include_dir),
        ]
        if spec.deploy.target != "none":
            built_dags.append(build_deploy_dag(spec, include_dir))
        if wants_ab_dag(spec):
            built_dags.append(build_ab_dag(spec, include_dir))
        if spec.name in EXAMPLES and spec.name in os.environ.get(EXAMPLE_DATA_ENV, "").split(","):
            built_dags.append(build_example_data_dag(spec))
        for built in built_dags:
            dags[built.dag_id] = built
    return dags, errors
