"""Safety notifications of participant data, delivered through the outbox (operations.outbox).

The services queue a message (ids only) in the transaction that saves the data; these handlers compose
the e-mail when the outbox delivers it, from the data as it is then. None of them names a treatment arm.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Q
from django.utils import timezone

from operations.models import OutboxMessage
from operations.outbox import outbox_add
from participants.models import AdverseEvent, UnblindingEvent
from participants.models.adverse_event import SERIOUSNESS_CRITERIA
from trials.models import Role
from trials.selectors import member_emails

# Who must hear of a serious adverse event within 24 hours: the coordinating centre acting for the sponsor,
# and the sponsor's own viewers (ICH E2A; both stay blinded: nothing here depends on the arm).
SAFETY_ROLES = (Role.COORDINATOR, Role.SPONSOR_VIEWER)
SAE_REMINDER_BEFORE = dt.timedelta(hours=6)


def queue_sae_notification(event: AdverseEvent) -> None:
    """Queue the SAE notification (once per event, whenever it is first saved as serious)."""
    if event.serious:
        outbox_add(kind="sae_reported", key=f"sae-reported:{event.pk}", payload={"adverse_event_id": event.pk})


def queue_unblinding_notification(event: UnblindingEvent) -> None:
    outbox_add(kind="emergency_unblinding", key=f"unblinding:{event.pk}", payload={"unblinding_event_id": event.pk})


def _sae_facts(event: AdverseEvent) -> str:
    participant = event.participant
    criteria = ", ".join(
        str(AdverseEvent._meta.get_field(name).verbose_name) for name in SERIOUSNESS_CRITERIA if getattr(event, name)
    )
    return (
        f"Participant: {participant.screening_number} (site {participant.site.code})\n"
        f"Event: {event.term} ({event.soc}), CTCAE grade {event.grade}, onset {event.onset_date.isoformat()}\n"
        f"Seriousness: {criteria}\n"
        f"Causality: {event.get_causality_display()}; expected: {'yes' if event.expected else 'no'}\n"
        f"Site aware: {event.site_aware_at:%Y-%m-%d %H:%M} UTC\n"
    )


def _serious_event(payload: dict) -> AdverseEvent | None:
    """The adverse event a message is about, as it is now; None if it is gone or no longer serious."""
    event = (
        AdverseEvent.objects.select_related("participant__site", "participant__trial")
        .filter(pk=payload["adverse_event_id"])
        .first()
    )
    return event if event is not None and event.serious else None


def sae_reported_email(payload: dict) -> EmailMessage | None:
    event = _serious_event(payload)
    if event is None:
        return None
    trial = event.participant.trial
    recipients = member_emails(trial, SAFETY_ROLES)
    if not recipients:
        return None
    deadline = event.site_aware_at + dt.timedelta(hours=24)
    return EmailMessage(
        subject=f"[{trial.protocol_code}] Serious adverse event at site {event.participant.site.code}",
        body=(
            f"A serious adverse event was recorded in ExoTrial.\n\n{_sae_facts(event)}"
            f"Sponsor report due by: {deadline:%Y-%m-%d %H:%M} UTC\n\n"
            "The treatment assignment is not included in this message. Review the event in ExoTrial."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )


def sae_clock_reminder_email(payload: dict) -> EmailMessage | None:
    event = _serious_event(payload)
    if event is None or event.sponsor_notified_at is not None:
        return None  # reported meanwhile: nothing to remind anyone of
    trial = event.participant.trial
    recipients = member_emails(trial, (*SAFETY_ROLES, Role.SITE_STAFF))
    if not recipients:
        return None
    deadline = event.site_aware_at + dt.timedelta(hours=24)
    state = "is overdue" if timezone.now() > deadline else "is due soon"
    return EmailMessage(
        subject=f"[{trial.protocol_code}] SAE sponsor report {state} (site {event.participant.site.code})",
        body=(
            f"The 24-hour sponsor report of this serious adverse event {state}: due {deadline:%Y-%m-%d %H:%M} UTC, "
            f"not recorded as sent.\n\n{_sae_facts(event)}\n"
            "Record the report in ExoTrial once it has been sent."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )


def emergency_unblinding_email(payload: dict) -> EmailMessage | None:
    event = (
        UnblindingEvent.objects.select_related("trial", "participant__site", "requested_by")
        .filter(pk=payload["unblinding_event_id"])
        .first()
    )
    if event is None:
        return None
    recipients = member_emails(event.trial, (Role.COORDINATOR,))
    if not recipients:
        return None
    participant = event.participant
    who = event.requested_by.get_full_name() or event.requested_by.get_username()
    return EmailMessage(
        subject=f"[{event.trial.protocol_code}] Emergency unblinding of {participant.screening_number}",
        body=(
            f"{who} unblinded participant {participant.screening_number} (site {participant.site.code}) "
            f"at {event.created_at:%Y-%m-%d %H:%M} UTC.\n\nReason: {event.reason}\n\n"
            "The treatment assignment is not included in this message. Review the event in ExoTrial."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )


def queue_sae_clock_reminders(*, now: dt.datetime | None = None) -> int:
    """Beat job: SAEs whose 24-hour sponsor clock ends within SAE_REMINDER_BEFORE (or has ended) and that are not
    reported get one reminder each. The clock is the row's own awareness time, not a timer in the broker."""
    now = now or timezone.now()
    due = AdverseEvent.objects.filter(
        Q(serious=True),
        sponsor_notified_at__isnull=True,
        site_aware_at__lte=now - dt.timedelta(hours=24) + SAE_REMINDER_BEFORE,
    ).values_list("pk", flat=True)
    keys = {f"sae-clock:{event_id}": event_id for event_id in due}
    already = set(OutboxMessage.objects.filter(key__in=keys).values_list("key", flat=True))
    for key, event_id in keys.items():
        if key not in already:
            outbox_add(kind="sae_clock_reminder", key=key, payload={"adverse_event_id": event_id})
    return len(keys) - len(already)
