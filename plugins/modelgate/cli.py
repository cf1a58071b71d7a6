"""The `modelgate` command: the registry from a terminal, readable tables by default, --json for scripts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelgate.jsonable import jsonable
from modelgate.registry.errors import InvalidInput, RegistryError

app = typer.Typer(
    name="modelgate",
    help="Keep tabular scikit-learn models healthy: registry, promotion, rollback.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Registry schema management (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")
dags_app = typer.Typer(help="The DAG files in dags/.", no_args_is_help=True)
app.add_typer(dags_app, name="dags")
ab_app = typer.Typer(help="A/B experiments on live outcomes: champion vs a challenger.", no_args_is_help=True)
app.add_typer(ab_app, name="ab")
outcomes_app = typer.Typer(help="Outcomes (labels) that arrive after the predictions.", no_args_is_help=True)
app.add_typer(outcomes_app, name="outcomes")
predictions_app = typer.Typer(help="The prediction log `modelgate serve` writes.", no_args_is_help=True)
app.add_typer(predictions_app, name="predictions")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WideFlag = Annotated[bool, typer.Option("--wide", help="One table row per entry, however narrow the terminal.")]
WIDE_TABLE_COLUMNS = 120  # below this, tables of long cells become unreadable: print one block per entry
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who is acting (default: the OS user).")]
SpecOpt = Annotated[
    Path | None,
    typer.Option("--spec", help="The model's spec (default: include/models/NAME.yaml, when it exists)."),
]


@dataclasses.dataclass
class _State:
    registry_url: str | None = None


_state = _State()


@app.callback()
def _root(
    registry_url: Annotated[
        str | None,
        typer.Option(
            "--registry-url",
            help="Registry database URL. Default: $MODELGATE_REGISTRY_URL, else the embedded PostgreSQL.",
        ),
    ] = None,
) -> None:
    _state.registry_url = registry_url


def _registry() -> Any:
    from modelgate.registry.store import Registry

    return Registry.connect(_state.registry_url)


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(value), indent=2, sort_keys=True) + "\n")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(value.items())) or "-"
    return str(value)


def _parse_json_object(raw: str | None, option: str, *, numbers: bool = False) -> dict[str, Any]:
    if raw is None:
        return {}

    def refuse(constant: str) -> Any:
        raise InvalidInput(f"{option}: {constant} is not a JSON number (use a finite number or null)")

    try:
        parsed = json.loads(raw, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{option} is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput(f"{option} must be a JSON object, got {type(parsed).__name__}")
    if not _finite(parsed):
        raise InvalidInput(f"{option}: a number is too large to be finite (use a finite number or null)")
    if numbers:
        for key, val in parsed.items():
            if isinstance(val, bool) or not isinstance(val, int | float):
                raise InvalidInput(f"{option}: {key!r} must be a number, got {val!r}")
    return parsed


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _parse_expected(raw: str | None) -> Any:
    from modelgate.registry.store import ANY_CHAMPION

    if raw is None:
        return ANY_CHAMPION
    if raw.lower() in ("none", "null", "-"):
        return None
    try:
        expected = int(raw.lstrip("v"))
    except ValueError:
        expected = 0
    if expected < 1:
        raise InvalidInput(f"--expect-champion must be a version number (1 or more) or 'none', got {raw!r}")
    return expected


# ---------------------------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Create or upgrade the registry schema."""
    from modelgate.registry.connection import create_registry_engine, resolve_target
    from modelgate.registry.migrate import current_revision, upgrade

    target = resolve_target(_state.registry_url)
    engine = create_registry_engine(target.url)
    try:
        upgrade(engine, revision)
        out.print(f"registry schema at revision {current_revision(engine)} ({target.origin} database)")
    finally:
        engine.dispose()


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, or 'base'.")]) -> None:
    """Downgrade the registry schema (`base` drops every registry table)."""
    from modelgate.registry.connection import create_registry_engine, resolve_target
    from modelgate.registry.migrate import current_revision, downgrade

    engine = create_registry_engine(resolve_target(_state.registry_url).url)
    try:
        downgrade(engine, revision)
        out.print(f"registry schema at revision {current_revision(engine) or 'base'}")
    finally:
        engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this code needs."""
    from modelgate.registry.connection import create_registry_engine, resolve_target
    from modelgate.registry.migrate import current_revision, head_revision

    engine = create_registry_engine(resolve_target(_state.registry_url).url)
    try:
        out.print(f"database: {current_revision(engine) or 'base'}  code: {head_revision()}")
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------- reads


@app.command("models")
def models_cmd(as_json: JsonFlag = False) -> None:
    """List registered models with their champion."""
    found = _registry().list_models()
    if as_json:
        _print_json(found)
        return
    table = Table("model", "champion", "versions", "created", "description")
    for m in found:
        champion = f"v{m.champion_version}" if m.champion_version else "-"
        table.add_row(m.name, champion, str(m.version_count), _fmt(m.created_at), _fmt(m.description))
    out.print(table)


def _narrow(wide: bool) -> bool:
    return not wide and out.width < WIDE_TABLE_COLUMNS


def _block(head: str, lines: list[tuple[str, str]]) -> None:
    """One entry for a narrow terminal: a head line, then labelled lines wrapped under it (ids kept whole)."""
    import textwrap

    out.print(head, markup=False, highlight=False)
    width = max(out.width - 4, 40)
    for label, text in lines:
        if not text or text == "-":
            continue
        first = f"    {label:<7} "
        wrapped = textwrap.wrap(
            text, width=width, initial_indent=first, subsequent_indent=" " * len(first), break_long_words=False
        )
        out.print("\n".join(wrapped), markup=False, highlight=False, soft_wrap=True)


def _versions_table(versions: list[Any]) -> Table:
    table = Table("version", "status", "metrics", "window", "rows", "sha256", "source", "created")
    for v in versions:
        window = f"{_fmt(v.window_start)} → {_fmt(v.window_end)}" if v.window_start else "-"
        source = f"{v.source.dag_id}/{v.source.run_id}"[:48]
        table.add_row(
            f"v{v.version}",
            v.status.value,
            _fmt(v.metrics),
            window,
            _fmt(v.row_count),
            v.artifact_sha256[:12],
            source,
            _fmt(v.created_at),
        )
    return table


@app.command("versions")
def versions_cmd(
    name: str,
    status: Annotated[str | None, typer.Option(help="challenger, champion, archived or rejected.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE; repeat to require several.")] = None,
    window_from: Annotated[str | None, typer.Option(help="Training window ends after this ISO date.")] = None,
    window_to: Annotated[str | None, typer.Option(help="Training window starts before this ISO date.")] = None,
    as_json: JsonFlag = False,
    wide: WideFlag = False,
) -> None:
    """List a model's versions."""
    tags: dict[str, str] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--tag must be KEY=VALUE, got {item!r}")
        tags[key] = value
    found = _registry().list_versions(
        name, status=status, tags=tags, window_from=_parse_date(window_from), window_to=_parse_date(window_to)
    )
    if as_json:
        _print_json(found)
    elif not found:  # one line, not an empty table: the model exists, nothing matches
        filtered = status or tags or window_from or window_to
        out.print(f"{name} has no versions{' matching these filters' if filtered else ''}", markup=False)
    elif _narrow(wide):
        for v in found:
            window = f"{_fmt(v.window_start)} → {_fmt(v.window_end)}" if v.window_start else "no window"
            _block(
                f"v{v.version}  {v.status.value}  {window}  {_fmt(v.row_count)} rows  {_fmt(v.created_at)}",
                [
                    ("metrics", _fmt(v.metrics)),
                    ("run", " ".join(x for x in (v.source.dag_id, v.source.run_id) if x)),
                    ("sha256", f"{v.artifact_sha256[:16]} ({v.artifact_format})"),
                ],
            )
    else:
        out.print(_versions_table(found))


def _parse_date(raw: str | None) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidInput(f"not an ISO date: {raw!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _show_version(version: Any, as_json: bool) -> None:
    if as_json:
        _print_json(version)
        return
    table = Table("field", "value", show_header=False)
    for field in dataclasses.fields(version):
        table.add_row(field.name, _fmt(jsonable(getattr(version, field.name))))
    out.print(table)


@app.command("show")
def show_cmd(name: str, version: int, as_json: JsonFlag = False) -> None:
    """Everything recorded about one version."""
    _show_version(_registry().get_version(name, version), as_json)


@app.command("champion")
def champion_cmd(name: str, as_json: JsonFlag = False) -> None:
    """The current champion of a model."""
    champion = _registry().get_champion(name)
    if champion is None:
        if as_json:
            _print_json(None)
            return
        err.print(f"error: model {name!r} has no champion", markup=False, highlight=False)
        raise typer.Exit(1)
    _show_version(champion, as_json)


@app.command("compare")
def compare_cmd(
    name: str,
    versions: Annotated[list[int], typer.Argument(help="Two or more versions.")],
    as_json: JsonFlag = False,
) -> None:
    """Metrics, params and data windows of versions side by side."""
    comparison = _registry().compare(name, versions)
    if as_json:
        _print_json(comparison)
        return
    from rich.text import Text

    table = Table("", *[f"v{v}" for v in comparison.versions], caption="≠ marks the rows whose values differ")
    table.columns[0].no_wrap = True  # labels whole; the values wrap instead
    rows = {"status": comparison.statuses}
    for section, found in (("metric", comparison.metrics), ("param", comparison.params), ("data", comparison.windows)):
        rows.update({f"{section}: {key}": values for key, values in found.items()})
    for label, values in rows.items():
        differ = comparison.differs(list(values))
        table.add_row(
            Text(f"≠ {label}" if differ else f"  {label}", style="bold" if differ else ""), *[_fmt(v) for v in values]
        )
    out.print(table)


@app.command("history")
def history_cmd(
    name: str,
    limit: Annotated[int | None, typer.Option(min=1, max=1_000_000, help="Only the last N events.")] = None,
    as_json: JsonFlag = False,
    wide: WideFlag = False,
) -> None:
    """The audit log of a model: registrations, promotions, rejections, rollbacks, deployments."""
    events = _registry().history(name, limit=limit)
    if as_json:
        _print_json(events)
        return
    if _narrow(wide):
        for e in events:
            change = " → ".join(f"v{v}" for v in (e.from_version, e.to_version) if v)
            _block(
                f"#{e.id}  {_fmt(e.at)}  {e.kind.value}{_backfill_mark(e)}  {change}  by {e.actor}",
                [
                    ("as of", _fmt(e.as_of)),
                    ("run", " ".join(x for x in (e.run.dag_id, e.run.run_id) if x)),
                    ("reason", _fmt(e.reason)),
                ],
            )
        return
    table = Table("#", "at", "as of", "event", "from", "to", "actor", "reason", "run")
    for e in events:
        run = "/".join(x for x in (e.run.dag_id, e.run.run_id) if x) or "-"
        table.add_row(
            str(e.id),
            _fmt(e.at),
            _fmt(e.as_of),
            e.kind.value + _backfill_mark(e),
            _fmt(e.from_version and f"v{e.from_version}"),
            _fmt(e.to_version and f"v{e.to_version}"),
            e.actor,
            _fmt(e.reason),
            run[:60],
        )
    out.print(table)


def _backfill_mark(event: Any) -> str:
    """` (backfill)` on events a backfill run wrote: history rebuilt, never today's decisions."""
    verdict = event.verdict or {}
    backfill = verdict.get("run_type") == "backfill" or (event.run.run_id or "").startswith("backfill__")
    return " (backfill)" if backfill else ""


# ---------------------------------------------------------------------------------------------- writes


@app.command("register")
def register_cmd(
    name: str,
    artifact: Annotated[Path, typer.Option(help="A joblib file with a fitted estimator, trained anywhere.")],
    metrics: Annotated[str | None, typer.Option(help="JSON object of numbers, e.g. '{\"auc\": 0.81}'.")] = None,
    params: Annotated[str | None, typer.Option(help="JSON object of hyper-parameters.")] = None,
    tags: Annotated[str | None, typer.Option(help="JSON object of string tags.")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    actor: ActorOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a model file as a new challenger version (the same file twice gives the same version)."""
    from modelgate.registry.artifacts import default_artifact_store
    from modelgate.registry.entities import Source, VersionDraft
    from modelgate.registry.estimators import describe_estimator_file

    parsed_metrics = _parse_json_object(metrics, "--metrics", numbers=True)
    parsed_params = _parse_json_object(params, "--params")
    parsed_tags = {k: str(v) for k, v in _parse_json_object(tags, "--tags").items()}
    facts = describe_estimator_file(artifact)
    registry = _registry()
    stored = default_artifact_store().save_file(artifact, suffix=".joblib")
    existing = registry.find_by_source(name, Source.cli(f"sha256:{stored.sha256}"))
    if existing is not None:
        _same_registration(existing, parsed_metrics, parsed_params, parsed_tags, description)
    who = _actor(actor)
    version = registry.register(
        name,
        VersionDraft(
            artifact_uri=stored.uri,
            artifact_sha256=stored.sha256,
            artifact_size=stored.size,
            source=Source.cli(f"sha256:{stored.sha256}"),
            framework=facts.framework,
            library_versions=facts.library_versions,
            params=parsed_params or facts.params,
            metrics=parsed_metrics,
            tags={"task": facts.task, **parsed_tags},
            feature_schema=facts.feature_schema,
            created_by=who,
            description=description,
        ),
    )
    if as_json:
        _print_json(version)
    else:
        out.print(f"{name} v{version.version} ({version.status.value}) sha256 {version.artifact_sha256[:12]}")


def _same_registration(
    existing: Any, metrics: dict[str, Any], params: dict[str, Any], tags: dict[str, str], description: str | None
) -> None:
    """Registering a file again is idempotent only if it asks for nothing new: versions are immutable."""
    differs = [
        option
        for option, asked, stored in (
            ("--metrics", metrics, existing.metrics),
            ("--params", params, existing.params),
            ("--tags", tags, {k: v for k, v in existing.tags.items() if k in tags}),
        )
        if asked and asked != stored
    ]
    if description is not None and description != existing.description:
        differs.append("--description")
    if differs:
        raise InvalidInput(
            f"this file already is v{existing.version} of {existing.model!r} with other {', '.join(differs)}; "
            "versions are immutable: register a new file, or drop the options to get v"
            f"{existing.version} back"
        )


@app.command("promote")
def promote_cmd(
    name: str,
    version: int,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    expect_champion: Annotated[
        str | None,
        typer.Option(help="Fail unless the champion is still this version ('none' for no champion)."),
    ] = None,
    actor: ActorOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Make VERSION the champion, atomically (compare-and-swap with --expect-champion)."""
    registry = _registry()
    expected = _expected_now(registry, name, expect_champion)
    with _settle_lost_commit(registry, name, "promote", expected) as settled:
        settled.append(registry.promote(name, version, expected_champion=expected, actor=_actor(actor), reason=reason))
    _print_change(settled[0], as_json, "promoted")


def _expected_now(registry: Any, name: str, given: str | None) -> Any:
    """--expect-champion as given, else the champion read just now: every change from a terminal is a CAS,
    so repeating a command whose outcome was lost can never act twice."""
    if given is not None:
        return _parse_expected(given)
    current = registry.get_champion(name)
    return None if current is None else current.version


@contextmanager
def _settle_lost_commit(registry: Any, name: str, kind: str, expected: Any) -> Iterator[list[Any]]:
    """Around a champion change: when the COMMIT's reply is lost, read the audit log and say what happened
    (the change took effect, or it did not and repeating the command is safe) instead of guessing."""
    from modelgate.registry.errors import OutcomeUnknown
    from modelgate.registry.store import ChampionChange

    newest = registry.history(name, limit=1)
    before = newest[-1].id if newest else 0
    settled: list[Any] = []
    try:
        yield settled
    except OutcomeUnknown as exc:
        after = [e for e in registry.history(name, kinds=[kind], limit=5) if e.id > before]
        if after:
            event = after[-1]
            err.print(
                f"{name}: the registry's reply to the commit was lost, but the audit log shows the {kind} took "
                f"effect (event #{event.id}, v{event.to_version} is the champion)",
                markup=False,
            )
            settled.append(ChampionChange(name, int(event.to_version), event.from_version, True, event.id))
            return
        champion = registry.get_champion(name)
        now = f"v{champion.version}" if champion else "no champion"
        seen = "none" if expected is None else str(expected) if isinstance(expected, int) else "<version>"
        raise OutcomeUnknown(
            f"the registry's reply to the commit was lost and the audit log has no new {kind} event: nothing "
            f"changed ({now} is the champion); repeating the command with --expect-champion {seen} is safe"
        ) from exc


@app.command("rollback")
def rollback_cmd(
    name: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    to: Annotated[
        int | None, typer.Option("--to", help="Roll back to this version (default: the previous champion).")
    ] = None,
    expect_champion: Annotated[
        str | None,
        typer.Option(help="Fail unless the champion is still this version (default: the champion read now)."),
    ] = None,
    spec_path: SpecOpt = None,
    actor: ActorOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Return to the previous champion (or --to VERSION); where it is deployed, traffic follows."""
    registry = _registry()
    spec = _find_spec(name, spec_path)
    expected = _expected_now(registry, name, expect_champion)
    with _settle_lost_commit(registry, name, "rollback", expected) as settled:
        settled.append(registry.rollback(name, to, actor=_actor(actor), reason=reason, expected_champion=expected))
    change = settled[0]
    _print_change(change, as_json, "rolled back to")
    _follow_with_traffic(registry, name, change.version, _actor(actor), spec)


def _follow_with_traffic(registry: Any, name: str, version: int, actor: str, spec: Any = None) -> None:
    """Move NAME's traffic to `version` at once, where it is deployed (same code path as deploy)."""
    from modelgate.config import serving_root
    from modelgate.deploy.local import LocalTarget

    if spec is None or spec.deploy.target == "local":
        if LocalTarget(serving_root()).read_state(name) is None:
            return  # never deployed locally: the registry change is all there is
    elif spec.deploy.target != "vertex":
        return
    _deploy(registry, name, spec, version, [100], actor)
    err.print(f"{name}: {_where(spec)} traffic moved to v{version}")


def _where(spec: Any) -> str:
    return "Vertex AI" if spec is not None and spec.deploy.target == "vertex" else "local"


def _spec_file(name: str) -> Path | None:
    """<include>/models/<name>.yaml (or .yml), when there is one."""
    from modelgate.catalog import spec_file
    from modelgate.config import include_dir

    return spec_file(include_dir() / "models", name)


def _find_spec(name: str, path: Path | None) -> Any:
    """The model's spec: --spec, else <include>/models/<name>.yaml if there is one (None otherwise)."""
    from modelgate.catalog import load_spec

    if path is None:
        path = _spec_file(name)
        if path is None:
            return None
    if not path.is_file():
        raise InvalidInput(f"no spec file at {path}")
    spec = load_spec(path)
    if spec.name != name:
        raise InvalidInput(f"{path} is the spec of {spec.name!r}, not {name!r}")
    return spec


def _deploy(registry: Any, name: str, spec: Any, version: int, steps: list[int], actor: str) -> Any:
    """Deploy through the model's target, as the deploy DAG does, probing each step with the version's own
    reference sample (sha-checked). Only the local target may go without one."""
    from modelgate.config import serving_root
    from modelgate.pipeline import Services, deploy_to_target
    from modelgate.registry.artifacts import default_artifact_store
    from modelgate.report_store import ReportStore

    entry = registry.get_version(name, version)
    artifacts = default_artifact_store()
    probe_rows = None
    if entry.reference_uri and entry.reference_sha256:
        probe_rows = artifacts.load(entry.reference_uri, entry.reference_sha256)
    elif spec is not None and spec.deploy.target == "vertex":
        raise InvalidInput(
            f"{name} v{version} has no reference sample to probe the deployment with: deploy it from the DAG"
        )
    services = Services(registry=registry, data_url=None, artifacts=artifacts, reports=ReportStore.from_env())
    return deploy_to_target(
        spec,
        services,
        model=name,
        version=version,
        steps=steps,
        probe_rows=probe_rows,
        serving_root=serving_root(),
        actor=actor,
    )


@app.command("serve")
def serve_cmd(
    name: str,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    max_body_mb: Annotated[
        float, typer.Option(min=0.001, max=1024, help="Refuse request bodies over this many MiB (413).")
    ] = 4.0,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Require `Authorization: Bearer <token>` with the token in this file (or $MODELGATE_SERVE_TOKEN)."
        ),
    ] = None,
    log_predictions: Annotated[
        bool,
        typer.Option(
            "--log-predictions/--no-log-predictions",
            help="Append every prediction (key, version, score) to the registry's prediction log.",
        ),
    ] = True,
) -> None:
    """Serve JSON predictions from the locally deployed version(s) of NAME (reloads on every switch)."""
    import os

    from modelgate.config import serving_root
    from modelgate.deploy.serve import TOKEN_ENV, serve

    token = os.environ.get(TOKEN_ENV) or None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"--token-file {token_file}: cannot be read ({exc})") from None
        if not token:
            raise InvalidInput(f"--token-file {token_file} is empty")
    prediction_log = None
    if log_predictions:
        from modelgate.deploy.serve import PredictionLog
        from modelgate.registry.experiments import ExperimentStore

        prediction_log = PredictionLog(lambda: ExperimentStore(_registry()))  # connects on the first flush
    serve(
        name,
        host=host,
        port=port,
        root=serving_root(),
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        token=token,
        prediction_log=prediction_log,
    )


@ab_app.command("start")
def ab_start_cmd(
    name: str,
    challenger: Annotated[
        int,
        typer.Option(
            "--challenger", help="The challenger version (vN or N).", parser=lambda v: int(str(v).lstrip("v"))
        ),
    ],
    split: Annotated[int, typer.Option("--split", min=1, max=99, help="Percent of keys the challenger answers.")] = 10,
    spec_path: SpecOpt = None,
    actor: ActorOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Start champion vs CHALLENGER on --split % of keys (sticky); modelgate_ab__NAME analyses it each interval."""
    from modelgate import ab
    from modelgate.config import serving_root

    spec = _find_spec(name, spec_path)
    if spec is None:
        raise InvalidInput(f"no spec for {name!r}: give --spec FILE or put it in include/models/{name}.yaml")
    registry = _registry()
    try:
        experiment = ab.start(
            registry, spec, challenger=challenger, split=split, actor=_actor(actor), serving_root=serving_root()
        )
    finally:
        registry.close()
    if as_json:
        _print_json(experiment)
        return
    out.print(f"started {experiment.describe()}", markup=False, highlight=False)


@ab_app.command("stop")
def ab_stop_cmd(
    name: str,
    reason: Annotated[str, typer.Option("--reason", help="Why it stops (kept in the audit log).")] = "stopped by hand",
    actor: ActorOpt = None,
) -> None:
    """Stop NAME's running experiment: the champion answers every key again."""
    from modelgate import ab
    from modelgate.config import serving_root

    registry = _registry()
    try:
        ended = ab.stop(registry, name, reason=reason, actor=_actor(actor), serving_root=serving_root())
    finally:
        registry.close()
    out.print(f"stopped experiment #{ended.id} of {name}: v{ended.champion_version} serves every key", markup=False)


@ab_app.command("status")
def ab_status_cmd(name: str, as_json: JsonFlag = False) -> None:
    """NAME's experiments, and the looks of the newest one."""
    from modelgate.registry.experiments import ExperimentStore

    registry = _registry()
    try:
        store = ExperimentStore(registry)
        experiments = store.of_model(name)
        looks = store.looks(experiments[-1].id) if experiments else []
    finally:
        registry.close()
    if as_json:
        _print_json({"experiments": experiments, "looks": looks})
        return
    if not experiments:
        out.print(f"{name} has run no experiment: modelgate ab start {name} --challenger vN", markup=False)
        return
    for experiment in experiments:
        end = f", {experiment.end_reason}" if experiment.end_reason else ""
        out.print(f"{experiment.describe()}{end}", markup=False, highlight=False)
    table = Table("interval end", "labelled", "difference", "interval", "p", "decision")
    for look in looks:
        v = look.look
        labelled = f"{v['champion']['labelled']} / {v['challenger']['labelled']}"
        interval = f"{_fmt(v.get('lower'))} .. {_fmt(v.get('upper'))}"
        table.add_row(_fmt(look.interval_end), labelled, _fmt(v.get("estimate")), interval, _fmt(v["p_value"]),
                      f"{look.action}: {look.reason}")  # fmt: skip
    if looks:
        out.print(table)


@ab_app.command("analyse")
def ab_analyse_cmd(
    name: str,
    at: Annotated[str | None, typer.Option("--at", help="Look as of this date/time (default: now).")] = None,
    act: Annotated[bool, typer.Option("--act/--dry-run", help="Promote or stop as the look decides.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """One look at NAME's experiment now (or --at), as the DAG takes it; acts only with --act."""
    from modelgate import ab
    from modelgate.config import serving_root

    registry = _registry()
    try:
        analysis = ab.analyse(registry, name, interval_end=_moment(at), act=act, serving_root=serving_root())
    finally:
        registry.close()
    if analysis is None:
        raise InvalidInput(f"{name} ran no experiment at {_fmt(_moment(at))}")
    if as_json:
        _print_json({"summary": analysis.summary(), "decision": analysis.decision, "acted": analysis.acted})
        return
    out.print(f"{analysis.decision.action.value}: {analysis.decision.reason}", markup=False, highlight=False)
    if analysis.acted:
        out.print(f"done: {analysis.acted}", markup=False)


@outcomes_app.command("load")
def outcomes_load_cmd(
    name: str,
    path: Annotated[Path, typer.Argument(help="A CSV or Parquet file of key, outcome, time.")],
    key: Annotated[str, typer.Option("--key-column")] = "key",
    outcome: Annotated[str, typer.Option("--outcome-column")] = "outcome",
    time: Annotated[str, typer.Option("--time-column", help="When the outcome was observed.")] = "time",
) -> None:
    """Load outcomes for NAME's predictions, all or nothing (a key's outcome is never changed)."""
    from modelgate import ab
    from modelgate.registry.experiments import ExperimentStore

    rows = ab.read_outcomes(path, key=key, outcome=outcome, time=time)
    registry = _registry()
    try:
        loaded = ExperimentStore(registry).load_outcomes(name, rows, source=f"file:{path.name}")
    finally:
        registry.close()
    out.print(f"{loaded.added} outcomes loaded for {name}, {loaded.known} already known", markup=False)


@predictions_app.command("prune")
def predictions_prune_cmd(
    name: str,
    older_than: Annotated[
        str | None, typer.Option(help="Delete what was logged longer ago than this (90d, 12h); default: the spec's.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    spec_path: SpecOpt = None,
) -> None:
    """Delete NAME's logged predictions older than --older-than (or the spec's deploy.keep_predictions), except
    a running experiment's, and the outcomes no logged prediction names any more."""
    import datetime as dt

    from modelgate.registry.experiments import ExperimentStore
    from modelgate.spec import parse_duration

    if older_than is None:
        spec = _find_spec(name, spec_path)
        if spec is None or spec.deploy.keep_predictions is None:
            raise InvalidInput(f"{name}: give --older-than (e.g. 90d): the spec sets no deploy.keep_predictions")
        older_than = spec.deploy.keep_predictions
    try:
        keep = parse_duration(older_than)
    except ValueError as exc:
        raise InvalidInput(f"--older-than: {exc}") from None
    before = dt.datetime.now(dt.UTC) - keep
    registry = _registry()
    try:
        pruned = ExperimentStore(registry).prune(name, before=before, dry_run=dry_run)
    finally:
        registry.close()
    verb = "would delete" if dry_run else "deleted"
    out.print(
        f"{name}: {verb} {pruned.predictions} logged predictions and {pruned.outcomes} outcomes from before "
        f"{before:%Y-%m-%d %H:%M} UTC; {pruned.kept_for_experiment} kept for a running experiment",
        markup=False,
    )


@app.command("deploy")
def deploy_cmd(
    name: str,
    version: Annotated[int | None, typer.Option(help="Version to deploy (default: the champion).")] = None,
    steps: Annotated[
        str | None, typer.Option(help="Canary steps, percent of traffic, comma-separated (default: the spec's).")
    ] = None,
    spec_path: SpecOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Deploy a version to the spec's target (local or Vertex AI) by canary steps; traffic goes back on failure."""
    registry = _registry()
    chosen = _resolve_version(registry, name, version)
    spec = _find_spec(name, spec_path)
    if spec is not None and spec.deploy.target == "none":
        raise InvalidInput(f"{name}: the spec's deploy.target is 'none'")
    percents = _parse_steps(steps) if steps else (list(spec.deploy.canary_steps) if spec else [10, 50, 100])
    result = _deploy(registry, name, spec, chosen.version, percents, _actor(actor))
    where = "Vertex AI" if spec is not None and spec.deploy.target == "vertex" else "the local target"
    if result is None:
        out.print(f"{name}: v{chosen.version} already serves all traffic on {where}")
    else:
        out.print(f"{name}: v{chosen.version} live on {where} {result.traffic}")


def _resolve_version(registry: Any, name: str, version: int | None) -> Any:
    if version is not None:
        return registry.get_version(name, version)
    champion = registry.get_champion(name)
    if champion is None:
        raise InvalidInput(f"model {name!r} has no champion: name a version with --version")
    return champion


def _parse_steps(raw: str) -> list[int]:
    try:
        steps = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise InvalidInput(f"--steps must be comma-separated integers, got {raw!r}") from exc
    if not steps or steps[-1] != 100 or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise InvalidInput("--steps must increase and end at 100")
    return steps


def _print_change(change: Any, as_json: bool, verb: str) -> None:
    if as_json:
        _print_json(change)
    elif change.changed:
        previous = f"v{change.previous_version}" if change.previous_version else "no champion"
        out.print(f"{change.model}: {verb} v{change.version} (was {previous})")
    else:
        out.print(f"{change.model}: v{change.version} already is the champion; nothing changed")


# ---------------------------------------------------------------------------------------------- running Airflow


def _moment(raw: str | None) -> dt.datetime:
    """An ISO date or date-time (UTC unless it says otherwise); None is now."""
    if raw is None:
        return dt.datetime.now(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"--until {raw!r} is not an ISO date or date-time (2026-05-01, 2026-05-01T12:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@app.command("backtest")
def backtest_cmd(
    name: Annotated[str, typer.Argument(help="The model (its spec: include/models/NAME.yaml, or --spec).")],
    spec_path: SpecOpt = None,
    intervals: Annotated[
        int | None, typer.Option("--intervals", min=6, help="Replay only the last N intervals (default: all).")
    ] = None,
    policies: Annotated[
        str | None,
        typer.Option(
            "--policies",
            help="Comma-separated: never, every, label_rule, spec, grid, or single grid names "
            "(default: all; the spec's own is always replayed).",
        ),
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="History before this date/time (default: now).")] = None,
    data_url: Annotated[
        str | None,
        typer.Option("--data-url", help="A Postgres source's database (default: the registry's, for its own conn)."),
    ] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", min=1, max=64, help="Policies replayed at once.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay the model's own history under candidate policies: tuned on its first two thirds, reported on the
    last third, with the spec change the tuning part recommends."""
    from rich.progress import Progress

    from modelgate import backtest

    spec = _find_spec(name, spec_path)
    if spec is None:
        raise InvalidInput(f"no spec for {name!r}: give --spec FILE or put it in include/models/{name}.yaml")
    text = Path(spec_path or _spec_file(name) or "").read_text(encoding="utf-8")
    chosen = [p.strip() for p in policies.split(",") if p.strip()] if policies else None
    count = len(backtest.candidates(spec, dt.timedelta(days=1), only=chosen))  # unknown names fail here, early
    frame = backtest.history(spec, url=_data_url(spec, data_url), until=_moment(until))
    with Progress(console=err, transient=True, disable=as_json or not err.is_terminal) as bar:
        task = bar.add_task(f"backtest {name}", total=count + 1)
        result = backtest.run(
            spec,
            frame,
            spec_text=text,
            policies=chosen,
            intervals=intervals,
            jobs=jobs,
            progress=lambda _n: bar.advance(task),
        )
    if as_json:
        _print_json(backtest.as_json(result))
        return
    _print_backtest(result)


def _data_url(spec: Any, given: str | None) -> str | None:
    """Where a Postgres source's rows are: --data-url, the registry's database for the registry's own
    connection, else $AIRFLOW_CONN_<CONN_ID> when it is a URL."""
    import os

    from modelgate.config import REGISTRY_CONN_ID
    from modelgate.registry.connection import normalize_url, resolve_target
    from modelgate.spec import PostgresSource

    if not isinstance(spec.source, PostgresSource):
        return None
    if given:
        return normalize_url(given)
    if spec.source.conn_id == REGISTRY_CONN_ID:
        return resolve_target(_state.registry_url).url
    env = os.environ.get(f"AIRFLOW_CONN_{spec.source.conn_id.upper()}", "")
    if "://" in env:
        return normalize_url(env)
    raise InvalidInput(
        f"{spec.name} reads Postgres connection {spec.source.conn_id!r}: give --data-url postgresql://… "
        f"(or set AIRFLOW_CONN_{spec.source.conn_id.upper()} to its URL)"
    )


def _print_backtest(result: Any) -> None:
    metric = result.metric
    out.print(
        f"[bold]{result.model}[/]: {result.intervals} intervals from {result.first:%Y-%m-%d}; tuned on those "
        f"ending by {result.split:%Y-%m-%d}, reported on the {_held(result)} after (to {result.last:%Y-%m-%d})"
    )
    from rich import box

    table = Table(title=f"the held-out last third ({metric} pooled over scored rows)", box=box.SIMPLE_HEAD)
    table.add_column("policy", no_wrap=True)
    for column in (metric, "accuracy", "retrains", "promoted", "alarms/50", "fit s", f"tuning {metric}"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in result.results:
        held, tune = row.held_out, row.tune
        mark = " *" if row.candidate.name == result.recommendation.name else ""
        table.add_row(
            row.candidate.name + mark,
            _fmt4(held.primary),
            _fmt4(held.accuracy),
            str(held.retrains),
            str(held.promotions),
            f"{held.alarms_per_50:g}",
            f"{held.train_seconds:.1f}",
            _fmt4(tune.primary),
        )
    Console(soft_wrap=True, width=max(out.width, 132)).print(table)  # a pipe is 80 wide: numbers must not be cut
    out.print(f"recommended (*): [bold]{result.recommendation.name}[/] — {result.recommendation.why}")
    if result.diff:
        out.print(result.diff, markup=False, highlight=False)
    else:
        out.print("no spec change")


def _held(result: Any) -> str:
    count = result.results[0].held_out.intervals if result.results else 0
    return f"{count} interval{'s' if count != 1 else ''}"


def _fmt4(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4f}"


@app.command("example-data")
def example_data_cmd(
    name: Annotated[str, typer.Argument(help="The example (only `churn` has a generator).")] = "churn",
    until: Annotated[
        str | None, typer.Option("--until", help="Write every row before this date/time (default: now, UTC).")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=3650, help="How far back before --until.")] = 84,
    drift_weeks_ago: Annotated[
        int,
        typer.Option("--drift-weeks-ago", min=0, max=520, help="Drift starts this many weeks before --until."),
    ] = 2,
    no_drift: Annotated[bool, typer.Option("--no-drift", help="A stationary stream.")] = False,
) -> None:
    """Load the example's generated rows into its table (idempotent; the drift start is kept from the first load)."""
    from modelgate.datasets.churn import TABLE, seed_until
    from modelgate.registry.connection import resolve_target

    if name != "churn":
        raise InvalidInput(f"no generator for {name!r}: only the churn example has one")
    target = resolve_target(_state.registry_url)
    if target.embedded:
        from modelgate.registry.connection import create_registry_engine
        from modelgate.registry.migrate import upgrade

        engine = create_registry_engine(target.url, pool_size=1)
        upgrade(engine)
        engine.dispose()
    result = seed_until(
        target.url, _moment(until), history_days=days, drift_weeks_ago=None if no_drift else drift_weeks_ago
    )
    drift = f"drift from {result.drift_start}" if result.drift_start else "no drift"
    out.print(
        f"{TABLE}: {result.inserted} new rows from {result.first_day} until {result.until:%Y-%m-%d %H:%M} UTC "
        f"({result.total_rows} in all; {drift}; {target.origin} database)"
    )


@dags_app.command("shard")
def dags_shard_cmd(
    count: Annotated[int, typer.Argument(help="How many DAG files share the models (1: modelgate_dags.py alone).")],
    dags_dir: Annotated[
        Path | None, typer.Option("--dags-dir", help="The DAG folder (default: this checkout's dags/).")
    ] = None,
) -> None:
    """Spread the models over COUNT DAG files, each parsed on its own: copies of modelgate_dags.py."""
    from modelgate.catalog import lay_out_shards
    from modelgate.config import project_dir

    folder = dags_dir if dags_dir is not None else project_dir() / "dags"
    try:
        changed = lay_out_shards(folder, count)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    for line in changed:
        out.print(line)
    out.print(f"{folder}: {count} DAG file{'s' if count != 1 else ''} share the models ({len(changed)} changed)")


@app.command(
    "airflow-cli",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
)
def airflow_cli_cmd(ctx: typer.Context) -> None:
    """Run the Airflow CLI on the stack `modelgate airflow` prepared here (its metadata database, DAG folder,
    secrets): `modelgate airflow-cli backfill create --dag-id … --from-date … --to-date …`."""
    import subprocess

    from modelgate.config import stack_airflow_home
    from modelgate.stack import airflow_bin, cli_env

    try:
        env = cli_env(stack_airflow_home())
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not ctx.args:
        raise InvalidInput("name the Airflow command to run, e.g. `modelgate airflow-cli dags list`")
    code = subprocess.run([airflow_bin(), *ctx.args], env=env, check=False).returncode
    raise typer.Exit(code)


@app.command("airflow")
def airflow_cmd(
    executor: Annotated[str, typer.Option("--executor", help="local or celery (needs Redis).")] = "local",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The UI and API port.")] = 8080,
    workers: Annotated[int, typer.Option("--workers", min=1, max=16, help="Celery workers.")] = 2,
    broker_url: Annotated[str, typer.Option("--broker-url", help="Celery broker.")] = "redis://127.0.0.1:6379/0",
    example: Annotated[bool, typer.Option("--example/--no-example", help="Seed, keep the churn example live.")] = True,
    log_port: Annotated[
        int, typer.Option("--log-port", min=1, max=65534, help="The task log server's port (the triggerer's: +1).")
    ] = 8793,
) -> None:
    """Run Airflow with modelgate's DAGs on PostgreSQL (the embedded server unless configured) until Ctrl-C,
    which stops every component and the embedded server."""
    import os
    import signal
    import time

    from modelgate.config import modelgate_home, project_root, stack_airflow_home
    from modelgate.registry.connection import resolve_target
    from modelgate.stack import PortInUse, Stack, StackConfig, prepare, redis_answers

    if executor not in ("local", "celery"):
        raise InvalidInput(f"--executor must be local or celery, got {executor!r}")
    root = project_root()
    if root is None:
        raise InvalidInput("modelgate airflow runs from a modelgate checkout (it needs dags/ and include/)")
    if executor == "celery" and not redis_answers(broker_url):
        raise InvalidInput(f"the Celery broker {broker_url} does not answer: start Redis or pass --broker-url")
    target = resolve_target(_state.registry_url)
    metadata = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if metadata is None:
        import sqlalchemy as sa

        metadata = sa.engine.make_url(target.url).set(database="airflow").render_as_string(hide_password=False)
    elif metadata.startswith("sqlite"):
        raise InvalidInput(
            "Airflow on SQLite is not a real Airflow (its scheduler dies on 'database is locked'): "
            "give AIRFLOW__DATABASE__SQL_ALCHEMY_CONN a PostgreSQL URL, or leave it unset"
        )
    home = modelgate_home()
    extra = {"MODELGATE_EXAMPLE_DATA": "churn"} if example else {}
    config = StackConfig(
        airflow_home=stack_airflow_home(),
        metadata_url=metadata,
        registry_url=target.url,
        modelgate_home=home,
        repo_root=root,
        executor="celery" if executor == "celery" else "local",
        celery_workers=workers,
        broker_url=broker_url,
        port=port,
        log_server_port=log_port,
        trigger_log_server_port=log_port + 1,
        extra_env=extra,
    )
    started = time.monotonic()
    out.print(f"preparing: Airflow metadata and registry on the {target.origin} PostgreSQL, migrations …")
    password = prepare(config)
    if example:
        from modelgate.datasets.churn import seed_until

        seeded = seed_until(target.url, dt.datetime.now(dt.UTC))
        out.print(f"example: churn_events has {seeded.total_rows} rows up to now (drift from {seeded.drift_start})")
    stack = Stack(config)
    try:
        stack.check_ports()  # before anything is seeded or started
    except PortInUse as exc:
        raise InvalidInput(str(exc)) from None
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        stack.start()
        out.print(
            f"starting {', '.join(config.components())} ({config.executor} executor, {config.parallelism} task slots) …"
        )
        stack.wait_ready()
        out.print(
            f"\nAirflow is up in {time.monotonic() - started:.0f} s: {config.base_url}  "
            f"login {config.username} / {password}"
        )
        out.print(f"logs: {config.log_dir}   stop: Ctrl-C")
        while not stopping:
            dead = stack.dead()
            if dead:
                raise InvalidInput(f"{', '.join(dead)} exited:\n{stack.tail(dead[0])}")
            time.sleep(2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave components running
        out.print("stopping Airflow …")
        stack.stop()
        if target.embedded:
            from modelgate.registry.embedded import stop_embedded

            stop_embedded()
            out.print("stopped the embedded PostgreSQL (its data stays: `make airflow` starts it again)")


@app.command("stop")
def stop_cmd() -> None:
    """Stop what modelgate runs from this home: a stack `modelgate airflow` left running, and the embedded
    PostgreSQL (`make demo` and the CLI start it and leave it running). Data stays."""
    from modelgate.config import stack_airflow_home
    from modelgate.registry.embedded import stop_embedded
    from modelgate.stack import stop_recorded

    pids = stop_recorded(stack_airflow_home())
    out.print(f"stopped {len(pids)} Airflow component{'s' if len(pids) != 1 else ''}" if pids else "no stack running")
    out.print("stopped the embedded PostgreSQL" if stop_embedded() else "the embedded PostgreSQL is not running")


def main() -> None:
    """Console-script entry point: domain errors become one line on stderr and exit code 1.

    Typer's standalone mode handles usage errors itself (exit 2, with the usage line).
    """
    from modelgate.backtest import BacktestError
    from modelgate.data import DataError
    from modelgate.deploy.controller import DeployError
    from modelgate.fileio import WriteFailed
    from modelgate.spec import InvalidSpec

    try:
        app()
    except (RegistryError, DeployError, InvalidSpec, WriteFailed, BacktestError, DataError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
