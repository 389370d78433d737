"""One retry schedule: a failed task's delay before its next attempt is the core's ``Backoff`` (issue 12)."""

from __future__ import annotations

import pytest

from messenger_core import Backoff
from messenger_core.broker import TASK_RETRY_CAP, TASK_RETRY_FIRST, retry_delay


def handed_out(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next() for _ in range(count)]


@pytest.mark.parametrize(("first", "cap", "factor"), [(0.5, 5.0, 2.0), (0.2, 5.0, 2.0), (3.0, 2.0, 2.0),
                                                      (1.0, 10.0, 3.0)])
def test_after_n_failures_is_the_delay_next_hands_out_the_nth_time(first: float, cap: float, factor: float) -> None:
    expected = handed_out(Backoff(first, cap, factor), 12)
    backoff = Backoff(first, cap, factor)
    assert [backoff.after(n) for n in range(1, 13)] == expected
    assert backoff.fresh  # asking changes nothing
    assert backoff.after(0) == first  # no failure yet: as after the first


def test_a_failed_tasks_delay_is_the_core_backoff() -> None:
    schedule = handed_out(Backoff(TASK_RETRY_FIRST, TASK_RETRY_CAP), 12)
    assert [retry_delay(attempt) for attempt in range(1, 13)] == schedule
    assert [retry_delay(attempt) for attempt in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_task_retried_thousands_of_times_waits_the_cap() -> None:
    # a task declared with max_attempts in the thousands: the old formula overflowed a float here
    assert retry_delay(5_000) == TASK_RETRY_CAP
