"""Visits and their outcome measurements, validated against the protocol's endpoint definitions.

A visit outside its window is accepted (the data are real) but flagged: ``in_window`` is false and an
automatic protocol deviation is raised, as the protocol asks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.context import INITIAL_ENTRY, audit_context
from participants.exceptions import DataValidationError, NotEligibleError
from participants.models import OutcomeMeasurement, Participant, ProtocolDeviation, Visit
from participants.services.editing import check_can_enter, require_reason, versioned_update
from participants.services.locking import LOCK_STATE_COLUMNS, lock_state_of
from participants.services.signatures import signatures_invalidate
from trials.models import Endpoint, Trial, VisitDefinition


@dataclass(frozen=True)
class MeasurementInput:
    """One endpoint's entry on a visit form: a value, an event flag (time-to-event) or why it was not done."""

    value: float | None = None
    event: bool | None = None
    not_done_reason: str = ""


def field_name(endpoint: Endpoint) -> str:
    """The form/error key of an endpoint's value: errors are reported per endpoint, next to its field."""
    return f"endpoint_{endpoint.code}"


def baseline_date(participant: Participant) -> dt.date | None:
    """Day 0: the baseline visit's date, else the randomization date."""
    baseline = participant.visits.filter(visit_definition__is_baseline=True, visit_date__isnull=False).first()
    return _day0(participant, baseline.visit_date if baseline is not None else None)


def _day0(participant: Participant, baseline_visit_date: dt.date | None) -> dt.date | None:
    if baseline_visit_date is not None:
        return baseline_visit_date
    randomization = getattr(participant, "randomization", None)
    return randomization.randomized_at.date() if randomization else None


def window(definition: VisitDefinition, day0: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """Target date and the first and last dates of the visit window."""
    target = day0 + dt.timedelta(days=definition.target_day)
    return (
        target,
        target - dt.timedelta(days=definition.window_before_days),
        target + dt.timedelta(days=definition.window_after_days),
    )


def _scheduled_endpoints(definition: VisitDefinition) -> dict[int, Endpoint]:
    """The endpoints measured at the visit by id, in the order of ``definition.endpoints`` (prefetched or not)."""
    return {endpoint.pk: endpoint for endpoint in definition.endpoints.all()}


def _validate(participant, scheduled: dict[int, Endpoint], visit_date, measurements) -> dict[str, str]:
    errors: dict[str, str] = {}
    today = timezone.localdate()
    if visit_date is None:
        errors["visit_date"] = "Enter the date of the visit."
    elif visit_date > today:
        errors["visit_date"] = f"The visit date {visit_date.isoformat()} is in the future."
    elif visit_date < participant.screened_on:
        errors["visit_date"] = f"The visit date is before screening ({participant.screened_on.isoformat()})."
    for endpoint_id, entry in measurements.items():
        endpoint = scheduled.get(endpoint_id)
        if endpoint is None:
            errors["__all__"] = "A value was entered for an endpoint that is not measured at this visit."
            continue
        key = field_name(endpoint)
        if entry.value is None:
            if not entry.not_done_reason.strip():
                errors[key] = "Enter a value, or say why it was not done."
            continue
        problem = endpoint.range_error(entry.value)
        if problem:
            errors[key] = problem
        elif endpoint.kind == Endpoint.Kind.TIME_TO_EVENT and entry.event is None:
            errors[key] = "Say whether the event happened (else the time is censored)."
    missing = [e for e in scheduled.values() if e.pk not in measurements]
    for endpoint in missing:
        errors[field_name(endpoint)] = "Enter a value, or say why it was not done."
    return errors


def _window_deviation(participant, visit, definition, day0, user) -> ProtocolDeviation | None:
    _target, first, last = window(definition, day0)
    return ProtocolDeviation(
        participant=participant,
        visit=visit,
        category=ProtocolDeviation.Category.VISIT_WINDOW,
        severity=ProtocolDeviation.Severity.MINOR,
        occurred_on=visit.visit_date,
        detected_on=timezone.localdate(),
        is_automatic=True,
        description=f"{definition.name} on {visit.visit_date.isoformat()} (study day {visit.study_day}), "
        f"outside its window {first.isoformat()} – {last.isoformat()}",
    )


_DEFINITION_SQL = f"""
SELECT * FROM {VisitDefinition._meta.db_table} WHERE trial_id = %s AND code = %s
"""  # noqa: S608 - table name from the model, values are parameters

# The order of ``definition.endpoints`` (the model's ordering) without its first key, the trial, which a visit and its
# endpoints share.
_SCHEDULED_ENDPOINTS_SQL = f"""
SELECT e.*
FROM {Endpoint._meta.db_table} e
JOIN {VisitDefinition.endpoints.through._meta.db_table} s ON s.endpoint_id = e.id
WHERE s.visitdefinition_id = %s
ORDER BY e.rank, e.code
"""  # noqa: S608 - table names from the models, values are parameters


def scheduled_visit(trial: Trial, code: str) -> VisitDefinition | None:
    """The trial's visit definition with ``code``, with its endpoints (``definition.endpoints.all()``), or None."""
    # Raw reads: read on every visit recorded through the API, they take half the time of the ORM's.
    definition = next(iter(VisitDefinition.objects.raw(_DEFINITION_SQL, [trial.pk, code])), None)
    if definition is not None:
        _cache_related(definition, "endpoints", list(Endpoint.objects.raw(_SCHEDULED_ENDPOINTS_SQL, [definition.pk])))
    return definition


# What visit_record checks before it writes, in one read: the trial's status and whether a lock is active on the
# casebook (what ensure_editable reads), the visits recorded already, and the baseline visit's date (baseline_date's).
_RECORDING_STATE_SQL = f"""
SELECT {LOCK_STATE_COLUMNS},
       ARRAY(
           SELECT v.visit_definition_id FROM {Visit._meta.db_table} v WHERE v.participant_id = %(participant)s
       ) AS recorded_definition_ids,
       (
           SELECT v.visit_date
           FROM {Visit._meta.db_table} v
           JOIN {VisitDefinition._meta.db_table} d ON d.id = v.visit_definition_id
           WHERE v.participant_id = %(participant)s AND d.is_baseline AND v.visit_date IS NOT NULL
           ORDER BY d."order"
           LIMIT 1
       ) AS baseline_visit_date
FROM {Trial._meta.db_table} t
WHERE t.id = %(trial)s
"""  # noqa: S608 - table names from the models, values are parameters


def visit_record(
    *,
    participant: Participant,
    definition: VisitDefinition,
    user,
    visit_date: dt.date | None,
    measurements: dict[int, MeasurementInput],
) -> Visit:
    """Record a completed visit with every endpoint scheduled at it, all or nothing.

    Raises DataValidationError with one message per offending field; nothing is saved then. The visit is
    returned with its measurements (``visit.measurements.all()``, in the order of ``definition.endpoints``),
    so that it can be shown without being read back.
    """
    # One read for everything checked before writing: the participant's trial, with whether a lock is active, the
    # visits recorded and the baseline visit's date. Raw SQL: the ORM takes several times as long to build a query
    # with these subqueries as the database takes to answer it.
    state = Trial.objects.raw(_RECORDING_STATE_SQL, {"trial": participant.trial_id, "participant": participant.pk})[0]
    check_can_enter(participant, user, lock_state=lock_state_of(state))
    if definition.trial_id != participant.trial_id:
        raise DataValidationError("That visit is not in this trial's schedule.", errors={"__all__": "Wrong trial."})
    if definition.pk in state.recorded_definition_ids:
        raise DataValidationError(
            f"{definition.name} is already recorded; edit it instead.",
            errors={"__all__": f"{definition.name} is already recorded."},
        )
    day0 = _day0(participant, state.baseline_visit_date)
    if day0 is None and not definition.is_baseline and definition.target_day >= 0:
        raise NotEligibleError(f"{participant} has no baseline yet: randomize and record the baseline visit first.")
    scheduled = _scheduled_endpoints(definition)
    errors = _validate(participant, scheduled, visit_date, measurements)
    if errors:
        raise DataValidationError("The visit was not saved: correct the fields marked.", errors=errors)
    day0 = day0 or visit_date
    study_day = (visit_date - day0).days
    with transaction.atomic(), audit_context(reason=INITIAL_ENTRY, user=user):
        visit = Visit.objects.create(
            participant=participant,
            visit_definition=definition,
            visit_date=visit_date,
            study_day=study_day,
            in_window=definition.is_day_in_window(study_day),
        )
        created = OutcomeMeasurement.objects.bulk_create(
            OutcomeMeasurement(
                visit=visit,
                endpoint=scheduled[endpoint_id],
                value=entry.value,
                event_occurred=entry.event,
                unit=scheduled[endpoint_id].unit,
                measured_on=visit_date,
                not_done_reason="" if entry.value is not None else entry.not_done_reason.strip(),
            )
            for endpoint_id, entry in measurements.items()
        )
        if not visit.in_window:
            _window_deviation(participant, visit, definition, day0, user).save()
    by_endpoint = {measurement.endpoint_id: measurement for measurement in created}
    _cache_related(visit, "measurements", [by_endpoint[endpoint_id] for endpoint_id in scheduled])
    return visit


def _cache_related(instance, name: str, objects: list) -> None:
    """Make ``getattr(instance, name).all()`` answer ``objects`` from memory, as ``prefetch_related(name)`` does."""
    cached = getattr(instance, name).all()
    cached._result_cache = objects
    cached._prefetch_done = True
    instance._prefetched_objects_cache = {**getattr(instance, "_prefetched_objects_cache", {}), name: cached}


def visit_update(
    *,
    visit: Visit,
    user,
    expected_version: int,
    visit_date: dt.date | None,
    measurements: dict[int, MeasurementInput],
    reason: str,
) -> Visit:
    """Change a saved visit's date or values: needs a reason, an unlocked casebook and the version you read.

    The visit's version covers its measurements too: any change of a value bumps it, so two people editing
    the same visit form cannot overwrite each other.
    """
    participant = visit.participant
    check_can_enter(participant, user)
    definition = visit.visit_definition
    errors = _validate(participant, _scheduled_endpoints(definition), visit_date, measurements)
    if errors:
        raise DataValidationError("Your changes were not saved: correct the fields marked.", errors=errors)
    reason = require_reason(reason)
    day0 = baseline_date(participant) or visit_date
    study_day = (visit_date - day0).days
    with transaction.atomic(), audit_context(reason=reason, user=user):
        visit = versioned_update(
            instance=visit,
            expected_version=expected_version,
            user=user,
            reason=reason,
            changes={
                "visit_date": visit_date,
                "study_day": study_day,
                "in_window": definition.is_day_in_window(study_day),
            },
        )
        changed = _update_measurements(visit, measurements)
        if changed and visit.version == expected_version:  # values changed but not the visit row itself
            Visit.objects.filter(pk=visit.pk).update(version=F("version") + 1)
        if not visit.in_window and not visit.deviations.filter(is_automatic=True).exists():
            _window_deviation(participant, visit, definition, day0, user).save()
        signatures_invalidate(participant=participant, reason=f"visit {definition.name} changed: {reason}")
    visit.refresh_from_db()
    return visit


def _update_measurements(visit: Visit, measurements: dict[int, MeasurementInput]) -> int:
    changed = 0
    existing = {m.endpoint_id: m for m in visit.measurements.select_related("endpoint")}
    for endpoint_id, entry in measurements.items():
        measurement = existing.get(endpoint_id)
        new = {
            "value": entry.value,
            "event_occurred": entry.event,
            "measured_on": visit.visit_date,
            "not_done_reason": "" if entry.value is not None else entry.not_done_reason.strip(),
        }
        if measurement is None:
            endpoint = Endpoint.objects.get(pk=endpoint_id)
            OutcomeMeasurement.objects.create(visit=visit, endpoint=endpoint, unit=endpoint.unit, **new)
            changed += 1
        elif any(getattr(measurement, name) != value for name, value in new.items()):
            OutcomeMeasurement.objects.filter(pk=measurement.pk).update(**new, version=F("version") + 1)
            changed += 1
    return changed


def visit_mark_missed(*, participant: Participant, definition: VisitDefinition, user, reason: str) -> Visit:
    check_can_enter(participant, user)
    reason = (reason or "").strip()
    if not reason:
        raise DataValidationError("Say why the visit was missed.", errors={"missed_reason": "Give a reason."})
    if participant.visits.filter(visit_definition=definition).exists():
        raise DataValidationError(
            f"{definition.name} is already recorded.", errors={"__all__": f"{definition.name} is already recorded."}
        )
    with transaction.atomic(), audit_context(reason=INITIAL_ENTRY, user=user):
        return Visit.objects.create(
            participant=participant, visit_definition=definition, status=Visit.Status.MISSED, missed_reason=reason
        )
