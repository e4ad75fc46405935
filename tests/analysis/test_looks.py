"""A planned interim look that is reached is announced once, through the outbox."""

from __future__ import annotations

import pytest
from django.core import mail

from analysis.looks import look_due_email, notify_reached_looks
from audit.context import audit_context
from operations.models import OutboxMessage
from operations.outbox import outbox_deliver_pending

pytestmark = pytest.mark.django_db


def test_a_reached_look_is_queued_once_and_mailed_to_coordinator_and_statisticians(demo_trial):
    with audit_context(reason="test: an early first look"):
        demo_trial.analysis_plan.look_fractions = [0.0001, 1.0]  # reached by any observed primary endpoint
        demo_trial.analysis_plan.save(update_fields=["look_fractions"])
        demo_trial.status = "recruiting"
        demo_trial.save(update_fields=["status"])
    assert notify_reached_looks() == 1
    assert notify_reached_looks() == 0  # once
    message = OutboxMessage.objects.get(kind="look_due")
    assert message.payload["look_number"] == 1
    assert outbox_deliver_pending() == 1
    (sent,) = mail.outbox
    assert sent.subject == "[EXO-OA-201] Interim look 1 is due"
    assert sent.to == sorted(sent.to)
    assert "demo-coordinator@example.org" in sent.to
    assert "demo-unblinded-stat@example.org" in sent.to
    assert "demo-site@example.org" not in sent.to


def test_nothing_is_sent_for_a_trial_that_is_gone():
    assert look_due_email({"trial_id": 0, "look_number": 1, "fraction": 0.5}) is None
