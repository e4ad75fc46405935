from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from audit.context import INITIAL_ENTRY, audit_context
from audit.exceptions import ApplicationError
from audit.history import record_history
from participants.exceptions import DataValidationError, RecordLockedError
from participants.models import Participant, RecordLock, Signature
from participants.services.locking import (
    active_lock,
    ensure_editable,
    participant_lock,
    participant_unlock,
    trial_lock,
    trial_unlock,
)
from participants.services.signatures import casebook_sign, signature_is_valid
from trials.models import Role, Trial, TrialMembership

pytestmark = pytest.mark.django_db

PASSWORD = "sign-me-0451"


@pytest.fixture
def data_manager(small_trial):
    with audit_context(reason=INITIAL_ENTRY):
        user = get_user_model().objects.create_user("lock-dm", first_name="Dana", last_name="Manager")
        TrialMembership.objects.create(user=user, trial=small_trial.trial, role=Role.DATA_MANAGER, may_unlock=True)
    return user


@pytest.fixture
def lock_only_data_manager(small_trial):
    """A data manager without the separate right to unlock."""
    with audit_context(reason=INITIAL_ENTRY):
        user = get_user_model().objects.create_user("lock-only-dm", first_name="Lee", last_name="Locker")
        TrialMembership.objects.create(user=user, trial=small_trial.trial, role=Role.DATA_MANAGER)
    return user


@pytest.fixture
def participants(small_trial):
    """Two participants at site A1 and one at site B2."""
    return [*small_trial.screen_eligible("A1", n=2), *small_trial.screen_eligible("B2")]


@pytest.fixture
def investigators(small_trial):
    for name in ("nurse-A1", "nurse-B2"):
        small_trial.users[name].set_password(PASSWORD)
        small_trial.users[name].save()
    return {"A1": small_trial.users["nurse-A1"], "B2": small_trial.users["nurse-B2"]}


def sign(participant, investigators) -> Signature:
    return casebook_sign(
        participant=participant, user=investigators[participant.site.code], password=PASSWORD, meaning="approval"
    )


@pytest.mark.req("R12")
def test_locked_casebook_is_not_editable_and_the_error_says_who_when_why(participants, data_manager):
    # given
    first, second, _ = participants
    # when
    lock = participant_lock(participant=first, user=data_manager, reason="casebook clean after SDV")
    # then
    assert active_lock(first) == lock
    with pytest.raises(RecordLockedError) as refused:
        ensure_editable(first)
    message = refused.value.message
    assert "Dana Manager" in message
    assert f"{lock.locked_at:%Y-%m-%d %H:%M}" in message
    assert "casebook clean after SDV" in message
    assert str(first) in message
    # and the lock is the participant's own: the others stay editable
    assert active_lock(second) is None
    ensure_editable(second)
    assert record_history(lock)[0].reason == "casebook locked: casebook clean after SDV"


@pytest.mark.req("R12")
def test_trial_lock_blocks_every_participant(small_trial, participants, data_manager):
    # when
    lock = trial_lock(trial=small_trial.trial, user=data_manager, reason="database lock for final analysis")
    # then
    assert lock.participant is None
    for participant in participants:
        assert active_lock(participant) == lock
        with pytest.raises(RecordLockedError, match="database lock for final analysis"):
            ensure_editable(participant)


def test_trial_lock_does_not_reach_other_trials(small_trial_factory, small_trial, participants, data_manager):
    # given
    other = small_trial_factory(code="TST-OTHER-1", generate_list=False)
    (outsider,) = other.screen_eligible("A1")
    # when
    trial_lock(trial=small_trial.trial, user=data_manager, reason="database lock")
    # then
    assert active_lock(outsider) is None
    ensure_editable(outsider)


def test_active_lock_prefers_the_participants_own_lock(small_trial, participants, data_manager):
    # given
    first, second, _ = participants
    own = participant_lock(participant=first, user=data_manager, reason="clean")
    whole = trial_lock(trial=small_trial.trial, user=data_manager, reason="database lock")
    # then
    assert active_lock(first) == own
    assert active_lock(second) == whole


@pytest.mark.req("R12")
@pytest.mark.parametrize("status", [Trial.Status.DATABASE_LOCKED, Trial.Status.CLOSED])
def test_a_locked_or_closed_trial_database_is_not_editable(small_trial, participants, status):
    # given: the status changes behind the participant's back (its trial instance is stale)
    participant = participants[0]
    participant.trial  # noqa: B018 - load the trial now, before the status changes
    with audit_context(reason="database locked by coordinator"):
        Trial.objects.filter(pk=small_trial.trial.pk).update(status=status)
    # when / then
    assert active_lock(participant) is None
    with pytest.raises(RecordLockedError, match=str(small_trial.trial)):
        ensure_editable(participant)


def test_a_recruiting_trial_without_locks_is_editable(participants):
    for participant in participants:
        assert ensure_editable(participant) is None


@pytest.mark.req("R12")
@pytest.mark.parametrize("name", ["monitor", "coord", "nurse-A1", "stat", "blind-stat"])
def test_only_a_data_manager_may_lock_or_unlock(small_trial, participants, data_manager, name):
    # given
    user = small_trial.users[name]
    first, second, _ = participants
    participant_lock(participant=second, user=data_manager, reason="clean")
    trial = small_trial.trial
    # when / then
    with pytest.raises(PermissionDenied):
        participant_lock(participant=first, user=user, reason="clean")
    with pytest.raises(PermissionDenied):
        participant_unlock(participant=second, user=user, reason="late lab value")
    with pytest.raises(PermissionDenied):
        trial_lock(trial=trial, user=user, reason="database lock")
    assert RecordLock.objects.filter(trial=trial).count() == 1
    assert active_lock(second) is not None


def test_demo_data_manager_may_lock_and_demo_site_staff_may_not(demo_trial):
    # given
    users = {u.username: u for u in get_user_model().objects.filter(username__in=["demo-datamanager", "demo-site"])}
    participant = (
        Participant.objects.filter(trial=demo_trial, site__code="S01", locks__isnull=True).order_by("pk").first()
    )
    # when / then
    with pytest.raises(PermissionDenied):
        participant_lock(participant=participant, user=users["demo-site"], reason="clean")
    lock = participant_lock(participant=participant, user=users["demo-datamanager"], reason="clean")
    assert active_lock(participant) == lock


@pytest.mark.parametrize("reason", ["", "   ", None, "x" * 301])
def test_lock_and_unlock_need_a_reason(small_trial, participants, data_manager, reason):
    # given
    first, second, _ = participants
    participant_lock(participant=second, user=data_manager, reason="clean")
    # when / then
    for call in (
        lambda: participant_lock(participant=first, user=data_manager, reason=reason),
        lambda: participant_unlock(participant=second, user=data_manager, reason=reason),
        lambda: trial_lock(trial=small_trial.trial, user=data_manager, reason=reason),
    ):
        with pytest.raises(DataValidationError) as refused:
            call()
        assert refused.value.field == "reason"
    assert RecordLock.objects.filter(trial=small_trial.trial).count() == 1


def test_locking_twice_is_refused(small_trial, participants, data_manager):
    # given
    first = participants[0]
    participant_lock(participant=first, user=data_manager, reason="clean")
    trial_lock(trial=small_trial.trial, user=data_manager, reason="database lock")
    # when / then
    with pytest.raises(ApplicationError, match="already locked"):
        participant_lock(participant=first, user=data_manager, reason="again")
    with pytest.raises(ApplicationError, match="already locked"):
        trial_lock(trial=small_trial.trial, user=data_manager, reason="again")
    assert RecordLock.objects.filter(trial=small_trial.trial).count() == 2


def test_unlocking_what_is_not_locked_is_refused(small_trial, participants, data_manager):
    # given: only the participant is locked, not the trial, and not the other participant
    first, second, _ = participants
    participant_lock(participant=first, user=data_manager, reason="clean")
    # when / then
    with pytest.raises(ApplicationError, match="not locked"):
        participant_unlock(participant=second, user=data_manager, reason="late lab value")
    with pytest.raises(ApplicationError, match="not locked"):
        trial_unlock(trial=small_trial.trial, user=data_manager, reason="late lab value")


@pytest.mark.req("R12")
def test_unlock_keeps_the_lock_row_and_records_who_when_why(participants, data_manager):
    # given
    first = participants[0]
    lock = participant_lock(participant=first, user=data_manager, reason="clean")
    # when
    unlocked = participant_unlock(participant=first, user=data_manager, reason="late lab value arrived")
    # then
    lock.refresh_from_db()
    assert unlocked.pk == lock.pk
    assert lock.unlocked_by == data_manager
    assert lock.unlocked_at is not None
    assert lock.unlock_reason == "late lab value arrived"
    assert active_lock(first) is None
    ensure_editable(first)
    assert record_history(lock)[-1].reason == "casebook unlocked: late lab value arrived"
    # and it can be locked again, keeping the history of both locks
    participant_lock(participant=first, user=data_manager, reason="clean again")
    assert RecordLock.objects.filter(participant=first).count() == 2


def test_unlocking_a_casebook_invalidates_its_signatures(participants, data_manager, investigators):
    # given: signed, and nothing in the casebook changes
    first, second, _ = participants
    signature = sign(first, investigators)
    other = sign(second, investigators)
    participant_lock(participant=first, user=data_manager, reason="clean")
    # when
    participant_unlock(participant=first, user=data_manager, reason="late lab value")
    # then
    signature.refresh_from_db()
    other.refresh_from_db()
    assert signature.invalidated_at is not None
    assert signature.invalidated_reason == "unlocked: late lab value"
    assert not signature_is_valid(signature)
    assert signature_is_valid(other)


def test_unlocking_the_trial_invalidates_every_participants_signatures(
    small_trial, participants, data_manager, investigators
):
    # given
    signatures = [sign(participant, investigators) for participant in participants]
    trial_lock(trial=small_trial.trial, user=data_manager, reason="database lock")
    # when
    lock = trial_unlock(trial=small_trial.trial, user=data_manager, reason="reopened for a late SAE")
    # then
    assert lock.unlock_reason == "reopened for a late SAE"
    for signature in signatures:
        signature.refresh_from_db()
        assert signature.invalidated_reason == "unlocked: reopened for a late SAE"
    for participant in participants:
        ensure_editable(participant)


def test_trial_unlock_leaves_casebooks_with_their_own_lock_locked(small_trial, participants, data_manager):
    # given
    first, second, _ = participants
    own = participant_lock(participant=first, user=data_manager, reason="clean")
    trial_lock(trial=small_trial.trial, user=data_manager, reason="database lock")
    # when
    trial_unlock(trial=small_trial.trial, user=data_manager, reason="reopened")
    # then
    assert active_lock(first) == own
    with pytest.raises(RecordLockedError):
        ensure_editable(first)
    ensure_editable(second)


@pytest.mark.req("R12")
def test_unlocking_needs_its_own_right_beside_the_lock_right(small_trial, participants, lock_only_data_manager):
    # given a casebook and the trial locked by a data manager who may lock but was not given the unlock right
    first, second = participants[0], participants[1]
    participant_lock(participant=first, user=lock_only_data_manager, reason="clean after SDV")
    trial_lock(trial=small_trial.trial, user=lock_only_data_manager, reason="database lock")
    # when / then: neither lock can be lifted by them, and nothing changes
    with pytest.raises(PermissionDenied, match="unlock_data"):
        participant_unlock(participant=first, user=lock_only_data_manager, reason="late lab value")
    with pytest.raises(PermissionDenied, match="unlock_data"):
        trial_unlock(trial=small_trial.trial, user=lock_only_data_manager, reason="late lab value")
    assert active_lock(first) is not None
    assert active_lock(second).participant is None  # still the trial-wide lock


@pytest.mark.req("R12")
def test_the_database_gives_the_unlock_right_to_data_managers_only(small_trial):
    from django.db import IntegrityError, transaction

    with audit_context(reason=INITIAL_ENTRY):
        user = get_user_model().objects.create_user("site-unlocker")
        with pytest.raises(IntegrityError, match="only_data_managers_may_unlock"), transaction.atomic():
            TrialMembership.objects.create(user=user, trial=small_trial.trial, role=Role.MONITOR, may_unlock=True)
