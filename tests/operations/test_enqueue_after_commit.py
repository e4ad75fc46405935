"""Tasks triggered by data changes are published only when the change commits (R29).

Against the configured broker for real (Redis in CI, the filesystem transport on a bare machine): a run
requested inside a transaction that is rolled back leaves the queue as it was; a committed one adds exactly
one message. transactional_db, because on_commit callbacks only run on a real commit.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from analysis.models import AnalysisRun
from analysis.services import analysis_run_request
from tests.operations.conftest import queued_messages
from tests.participants.conftest import build_small_trial


@pytest.mark.req("R29")
def test_a_rolled_back_request_publishes_nothing_and_a_committed_one_exactly_one(transactional_db, empty_queue):
    small = build_small_trial(code="TST-R29")
    statistician = small.users["stat"]
    before = queued_messages()

    def request_then_fail():
        with transaction.atomic():
            analysis_run_request(trial=small.trial, user=statistician, kind="final")
            raise RuntimeError("the request fails after the run was created")

    with pytest.raises(RuntimeError):
        request_then_fail()
    assert not AnalysisRun.objects.exists()
    assert queued_messages() == before

    with transaction.atomic():
        run = analysis_run_request(trial=small.trial, user=statistician, kind="final")
        assert queued_messages() == before  # not yet: the transaction is still open
    assert queued_messages() == before + 1
    assert run.status == AnalysisRun.Status.QUEUED
