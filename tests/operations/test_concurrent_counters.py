"""Counters under real concurrency: eight threads, each with its own database connection (R36).

transactional_db: every thread commits for real, so the row locks decide, not a test transaction.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from operations.execution import begin_attempt
from operations.models import TaskExecution
from participants.models import Participant
from participants.services.enrollment import participant_screen
from tests.participants.conftest import build_small_trial

THREADS = 8


def in_threads(work, per_thread: int) -> None:
    def worker(_):
        try:
            for _ in range(per_thread):
                work()
        finally:
            connection.close()  # each thread has its own connection; do not leave it open

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(worker, range(THREADS)))  # re-raises the first exception of any thread


@pytest.mark.req("R36")
@pytest.mark.timeout(120)
def test_eight_threads_counting_attempts_100_times_each_count_800(transactional_db):
    in_threads(lambda: begin_attempt(task_name="tests.counter", key="k", task_id="t", limit=10_000), per_thread=100)
    assert TaskExecution.objects.get(task_name="tests.counter", key="k").attempts == THREADS * 100


@pytest.mark.req("R36")
@pytest.mark.timeout(120)
def test_concurrent_screenings_at_one_site_get_distinct_consecutive_numbers(transactional_db):
    small = build_small_trial(code="TST-R36")
    nurse, site = small.users["nurse-A1"], small.sites["A1"]

    def screen():
        participant_screen(
            trial=small.trial, site=site, user=nurse, screened_on=dt.date(2026, 1, 5), sex="F", birth_year=1960
        )

    in_threads(screen, per_thread=5)
    numbers = sorted(Participant.objects.filter(site=site).values_list("screening_number", flat=True))
    assert numbers == [f"A1-{n:04d}" for n in range(1, THREADS * 5 + 1)]
