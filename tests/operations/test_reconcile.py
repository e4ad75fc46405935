"""Work whose broker message was lost is published again; work that began is not (R33)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from analysis.models import AnalysisRun
from audit.context import INITIAL_ENTRY, audit_context
from operations.execution import begin_attempt
from operations.reconcile import requeue_lost_work
from tests.operations.conftest import queued_messages

pytestmark = pytest.mark.django_db


def queued_run(trial, *, minutes_ago: int) -> AnalysisRun:
    with audit_context(reason=INITIAL_ENTRY):
        run = AnalysisRun.objects.create(
            trial=trial,
            kind=AnalysisRun.Kind.FINAL,
            cutoff=dt.date(2026, 11, 1),
            requested_by=get_user_model().objects.get(username="demo-unblinded-stat"),
        )
        AnalysisRun.objects.filter(pk=run.pk).update(requested_at=timezone.now() - dt.timedelta(minutes=minutes_ago))
    return run


@pytest.mark.req("R33")
def test_a_long_queued_run_that_never_began_is_published_again(demo_trial, empty_queue):
    lost = queued_run(demo_trial, minutes_ago=30)
    queued_run(demo_trial, minutes_ago=2)  # recent: its message is probably still on its way
    begun = queued_run(demo_trial, minutes_ago=30)
    begin_attempt(task_name="analysis.execute_run", key=str(begun.pk), task_id="t", limit=3)
    before = queued_messages()
    assert requeue_lost_work()["analysis.execute_run"] == 1
    assert queued_messages() == before + 1
    assert lost.status == AnalysisRun.Status.QUEUED
