"""Record locks: a data manager freezes one participant's casebook, or the whole trial, before analysis.

Locks are never deleted: unlocking stamps who, when and why on the lock row, so the lock history of a casebook
stays readable next to the audit trail. Every service that changes clinical data calls ``ensure_editable`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.context import audit_context
from audit.exceptions import ApplicationError
from participants.exceptions import DataValidationError, RecordLockedError
from participants.models import Participant, RecordLock, Signature
from participants.services.signatures import signatures_invalidate
from trials.models import Trial
from trials.policies.access import Capability, require

REASON_MAX_LENGTH = RecordLock._meta.get_field("reason").max_length


@dataclass(frozen=True)
class LockState:
    """What decides whether a casebook may change, read from the database in the current request: whether a lock is
    active on it (its own or its trial's), and its trial (whose status may have closed the database)."""

    has_active_lock: bool
    trial: Trial


# Whether a lock is active on the casebook of participant %(participant)s, in a query of its trial aliased ``t``:
# the condition of ``active_lock``, for the reads that only need to know.
_ACTIVE_LOCK_EXISTS_SQL = f"""EXISTS (
    SELECT FROM {RecordLock._meta.db_table} l
    WHERE l.trial_id = t.id AND l.unlocked_at IS NULL
      AND (l.participant_id = %(participant)s OR l.participant_id IS NULL)
)"""

# The columns of a read of the trial (aliased ``t``, with the parameters %(trial)s and %(participant)s) that
# ``lock_state_of`` turns into a LockState; visit_record reads them along with what it checks itself.
LOCK_STATE_COLUMNS = f"t.id, t.protocol_code, t.status, {_ACTIVE_LOCK_EXISTS_SQL} AS has_active_lock"

_LOCK_STATE_SQL = f"""
SELECT {LOCK_STATE_COLUMNS}
FROM {Trial._meta.db_table} t
WHERE t.id = %(trial)s
"""  # noqa: S608 - table names from the models, values are parameters


def lock_state_of(trial: Trial) -> LockState:
    """The LockState of a trial read with ``LOCK_STATE_COLUMNS`` (by ``Trial.objects.raw``)."""
    return LockState(has_active_lock=trial.has_active_lock, trial=trial)


def active_lock(participant: Participant) -> RecordLock | None:
    """The participant's own active lock, or else the trial's active (participant-less) lock, or None."""
    return (
        RecordLock.objects.filter(trial_id=participant.trial_id, unlocked_at__isnull=True)
        .filter(Q(participant_id=participant.pk) | Q(participant__isnull=True))
        .select_related("locked_by", "trial")
        # The participant's own lock first: its reason is the more specific one to show.
        .order_by(F("participant_id").asc(nulls_last=True))
        .first()
    )


def _read_lock_state(participant: Participant) -> LockState:
    # Read the trial from the database: an instance held in memory may predate the database lock. The same read
    # tells whether a lock is active; the lock itself is read only to explain a refusal.
    return lock_state_of(
        Trial.objects.raw(_LOCK_STATE_SQL, {"trial": participant.trial_id, "participant": participant.pk})[0]
    )


def ensure_editable(participant: Participant, *, state: LockState | None = None) -> None:
    """Refuse (RecordLockedError) when the casebook or the trial is locked, or the trial's database is closed.

    ``state``: the participant's ``LockState`` when the caller has read it in this request; read here otherwise.
    """
    if state is None:
        state = _read_lock_state(participant)
    lock = active_lock(participant) if state.has_active_lock else None
    if lock is not None:
        scope = f"The casebook of {participant}" if lock.participant_id else f"Trial {lock.trial}"
        raise RecordLockedError(
            f"{scope} was locked by {_name(lock.locked_by)} on {lock.locked_at:%Y-%m-%d %H:%M} UTC "
            f"({lock.reason}); a data manager must unlock it before any data can change.",
            lock=lock,
        )
    trial = state.trial
    if trial.is_locked:
        raise RecordLockedError(
            f"Trial {trial} is {trial.get_status_display().lower()}; its data can no longer change.",
            trial_status=trial.status,
        )


def participant_lock(*, participant: Participant, user, reason: str) -> RecordLock:
    """Lock one participant's casebook (typically once it is clean, before the investigator signs it)."""
    trial = participant.trial
    require(user, trial, Capability.LOCK_DATA)
    reason = _required_reason(reason)
    with transaction.atomic(), audit_context(reason=f"casebook locked: {reason}", user=user):
        return _create_lock(trial=trial, participant=participant, user=user, reason=reason)


def participant_unlock(*, participant: Participant, user, reason: str) -> RecordLock:
    """Unlock one casebook; its signatures are invalidated because the signed content may now change."""
    trial = participant.trial
    require(user, trial, Capability.UNLOCK_DATA)
    reason = _required_reason(reason)
    with transaction.atomic(), audit_context(reason=f"casebook unlocked: {reason}", user=user):
        lock = _release_lock(trial=trial, participant=participant, user=user, reason=reason)
        signatures_invalidate(participant=participant, reason=f"unlocked: {reason}", force=True)
    return lock


def trial_lock(*, trial: Trial, user, reason: str) -> RecordLock:
    """Lock every casebook of the trial at once (database lock before the final analysis)."""
    require(user, trial, Capability.LOCK_DATA)
    reason = _required_reason(reason)
    with transaction.atomic(), audit_context(reason=f"trial locked: {reason}", user=user):
        return _create_lock(trial=trial, participant=None, user=user, reason=reason)


def trial_unlock(*, trial: Trial, user, reason: str) -> RecordLock:
    """Lift the trial-wide lock; every participant's live signature is invalidated.

    Casebooks that also carry their own lock stay locked: that lock was a separate decision.
    """
    require(user, trial, Capability.UNLOCK_DATA)
    reason = _required_reason(reason)
    with transaction.atomic(), audit_context(reason=f"trial unlocked: {reason}", user=user):
        lock = _release_lock(trial=trial, participant=None, user=user, reason=reason)
        signed = Signature.objects.filter(participant__trial=trial, invalidated_at__isnull=True)
        for participant in Participant.objects.filter(pk__in=signed.values("participant_id")).order_by("pk"):
            signatures_invalidate(participant=participant, reason=f"unlocked: {reason}", force=True)
    return lock


def _create_lock(*, trial: Trial, participant: Participant | None, user, reason: str) -> RecordLock:
    existing = _active_lock_of(trial=trial, participant=participant).select_related("locked_by").first()
    if existing is not None:
        raise ApplicationError(
            f"{_scope(trial, participant)} is already locked (by {_name(existing.locked_by)} on "
            f"{existing.locked_at:%Y-%m-%d %H:%M} UTC).",
            lock=existing,
        )
    try:
        # A savepoint, so that losing a race to another data manager leaves the outer transaction usable.
        with transaction.atomic():
            return RecordLock.objects.create(trial=trial, participant=participant, locked_by=user, reason=reason)
    except IntegrityError:
        raise ApplicationError(f"{_scope(trial, participant)} was locked by someone else a moment ago.") from None


def _release_lock(*, trial: Trial, participant: Participant | None, user, reason: str) -> RecordLock:
    lock = _active_lock_of(trial=trial, participant=participant).select_for_update().first()
    if lock is None:
        raise ApplicationError(f"{_scope(trial, participant)} is not locked; there is nothing to unlock.")
    lock.unlocked_by = user
    lock.unlocked_at = timezone.now()
    lock.unlock_reason = reason
    lock.save(update_fields=["unlocked_by", "unlocked_at", "unlock_reason"])
    return lock


def _active_lock_of(*, trial: Trial, participant: Participant | None):
    locks = RecordLock.objects.filter(trial=trial, unlocked_at__isnull=True)
    if participant is None:
        return locks.filter(participant__isnull=True)
    return locks.filter(participant=participant)


def _required_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DataValidationError(
            "Give the reason for locking or unlocking.", errors={"reason": "Required."}, field="reason"
        )
    if len(reason) > REASON_MAX_LENGTH:
        raise DataValidationError(
            f"Keep the reason under {REASON_MAX_LENGTH} characters.",
            errors={"reason": f"At most {REASON_MAX_LENGTH} characters."},
            field="reason",
        )
    return reason


def _scope(trial: Trial, participant: Participant | None) -> str:
    return f"The casebook of {participant}" if participant is not None else f"Trial {trial}"


def _name(user) -> str:
    return user.get_full_name() or user.get_username()
