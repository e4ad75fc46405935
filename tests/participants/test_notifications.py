"""Safety notifications go through the transactional outbox: queued with the data, delivered once (R32, R33)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction
from django.utils import timezone

from operations.models import OperationalAlert, OutboxMessage
from operations.outbox import outbox_deliver_pending
from participants.models import Participant
from participants.notifications import queue_sae_clock_reminders
from participants.services.adverse_events import (
    adverse_event_notify_sponsor,
    adverse_event_record,
    adverse_event_update,
)
from participants.services.randomization import participant_randomize

pytestmark = pytest.mark.django_db


@pytest.fixture
def nurse(demo_trial):
    return get_user_model().objects.get(username="demo-site")


@pytest.fixture
def participant(demo_trial, nurse):
    chosen = Participant.objects.filter(trial=demo_trial, site__code="S01", status="eligible").order_by("pk").first()
    participant_randomize(participant=chosen, user=nurse)
    chosen.refresh_from_db()
    return chosen


def adverse_event(**overrides):
    values = {
        "term": "Septic arthritis",
        "soc": "10021881",
        "onset_date": timezone.localdate(),
        "stop_date": None,
        "grade": 3,
        "hospitalization": True,
        "causality": "probable",
        "expected": False,
        "action_taken": "none",
        "outcome": "recovering",
        "site_aware_at": timezone.now() - dt.timedelta(hours=2),
    }
    return {**values, **overrides}


@pytest.mark.req("R32")
def test_a_serious_adverse_event_queues_one_notification_in_its_own_transaction(participant, nurse):
    event = adverse_event_record(participant=participant, user=nurse, data=adverse_event())
    message = OutboxMessage.objects.get()
    assert (message.kind, message.key, message.payload) == (
        "sae_reported",
        f"sae-reported:{event.pk}",
        {"adverse_event_id": event.pk},
    )
    assert mail.outbox == []  # nothing is sent while saving
    assert outbox_deliver_pending() == 1
    assert outbox_deliver_pending() == 0  # delivered exactly once
    (sent,) = mail.outbox
    assert sorted(sent.to) == ["demo-coordinator@example.org", "demo-sponsor@example.org"]
    assert participant.screening_number in sent.body
    assert "Septic arthritis" in sent.body
    assert sent.extra_headers["Message-ID"] == f"<outbox-sae-reported:{event.pk}@exotrial>"
    arm = participant.randomization.arm
    for revealing in (arm.code, arm.name):
        assert revealing not in sent.subject + sent.body
    message.refresh_from_db()
    assert message.delivered_at is not None


@pytest.mark.req("R32")
def test_no_notification_without_the_adverse_event_it_announces(participant, nurse):
    def save_then_fail():
        with transaction.atomic():
            adverse_event_record(participant=participant, user=nurse, data=adverse_event())
            raise RuntimeError("the request failed after the save")

    with pytest.raises(RuntimeError):
        save_then_fail()
    assert not OutboxMessage.objects.exists()


def test_a_non_serious_event_is_not_notified_until_it_becomes_serious(participant, nurse):
    event = adverse_event_record(participant=participant, user=nurse, data=adverse_event(hospitalization=False))
    assert not OutboxMessage.objects.exists()
    event = adverse_event_update(
        event=event,
        user=nurse,
        expected_version=event.version,
        data=adverse_event(hospitalization=True),
        reason="admitted overnight",
    )
    assert OutboxMessage.objects.get().key == f"sae-reported:{event.pk}"
    adverse_event_update(
        event=event,
        user=nurse,
        expected_version=event.version,
        data=adverse_event(hospitalization=True, outcome="recovered"),
        reason="follow-up",
    )
    assert OutboxMessage.objects.count() == 1  # still once


@pytest.mark.req("R33")
def test_the_sponsor_clock_is_a_row_checked_by_beat_and_reminds_once(participant, nurse):
    adverse_event_record(
        participant=participant, user=nurse, data=adverse_event(site_aware_at=timezone.now() - dt.timedelta(hours=20))
    )
    outbox_deliver_pending()
    mail.outbox.clear()
    assert queue_sae_clock_reminders(now=timezone.now() - dt.timedelta(hours=3)) == 0  # 7 h left: not yet
    assert queue_sae_clock_reminders() == 1  # 4 h left
    assert queue_sae_clock_reminders() == 0  # once
    assert outbox_deliver_pending() == 1
    (reminder,) = mail.outbox
    assert "is due soon" in reminder.subject
    assert "demo-site@example.org" in reminder.to
    # reported before a later reminder would go out: that one is dropped, not sent
    other = adverse_event_record(
        participant=participant,
        user=nurse,
        data=adverse_event(term="Pneumonia", site_aware_at=timezone.now() - dt.timedelta(hours=30)),
    )
    assert queue_sae_clock_reminders() == 1
    adverse_event_notify_sponsor(event=other, user=nurse)
    mail.outbox.clear()
    outbox_deliver_pending()
    assert [m.subject for m in mail.outbox if "Pneumonia" in m.body and "overdue" in m.subject] == []


def test_a_failing_delivery_is_retried_then_given_up_with_an_alert(participant, nurse, settings, monkeypatch):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    adverse_event_record(participant=participant, user=nurse, data=adverse_event())

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("mail relay down")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
    assert outbox_deliver_pending() == 0
    message = OutboxMessage.objects.get()
    assert (message.attempts, message.given_up_at) == (1, None)
    assert "mail relay down" in message.last_error
    assert outbox_deliver_pending() == 0
    message.refresh_from_db()
    assert message.attempts == 2
    assert message.given_up_at is not None
    alert = OperationalAlert.objects.get()
    assert alert.kind == OperationalAlert.Kind.UNDELIVERABLE
    assert message.key in alert.subject
    assert outbox_deliver_pending() == 0  # given up: not tried again
