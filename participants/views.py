"""Participant pages: list, detail, randomize and emergency unblinding. Thin: policy + selectors + services."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from audit.exceptions import ApplicationError
from participants.models import Participant
from participants.selectors import participant_get, participant_list, visit_schedule
from participants.services.adverse_events import reporting_clocks
from participants.services.locking import active_lock
from participants.services.randomization import participant_randomize
from participants.services.sdv import verification_statuses
from participants.services.signatures import signature_is_valid
from participants.services.unblinding import MINIMUM_REASON_LENGTH, participant_unblind_emergency
from trials.policies.access import Capability, can, require
from trials.policies.blinding import sees_allocation, sees_participant_allocation
from trials.selectors import trial_get_for

PAGE_SIZE = 50


@login_required
def participants_index(request, code: str):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    queryset = participant_list(
        trial=trial,
        user=request.user,
        status=request.GET.get("status", ""),
        site=request.GET.get("site", ""),
        search=request.GET.get("q", ""),
        ordering=request.GET.get("ordering", "screening_number"),
    )
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "participants/list.html",
        {
            "trial": trial,
            "page": page,
            "show_arm": sees_allocation(request.user, trial),
            "statuses": Participant.Status.choices,
            "filters": request.GET,
            "can_enroll": can(request.user, trial, Capability.ENROLL),
        },
    )


@login_required
def participant_detail(request, code: str, participant_id: int):
    """The casebook page: schedule, AEs with their clocks, doses, deviations, queries, signatures, lock."""
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    participant = participant_get(trial=trial, user=request.user, participant_id=participant_id)
    randomization = getattr(participant, "randomization", None)
    user = request.user
    today = timezone.localdate()
    now = timezone.now()
    schedule = visit_schedule(
        participant,
        today=today,
        visits={v.visit_definition_id: v for v in participant.visits.select_related("visit_definition")},
    )
    visits = [row.visit for row in schedule if row.visit is not None]
    sdv = verification_statuses(visits)
    shows_allocation = randomization is not None and sees_participant_allocation(user, participant)
    events = list(participant.adverse_events.order_by("onset_date", "pk"))
    signatures = [(signature, signature_is_valid(signature)) for signature in participant.signatures.all()]
    return render(
        request,
        "participants/detail.html",
        {
            "trial": trial,
            "participant": participant,
            "randomization": randomization,
            "show_arm": shows_allocation,
            "schedule": [(row, sdv.get(row.visit.pk) if row.visit else None) for row in schedule],
            "events": [
                (
                    event,
                    [clock.label(now) for clock in reporting_clocks(event)],
                    any(clock.is_overdue(now) and clock.is_running for clock in reporting_clocks(event)),
                )
                for event in events
            ],
            "doses": participant.doses.select_related("lot").order_by("administered_at"),
            "show_dose_details": shows_allocation,
            "deviations": participant.deviations.order_by("occurred_on"),
            "queries": participant.queries.select_related("raised_by").order_by("-raised_at"),
            "signatures": signatures,
            "lock": active_lock(participant),
            "answers": participant.eligibility_answers.select_related("criterion").order_by(
                "criterion__kind", "criterion__order"
            ),
            "can": {capability.name: can(user, trial, capability) for capability in Capability},
            "can_randomize": randomization is None
            and can(user, trial, Capability.RANDOMIZE)
            and participant.status == participant.Status.ELIGIBLE,
            "can_unblind": randomization is not None
            and can(user, trial, Capability.EMERGENCY_UNBLIND)
            and not shows_allocation,
            "needs_eligibility": participant.status == participant.Status.SCREENING
            and can(user, trial, Capability.ENROLL),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def participant_randomize_view(request, code: str, participant_id: int):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    require(request.user, trial, Capability.RANDOMIZE)
    participant = participant_get(trial=trial, user=request.user, participant_id=participant_id)
    if request.method == "POST":
        try:
            randomization = participant_randomize(participant=participant, user=request.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request, f"{participant} randomized: randomization number {randomization.randomization_number}."
            )
            return redirect("participants:detail", code=trial.protocol_code, participant_id=participant.pk)
    return render(request, "participants/randomize_confirm.html", {"trial": trial, "participant": participant})


class UnblindForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        min_length=MINIMUM_REASON_LENGTH,
        help_text="The medical emergency that makes knowing the treatment necessary. Recorded in the audit trail "
        "and sent to the trial coordinator.",
    )
    confirm = forms.BooleanField(label="I understand that this unblinds this participant for me and is reported.")


@login_required
@require_http_methods(["GET", "POST"])
def participant_unblind_view(request, code: str, participant_id: int):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    require(request.user, trial, Capability.EMERGENCY_UNBLIND)
    participant = participant_get(trial=trial, user=request.user, participant_id=participant_id)
    form = UnblindForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            participant_unblind_emergency(
                participant=participant, user=request.user, reason=form.cleaned_data["reason"]
            )
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.warning(request, f"{participant} is unblinded for you. The coordinator has been notified.")
            return redirect("participants:detail", code=trial.protocol_code, participant_id=participant.pk)
    return render(request, "participants/unblind.html", {"trial": trial, "participant": participant, "form": form})
