from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from trials.policies.access import ROLE_CAPABILITIES, Capability, membership, trials_for
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
    capabilities = ROLE_CAPABILITIES[member.role]
    sites = site_enrolment(trial=trial, user=request.user)
    return render(
        request,
        "trials/trial_home.html",
        {
            "trial": trial,
            "member": member,
            "sites": sites,
            "randomized_total": sum(site["randomized"] for site in sites),
            "can_view_participants": Capability.VIEW_PARTICIPANTS in capabilities,
            "can_manage_allocation": Capability.MANAGE_ALLOCATION in capabilities,
            "unblinded": sees_allocation(request.user, trial),
        },
    )
