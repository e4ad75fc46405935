"""Adverse events, their seriousness and the reporting clocks they start (ICH E2A)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit.context import INITIAL_ENTRY, audit_context
from participants.exceptions import DataValidationError
from participants.meddra import SOC_NAMES
from participants.models import AdverseEvent, Participant
from participants.models.adverse_event import SERIOUSNESS_CRITERIA
from participants.notifications import queue_sae_notification
from participants.services.editing import check_can_enter, require_reason, versioned_update
from participants.services.signatures import signatures_invalidate

SPONSOR_DEADLINE = dt.timedelta(hours=24)
SUSAR_DEADLINE_FATAL = dt.timedelta(days=7)
SUSAR_DEADLINE_OTHER = dt.timedelta(days=15)

EDITABLE_FIELDS = (
    "term",
    "soc",
    "onset_date",
    "stop_date",
    "grade",
    *SERIOUSNESS_CRITERIA,
    "causality",
    "expected",
    "action_taken",
    "outcome",
    "site_aware_at",
)


def validate_adverse_event(participant: Participant, data: dict) -> dict[str, str]:
    """Every rule of the AE form, by field; an empty dict means the data may be saved."""
    errors: dict[str, str] = {}
    if not (data.get("term") or "").strip():
        errors["term"] = "Enter the adverse event term as reported."
    if data.get("soc") not in SOC_NAMES:
        errors["soc"] = "Choose the MedDRA system organ class."
    errors.update(_date_errors(participant, data))
    errors.update(_grade_errors(data))
    for name, choices in (
        ("causality", AdverseEvent.Causality),
        ("action_taken", AdverseEvent.Action),
        ("outcome", AdverseEvent.Outcome),
    ):
        if data.get(name) not in choices.values:
            errors.setdefault(name, f"Choose the {AdverseEvent._meta.get_field(name).verbose_name}.")
    if data.get("expected") is None:
        errors["expected"] = "Say whether the event is expected (listed in the reference safety information)."
    return errors


def _date_errors(participant: Participant, data: dict) -> dict[str, str]:
    errors: dict[str, str] = {}
    onset, stop = data.get("onset_date"), data.get("stop_date")
    if onset is None:
        errors["onset_date"] = "Enter the onset date."
    elif onset > timezone.localdate():
        errors["onset_date"] = "The onset date is in the future."
    elif participant.consent_date and onset < participant.consent_date:
        errors["onset_date"] = f"The onset is before informed consent ({participant.consent_date.isoformat()})."
    if onset and stop and stop < onset:
        errors["stop_date"] = f"The stop date must be on or after the onset date ({onset.isoformat()})."
    aware = data.get("site_aware_at")
    if aware is None:
        errors["site_aware_at"] = "Enter when the site learned of the event."
    elif aware > timezone.now():
        errors["site_aware_at"] = "The awareness time is in the future."
    return errors


def _grade_errors(data: dict) -> dict[str, str]:
    grade = data.get("grade")
    if grade not in (1, 2, 3, 4, 5):
        return {"grade": "Choose a CTCAE grade from 1 to 5."}
    errors: dict[str, str] = {}
    if grade == 5:
        if data.get("outcome") != AdverseEvent.Outcome.FATAL:
            errors["outcome"] = "Grade 5 means death related to the AE: the outcome must be fatal."
        if not data.get("results_in_death"):
            errors["results_in_death"] = "Grade 5 is fatal: tick 'results in death'."
    elif data.get("outcome") == AdverseEvent.Outcome.FATAL:
        errors["grade"] = "A fatal outcome is CTCAE grade 5."
    return errors


def _normalise(data: dict) -> dict:
    values = {name: data.get(name) for name in EDITABLE_FIELDS}
    for name in SERIOUSNESS_CRITERIA:
        values[name] = bool(values[name])
    values["term"] = (values["term"] or "").strip()
    values["serious"] = any(values[name] for name in SERIOUSNESS_CRITERIA)
    return values


def adverse_event_record(*, participant: Participant, user, data: dict) -> AdverseEvent:
    """Record an AE. Seriousness follows from the six ICH E2A criteria; a serious one starts the clocks."""
    check_can_enter(participant, user)
    errors = validate_adverse_event(participant, data)
    if errors:
        raise DataValidationError("The adverse event was not saved: correct the fields marked.", errors=errors)
    with transaction.atomic(), audit_context(reason=INITIAL_ENTRY, user=user):
        event = AdverseEvent.objects.create(participant=participant, **_normalise(data))
        signatures_invalidate(participant=participant, reason="adverse event added")
        # In this transaction, not through the broker: the notification exists exactly when the SAE does (R32).
        queue_sae_notification(event)
    return event


def adverse_event_update(*, event: AdverseEvent, user, expected_version: int, data: dict, reason: str) -> AdverseEvent:
    participant = event.participant
    check_can_enter(participant, user)
    errors = validate_adverse_event(participant, data)
    if errors:
        raise DataValidationError("Your changes were not saved: correct the fields marked.", errors=errors)
    reason = require_reason(reason)
    with transaction.atomic():
        event = versioned_update(
            instance=event, expected_version=expected_version, changes=_normalise(data), user=user, reason=reason
        )
        with audit_context(reason=reason, user=user):
            signatures_invalidate(participant=participant, reason=f"adverse event changed: {reason}")
        queue_sae_notification(event)  # once per event: an AE that becomes serious is notified then
    return event


def adverse_event_record_regulatory_report(*, event: AdverseEvent, user) -> AdverseEvent:
    """Record that the SUSAR was reported to the regulators (expedited report): stops the 7/15-day clock."""
    check_can_enter(event.participant, user)
    if not event.is_susar:
        raise DataValidationError("Only SUSARs have an expedited regulatory clock.", errors={"__all__": "Not a SUSAR."})
    if event.regulator_reported_at is not None:
        return event
    return versioned_update(
        instance=event,
        expected_version=event.version,
        user=user,
        changes={"regulator_reported_at": timezone.now()},
        reason="SUSAR reported to regulators",
    )


def adverse_event_notify_sponsor(*, event: AdverseEvent, user) -> AdverseEvent:
    """Record that the SAE report reached the sponsor: stops the 24-hour clock."""
    check_can_enter(event.participant, user)
    if not event.serious:
        raise DataValidationError(
            "Only serious adverse events are reported to the sponsor within 24 hours.",
            errors={"__all__": "Not a serious adverse event."},
        )
    if event.sponsor_notified_at is not None:
        return event
    return versioned_update(
        instance=event,
        expected_version=event.version,
        user=user,
        changes={"sponsor_notified_at": timezone.now()},
        reason="SAE reported to the sponsor",
    )


@dataclass(frozen=True)
class ReportingClock:
    name: str
    started_at: dt.datetime
    deadline: dt.datetime
    met_at: dt.datetime | None

    @property
    def is_running(self) -> bool:
        return self.met_at is None

    def remaining(self, now: dt.datetime) -> dt.timedelta:
        return self.deadline - now

    def is_overdue(self, now: dt.datetime) -> bool:
        return (self.met_at or now) > self.deadline

    def label(self, now: dt.datetime) -> str:
        if self.met_at is not None:
            state = "late" if self.met_at > self.deadline else "on time"
            return f"{self.name}: reported {self.met_at:%Y-%m-%d %H:%M} UTC ({state})"
        left = self.remaining(now)
        if left.total_seconds() < 0:
            return f"{self.name}: OVERDUE by {_duration(-left)}"
        return f"{self.name}: {_duration(left)} left (due {self.deadline:%Y-%m-%d %H:%M} UTC)"


def _duration(span: dt.timedelta) -> str:
    hours = int(span.total_seconds() // 3600)
    if hours >= 48:
        return f"{hours // 24} days {hours % 24} h"
    return f"{hours} h {int(span.total_seconds() % 3600 // 60)} min"


def reporting_clocks(event: AdverseEvent) -> list[ReportingClock]:
    """The 24-hour sponsor clock of an SAE and, for a SUSAR, the 7-day (fatal or life-threatening) or 15-day
    regulatory clock, both from the site's awareness."""
    if not event.serious:
        return []
    clocks = [
        ReportingClock(
            "Sponsor report (24 h)",
            event.site_aware_at,
            event.site_aware_at + SPONSOR_DEADLINE,
            event.sponsor_notified_at,
        )
    ]
    if event.is_susar:
        fatal = event.results_in_death or event.life_threatening
        deadline = SUSAR_DEADLINE_FATAL if fatal else SUSAR_DEADLINE_OTHER
        clocks.append(
            ReportingClock(
                f"SUSAR to regulators ({deadline.days} days)",
                event.site_aware_at,
                event.site_aware_at + deadline,
                event.regulator_reported_at,
            )
        )
    return clocks
