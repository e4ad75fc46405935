"""Emergency unblinding of a single participant by an investigator."""

from __future__ import annotations

from django.db import transaction

from audit.context import audit_context
from participants.exceptions import NotEligibleError, UnblindingReasonRequiredError
from participants.models import Participant, UnblindingEvent
from participants.notifications import queue_unblinding_notification
from trials.models import Arm
from trials.policies.access import Capability, require
from trials.policies.sites import can_see_site

MINIMUM_REASON_LENGTH = 10


def participant_unblind_emergency(*, participant: Participant, user, reason: str) -> tuple[UnblindingEvent, Arm]:
    """Reveal one participant's arm to the requesting investigator, record who/when/why, notify coordinators.

    The notification says that an unblinding happened and why, never the arm (coordinators stay blind).
    """
    trial = participant.trial
    require(user, trial, Capability.EMERGENCY_UNBLIND)
    if not can_see_site(user, trial, participant.site_id):
        raise NotEligibleError(f"{participant} is not at one of your sites.")
    reason = (reason or "").strip()
    if len(reason) < MINIMUM_REASON_LENGTH:
        raise UnblindingReasonRequiredError(
            f"Describe the medical emergency that requires unblinding (at least {MINIMUM_REASON_LENGTH} characters).",
            field="reason",
        )
    randomization = getattr(participant, "randomization", None)
    if randomization is None:
        raise NotEligibleError(f"{participant} has not been randomized: there is nothing to unblind.")
    with transaction.atomic(), audit_context(reason=f"emergency unblinding: {reason}", user=user):
        event = UnblindingEvent.objects.create(trial=trial, participant=participant, requested_by=user, reason=reason)
        # The coordinators are told through the outbox, in this transaction: a broker outage cannot lose it.
        queue_unblinding_notification(event)
    return event, randomization.arm
