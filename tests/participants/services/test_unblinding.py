from __future__ import annotations

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied

from audit.history import record_history
from operations.outbox import outbox_deliver_pending
from participants.exceptions import NotEligibleError, UnblindingReasonRequiredError
from participants.models import UnblindingEvent
from participants.services.randomization import participant_randomize
from participants.services.unblinding import participant_unblind_emergency
from trials.policies.blinding import sees_participant_allocation


@pytest.fixture
def randomized_pair(small_trial):
    nurse = small_trial.users["nurse-A1"]
    first, second = small_trial.screen_eligible("A1", "low", n=2)
    participant_randomize(participant=first, user=nurse)
    participant_randomize(participant=second, user=nurse)
    first.refresh_from_db()
    second.refresh_from_db()
    return small_trial, first, second


@pytest.mark.req("R19")
@pytest.mark.django_db
def test_emergency_unblinding_reveals_one_participant_to_the_investigator_only(
    randomized_pair, django_capture_on_commit_callbacks
):
    small, first, second = randomized_pair
    nurse = small.users["nurse-A1"]
    assert not sees_participant_allocation(nurse, first)
    with django_capture_on_commit_callbacks(execute=True):
        event, arm = participant_unblind_emergency(
            participant=first, user=nurse, reason="Anaphylaxis 2 h after infusion; ICU needs to know"
        )
    assert arm == first.randomization.arm
    assert sees_participant_allocation(nurse, first)
    assert not sees_participant_allocation(nurse, second)  # only that participant
    assert not sees_participant_allocation(small.users["coord"], first)  # the coordinator stays blind
    assert event.reason.startswith("Anaphylaxis")
    assert record_history(event)[0].reason.startswith("emergency unblinding: Anaphylaxis")
    # the coordinator is told that it happened and why, never what the treatment is — through the outbox
    assert mail.outbox == []
    assert outbox_deliver_pending() == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["coord@example.org"]
    assert first.screening_number in message.subject
    assert "Anaphylaxis" in message.body
    for revealing in (arm.code, arm.name, "5e9", "Control", "Exosome"):
        assert revealing not in message.body + message.subject


@pytest.mark.req("R19")
@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["", "   ", "urgent"])
def test_unblinding_without_a_real_reason_is_refused(randomized_pair, reason):
    small, first, _ = randomized_pair
    with pytest.raises(UnblindingReasonRequiredError):
        participant_unblind_emergency(participant=first, user=small.users["nurse-A1"], reason=reason)
    assert not UnblindingEvent.objects.filter(trial=small.trial).exists()


@pytest.mark.req("R19")
@pytest.mark.django_db
def test_only_site_staff_of_the_participants_site_can_unblind(randomized_pair):
    small, first, _ = randomized_pair
    with pytest.raises(NotEligibleError):
        participant_unblind_emergency(participant=first, user=small.users["nurse-B2"], reason="x" * 20)
    for name in ("coord", "monitor", "blind-stat"):
        with pytest.raises(PermissionDenied):
            participant_unblind_emergency(participant=first, user=small.users[name], reason="x" * 20)
