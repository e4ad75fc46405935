from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from trials.policies.access import Capability, membership, membership_capabilities, trials_for
from trials.policies.blinding import sees_allocation
from trials.selectors import site_enrolment, trial_get_for


@login_required
def home(request):
    memberships = [
        (trial, membership(request.user, trial)) for trial in trials_for(request.user).order_by("protocol_code")
    ]
    return render(request, "trials/home.html", {"memberships": memberships})


@login_required
def trial_home(request, code: str):
    trial = trial_get_for(request.user, code)
    member = membership(request.user, trial)
    capabilities = membership_capabilities(member)
    sites = site_enrolment(trial=trial, user=request.user)
    return render(
        request,
        "trials/trial_home.html",
        {
            **_work_lists(request.user, trial, capabilities),
            "can_enroll": Capability.ENROLL in capabilities,
            "can_lock": Capability.LOCK_DATA in capabilities,
            "can_view_reports": Capability.VIEW_REPORTS_OPEN in capabilities,
            "trial": trial,
            "member": member,
            "sites": sites,
            "randomized_total": sum(site["randomized"] for site in sites),
            "can_view_participants": Capability.VIEW_PARTICIPANTS in capabilities,
            "can_manage_allocation": Capability.MANAGE_ALLOCATION in capabilities,
            "unblinded": sees_allocation(request.user, trial),
        },
    )


def _work_lists(user, trial, capabilities) -> dict:
    """Visits due and overdue, open queries and running SAE clocks, for roles that see participants."""
    if Capability.VIEW_PARTICIPANTS not in capabilities:
        return {}
    from participants.selectors import (
        open_queries_visible,
        serious_events_with_running_clocks,
        visits_needing_attention,
    )
    from participants.services.adverse_events import reporting_clocks

    now = timezone.now()
    due, overdue = visits_needing_attention(trial=trial, user=user, today=timezone.localdate())
    return {
        "visits_due": due,
        "visits_overdue": overdue,
        "open_queries": list(open_queries_visible(trial=trial, user=user)[:50]),
        "sae_clocks": [
            (event, [clock.label(now) for clock in reporting_clocks(event) if clock.is_running])
            for event in serious_events_with_running_clocks(trial=trial, user=user)
        ],
    }
