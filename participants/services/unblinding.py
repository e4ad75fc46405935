"""Emergency unblinding of a single participant by an investigator."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from audit.context import audit_context
from participants.exceptions import NotEligibleError, UnblindingReasonRequiredError
from participants.models import Participant, UnblindingEvent
from trials.models import Arm, Role, TrialMembership
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
        recipients = list(
            TrialMembership.objects.filter(trial=trial, role=Role.COORDINATOR, is_active=True)
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
        subject = f"[{trial.protocol_code}] Emergency unblinding of {participant.screening_number}"
        body = (
            f"{user.get_full_name() or user.get_username()} unblinded participant {participant.screening_number} "
            f"(randomization number {randomization.randomization_number}, site {participant.site.code}) "
            f"at {event.created_at:%Y-%m-%d %H:%M} UTC.\n\nReason: {reason}\n\n"
            "The treatment assignment is not included in this message. Review the event in ExoTrial."
        )
        if recipients:
            transaction.on_commit(
                lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
            )
    return event, randomization.arm
