from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404

from participants.models import (
    AdverseEvent,
    DataQuery,
    DoseAdministration,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Visit,
)
from trials.models import Trial, VisitDefinition
from trials.policies.access import Capability, can
from trials.policies.sites import ALL_SITES, visible_site_ids

LIST_ORDERINGS = {
    "screening_number": "screening_number",
    "-screening_number": "-screening_number",
    "site": "site__code",
    "status": "status",
    "screened_on": "screened_on",
    "-screened_on": "-screened_on",
    "randomization_number": "randomization__randomization_number",
}


def participants_visible(*, trial: Trial, user) -> QuerySet[Participant]:
    """Participants of ``trial`` the user may see: their sites only for site staff and monitors."""
    if not can(user, trial, Capability.VIEW_PARTICIPANTS):
        return Participant.objects.none()
    queryset = Participant.objects.filter(trial=trial)
    site_ids = visible_site_ids(user, trial)
    if site_ids is not ALL_SITES:
        queryset = queryset.filter(site_id__in=site_ids)
    return queryset


def participant_list(
    *, trial: Trial, user, status: str = "", site: str = "", search: str = "", ordering: str = "screening_number"
) -> QuerySet[Participant]:
    """Filtered, ordered list. Orderings are allow-listed: nothing can sort (and so leak) by arm."""
    queryset = participants_visible(trial=trial, user=user).select_related("site", "randomization")
    if status in Participant.Status.values:
        queryset = queryset.filter(status=status)
    if site:
        queryset = queryset.filter(site__code=site)
    if search:
        queryset = queryset.filter(screening_number__icontains=search.strip())
    return queryset.order_by(LIST_ORDERINGS.get(ordering, "screening_number"), "pk")


def participant_get(*, trial: Trial, user, participant_id: int) -> Participant:
    """One participant the user may see; 404 for anyone else's (no hint that the id exists)."""
    participant = (
        participants_visible(trial=trial, user=user)
        .select_related("site", "trial", "randomization", "screen_failure_criterion")
        .filter(pk=participant_id)
        .first()
    )
    if participant is None:
        raise Http404("No such participant")
    return participant


@dataclass(frozen=True)
class ScheduleRow:
    definition: VisitDefinition
    visit: Visit | None
    status: str  # done, done (out of window), missed, due, overdue, upcoming, not scheduled
    target: dt.date | None
    window_start: dt.date | None
    window_end: dt.date | None


def visit_schedule(participant: Participant, *, today: dt.date, definitions=None, visits=None) -> list[ScheduleRow]:
    """The protocol's visits for one participant: what was done and what is due, overdue or upcoming."""
    from participants.services.visits import window

    definitions = (
        definitions if definitions is not None else list(participant.trial.visit_definitions.order_by("order"))
    )
    visits = visits if visits is not None else {v.visit_definition_id: v for v in participant.visits.all()}
    day0 = _day0(participant, definitions, visits)
    active = participant.status == Participant.Status.RANDOMIZED
    rows = []
    for definition in definitions:
        visit = visits.get(definition.pk)
        target = first = last = None
        if day0 is not None:
            target, first, last = window(definition, day0)
        if visit is not None:
            status = (
                "missed"
                if visit.status == Visit.Status.MISSED
                else ("done" if visit.in_window is not False else "done (out of window)")
            )
        elif day0 is None or not active or definition.target_day < 0:
            status = "not scheduled"
        elif today > last:
            status = "overdue"
        elif today >= first:
            status = "due"
        else:
            status = "upcoming"
        rows.append(ScheduleRow(definition, visit, status, target, first, last))
    return rows


def _day0(participant, definitions, visits) -> dt.date | None:
    baseline = next((d for d in definitions if d.is_baseline), None)
    if baseline is not None and baseline.pk in visits and visits[baseline.pk].visit_date:
        return visits[baseline.pk].visit_date
    randomization = getattr(participant, "randomization", None)
    return randomization.randomized_at.date() if randomization else None


def visits_needing_attention(*, trial: Trial, user, today: dt.date, horizon_days: int = 7):
    """(due within ``horizon_days``, overdue) schedule rows for active participants the user may see.

    A fixed number of queries whatever the number of participants: participants, visits and definitions
    are fetched once each.
    """
    definitions = list(trial.visit_definitions.order_by("order"))
    participants = list(
        participants_visible(trial=trial, user=user)
        .filter(status=Participant.Status.RANDOMIZED)
        .select_related("site", "randomization", "trial")
    )
    visits_by_participant: dict[int, dict[int, Visit]] = {}
    for visit in Visit.objects.filter(participant__in=participants):
        visits_by_participant.setdefault(visit.participant_id, {})[visit.visit_definition_id] = visit
    due, overdue = [], []
    for participant in participants:
        for row in visit_schedule(
            participant, today=today, definitions=definitions, visits=visits_by_participant.get(participant.pk, {})
        ):
            if row.status == "overdue":
                overdue.append((participant, row))
            elif row.status in ("due", "upcoming") and row.window_start <= today + dt.timedelta(days=horizon_days):
                due.append((participant, row))
    return due, overdue


def open_queries_visible(*, trial: Trial, user):
    return (
        DataQuery.objects.filter(participant__in=participants_visible(trial=trial, user=user))
        .exclude(status=DataQuery.Status.CLOSED)
        .select_related("participant", "raised_by")
        .order_by("raised_at")
    )


def serious_events_with_running_clocks(*, trial: Trial, user):
    """SAEs whose sponsor report is still due, and SUSARs not yet reported to the regulators."""
    events = (
        AdverseEvent.objects.filter(participant__in=participants_visible(trial=trial, user=user), serious=True)
        .select_related("participant")
        .order_by("site_aware_at")
    )
    return [
        event
        for event in events
        if event.sponsor_notified_at is None or (event.is_susar and event.regulator_reported_at is None)
    ]


QUERYABLE = {
    "participants.participant": None,
    "participants.visit": Visit,
    "participants.outcomemeasurement": OutcomeMeasurement,
    "participants.adverseevent": AdverseEvent,
    "participants.doseadministration": DoseAdministration,
    "participants.protocoldeviation": ProtocolDeviation,
}


def query_target(*, participant: Participant, label: str):
    """The record a query points at, given as ``model-label:id``; only this participant's records, else None."""
    model_label, _, object_id = label.partition(":")
    if model_label not in QUERYABLE or not object_id.isdigit():
        return None
    model = QUERYABLE[model_label]
    if model is None:
        return participant if int(object_id) == participant.pk else None
    lookup = {"visit__participant": participant} if model is OutcomeMeasurement else {"participant": participant}
    return model.objects.filter(pk=int(object_id), **lookup).first()
