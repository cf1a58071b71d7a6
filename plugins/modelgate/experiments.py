"""A/B experiments on live outcomes: sticky assignment, per-arm statistics and a test that is safe to peek at.

Pure functions, no database and no Airflow (the registry side is `modelgate.registry.experiments`):

- `assign` routes a request key to the challenger for a deterministic share of keys: a key always sees the same
  arm of an experiment, and two experiments split keys independently (the experiment's salt is hashed in).
- `row_metric` scores one labelled prediction (accuracy, brier, log_loss for classifiers; squared or absolute
  error for regressors), `ArmStats` summarises an arm, `sample_ratio` checks the split the keys actually took.
- `sequential_test` is a mixture sequential probability ratio test (mSPRT, Johari et al. 2017; Robbins'
  normal mixture) on the difference of the arms' means, in the Gaussian approximation: its p-value and
  confidence interval stay valid however often they are looked at, so the analysis runs every interval
  without a peeking penalty. Running the same looks again gives the same answer (the running minimum p-value
  and the running intersection of intervals are carried from look to look).
- `decide` turns one look into promote / stop / continue with exactly one recorded reason, in a fixed order,
  like `policy.decide_retrain`.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from modelgate.spec import AB_METRICS as ROW_METRICS  # per-prediction metric -> higher is better

_SCALE = float(2**64)


def assign(key: str, salt: str, treatment_percent: float) -> bool:
    """True when `key` belongs to the challenger's arm: the first 8 bytes of sha256(salt, key) as a fraction,
    under `treatment_percent`. Sticky (the same key, the same arm) and uniform over keys."""
    if not 0 <= treatment_percent <= 100:
        raise ValueError(f"the challenger's share must be within 0..100 %, got {treatment_percent}")
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE * 100 < treatment_percent


def row_metric(name: str, outcome: float, score: float, *, threshold: float = 0.5) -> float:
    """One labelled prediction's value of `name` (see ROW_METRICS for which direction is better)."""
    if name == "accuracy":
        return 1.0 if (score >= threshold) == (outcome >= 0.5) else 0.0
    if name == "brier":
        return (score - outcome) ** 2
    if name == "log_loss":
        p = min(max(score, 1e-15), 1 - 1e-15)
        return -(outcome * math.log(p) + (1 - outcome) * math.log(1 - p))
    if name == "squared_error":
        return (score - outcome) ** 2
    if name == "absolute_error":
        return abs(score - outcome)
    raise ValueError(f"unknown per-prediction metric {name!r}; known: {', '.join(ROW_METRICS)}")


def higher_is_better(metric: str) -> bool:
    try:
        return ROW_METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown per-prediction metric {metric!r}; known: {', '.join(ROW_METRICS)}") from None


@dataclass(frozen=True)
class ArmStats:
    """An arm's labelled predictions on one metric: count, mean and (unbiased) variance."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Iterable[float]) -> ArmStats:
        n, mean, m2 = 0, 0.0, 0.0
        for x in values:  # Welford: one pass, stable
            n += 1
            delta = x - mean
            mean += delta / n
            m2 += delta * (x - mean)
        return cls(n, mean if n else math.nan, m2 / (n - 1) if n > 1 else math.nan)

    @classmethod
    def from_sums(cls, n: int, total: float, total_sq: float) -> ArmStats:
        """From a database's count, sum and sum of squares."""
        if n == 0:
            return cls(0, math.nan, math.nan)
        mean = total / n
        variance = max(total_sq - n * mean * mean, 0.0) / (n - 1) if n > 1 else math.nan
        return cls(n, mean, variance)


@dataclass(frozen=True)
class Look:
    """One look of the sequential test, oriented so that a positive difference favours the challenger."""

    estimate: float  # challenger's mean minus the champion's (sign flipped for metrics where lower is better)
    lower: float  # always-valid confidence interval, intersected with the previous looks'
    upper: float
    p_value: float  # always-valid p-value of "no difference", the running minimum over looks
    labelled: tuple[int, int]  # (champion, challenger)

    @property
    def favours_challenger(self) -> bool:
        return self.lower > 0

    @property
    def favours_champion(self) -> bool:
        return self.upper < 0


def sequential_test(
    champion: ArmStats,
    challenger: ArmStats,
    *,
    alpha: float,
    mixture_sd: float,
    higher_better: bool = True,
    previous: Look | None = None,
) -> Look:
    """The mSPRT of `challenger.mean - champion.mean = 0` with a N(0, mixture_sd²) mixture over the difference.

    With d̂ the difference and s² = var_a/n_a + var_b/n_b its variance, the mixture likelihood ratio is
    Λ = sqrt(s²/(s²+τ²)) · exp(τ² d̂² / (2 s² (s²+τ²))); the p-value 1/Λ and the interval
    d̂ ± sqrt(s²(s²+τ²)/τ² · (log((s²+τ²)/s²) + 2 log(1/α))) hold at every look at once (a fixed split keeps
    d̂/s² a Brownian motion in the information 1/s²). `previous` carries the running minimum and intersection.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    if not mixture_sd > 0:
        raise ValueError(f"the mixture's standard deviation must be positive, got {mixture_sd}")
    labelled = (champion.n, challenger.n)
    if champion.n < 2 or challenger.n < 2:
        if previous is not None:
            return Look(previous.estimate, previous.lower, previous.upper, previous.p_value, labelled)
        return Look(math.nan, -math.inf, math.inf, 1.0, labelled)
    sign = 1.0 if higher_better else -1.0
    estimate = sign * (challenger.mean - champion.mean)
    # a variance of zero (every prediction right, so far) would make any difference "certain": floor it at the
    # variance of one disagreement among the labelled rows
    floor = 1.0 / (champion.n + challenger.n) ** 2
    s2 = max(champion.variance / champion.n + challenger.variance / challenger.n, floor)
    t2 = mixture_sd**2
    log_lr = 0.5 * math.log(s2 / (s2 + t2)) + t2 * estimate**2 / (2 * s2 * (s2 + t2))
    p_value = min(1.0, math.exp(-log_lr)) if log_lr < 700 else 0.0
    radius = math.sqrt(s2 * (s2 + t2) / t2 * (math.log((s2 + t2) / s2) + 2 * math.log(1 / alpha)))
    lower, upper = estimate - radius, estimate + radius
    if previous is not None:
        p_value = min(p_value, previous.p_value)
        lower, upper = max(lower, previous.lower), min(upper, previous.upper)
        if lower > upper:  # the intervals stopped overlapping: an approximation broke; keep the newest whole
            lower, upper = estimate - radius, estimate + radius
    return Look(estimate, lower, upper, p_value, labelled)


def sample_ratio(champion_keys: int, challenger_keys: int, challenger_percent: float) -> float:
    """The p-value of the keys' split against the intended one (a chi-square test with one degree of freedom):
    a tiny value is a sample-ratio mismatch, and no result of such an experiment can be trusted."""
    total = champion_keys + challenger_keys
    if total == 0 or challenger_percent in (0, 100):
        return 1.0
    expected_b = total * challenger_percent / 100
    expected_a = total - expected_b
    chi2 = (champion_keys - expected_a) ** 2 / expected_a + (challenger_keys - expected_b) ** 2 / expected_b
    return math.erfc(math.sqrt(chi2 / 2))  # survival of chi-square(1) at chi2


class Action(enum.StrEnum):
    PROMOTE = "promote"
    STOP = "stop"
    CONTINUE = "continue"


@dataclass(frozen=True)
class GuardrailLook:
    metric: str
    tolerance: float  # how much worse (in the metric's units) the challenger may be
    look: Look

    @property
    def breached(self) -> bool:
        """Surely worse than the tolerance allows."""
        return self.look.upper < -self.tolerance

    @property
    def cleared(self) -> bool:
        """Surely within the tolerance."""
        return self.look.lower >= -self.tolerance


@dataclass(frozen=True)
class Settings:
    """What a model's spec says about its experiments (`ab:`), as the decision needs it."""

    metric: str = "accuracy"
    alpha: float = 0.05
    mixture_sd: float = 0.02
    min_labelled: int = 100
    max_looks: int = 28
    srm_alpha: float = 0.001
    guardrails: tuple[tuple[str, float], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(
    settings: Settings,
    primary: Look,
    guardrails: Sequence[GuardrailLook],
    *,
    srm_p: float,
    looks: int,
) -> Decision:
    """First matching rule wins: sample-ratio mismatch, too few labels, a breached guardrail, the challenger
    surely better (promote, once every guardrail is cleared), surely worse, out of looks; else continue."""
    a, b = primary.labelled
    if srm_p < settings.srm_alpha:
        return Decision(
            Action.STOP,
            f"sample ratio mismatch (p={srm_p:.2g} < {settings.srm_alpha}): the split is broken, trust no result",
        )
    if min(a, b) < settings.min_labelled:
        return Decision(
            Action.CONTINUE,
            f"{min(a, b)} labelled predictions in the smaller arm, fewer than min_labelled={settings.min_labelled}",
        )
    for guard in guardrails:
        if guard.breached:
            return Decision(
                Action.STOP,
                f"guardrail {guard.metric} breached: the challenger is worse by more than {guard.tolerance} "
                f"(interval {guard.look.lower:+.4f}..{guard.look.upper:+.4f})",
            )
    interval = (
        f"{settings.metric} difference {primary.estimate:+.4f}, interval {primary.lower:+.4f}..{primary.upper:+.4f}"
    )
    if primary.favours_challenger:
        uncleared = [g.metric for g in guardrails if not g.cleared]
        if not uncleared:
            return Decision(Action.PROMOTE, f"the challenger is better: {interval}, p={primary.p_value:.3g}")
        if looks >= settings.max_looks:
            return Decision(Action.STOP, f"better, but guardrails {uncleared} not cleared after {looks} looks")
        return Decision(Action.CONTINUE, f"better ({interval}), guardrails {uncleared} not yet cleared")
    if primary.favours_champion:
        return Decision(Action.STOP, f"the challenger is worse: {interval}, p={primary.p_value:.3g}")
    if looks >= settings.max_looks:
        return Decision(Action.STOP, f"no difference found in {looks} looks: {interval}")
    return Decision(Action.CONTINUE, f"no decision yet: {interval}, p={primary.p_value:.3g}")
