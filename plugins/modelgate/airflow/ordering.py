"""Retrain runs decide in interval order, however they arrive: each waits for the run of the interval before it."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)


class OutOfOrder(RuntimeError):
    """A run that can't wait for the interval before it: that interval's run will not start first."""


def earlier_interval_wait(run_type: str, earlier_run_id: str | None, earlier_state: str | None) -> str | None:
    """Whether a retrain run must wait before it decides: None to go on, else what it waits for.

    An interval's decision reads the registry as the interval before it left it (its champion, decisions and
    drift runs), so the run for the interval before, the previous run by logical date, must be finished
    first, whichever way the two arrived (a backfill starts up to 10 at once). A backfill run whose
    predecessor has not even started is a reversed backfill larger than its `--max-active-runs`: waiting
    would hold the slot the earlier run needs, so it fails with the way out instead.
    """
    if earlier_run_id is None or earlier_state in FINISHED_RUN_STATES:
        return None
    if run_type == "backfill" and earlier_state == "queued":
        raise OutOfOrder(
            f"the run for the interval before this one ({earlier_run_id}) is queued behind it: a retrain "
            "backfill decides intervals in order, so run it forward (without --reverse), or give it a "
            "--max-active-runs that covers its whole range"
        )
    return f"the run for the interval before this one ({earlier_run_id}) is {earlier_state}"


FINISHED_RUN_STATES = frozenset({"success", "failed"})


class EarlierIntervalSensor(BaseSensorOperator):
    """Done once the previous run of this DAG (by logical date) has finished; waits in reschedule mode, so a
    waiting run holds no worker slot. Fails at once, with the way out, when waiting could never end."""

    def __init__(self, *, model: str, timeout: dt.timedelta, poke_interval: float, **kwargs: Any) -> None:
        super().__init__(mode="reschedule", timeout=timeout, poke_interval=poke_interval, **kwargs)
        self.model = model

    def poke(self, context: Any) -> bool:
        earlier = context["ti"].get_previous_dagrun()
        state = getattr(earlier, "state", None)
        run_type = context["dag_run"].run_type
        try:
            waiting = earlier_interval_wait(
                getattr(run_type, "value", str(run_type)),
                getattr(earlier, "run_id", None),
                None if state is None else getattr(state, "value", str(state)),
            )
        except OutOfOrder as exc:
            raise AirflowFailException(str(exc)) from exc
        if waiting:
            log.info("%s: waiting: %s", self.model, waiting)
        return waiting is None
