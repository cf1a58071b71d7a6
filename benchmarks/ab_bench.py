"""Simulated A/B experiments with delayed outcomes, decided by `modelgate.experiments` after every interval.

Each experiment sends `keys_per_day` new keys a day, `split` % of them to the challenger (sticky: a key is
predicted once and keeps its arm). A key's outcome arrives after a geometric delay (mean `mean_delay_days`)
or never (`missing`). After every day the analysis sees only the outcomes arrived by then, exactly as the
`modelgate_ab__<model>` DAG does, and decides promote / stop / continue. A/A experiments (no difference)
measure the false promote rate, which must stay under alpha however often it was looked at; A/B experiments
with a real difference measure the power and the time to a decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelgate.experiments import Action, ArmStats, Look, Settings, decide, sample_ratio, sequential_test


@dataclass(frozen=True)
class Outcome:
    action: Action
    day: int  # the look that decided (max_looks when it ran out)
    worse: bool = False  # stopped because the challenger was surely worse


def simulate_one(
    rng: Any,
    *,
    champion_accuracy: float,
    challenger_accuracy: float,
    settings: Settings,
    keys_per_day: int = 2000,
    split: float = 10.0,
    mean_delay_days: float = 3.0,
    missing: float = 0.1,
) -> Outcome:
    import numpy as np

    days = settings.max_looks
    arrived = np.zeros((2, days + 1))  # labelled counts per arm by the day they arrive
    correct = np.zeros((2, days + 1))
    previous: Look | None = None
    keys = np.zeros(2, dtype=int)
    for day in range(days):
        challenger = rng.random(keys_per_day) * 100 < split
        for arm, accuracy in ((0, champion_accuracy), (1, challenger_accuracy)):
            n = int((challenger == bool(arm)).sum())
            keys[arm] += n
            labelled = rng.random(n) >= missing
            right = rng.random(n) < accuracy
            delay = rng.geometric(1 / mean_delay_days, n)  # >= 1: a key's outcome is never known the same day
            when = np.minimum(day + delay, days)
            np.add.at(arrived[arm], when[labelled], 1)
            np.add.at(correct[arm], when[labelled], right[labelled])
        look_day = day + 1
        n_a, n_b = int(arrived[0, : look_day + 1].sum()), int(arrived[1, : look_day + 1].sum())
        c_a, c_b = float(correct[0, : look_day + 1].sum()), float(correct[1, : look_day + 1].sum())
        a, b = ArmStats.from_sums(n_a, c_a, c_a), ArmStats.from_sums(n_b, c_b, c_b)
        previous = sequential_test(a, b, alpha=settings.alpha, mixture_sd=settings.mixture_sd, previous=previous)
        decision = decide(settings, previous, [], srm_p=sample_ratio(int(keys[0]), int(keys[1]), split), looks=look_day)
        if decision.action is not Action.CONTINUE:
            return Outcome(decision.action, look_day, bool(previous.favours_champion))
    return Outcome(Action.CONTINUE, days)


def run(
    experiments: int = 200,
    *,
    accuracy: float = 0.80,
    difference: float = 0.02,
    seed: int = 7,
    settings: Settings | None = None,
    **traffic: Any,
) -> dict[str, Any]:
    import numpy as np

    settings = settings or Settings(metric="accuracy", alpha=0.05, mixture_sd=0.02, max_looks=28)
    rng = np.random.default_rng(seed)
    aa = [
        simulate_one(rng, champion_accuracy=accuracy, challenger_accuracy=accuracy, settings=settings, **traffic)
        for _ in range(experiments)
    ]
    ab = [
        simulate_one(
            rng, champion_accuracy=accuracy, challenger_accuracy=accuracy + difference, settings=settings, **traffic
        )
        for _ in range(experiments)
    ]
    false_promotes = sum(o.action is Action.PROMOTE for o in aa) / experiments
    promoted = [o.day for o in ab if o.action is Action.PROMOTE]
    return {
        "experiments": experiments,
        "looks": settings.max_looks,
        "aa_false_promote_rate": round(false_promotes, 3),
        "aa_false_promote_vs_alpha": round(false_promotes / settings.alpha, 2),
        "aa_false_worse_rate": round(sum(o.worse for o in aa) / experiments, 3),
        "ab_difference": difference,
        "ab_power": round(len(promoted) / experiments, 3),
        "ab_wrong_way_stops": sum(o.worse for o in ab),
        "ab_median_days_to_promote": float(np.median(promoted)) if promoted else None,
        "goal": "A/A false promote rate <= alpha (ratio <= 1.0), looked at after every interval",
    }
