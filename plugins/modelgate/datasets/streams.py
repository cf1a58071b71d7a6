"""Streams for the policy benchmark: synthetic ones with known change points, weather.csv, shuffled copies.

A synthetic stream has six numeric features and a binary target drawn from a logistic model. At its change
point the concept moves (the weights change) and so does the population (three features' means shift):
`abrupt` switches at once, `gradual` blends over several intervals, `recurring` alternates between the two
concepts. `shuffled(frame)` permutes the rows over time and keeps the time stamps in place: the same rows,
stationary.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from modelgate.spec import ModelSpec

Kind = Literal["abrupt", "gradual", "recurring"]
START = dt.datetime(2024, 1, 7, tzinfo=dt.UTC)  # a Sunday: weekly intervals end on Sundays
FEATURES = [f"x{i}" for i in range(6)]


def synthetic(kind: Kind, *, seed: int = 0, weeks: int = 80, rows_per_week: int = 336) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, ["abrupt", "gradual", "recurring"].index(kind)])
    before = np.array([1.6, -1.2, 0.8, 0.4, 0.0, 0.0])
    after = np.array([-0.6, 1.0, 1.6, 0.0, 0.8, 0.0])
    shift = np.array([0.6, 0.6, -0.6, 0.0, 0.0, 0.0])
    frames = []
    for week in range(weeks):
        if kind == "abrupt":
            mix = 1.0 if week >= weeks // 2 else 0.0
        elif kind == "gradual":
            start, length = weeks // 2 - 8, 16
            mix = min(max((week - start) / length, 0.0), 1.0)
        else:
            mix = float((week // 16) % 2)
        weights = (1 - mix) * before + mix * after
        x = rng.normal(0.0, 1.0, (rows_per_week, 6)) + mix * shift
        p = 1 / (1 + np.exp(-(x @ weights - 0.3)))
        y = (rng.random(rows_per_week) < p).astype(int)
        seconds = np.sort(rng.integers(0, 7 * 86_400, rows_per_week))
        frame = pd.DataFrame(x, columns=FEATURES)
        frame["y"] = y
        frame["t"] = pd.Timestamp(START + dt.timedelta(weeks=week)) + pd.to_timedelta(seconds, unit="s")
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["id"] = [f"r{i}" for i in range(len(out))]
    return out


def shuffled(frame: pd.DataFrame, time_column: str, *, seed: int = 0) -> pd.DataFrame:
    """The same rows in a random order over the same time stamps: any drift is gone, the marginals stay."""
    out = frame.drop(columns=[time_column]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    out[time_column] = frame[time_column].sort_values().to_numpy()
    return out


def synthetic_spec() -> ModelSpec:
    """The spec a new user writes from the README: HistGradientBoosting, 28-day window, weekly, defaults."""
    from modelgate.spec import parse_spec

    features = "\n".join(f"  - {{name: {name}, type: numeric}}" for name in FEATURES)
    return parse_spec(
        f"""
name: stream
source: {{kind: files, path: stream.parquet}}
time_column: t
id_column: id
target: y
features:
{features}
schedule: "@weekly"
window_days: 28
estimator: {{name: hist_gradient_boosting}}
"""
    )


def weather(path: Path) -> pd.DataFrame:
    """weather.csv with its implicit time: consecutive days from 1949-01-01."""
    import pandas as pd

    frame = pd.read_csv(path)
    frame["day"] = pd.Timestamp("1949-01-01", tz="UTC") + pd.to_timedelta(range(len(frame)), unit="D")
    frame["row_id"] = [str(i) for i in range(len(frame))]
    return frame
