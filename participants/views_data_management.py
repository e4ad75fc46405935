"""Queries, source data verification, locks and e-signatures: the monitor's, data manager's and
investigator's actions on a casebook. All are POSTs that redirect back to the page holding the value."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.selectors import has_second_factor
from audit.exceptions import ApplicationError
from participants.forms import AnswerForm, LockForm, QueryForm, SignForm
from participants.models import (
    DataQuery,
    RecordLock,
    Visit,
)
from participants.selectors import participant_get, query_target
from participants.services.locking import participant_lock, participant_unlock, trial_lock, trial_unlock
from participants.services.queries import query_answer, query_close, query_raise, query_reopen
from participants.services.sdv import visit_verify
from participants.services.signatures import casebook_sign
from trials.policies.access import Capability, can, require
from trials.selectors import trial_get_for


def _participant(request, code, participant_id):
    trial = trial_get_for(request.user, code, Capability.VIEW_PARTICIPANTS)
    return trial, participant_get(trial=trial, user=request.user, participant_id=participant_id)


def _back(request, trial, participant):
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("participants:detail", code=trial.protocol_code, participant_id=participant.pk)


def _run(request, action, success: str) -> None:
    try:
        action()
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, success)


@login_required
@require_POST
def raise_query(request, code: str, participant_id: int):
    trial, participant = _participant(request, code, participant_id)
    require(request.user, trial, Capability.RAISE_QUERIES)
    form = QueryForm(request.POST)
    target = query_target(participant=participant, label=request.POST.get("target", "")) if form.is_valid() else None
    if target is None:
        messages.error(request, "The query was not raised: choose a value and write the question.")
        return _back(request, trial, participant)
    _run(
        request,
        lambda: query_raise(
            participant=participant,
            user=request.user,
            target=target,
            field_name=form.cleaned_data["field_name"],
            message=form.cleaned_data["message"],
        ),
        "Query raised; the site will see it next to the value.",
    )
    return _back(request, trial, participant)


def _query(request, code, participant_id, query_id):
    trial, participant = _participant(request, code, participant_id)
    return trial, participant, get_object_or_404(DataQuery, pk=query_id, participant=participant)


@login_required
@require_POST
def answer_query(request, code: str, participant_id: int, query_id: int):
    trial, participant, query = _query(request, code, participant_id, query_id)
    form = AnswerForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Write an answer to the query.")
        return _back(request, trial, participant)
    _run(
        request,
        lambda: query_answer(query=query, user=request.user, answer=form.cleaned_data["answer"]),
        "Answer sent to the monitor.",
    )
    return _back(request, trial, participant)


@login_required
@require_POST
def close_query(request, code: str, participant_id: int, query_id: int):
    trial, participant, query = _query(request, code, participant_id, query_id)
    _run(request, lambda: query_close(query=query, user=request.user), "Query closed.")
    return _back(request, trial, participant)


@login_required
@require_POST
def reopen_query(request, code: str, participant_id: int, query_id: int):
    trial, participant, query = _query(request, code, participant_id, query_id)
    message = (request.POST.get("message") or "").strip()
    _run(request, lambda: query_reopen(query=query, user=request.user, message=message), "Query re-opened.")
    return _back(request, trial, participant)


@login_required
@require_POST
def verify_visit(request, code: str, participant_id: int, visit_id: int):
    trial, participant = _participant(request, code, participant_id)
    visit = get_object_or_404(Visit, pk=visit_id, participant=participant)
    _run(
        request,
        lambda: visit_verify(visit=visit, user=request.user),
        f"{visit.visit_definition.name} marked as source-verified.",
    )
    return _back(request, trial, participant)


@login_required
@require_POST
def lock_participant(request, code: str, participant_id: int):
    trial, participant = _participant(request, code, participant_id)
    form = LockForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    if request.POST.get("action") == "unlock":
        _run(
            request,
            lambda: participant_unlock(participant=participant, user=request.user, reason=reason),
            f"{participant} unlocked; its signatures are invalidated.",
        )
    else:
        _run(
            request,
            lambda: participant_lock(participant=participant, user=request.user, reason=reason),
            f"{participant} locked: no data can change.",
        )
    return _back(request, trial, participant)


@login_required
@require_http_methods(["GET", "POST"])
def sign_casebook(request, code: str, participant_id: int):
    trial, participant = _participant(request, code, participant_id)
    require(request.user, trial, Capability.ENTER_DATA)
    form = SignForm(request.POST or None, asks_otp_code=has_second_factor(request.user))
    if request.method == "POST" and form.is_valid():
        try:
            casebook_sign(
                participant=participant,
                user=request.user,
                password=form.cleaned_data["password"],
                otp_code=form.cleaned_data.get("otp_code", ""),
                meaning=form.cleaned_data["meaning"],
                request=request,
            )
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"Casebook of {participant} signed.")
            return redirect("participants:detail", code=trial.protocol_code, participant_id=participant.pk)
    return render(request, "participants/sign.html", {"trial": trial, "participant": participant, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def trial_lock_view(request, code: str):
    trial = trial_get_for(request.user, code, Capability.LOCK_DATA)
    form = LockForm(request.POST or None)
    if request.method == "POST":
        reason = form.cleaned_data["reason"] if form.is_valid() else ""
        if request.POST.get("action") == "unlock":
            _run(request, lambda: trial_unlock(trial=trial, user=request.user, reason=reason), f"{trial} unlocked.")
        else:
            _run(
                request,
                lambda: trial_lock(trial=trial, user=request.user, reason=reason),
                f"{trial} locked: no participant's data can change.",
            )
        return redirect("trial_lock", code=trial.protocol_code)
    lock = RecordLock.objects.filter(trial=trial, participant__isnull=True, unlocked_at__isnull=True).first()
    can_unlock = can(request.user, trial, Capability.UNLOCK_DATA)
    return render(
        request, "participants/trial_lock.html", {"trial": trial, "form": form, "lock": lock, "can_unlock": can_unlock}
    )
