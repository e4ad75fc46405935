"""Data queries: a monitor or data manager questions one recorded value; site staff answer; the raiser closes.

Lifecycle: open → answered → closed, and answered or closed → open again (reopened). A query points at one
field of one record of the participant's casebook by model label, pk and field name, so pages can show it next
to the value. Queries never change clinical data, so they stay possible on a locked casebook: resolving the last
queries is often what happens between a lock and an unlock.
"""

from __future__ import annotations

from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import models, transaction
from django.utils import timezone

from audit.context import audit_context
from audit.exceptions import ApplicationError
from participants.exceptions import DataValidationError, QueryStateError
from participants.models import (
    AdverseEvent,
    DataQuery,
    DoseAdministration,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Visit,
)
from trials.policies.access import Capability, require, role
from trials.policies.sites import can_see_site

# Queryable record types → the lookup from that record to its participant's pk.
TARGET_PARTICIPANT_LOOKUP: dict[type[models.Model], str] = {
    Participant: "id",
    Visit: "participant_id",
    OutcomeMeasurement: "visit__participant_id",
    AdverseEvent: "participant_id",
    DoseAdministration: "participant_id",
    ProtocolDeviation: "participant_id",
}

QueryKey = tuple[str, int, str]


def query_raise(*, participant: Participant, user, target: models.Model, field_name: str, message: str) -> DataQuery:
    """Raise a query on ``field_name`` of ``target``, a record of ``participant``'s casebook.

    Allowed on a locked casebook (see the module docstring).
    """
    trial = participant.trial
    require(user, trial, Capability.RAISE_QUERIES)
    _require_site(user, participant)
    model = target._meta.concrete_model
    lookup = TARGET_PARTICIPANT_LOOKUP.get(model)
    if lookup is None:
        raise ApplicationError(
            f"Queries can be raised on a participant, visit, measurement, adverse event, dose or protocol "
            f"deviation, not on a {target._meta.verbose_name}.",
            field="target",
        )
    # Checked in the database, not on the instance: a caller's stale or hand-built instance must not let a
    # query attach to another participant's record.
    if target.pk is None or not model._default_manager.filter(pk=target.pk, **{lookup: participant.pk}).exists():
        raise ApplicationError(
            f"This {target._meta.verbose_name} is not part of {participant}'s casebook.", field="target"
        )
    field = _queryable_field(target, field_name)
    message = (message or "").strip()
    if not message:
        raise DataValidationError("Write the question for the site.", errors={"message": "Required."}, field="message")
    with transaction.atomic(), audit_context(reason="data query raised", user=user):
        return DataQuery.objects.create(
            participant=participant,
            target_model=target._meta.label_lower,
            target_id=target.pk,
            field_name=field.name,
            message=message,
            raised_by=user,
        )


def query_answer(*, query: DataQuery, user, answer: str) -> DataQuery:
    """Site staff at the participant's site answer an open query (allowed on a locked casebook)."""
    participant = query.participant
    require(user, participant.trial, Capability.ENTER_DATA)
    _require_site(user, participant)
    answer = (answer or "").strip()
    if not answer:
        raise DataValidationError("Write the answer to the query.", errors={"answer": "Required."}, field="answer")
    with transaction.atomic():
        current = DataQuery.objects.select_for_update().get(pk=query.pk)
        if current.status != DataQuery.Status.OPEN:
            raise QueryStateError(
                f"This query is {current.get_status_display().lower()}; only open queries can be answered.",
                field="status",
            )
        current.status = DataQuery.Status.ANSWERED
        current.answer = answer
        current.answered_by = user
        current.answered_at = timezone.now()
        with audit_context(reason="data query answered", user=user):
            current.save(update_fields=["status", "answer", "answered_by", "answered_at"])
    return current


def query_close(*, query: DataQuery, user) -> DataQuery:
    """Close an open or answered query: its raiser, or anyone who may raise queries at the participant's site."""
    participant = query.participant
    trial = participant.trial
    # The raiser may close their own query even if their site list changed since, as long as they are still a
    # member of the trial: a former member acts no more.
    if not (query.raised_by_id == user.pk and role(user, trial) is not None):
        require(user, trial, Capability.RAISE_QUERIES)
        _require_site(user, participant)
    with transaction.atomic():
        current = DataQuery.objects.select_for_update().get(pk=query.pk)
        if current.status == DataQuery.Status.CLOSED:
            raise QueryStateError("This query is already closed.", field="status")
        current.status = DataQuery.Status.CLOSED
        current.closed_by = user
        current.closed_at = timezone.now()
        with audit_context(reason="data query closed", user=user):
            current.save(update_fields=["status", "closed_by", "closed_at"])
    return current


def query_reopen(*, query: DataQuery, user, message: str) -> DataQuery:
    """Reopen an answered or closed query with a follow-up question.

    The follow-up (and the answer it replies to) is appended to ``message`` under a timestamped line, so the
    conversation reads top to bottom on the page; the answer fields are cleared so that "open" always means
    "waiting for the site". The audit trail keeps every earlier value.
    """
    participant = query.participant
    require(user, participant.trial, Capability.RAISE_QUERIES)
    _require_site(user, participant)
    message = (message or "").strip()
    if not message:
        raise DataValidationError("Say why the query is reopened.", errors={"message": "Required."}, field="message")
    with transaction.atomic():
        current = DataQuery.objects.select_for_update().get(pk=query.pk)
        if current.status == DataQuery.Status.OPEN:
            raise QueryStateError(
                "This query is still open; only answered or closed queries can be reopened.", field="status"
            )
        now = timezone.now()
        thread = current.message
        if current.answer:
            thread += (
                f"\n\n— Answered {current.answered_at:%Y-%m-%d %H:%M} UTC by {_name(current.answered_by)}:\n"
                f"{current.answer}"
            )
        thread += f"\n\n— Reopened {now:%Y-%m-%d %H:%M} UTC by {_name(user)}:\n{message}"
        current.message = thread
        current.status = DataQuery.Status.OPEN
        current.reopened_count += 1
        current.answer = ""
        current.answered_by = None
        current.answered_at = None
        current.closed_by = None
        current.closed_at = None
        with audit_context(reason="data query reopened", user=user):
            current.save()
    return current


def open_queries(participant: Participant) -> list[DataQuery]:
    """The participant's queries waiting for the site, newest first (one SQL query)."""
    return list(
        DataQuery.objects.filter(participant_id=participant.pk, status=DataQuery.Status.OPEN)
        .select_related("raised_by")
        .order_by("-raised_at", "-pk")
    )


def queries_by_target(participant: Participant) -> dict[QueryKey, list[DataQuery]]:
    """All the participant's queries, whatever their status, grouped by (target_model, target_id, field_name).

    One SQL query; each list is newest first, so a page can show the current query next to the value and
    the earlier ones on demand.
    """
    grouped: dict[QueryKey, list[DataQuery]] = {}
    queryset = (
        DataQuery.objects.filter(participant_id=participant.pk)
        .select_related("raised_by", "answered_by", "closed_by")
        .order_by("-raised_at", "-pk")
    )
    for query in queryset:
        grouped.setdefault((query.target_model, query.target_id, query.field_name), []).append(query)
    return grouped


def _queryable_field(target: models.Model, field_name: str) -> models.Field:
    """The concrete, entered field called ``field_name`` (ids, versions and timestamps are not values to query)."""
    try:
        field = target._meta.get_field(field_name or "")
    except FieldDoesNotExist:
        field = None
    if field is None or not field.concrete or field.primary_key or not field.editable:
        raise DataValidationError(
            f"{target._meta.verbose_name.capitalize()} has no value called {field_name!r} to query.",
            errors={"field_name": "Not a recorded value of this record."},
            field="field_name",
        )
    return field


def _require_site(user, participant: Participant) -> None:
    if not can_see_site(user, participant.trial, participant.site_id):
        raise PermissionDenied(f"{participant} is not at one of your sites.")


def _name(user) -> str:
    return user.get_full_name() or user.get_username()
