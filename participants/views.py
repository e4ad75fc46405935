"""Participant pages: list, detail, randomize and emergency unblinding. Thin: policy + selectors + services."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from audit.exceptions import ApplicationError
from participants.models import Participant
from participants.selectors import participant_get, participant_list
from participants.services.randomization import participant_randomize
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
        },
    )


@login_required
def participant_detail(request, code: str, participant_id: int):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    participant = participant_get(trial=trial, user=request.user, participant_id=participant_id)
    randomization = getattr(participant, "randomization", None)
    visits = participant.visits.select_related("visit_definition").order_by("visit_definition__order")
    answers = participant.eligibility_answers.select_related("criterion").order_by(
        "criterion__kind", "criterion__order"
    )
    return render(
        request,
        "participants/detail.html",
        {
            "trial": trial,
            "participant": participant,
            "randomization": randomization,
            "show_arm": randomization is not None and sees_participant_allocation(request.user, participant),
            "visits": visits,
            "answers": answers,
            "can_randomize": randomization is None
            and can(request.user, trial, Capability.RANDOMIZE)
            and participant.status == participant.Status.ELIGIBLE,
            "can_unblind": randomization is not None
            and can(request.user, trial, Capability.EMERGENCY_UNBLIND)
            and not sees_participant_allocation(request.user, participant),
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
