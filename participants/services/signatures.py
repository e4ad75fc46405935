"""Investigator e-signatures of a participant's casebook (21 CFR 11.50, 11.70, 11.200).

A signature is bound to the exact content signed by a SHA-256 of the casebook's values: the stored hash is
compared with the casebook's current hash whenever the signature is shown, so a later change of any value makes
the signature invalid even if no service remembered to invalidate it. ``signatures_invalidate`` additionally
records when and why a signature stopped holding, which the current hash alone cannot tell.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import uuid

from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.utils import timezone

from accounts.exceptions import ReauthenticationError
from accounts.services.reauthentication import credentials_reverify
from audit.context import audit_context
from participants.exceptions import DataValidationError, SignatureAuthenticationError
from participants.models import (
    AdverseEvent,
    DoseAdministration,
    EligibilityAnswer,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Signature,
    Visit,
)
from trials.policies.access import Capability, require
from trials.policies.sites import can_see_site

# Bookkeeping, not clinical content: a version bump or a creation time is not something the investigator attests.
NOT_SIGNED_FIELDS = frozenset({"version", "created_at"})
REASON_MAX_LENGTH = Signature._meta.get_field("invalidated_reason").max_length


def content_fields(model: type[models.Model]) -> list[str]:
    """Column names (``*_id`` for foreign keys) of the model's clinical values, in a fixed order."""
    return sorted(field.attname for field in model._meta.concrete_fields if field.name not in NOT_SIGNED_FIELDS)


def rows(queryset: models.QuerySet) -> list[dict[str, object]]:
    """The queryset's clinical values, as plain dicts ordered by pk (a stable order makes a stable hash)."""
    return list(queryset.order_by("pk").values(*content_fields(queryset.model)))


def _canonical(value: object) -> object:
    # json's own float encoding is repr(), which round-trips exactly; everything else needs a fixed spelling.
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if timezone.is_aware(value) else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"Cannot hash a value of type {type(value).__name__}.")


def sha256_of(content: object) -> str:
    """SHA-256 of a canonical JSON serialisation: sorted keys, ISO dates, floats by repr, no whitespace."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=_canonical, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def casebook_hash(participant: Participant) -> str:
    """SHA-256 of the participant's clinical content as stored now (read from the database, never from memory).

    Covers the participant's own values, eligibility answers, visits, outcome measurements, adverse events,
    doses and protocol deviations. Reading the casebook changes nothing, so it does not change the hash.
    """
    pk = participant.pk
    content = {
        "participant": rows(Participant.objects.filter(pk=pk)),
        "eligibility_answers": rows(EligibilityAnswer.objects.filter(participant_id=pk)),
        "visits": rows(Visit.objects.filter(participant_id=pk)),
        "outcome_measurements": rows(OutcomeMeasurement.objects.filter(visit__participant_id=pk)),
        "adverse_events": rows(AdverseEvent.objects.filter(participant_id=pk)),
        "doses": rows(DoseAdministration.objects.filter(participant_id=pk)),
        "protocol_deviations": rows(ProtocolDeviation.objects.filter(participant_id=pk)),
    }
    return sha256_of(content)


def casebook_sign(
    *, participant: Participant, user, password: str, meaning: str, otp_code: str = "", request=None
) -> Signature:
    """Sign the participant's casebook as it is now, after re-entering the password (and authenticator code).

    Part 11.200 wants each signing to be a deliberate act by the genuine owner of the account, so a logged-in
    session is not enough: the password is checked again, and a user with an authenticator gives a current code
    too. A wrong one stores nothing and, given the ``request``, counts toward the account's lockout (R13). Signing
    is allowed on a locked casebook (sign-off usually follows the lock) because it changes no clinical value.
    """
    trial = participant.trial
    require(user, trial, Capability.ENTER_DATA)
    if not can_see_site(user, trial, participant.site_id):
        raise PermissionDenied(f"{participant} is not at one of your sites; only its site's investigators may sign.")
    if meaning not in Signature.Meaning.values:
        raise DataValidationError(
            f"Choose what the signature means: {', '.join(Signature.Meaning.values)}.",
            errors={"meaning": "Not a known signature meaning."},
            field="meaning",
        )
    try:
        credentials_reverify(user=user, password=password, otp_code=otp_code, request=request)
    except ReauthenticationError as error:
        message = f"{error.message} The casebook was not signed."
        raise SignatureAuthenticationError(message, field=error.field) from error
    with transaction.atomic(), audit_context(reason=f"casebook signed ({meaning})", user=user):
        # No row lock: if a change commits between hashing and storing, the stored hash no longer matches and
        # the signature shows as invalid at once: the safe direction.
        return Signature.objects.create(
            participant=participant,
            signer=user,
            signer_name=user.get_full_name() or user.get_username(),
            meaning=meaning,
            content_hash=casebook_hash(participant),
        )


def signature_manifestation(signature: Signature) -> str:
    """The signature as every display and export shows it (11.50): printed name, UTC ISO 8601 time, meaning."""
    signed_at = signature.signed_at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{signature.signer_name}, {signed_at}, {signature.get_meaning_display()}"


def signature_is_valid(signature: Signature) -> bool:
    """Whether the signature still holds: never invalidated and the casebook unchanged since signing."""
    if signature.invalidated_at is not None:
        return False
    return signature.content_hash == casebook_hash(signature.participant)


def signatures_invalidate(*, participant: Participant, reason: str, force: bool = False) -> int:
    """Mark the participant's live signatures invalidated, with when and why; returns how many.

    Without ``force`` only signatures whose content no longer matches are marked (a data-entry service calls
    this after a change). With ``force`` every live signature is marked: unlocking a casebook reopens it for
    changes, so the investigator must sign again even if nothing ends up changing.
    """
    reason = (reason or "").strip()
    if not reason:
        raise DataValidationError(
            "Say why the signatures are invalidated.", errors={"reason": "Required."}, field="reason"
        )
    with transaction.atomic(), audit_context(reason=reason):
        live = Signature.objects.filter(participant_id=participant.pk, invalidated_at__isnull=True)
        if not force:
            live = live.exclude(content_hash=casebook_hash(participant))
        return live.update(invalidated_at=timezone.now(), invalidated_reason=reason[:REASON_MAX_LENGTH])
