"""Changing saved clinical data: a reason, an unlocked casebook and no lost update (optimistic concurrency).

Every edit names the ``version`` of the record it was based on. The UPDATE only applies if the row still has
that version; otherwise someone else saved in between, and the user is shown what changed since — taken
from the audit trail, which holds every version of every row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F, Model

from audit.context import audit_context
from audit.exceptions import ReasonForChangeRequiredError
from participants.exceptions import ConcurrentEditError

if TYPE_CHECKING:
    from participants.services.locking import LockState

IGNORED_IN_DIFF = frozenset({"version", "id"})


def check_can_enter(participant, user, *, lock_state: LockState | None = None) -> None:
    """Site staff of the participant's site, on an unlocked casebook: the precondition of every data entry.

    ``lock_state``: the participant's ``LockState`` when the caller has read it in this request; read here otherwise.
    """
    from participants.exceptions import NotEligibleError
    from participants.services.locking import ensure_editable
    from trials.policies.access import Capability, require
    from trials.policies.sites import can_see_site

    require(user, participant.trial, Capability.ENTER_DATA)
    if not can_see_site(user, participant.trial, participant.site_id):
        raise NotEligibleError(f"{participant} is not at one of your sites.")
    ensure_editable(participant, state=lock_state)


def require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReasonForChangeRequiredError("Give a reason for changing saved data.", field="reason")
    return reason


def changes_since(instance: Model, version: int) -> dict[str, tuple[object, object]]:
    """Fields whose value differs between ``version`` of the row (from its audit trail) and the row now."""
    model = type(instance)
    then = model.pgh_event_model.objects.filter(pgh_obj_id=instance.pk, version=version).order_by("-pgh_id").first()
    now = model.objects.get(pk=instance.pk)
    if then is None:
        return {}
    changes = {}
    for field in model._meta.concrete_fields:
        if field.attname in IGNORED_IN_DIFF:
            continue
        before, after = getattr(then, field.attname), getattr(now, field.attname)
        if before != after:
            changes[field.verbose_name] = (before, after)
    return changes


def versioned_update(*, instance: Model, expected_version: int, changes: dict[str, object], user, reason: str):
    """Apply ``changes`` to ``instance`` if nobody saved it since ``expected_version``; audited with ``reason``.

    Callers check permissions, locks and validity first. Returns the refreshed instance. A no-op (nothing
    differs) saves nothing and needs no reason.
    """
    model = type(instance)
    current = model.objects.get(pk=instance.pk)
    if current.version != expected_version:
        raise ConcurrentEditError(
            f"This {model._meta.verbose_name} was changed by someone else after you opened it; nothing was saved. "
            "Review the current values and enter your change again.",
            changes=changes_since(instance, expected_version),
        )
    effective = {name: value for name, value in changes.items() if getattr(current, name) != value}
    if not effective:
        return current
    reason = require_reason(reason)
    with transaction.atomic(), audit_context(reason=reason, user=user):
        updated = model.objects.filter(pk=instance.pk, version=expected_version).update(
            **effective, version=F("version") + 1
        )
        if not updated:  # saved by someone else between our read and our write
            raise ConcurrentEditError(
                f"This {model._meta.verbose_name} was changed by someone else while you saved; nothing was saved.",
                changes=changes_since(instance, expected_version),
            )
    current.refresh_from_db()
    return current
