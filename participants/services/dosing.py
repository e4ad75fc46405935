"""Dosing with the investigational product lot actually given."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from audit.context import INITIAL_ENTRY, audit_context
from participants.exceptions import DataValidationError
from participants.models import DoseAdministration, Participant, Visit
from participants.services.editing import check_can_enter
from participants.services.signatures import signatures_invalidate
from trials.models import ProductLot

MAX_VOLUME_ML = 500


def lot_for_dosing(*, participant: Participant, lot_number: str, on: dt.date) -> tuple[ProductLot | None, str | None]:
    """The lot with ``lot_number`` and why it may not be given (None if it may), as the dosing form needs."""
    number = (lot_number or "").strip()
    if not number:
        return None, "Scan or type the lot number from the vial."
    lot = (
        ProductLot.objects.filter(lot_number__iexact=number, trial=participant.trial).first()
        or ProductLot.objects.filter(lot_number__iexact=number).first()
    )
    if lot is None:
        return None, f"No product lot {number} is known."
    return lot, lot.dosing_refusal(trial_id=participant.trial_id, on=on)


def dose_record(
    *,
    participant: Participant,
    user,
    lot_number: str,
    volume_ml: float | None,
    administered_at: dt.datetime | None,
    route: str,
    visit: Visit | None = None,
) -> DoseAdministration:
    """Record an administration; refuses lots that are not released, are expired or recalled, or belong to
    another trial. Particles given = volume × the lot's particle concentration."""
    check_can_enter(participant, user)
    errors: dict[str, str] = {}
    if getattr(participant, "randomization", None) is None:
        errors["__all__"] = f"{participant} is not randomized: there is no allocated treatment to give."
    if administered_at is None:
        errors["administered_at"] = "Enter when the dose was given."
    elif administered_at > timezone.now():
        errors["administered_at"] = "The administration time is in the future."
    lot, refusal = lot_for_dosing(
        participant=participant, lot_number=lot_number, on=(administered_at or timezone.now()).date()
    )
    if refusal:
        errors["lot_number"] = refusal
    if volume_ml is None or not 0 < volume_ml <= MAX_VOLUME_ML:
        errors["volume_ml"] = f"Enter the volume given in mL (more than 0, at most {MAX_VOLUME_ML})."
    if visit is not None and visit.participant_id != participant.pk:
        errors["visit"] = "That visit belongs to another participant."
    if errors:
        raise DataValidationError("The dose was not saved: correct the fields marked.", errors=errors)
    with transaction.atomic(), audit_context(reason=INITIAL_ENTRY, user=user):
        dose = DoseAdministration.objects.create(
            participant=participant,
            visit=visit,
            lot=lot,
            administered_at=administered_at,
            volume_ml=volume_ml,
            particles_given=volume_ml * lot.particle_concentration_per_ml,
            route=route,
            administered_by=user.get_full_name() or user.get_username(),
        )
        signatures_invalidate(participant=participant, reason="dose added")
    return dose
