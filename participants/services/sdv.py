"""Source data verification (SDV): a monitor marks a visit's values as matching the source documents.

The mark stores a SHA-256 of the visit's values at verification time. Whether it still holds is decided by
comparing that hash with the visit's current one, so any later change, however it was made (form, admin,
bulk update), clears the mark without every writer having to remember to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from audit.context import audit_context
from audit.exceptions import ApplicationError
from participants.models import OutcomeMeasurement, SourceVerification, Visit
from participants.services.signatures import content_fields, sha256_of
from trials.policies.access import Capability, require
from trials.policies.sites import can_see_site

NOT_VERIFIED = "not verified"
VERIFIED = "verified"
CHANGED_SINCE_VERIFICATION = "changed since verification"


def visit_content_hash(visit: Visit) -> str:
    """SHA-256 of the visit's own values and its measurements' values, as stored now."""
    hashes = _content_hashes([visit.pk])
    if visit.pk not in hashes:
        raise Visit.DoesNotExist(f"Visit {visit.pk} does not exist.")
    return hashes[visit.pk]


def visit_verify(*, visit: Visit, user) -> SourceVerification:
    """Mark a completed visit as source-verified by ``user``, or renew the mark with the visit's current values.

    Allowed on a locked casebook: verification records a check of the values, it changes none of them.
    """
    participant = visit.participant
    trial = participant.trial
    require(user, trial, Capability.VERIFY_SOURCE)
    if not can_see_site(user, trial, participant.site_id):
        raise PermissionDenied(f"{participant} is not at one of your sites.")
    with transaction.atomic():
        # Locking the visit serialises two monitors verifying it at once, and no change can slip in between
        # reading its status and hashing its values.
        current = Visit.objects.select_for_update().get(pk=visit.pk)
        if current.status != Visit.Status.COMPLETED:
            raise ApplicationError(
                f"{visit} was {current.get_status_display().lower()}; only completed visits have values to verify.",
                field="status",
            )
        content_hash = visit_content_hash(current)
        verification = SourceVerification.objects.filter(visit=current).first()
        if verification is None:
            with audit_context(reason="source data verified", user=user):
                return SourceVerification.objects.create(visit=current, verified_by=user, content_hash=content_hash)
        verification.content_hash = content_hash
        verification.verified_by = user
        verification.verified_at = timezone.now()
        with audit_context(reason="source data re-verified", user=user):
            verification.save(update_fields=["content_hash", "verified_by", "verified_at"])
        return verification


def verification_status(visit: Visit) -> str:
    """``"not verified"``, ``"verified"`` or ``"changed since verification"``."""
    return verification_statuses([visit])[visit.pk]


def verification_statuses(visits: Iterable[Visit]) -> dict[int, str]:
    """Status per visit pk for a page of visits, in three SQL queries whatever their number."""
    ids = sorted({visit.pk for visit in visits})
    if not ids:
        return {}
    hashes = _content_hashes(ids)
    verified = dict(SourceVerification.objects.filter(visit_id__in=ids).values_list("visit_id", "content_hash"))
    statuses = {}
    for pk in ids:
        if pk not in verified:
            statuses[pk] = NOT_VERIFIED
        elif verified[pk] == hashes[pk]:
            statuses[pk] = VERIFIED
        else:
            statuses[pk] = CHANGED_SINCE_VERIFICATION
    return statuses


def _content_hashes(visit_ids: list[int]) -> dict[int, str]:
    """Content hash per visit in two queries, from the database rather than instances that may be stale."""
    visits = {row["id"]: row for row in Visit.objects.filter(pk__in=visit_ids).values(*content_fields(Visit))}
    measurements: dict[int, list[dict[str, object]]] = defaultdict(list)
    rows = OutcomeMeasurement.objects.filter(visit_id__in=visit_ids).order_by("pk")
    for row in rows.values(*content_fields(OutcomeMeasurement)):
        measurements[row["visit_id"]].append(row)
    return {pk: sha256_of({"visit": row, "measurements": measurements[pk]}) for pk, row in visits.items()}
