"""`modelgate backtest`: a model's own history replayed under candidate policies, to choose how it retrains.

Each candidate replays every interval of the history with the loop's own functions (`modelgate.replay`):
never retrain, retrain every interval, the spec's policy, a naive label rule, and the spec's policy with one
knob changed at a time (window length and growth, decay tolerance, drift persistence, a staleness bound,
the calibration check, decay watched on accuracy too).
The choice is made on the first two thirds of the intervals only; the last third is reported, never looked
at by the choice: a replay is point in time, so what happens there cannot leak into the earlier scores.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelgate.data import Interval
from modelgate.spec import ModelSpec, Task

if TYPE_CHECKING:
    import pandas as pd

    from modelgate.replay import Policy, ReplayResult

TUNE_FRACTION = 2 / 3  # the choice sees the first two thirds of the intervals
MIN_INTERVALS = 6  # fewer: two parts too short to tell policies apart
FEW_INTERVALS = 12  # fewer tuning intervals than this: the recommendation says its evidence is weak
MARGIN = 0.002  # a change must beat the spec's own policy by more than this on the tuning part
RETRAIN_BUDGET = 1 / 3  # of retrain-every-interval's retrains, on the tuning part
BASELINES = ("never", "every", "label_rule")


class BacktestError(ValueError):
    """The history can't be backtested as asked (too short, wrong task, unknown policy)."""


@dataclass(frozen=True)
class Candidate:
    """One policy to replay: a baseline, or the spec's policy with `changes` (dotted spec fields) applied."""

    name: str
    kind: Policy = "modelgate"
    changes: tuple[tuple[str, Any], ...] = ()

    def spec_for(self, spec: ModelSpec) -> ModelSpec:
        if not self.changes:
            return spec
        raw = spec.model_dump(by_alias=True, mode="json")
        for dotted, value in self.changes:
            _parent(raw, dotted)[dotted.rsplit(".", 1)[-1]] = value
        return ModelSpec.model_validate(raw)

    @property
    def adjustable(self) -> bool:
        """Whether a spec can say it (the baselines are yardsticks, not settings)."""
        return self.kind == "modelgate"


@dataclass(frozen=True)
class Score:
    """One candidate over one part of the history."""

    intervals: int
    primary: float  # the spec's primary metric, pooled over every scored row of the part
    accuracy: float
    retrains: int
    promotions: int
    alarms_per_50: float
    train_seconds: float


@dataclass(frozen=True)
class Point:
    """One interval under one candidate: what the report plots."""

    end: dt.datetime
    rows: int
    primary: float  # the primary metric on this interval's rows alone (NaN: nothing scored, one class)
    trained: bool
    promoted: bool


@dataclass(frozen=True)
class CandidateResult:
    candidate: Candidate
    tune: Score
    held_out: Score
    series: tuple[Point, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    name: str
    why: str


@dataclass(frozen=True)
class BacktestResult:
    model: str
    metric: str
    higher_is_better: bool
    first: dt.datetime  # the first interval's start
    split: dt.datetime  # tuning intervals end by here; reported ones start here
    last: dt.datetime  # the last interval's end
    intervals: int
    results: tuple[CandidateResult, ...]
    recommendation: Recommendation
    diff: str  # the spec change, as a unified diff of the spec's YAML ('' for none)

    def result(self, name: str) -> CandidateResult:
        return next(r for r in self.results if r.candidate.name == name)


# --------------------------------------------------------------------------------------------- the grid


def candidates(spec: ModelSpec, span: dt.timedelta, *, only: Iterable[str] | None = None) -> list[Candidate]:
    """The baselines, the spec's policy, and one knob of it changed at a time, around the spec's own values."""
    from modelgate.loop import decays_on_ranks

    days = spec.window_days
    retrain = spec.retrain
    grown = spec.max_window_days if spec.max_window_days is not None else 4 * days
    interval_days = max(span.total_seconds() / 86400, 1 / 24)
    tolerance = retrain.decay_tolerance
    out = [Candidate(name, name) for name in BASELINES]  # type: ignore[arg-type]
    out.append(Candidate("spec"))
    shorter = max(1, round(days / 2))
    if shorter < days and shorter >= interval_days:
        out.append(Candidate(f"window_days={shorter}", changes=(("window_days", shorter), *_cap(spec, shorter))))
    out.append(Candidate(f"window_days={2 * days}", changes=(("window_days", 2 * days), *_cap(spec, 2 * days))))
    if grown > days:
        out.append(Candidate(f"max_window_days={days}", changes=(("max_window_days", days),)))
    else:
        out.append(Candidate(f"max_window_days={4 * days}", changes=(("max_window_days", 4 * days),)))
    for value in [tolerance / 2, min(2 * tolerance, 0.5), None] if tolerance else [0.05]:
        rounded = None if value is None else round(value, 4)
        label = "off" if rounded is None else rounded
        out.append(Candidate(f"decay_tolerance={label}", changes=(("retrain.decay_tolerance", rounded),)))
    k, n = (1, 1) if retrain.drift_runs_k > 1 or retrain.drift_runs_n > 1 else (2, 3)
    out.append(Candidate(f"drift_runs={k}/{n}", changes=(("retrain.drift_runs_k", k), ("retrain.drift_runs_n", n))))
    stale = None if retrain.max_age_days is not None else round(4 * interval_days, 2)
    out.append(Candidate(f"max_age_days={stale or 'off'}", changes=(("retrain.max_age_days", stale),)))
    if tolerance and spec.task is Task.BINARY:  # the calibration check reads the decay tolerance
        calibrated = not retrain.calibration_check
        label = "on" if calibrated else "off"
        out.append(Candidate(f"calibration_check={label}", changes=(("retrain.calibration_check", calibrated),)))
    if tolerance and decays_on_ranks(spec):  # its decisions, not only its ranks
        watched = not retrain.decay_on_accuracy
        label = "on" if watched else "off"
        out.append(Candidate(f"decay_on_accuracy={label}", changes=(("retrain.decay_on_accuracy", watched),)))
    out = [dataclasses.replace(c, changes=_effective(spec, c.changes)) for c in out]
    if only is not None:
        wanted = set(only)
        unknown = wanted - {c.name for c in out} - {"grid"}
        if unknown:
            names = ", ".join(c.name for c in out)
            raise BacktestError(f"unknown policies {', '.join(sorted(unknown))}: choose from {names}, or grid")
        out = [c for c in out if c.name in wanted or ("grid" in wanted and c.changes)]
    return out


def _effective(spec: ModelSpec, changes: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    """The changes that change something (a grid point may keep one of its fields as the spec has it)."""
    raw = spec.model_dump(mode="json")
    return tuple((field, value) for field, value in changes if _parent(raw, field)[field.rsplit(".", 1)[-1]] != value)


def _parent(raw: dict[str, Any], dotted: str, *, create: bool = False) -> dict[str, Any]:
    """The mapping that holds the dotted field `a.b.c` (`raw["a"]["b"]`); missing levels made when `create`."""
    node = raw
    for key in dotted.split(".")[:-1]:
        node = node.setdefault(key, {}) if create else node[key]
    return node


def _cap(spec: ModelSpec, days: int) -> tuple[tuple[str, Any], ...]:
    """A spec cap below the new window would make it invalid: move the cap with the window."""
    if spec.max_window_days is not None and spec.max_window_days < days:
        return (("max_window_days", days),)
    return ()


def combined(spec_score: Score, results: Sequence[CandidateResult], higher: bool) -> Candidate | None:
    """Every single-knob change that beat the spec's policy on the tuning part, together (one per knob)."""
    best: dict[str, CandidateResult] = {}
    for result in results:
        if not result.candidate.changes or not _better(result.tune.primary, spec_score.primary, higher, MARGIN):
            continue
        knob = result.candidate.changes[0][0]
        if knob not in best or _better(result.tune.primary, best[knob].tune.primary, higher, 0):
            best[knob] = result
    if len(best) < 2:
        return None
    changes = tuple(change for r in best.values() for change in r.candidate.changes)
    return Candidate(" + ".join(r.candidate.name for r in best.values()), changes=changes)


# --------------------------------------------------------------------------------------------- the choice


def _better(a: float, b: float, higher: bool, margin: float) -> bool:
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a - b > margin if higher else b - a > margin


def recommend(results: Sequence[CandidateResult], higher: bool = True) -> Recommendation:
    """The spec's policy, unless a change beats it on the tuning part by more than MARGIN, steadily, within
    the retrain budget (a third of retrain-every's retrains); ties go to fewer retrains. A spec's policy over
    the budget is held to the same standard from the other side: it stays only if it beats the best policy
    within the budget that way. Uses tuning scores only."""
    by_name = {r.candidate.name: r for r in results}
    spec = by_name.get("spec")
    if spec is None:
        raise BacktestError("the spec's own policy must be among the candidates to recommend a change")
    every = by_name.get("every")
    budget = math.inf if every is None else max(1.0, RETRAIN_BUDGET * every.tune.retrains)
    adjustable = [r for r in results if r.candidate.adjustable]
    within = [r for r in adjustable if r.tune.retrains <= budget]
    pool = within or adjustable
    best = spec
    for result in sorted(pool, key=lambda r: (r.tune.retrains, r.candidate.name)):
        if result is spec or not _steadily_better(result, spec, higher):
            continue
        if _better(result.tune.primary, best.tune.primary, higher, MARGIN if best is spec else 0):
            best = result
    over = spec.tune.retrains > budget and best is spec and bool(within)
    if over:
        # the spec's policy spends more than the budget: it stays only by beating the best policy within the
        # budget as a change must beat it (by more than MARGIN, steadily across the intervals)
        cheaper = max(within, key=lambda r: r.tune.primary if higher else -r.tune.primary)
        if not (
            _better(spec.tune.primary, cheaper.tune.primary, higher, MARGIN) and _steadily_better(spec, cheaper, higher)
        ):
            best = cheaper
    if best is spec and over:
        why = (
            f"the spec's policy takes {spec.tune.retrains} retrains on the tuning part, over the budget of "
            f"{budget:.0f}, but beat every policy within it by more than {MARGIN}, steadily "
            f"({spec.tune.primary:.4f} vs {cheaper.tune.primary:.4f})"
        )
    elif best is spec:
        why = (
            f"no change beat the spec's policy ({spec.tune.primary:.4f} on the tuning part) by more than {MARGIN}, "
            "steadily across its intervals, within the retrain budget"
        )
    else:
        why = (
            f"{best.tune.primary:.4f} vs the spec's {spec.tune.primary:.4f} on the tuning part, "
            f"{best.tune.retrains} retrains vs {spec.tune.retrains}"
        )
        if over:
            why += f"; the spec's policy is over the budget of {budget:.0f} retrains and did not beat it steadily"
    if not within:
        why += f"; no candidate stayed within {RETRAIN_BUDGET:.0%} of retrain-every's retrains"
    if spec.tune.intervals < FEW_INTERVALS:
        why += f"; only {spec.tune.intervals} tuning intervals: weak evidence, backtest a longer history"
    return Recommendation(best.candidate.name, why)


STEADY_LEVEL = 0.1  # one-sided: a change's gain over the intervals must not be chance at this level
STEADY_SAMPLES = 2000


def _steadily_better(result: CandidateResult, spec: CandidateResult, higher: bool) -> bool:
    """Whether the candidate's gain over the spec's policy holds across the tuning intervals, not in a lucky
    few: the lower bound of a bootstrap over intervals of the mean per-interval difference is above zero.
    A short history makes that bound wide, so it keeps the spec's policy rather than recommend noise.
    Results without per-interval points (built by hand) are not tested."""
    import numpy as np

    count = min(result.tune.intervals, spec.tune.intervals)
    if not result.series or not spec.series or count == 0:
        return True
    mine = np.array([p.primary for p in result.series[:count]], dtype=float)
    theirs = np.array([p.primary for p in spec.series[:count]], dtype=float)
    diffs = (mine - theirs) if higher else (theirs - mine)
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) < 3:
        return False
    rng = np.random.default_rng(0)
    means = diffs[rng.integers(0, len(diffs), size=(STEADY_SAMPLES, len(diffs)))].mean(axis=1)
    return bool(np.quantile(means, STEADY_LEVEL) > 0)


def spec_diff(text: str, changes: Sequence[tuple[str, Any]], file: str = "spec.yaml") -> str:
    """The change as a unified diff of the spec's YAML (comments are not kept on the changed side)."""
    import yaml

    if not changes:
        return ""
    before = yaml.safe_load(text)
    after = yaml.safe_load(text)
    for dotted, value in changes:
        _parent(after, dotted, create=True)[dotted.rsplit(".", 1)[-1]] = value
    old = yaml.safe_dump(before, sort_keys=False).splitlines(keepends=True)
    new = yaml.safe_dump(after, sort_keys=False).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, f"a/{file}", f"b/{file}"))


# --------------------------------------------------------------------------------------------- the replay


def schedule_intervals(spec: ModelSpec, first_row: dt.datetime, last_row: dt.datetime) -> list[Interval]:
    """The retrain schedule's intervals from one training window after the first row to the last complete one."""
    from croniter import croniter

    cron = spec.retrain_cron or "0 0 * * *"
    start = first_row + dt.timedelta(days=spec.window_days)
    ticks = croniter(cron, start - dt.timedelta(microseconds=1))
    out: list[Interval] = []
    begin = ticks.get_next(dt.datetime)
    while True:
        end = ticks.get_next(dt.datetime)
        if end > last_row + dt.timedelta(microseconds=1):
            return out
        out.append(Interval(_utc(begin), _utc(end)))
        begin = end


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def history(spec: ModelSpec, *, url: str | None, until: dt.datetime) -> pd.DataFrame:
    """The rows the backtest replays, read once from the spec's source: everything before `until`."""
    from modelgate.data import load_window

    return load_window(spec, Interval(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), until), url=url)


def score(result: ReplayResult, spec: ModelSpec, ends: set[dt.datetime]) -> Score:
    chosen = [o for o in result.outcomes if o.end in ends]
    return Score(
        intervals=len(chosen),
        primary=round(result.primary(spec.evaluation.primary_metric, ends), 6),
        accuracy=round(result.accuracy(ends), 6),
        retrains=sum(o.trained for o in chosen),
        promotions=sum(o.promoted for o in chosen),
        alarms_per_50=round(50 * sum(o.alarm for o in chosen) / max(len(chosen), 1), 2),
        train_seconds=round(sum(o.train_seconds for o in chosen), 2),
    )


_FRAME: Any = None  # a worker's copy of the history, set once by its initializer
_SHARED: Any = None  # the worker's ReplayCache: the fits and measurements its replays share
_DONE: Any = None  # a queue of the candidate names a worker has finished, for the progress bar


def _init_worker(frame: Any, done: Any = None) -> None:
    from modelgate.replay import ReplayCache

    global _FRAME, _SHARED, _DONE
    _FRAME, _SHARED, _DONE = frame, ReplayCache(), done


def _replay_one(spec: ModelSpec, candidate: Candidate, steps: list[Interval], split: dt.datetime) -> CandidateResult:
    from threadpoolctl import threadpool_limits

    from modelgate.replay import replay
    from modelgate.training import training_threads

    variant = candidate.spec_for(spec)
    with threadpool_limits(limits=training_threads(variant)):
        result = replay(variant, _FRAME, steps, candidate.kind, cache=_SHARED)
    tune = {s.end for s in steps if s.end <= split}
    held = {s.end for s in steps if s.end > split}
    metric = spec.evaluation.primary_metric
    series = tuple(
        Point(o.end, o.scored_rows, round(result.primary(metric, {o.end}), 6), o.trained, o.promoted)
        for o in result.outcomes
    )
    return CandidateResult(candidate, score(result, spec, tune), score(result, spec, held), series)


def _replay_bucket(
    spec: ModelSpec, bucket: list[Candidate], steps: list[Interval], split: dt.datetime
) -> list[CandidateResult]:
    results = []
    for candidate in bucket:
        results.append(_replay_one(spec, candidate, steps, split))
        if _DONE is not None:
            _DONE.put(candidate.name)
    return results


def buckets(wanted: Sequence[Candidate], workers: int) -> list[list[Candidate]]:
    """Candidates split over `workers` so that those sharing most work share a process (and its cache):
    every candidate that keeps the spec's window follows the spec's path until it decides otherwise, so
    they go together; each window variant fits windows of its own. Balanced by a rough cost (measured on
    the churn example: the spec's family ~2.5 window variants, retrain-every ~a third of one)."""
    if workers <= 1:
        return [list(wanted)]
    windowed = {"window_days", "max_window_days"}
    family = [c for c in wanted if c.kind == "modelgate" and not windowed & {k for k, _ in c.changes}]
    weights = {"never": 0.05, "label_rule": 0.05, "every": 0.35}
    items: list[tuple[float, list[Candidate]]] = [(2.5, family)] if family else []
    items += [(weights.get(c.kind, 1.0), [c]) for c in wanted if c not in family]
    out: list[list[Candidate]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for weight, group in sorted(items, key=lambda item: -item[0]):
        slot = min(range(workers), key=lambda i: load[i])
        out[slot] += group
        load[slot] += weight
    return [b for b in out if b]


def run(
    spec: ModelSpec,
    frame: pd.DataFrame,
    *,
    spec_text: str,
    policies: Iterable[str] | None = None,
    intervals: int | None = None,
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Replay `frame` (the model's history, time-sorted) under every candidate, over its intervals (the last
    `intervals` of them, when given); choose on the first two thirds."""
    if not spec.task.classifier:
        raise BacktestError(f"{spec.name}: the backtest scores classifiers ({spec.task.value} is not yet)")
    if frame.empty:
        raise BacktestError(f"{spec.name}: no rows in the source to backtest on")
    times = frame[spec.time_column]
    steps = schedule_intervals(spec, times.iloc[0].to_pydatetime(), times.iloc[-1].to_pydatetime())
    if intervals is not None:
        steps = steps[-intervals:]
    if len(steps) < MIN_INTERVALS:
        raise BacktestError(
            f"{spec.name}: {len(steps)} complete intervals after the first training window; the backtest needs "
            f"at least {MIN_INTERVALS} (load more history)"
        )
    split = steps[max(1, math.ceil(len(steps) * TUNE_FRACTION)) - 1].end
    wanted = list(candidates(spec, steps[0].end - steps[0].start, only=policies))
    if policies is not None and "spec" not in {c.name for c in wanted}:
        wanted.append(Candidate("spec"))  # the yardstick of every recommendation
    results = _replay_all(spec, frame, wanted, steps, split, jobs, progress)
    higher = spec.evaluation.higher_is_better
    extra = combined(next(r.tune for r in results if r.candidate.name == "spec"), results, higher)
    if extra is not None:
        results += _replay_all(spec, frame, [extra], steps, split, 1, progress)
    chosen = recommend(results, higher)
    changes = next(r.candidate.changes for r in results if r.candidate.name == chosen.name)
    return BacktestResult(
        model=spec.name,
        metric=spec.evaluation.primary_metric,
        higher_is_better=higher,
        first=steps[0].start,
        split=split,
        last=steps[-1].end,
        intervals=len(steps),
        results=tuple(results),
        recommendation=chosen,
        diff=spec_diff(spec_text, changes, f"{spec.name}.yaml"),
    )


def _replay_all(
    spec: ModelSpec,
    frame: pd.DataFrame,
    wanted: Sequence[Candidate],
    steps: list[Interval],
    split: dt.datetime,
    jobs: int | None,
    progress: Callable[[str], None] | None,
) -> list[CandidateResult]:
    """Each candidate in a worker process (one estimator thread each); in this process when `jobs` is 1."""
    workers = max(1, min(jobs or os.cpu_count() or 1, len(wanted)))
    done: dict[str, CandidateResult] = {}
    if workers == 1:
        _init_worker(frame)
        for candidate in wanted:
            done[candidate.name] = _replay_one(spec, candidate, steps, split)
            if progress:
                progress(candidate.name)
    else:
        import multiprocessing
        import queue
        from concurrent.futures import ProcessPoolExecutor, wait

        context = multiprocessing.get_context("spawn")  # no OpenMP state inherited through fork
        finished = context.Queue()
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(frame, finished)
        ) as pool:
            pending = {pool.submit(_replay_bucket, spec, b, steps, split) for b in buckets(wanted, workers)}
            while pending:
                ready, pending = wait(pending, timeout=0.5)
                for future in ready:
                    done.update((r.candidate.name, r) for r in future.result())
                while progress:
                    try:
                        progress(finished.get_nowait())
                    except queue.Empty:
                        break
    return [done[c.name] for c in wanted]


def as_json(result: BacktestResult) -> dict[str, Any]:
    from modelgate.jsonable import jsonable

    return dict(jsonable(dataclasses.asdict(result)))
