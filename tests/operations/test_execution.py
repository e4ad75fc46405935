"""Idempotent, bounded tasks: one effect per business key, dead-letter after N lost attempts (R30, R31)."""

from __future__ import annotations

import pytest
from celery import shared_task
from django.core import mail

from operations.execution import IdempotentTask, begin_attempt, current_attempt
from operations.models import OperationalAlert, TaskExecution

pytestmark = pytest.mark.django_db

EFFECTS: list[int] = []


@shared_task(name="tests.operations.record_effect", base=IdempotentTask)
def record_effect(item_id: int) -> dict[str, int]:
    EFFECTS.append(item_id)
    attempt = current_attempt()
    return {"item_id": item_id, "attempt": attempt.number}


@shared_task(name="tests.operations.always_fails", base=IdempotentTask)
def always_fails(item_id: int) -> None:
    raise RuntimeError(f"item {item_id} cannot be processed")


@pytest.fixture(autouse=True)
def _no_effects_yet():
    EFFECTS.clear()


@pytest.mark.req("R30")
def test_the_same_key_twice_has_one_effect():
    first = record_effect.apply(args=[7], task_id="first-message").get()
    second = record_effect.apply(args=[7], task_id="second-message").get()
    assert EFFECTS == [7]
    assert first == {"item_id": 7, "attempt": 1}
    assert second == first  # a redelivery answers what the attempt that did the work answered
    execution = TaskExecution.objects.get(task_name="tests.operations.record_effect", key="7")
    assert execution.status == TaskExecution.Status.SUCCEEDED
    assert execution.attempts == 1
    assert execution.task_id == "first-message"
    # another key is another effect
    record_effect.apply(args=[8])
    assert EFFECTS == [7, 8]


@pytest.mark.req("R30")
def test_a_failure_is_recorded_with_its_reason_and_counts_as_an_attempt():
    result = always_fails.apply(args=[3], task_id="m1")
    assert result.failed()
    execution = TaskExecution.objects.get(task_name="tests.operations.always_fails", key="3")
    assert execution.status == TaskExecution.Status.FAILED
    assert execution.error == "RuntimeError: item 3 cannot be processed"
    assert execution.attempts == 1


@pytest.mark.req("R31")
def test_a_message_that_never_finishes_is_dead_lettered_after_the_limit_with_one_alert(settings):
    settings.ADMINS = [("Operator", "ops@example.org")]
    # three deliveries of one message whose worker died each time (the attempt began but never finished)
    for number in (1, 2, 3):
        outcome, attempt = begin_attempt(task_name="tests.poison", key="run:1", task_id="poison", limit=3)
        assert outcome == "run"
        assert attempt.number == number
        assert attempt.redelivered is (number > 1)
    # the fourth delivery is not run: dead-lettered, acknowledged, an operator alerted once
    outcome, execution = begin_attempt(task_name="tests.poison", key="run:1", task_id="poison", limit=3)
    assert outcome == "dead_letter"
    execution = TaskExecution.objects.get(task_name="tests.poison")
    assert execution.status == TaskExecution.Status.DEAD_LETTER
    assert execution.attempts == 3
    assert "3 attempt(s) did not finish" in execution.error
    # and it stays dead: a fifth delivery neither runs nor alerts again
    assert begin_attempt(task_name="tests.poison", key="run:1", task_id="poison", limit=3)[0] == "done"
    alerts = OperationalAlert.objects.filter(kind=OperationalAlert.Kind.DEAD_LETTER)
    assert alerts.count() == 1
    assert "tests.poison [run:1]" in alerts.get().subject


@pytest.mark.req("R31")
def test_the_dead_letter_alert_mails_the_operators(settings, django_capture_on_commit_callbacks):
    settings.ADMINS = [("Operator", "ops@example.org")]
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            begin_attempt(task_name="tests.poison", key="k", task_id="t", limit=2)
    assert [message.to for message in mail.outbox] == [["ops@example.org"]]
    assert "dead-lettered after 2 attempts" in mail.outbox[0].subject


def test_a_second_message_for_the_same_key_is_not_a_redelivery():
    begin_attempt(task_name="tests.dup", key="k", task_id="a", limit=3)
    outcome, attempt = begin_attempt(task_name="tests.dup", key="k", task_id="b", limit=3)
    assert outcome == "run"
    assert attempt.redelivered is False
    assert attempt.number == 2
