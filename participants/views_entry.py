"""Site data entry: screening, eligibility, visits, adverse events, dosing and each record's history.

Views are thin: parse the form, call one service, show its errors next to the fields. On any error the
page is shown again with everything the user typed, and nothing is saved (services are atomic).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from audit.exceptions import ApplicationError
from audit.history import record_history
from participants.exceptions import ConcurrentEditError, DataValidationError
from participants.forms import (
    AdverseEventEditForm,
    AdverseEventForm,
    DoseForm,
    EligibilityForm,
    MissedVisitForm,
    ScreeningForm,
    VisitForm,
    apply_errors,
)
from participants.models import AdverseEvent
from participants.selectors import participant_get
from participants.services.adverse_events import (
    adverse_event_notify_sponsor,
    adverse_event_record,
    adverse_event_record_regulatory_report,
    adverse_event_update,
    reporting_clocks,
)
from participants.services.dosing import dose_record
from participants.services.enrollment import participant_record_eligibility, participant_screen
from participants.services.queries import queries_by_target
from participants.services.visits import field_name, visit_mark_missed, visit_record, visit_update
from trials.formatting import scientific
from trials.policies.access import Capability, require
from trials.policies.blinding import hidden_fields
from trials.policies.sites import ALL_SITES, visible_site_ids
from trials.selectors import trial_get_for


def _participant(request, code: str, participant_id: int, capability: Capability = Capability.VIEW_PARTICIPANTS):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    require(request.user, trial, capability)
    return trial, participant_get(trial=trial, user=request.user, participant_id=participant_id)


def _detail(trial, participant):
    return redirect("participants:detail", code=trial.protocol_code, participant_id=participant.pk)


def _conflict_message(error: ConcurrentEditError) -> str:
    changed = "; ".join(f"{field}: {before!r} → {after!r}" for field, (before, after) in error.changes.items())
    return f"{error.message} Changed meanwhile: {changed or 'related values'}."


@login_required
@require_http_methods(["GET", "POST"])
def screen(request, code: str):
    trial = trial_get_for(request.user, code, Capability.ENROLL)
    site_ids = visible_site_ids(request.user, trial)
    sites = trial.sites.filter(is_active=True).order_by("code")
    if site_ids is not ALL_SITES:
        sites = sites.filter(pk__in=site_ids)
    form = ScreeningForm(request.POST or None, sites=sites)
    if request.method == "POST" and form.is_valid():
        try:
            participant = participant_screen(trial=trial, user=request.user, **form.cleaned_data)
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"Screening number {participant.screening_number} assigned.")
            return redirect("participants:eligibility", code=trial.protocol_code, participant_id=participant.pk)
    return render(request, "participants/screen.html", {"trial": trial, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def eligibility(request, code: str, participant_id: int):
    trial, participant = _participant(request, code, participant_id, Capability.ENROLL)
    criteria = trial.eligibility_criteria.order_by("kind", "order")
    form = EligibilityForm(
        request.POST or None,
        criteria=criteria,
        factors=trial.stratification_factors.all(),
        initial={"consent_version": "", "consent_date": timezone.localdate()},
    )
    if request.method == "POST" and form.is_valid():
        try:
            participant = participant_record_eligibility(
                participant=participant,
                user=request.user,
                answers=form.answers(),
                consent_date=form.cleaned_data["consent_date"],
                consent_version=form.cleaned_data["consent_version"],
                strata=form.strata(),
            )
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            if participant.status == participant.Status.SCREEN_FAILED:
                messages.warning(request, f"{participant} is a screen failure: {participant.screen_failure_reason}.")
            else:
                messages.success(request, f"{participant} is eligible and consented: ready to randomize.")
            return _detail(trial, participant)
    return render(request, "participants/eligibility.html", {"trial": trial, "participant": participant, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def visit_form(request, code: str, participant_id: int, definition_id: int):
    trial, participant = _participant(request, code, participant_id)
    definition = get_object_or_404(trial.visit_definitions, pk=definition_id)
    endpoints = list(definition.endpoints.order_by("rank", "code"))
    visit = participant.visits.filter(visit_definition=definition).prefetch_related("measurements").first()
    editing = visit is not None and visit.visit_date is not None
    initial = {}
    if editing:
        initial = {"visit_date": visit.visit_date, "version": visit.version}
        for measurement in visit.measurements.all():
            endpoint = next((e for e in endpoints if e.pk == measurement.endpoint_id), None)
            if endpoint is not None:
                name = field_name(endpoint)
                initial[name] = measurement.value
                initial[f"{name}_event"] = (
                    None if measurement.event_occurred is None else "1" if measurement.event_occurred else "0"
                )
                initial[f"{name}_not_done"] = measurement.not_done_reason
    form = VisitForm(request.POST or None, endpoints=endpoints, editing=editing, initial=initial)
    if request.method == "POST":
        require(request.user, trial, Capability.ENTER_DATA)
        if form.is_valid():
            try:
                if editing:
                    visit_update(
                        visit=visit,
                        user=request.user,
                        expected_version=form.cleaned_data["version"],
                        visit_date=form.cleaned_data["visit_date"],
                        measurements=form.measurements(),
                        reason=form.cleaned_data["reason"],
                    )
                else:
                    visit = visit_record(
                        participant=participant,
                        definition=definition,
                        user=request.user,
                        visit_date=form.cleaned_data["visit_date"],
                        measurements=form.measurements(),
                    )
            except DataValidationError as error:
                apply_errors(form, error.errors)
            except ConcurrentEditError as error:
                form.add_error(None, _conflict_message(error))
            except ApplicationError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                visit.refresh_from_db()
                if not visit.in_window:
                    messages.warning(
                        request,
                        f"{definition.name} saved. Its date is outside the visit window: "
                        "a protocol deviation was recorded.",
                    )
                else:
                    messages.success(request, f"{definition.name} saved.")
                return _detail(trial, participant)
    queries = queries_by_target(participant) if visit else {}
    measurement_ids = {m.endpoint_id: m.pk for m in visit.measurements.all()} if visit else {}
    rows = [
        (
            endpoint,
            value,
            event,
            not_done,
            queries.get(("participants.outcomemeasurement", measurement_ids.get(endpoint.pk), "value"), []),
            f"participants.outcomemeasurement:{measurement_ids[endpoint.pk]}"
            if endpoint.pk in measurement_ids
            else None,
        )
        for endpoint, value, event, not_done in form.rows()
    ]
    return render(
        request,
        "participants/visit_form.html",
        {
            "trial": trial,
            "participant": participant,
            "definition": definition,
            "form": form,
            "visit": visit,
            "editing": editing,
            "rows": rows,
            "missed_form": MissedVisitForm(),
            "can_enter": _can(request, trial, Capability.ENTER_DATA),
            "can_raise": _can(request, trial, Capability.RAISE_QUERIES),
        },
    )


def _can(request, trial, capability) -> bool:
    from trials.policies.access import can

    return can(request.user, trial, capability)


@login_required
@require_POST
def visit_missed(request, code: str, participant_id: int, definition_id: int):
    trial, participant = _participant(request, code, participant_id, Capability.ENTER_DATA)
    definition = get_object_or_404(trial.visit_definitions, pk=definition_id)
    form = MissedVisitForm(request.POST)
    try:
        if not form.is_valid():
            raise DataValidationError("Say why the visit was missed.", errors={})
        visit_mark_missed(
            participant=participant, definition=definition, user=request.user, reason=form.cleaned_data["missed_reason"]
        )
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("participants:visit", code=code, participant_id=participant.pk, definition_id=definition.pk)
    messages.success(request, f"{definition.name} recorded as missed.")
    return _detail(trial, participant)


@login_required
@require_http_methods(["GET", "POST"])
def adverse_event_form(request, code: str, participant_id: int, event_id: int | None = None):
    trial, participant = _participant(request, code, participant_id)
    event = get_object_or_404(participant.adverse_events, pk=event_id) if event_id else None
    form_class = AdverseEventEditForm if event else AdverseEventForm
    initial = (
        {"site_aware_at": timezone.now().replace(second=0, microsecond=0)}
        if event is None
        else {"version": event.version}
    )
    form = form_class(request.POST or None, instance=event, initial=initial)
    if request.method == "POST":
        require(request.user, trial, Capability.ENTER_DATA)
        if form.is_valid():
            data = {name: form.cleaned_data.get(name) for name in form.Meta.fields}
            try:
                if event is None:
                    event = adverse_event_record(participant=participant, user=request.user, data=data)
                else:
                    event = adverse_event_update(
                        event=event,
                        user=request.user,
                        data=data,
                        expected_version=form.cleaned_data["version"],
                        reason=form.cleaned_data["reason"],
                    )
            except DataValidationError as error:
                apply_errors(form, error.errors)
            except ConcurrentEditError as error:
                form.add_error(None, _conflict_message(error))
            except ApplicationError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                text = f"Adverse event '{event.term}' saved."
                if event.serious:
                    text += " It is serious: report it to the sponsor within 24 hours."
                messages.success(request, text)
                return _detail(trial, participant)
    now = timezone.now()
    clocks = [(clock, clock.label(now), clock.is_overdue(now)) for clock in reporting_clocks(event)] if event else []
    queries = queries_by_target(participant) if event else {}
    field_queries = {
        key[2]: items
        for key, items in queries.items()
        if key[0] == "participants.adverseevent" and key[1] == (event.pk if event else None)
    }
    return render(
        request,
        "participants/adverse_event_form.html",
        {
            "trial": trial,
            "participant": participant,
            "event": event,
            "form": form,
            "clocks": clocks,
            "field_queries": field_queries,
            "can_enter": _can(request, trial, Capability.ENTER_DATA),
            "can_raise": _can(request, trial, Capability.RAISE_QUERIES) and event is not None,
        },
    )


@login_required
@require_POST
def adverse_event_notify(request, code: str, participant_id: int, event_id: int):
    _trial, participant = _participant(request, code, participant_id, Capability.ENTER_DATA)
    event = get_object_or_404(AdverseEvent, pk=event_id, participant=participant)
    try:
        if request.POST.get("report") == "regulator":
            adverse_event_record_regulatory_report(event=event, user=request.user)
            done = "Regulatory report recorded; the SUSAR clock is stopped."
        else:
            adverse_event_notify_sponsor(event=event, user=request.user)
            done = "Sponsor notification recorded; the 24-hour clock is stopped."
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done)
    return redirect("participants:adverse_event", code=code, participant_id=participant.pk, event_id=event.pk)


@login_required
@require_http_methods(["GET", "POST"])
def dose_form(request, code: str, participant_id: int):
    trial, participant = _participant(request, code, participant_id, Capability.ENTER_DATA)
    default_route = trial.arms.values_list("route", flat=True).first()
    form = DoseForm(
        request.POST or None,
        initial={"administered_at": timezone.now().replace(second=0, microsecond=0), "route": default_route},
    )
    if request.method == "POST" and form.is_valid():
        try:
            dose = dose_record(participant=participant, user=request.user, **form.cleaned_data)
        except DataValidationError as error:
            apply_errors(form, error.errors)
        except ApplicationError as error:
            form.add_error(None, error.message)
        else:
            messages.success(
                request,
                f"Dose recorded: lot {dose.lot.lot_number}, {dose.volume_ml:g} mL = "
                f"{scientific(dose.particles_given)} particles.",
            )
            return _detail(trial, participant)
    return render(request, "participants/dose_form.html", {"trial": trial, "participant": participant, "form": form})


HISTORY_SOURCES = ("visits", "adverse_events", "doses", "deviations", "queries", "signatures", "locks")


@login_required
def history(request, code: str, participant_id: int):
    """The participant's whole audit trail, record by record (blinded fields hidden)."""
    trial, participant = _participant(request, code, participant_id)
    records = [("Participant", participant, record_history(participant))]
    for visit in participant.visits.select_related("visit_definition").prefetch_related("measurements__endpoint"):
        records.append((f"Visit: {visit.visit_definition.name}", visit, record_history(visit)))
        records.extend(
            (f"{visit.visit_definition.name}: {m.endpoint.name}", m, record_history(m))
            for m in visit.measurements.all()
        )
    for label, queryset in (
        ("Adverse event", participant.adverse_events.all()),
        ("Dose", participant.doses.all()),
        ("Deviation", participant.deviations.all()),
        ("Query", participant.queries.all()),
        ("Signature", participant.signatures.all()),
        ("Lock", participant.locks.all()),
    ):
        for obj in queryset:
            hidden = hidden_fields(request.user, trial, obj._meta.label_lower)
            records.append(
                (f"{label}: {obj}" if label != "Dose" else "Dose", obj, record_history(obj, hidden_fields=hidden))
            )
    randomization = getattr(participant, "randomization", None)
    if randomization is not None:
        hidden = hidden_fields(request.user, trial, "participants.randomization")
        records.append(("Randomization", randomization, record_history(randomization, hidden_fields=hidden)))
    if not records:
        raise Http404
    return render(
        request, "participants/history.html", {"trial": trial, "participant": participant, "records": records}
    )
