"""Analysis pages: request a run, follow its progress, read the report in the browser, download artifacts."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from analysis.models import AnalysisRun
from analysis.services import (
    AnalysisRequestError,
    analysis_run_request,
    artifact_download_record,
    artifact_download_response,
    run_artifact_bytes,
)
from trials.policies.access import Capability
from trials.policies.reports import may_read, may_request, readable_audiences
from trials.selectors import trial_get_for


class RunRequestForm(forms.Form):
    kind = forms.ChoiceField(choices=AnalysisRun.Kind.choices)
    cutoff = forms.DateField(
        label="Data cut-off", widget=forms.DateInput(attrs={"type": "date"}), initial=timezone.localdate
    )


@login_required
@require_http_methods(["GET", "POST"])
def runs(request, code: str):
    trial = trial_get_for(request.user, code, Capability.VIEW_REPORTS_OPEN)
    form = RunRequestForm(request.POST or None)
    if request.method == "POST":
        if not may_request(request.user, trial):
            raise PermissionDenied("Only the unblinded statistician requests analyses.")
        if form.is_valid():
            try:
                run = analysis_run_request(trial=trial, user=request.user, **form.cleaned_data)
            except AnalysisRequestError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, f"Analysis run {run.pk} queued.")
                return redirect("analysis:run", code=code, run_id=run.pk)
    return render(
        request,
        "analysis/runs.html",
        {
            "trial": trial,
            "runs": AnalysisRun.objects.filter(trial=trial).select_related("requested_by"),
            "form": form,
            "can_request": may_request(request.user, trial),
        },
    )


def _run(request, code: str, run_id: int):
    trial = trial_get_for(request.user, code, Capability.VIEW_REPORTS_OPEN)
    return trial, get_object_or_404(AnalysisRun, pk=run_id, trial=trial)


@login_required
def run_detail(request, code: str, run_id: int):
    trial, run = _run(request, code, run_id)
    audiences = readable_audiences(request.user, trial)
    artifacts = [
        artifact
        for artifact in run.artifacts.all()
        if artifact.audience in audiences and not artifact.name.endswith(".html")
    ]
    views = sorted(
        {
            artifact.audience
            for artifact in run.artifacts.all()
            if artifact.name.endswith("report.html") and artifact.audience in audiences
        }
    )
    monitoring = run.results.get("monitoring") if audiences & {"closed", "final"} else None
    return render(
        request,
        "analysis/run.html",
        {"trial": trial, "run": run, "artifacts": artifacts, "report_views": views, "monitoring": monitoring},
    )


@login_required
def run_status(request, code: str, run_id: int):
    _trial, run = _run(request, code, run_id)
    return JsonResponse(
        {
            "status": run.status,
            "progress": run.progress,
            "step": run.step,
            "error": run.error.split("\n", 1)[0] if run.status == run.Status.FAILED else "",
        }
    )


@login_required
def report_view(request, code: str, run_id: int, audience: str):
    trial, run = _run(request, code, run_id)
    if not may_read(request.user, trial, audience):
        raise Http404("No such report")
    name = "report.html" if audience == "final" else f"{audience}/report.html"
    artifact = run.artifacts.filter(audience=audience, name=name).first()
    if artifact is None:
        raise Http404("No such report")
    with run_artifact_bytes(artifact) as handle:
        # Written by our own renderer, which escapes every text value; the file's SHA-256 is recorded.
        body = mark_safe(handle.read().decode("utf-8"))  # noqa: S308 - our renderer escapes every value
    artifact_download_record(artifact=artifact, user=request.user, remote_addr=request.META.get("REMOTE_ADDR"))
    return render(request, "analysis/report.html", {"trial": trial, "run": run, "audience": audience, "body": body})


@login_required
def download(request, code: str, run_id: int, artifact_id: int):
    """Artifacts are served by database id only — never by a path from the request — to allowed roles."""
    trial, run = _run(request, code, run_id)
    artifact = run.artifacts.filter(pk=artifact_id).first()
    if artifact is None or not may_read(request.user, trial, artifact.audience):
        raise Http404("No such file")
    return artifact_download_response(artifact=artifact, user=request.user, remote_addr=request.META.get("REMOTE_ADDR"))
