from __future__ import annotations

from django.db.models import Count, Q
from django.http import Http404

from trials.models import Trial, TrialMembership
from trials.policies.access import Capability, membership, require
from trials.policies.sites import ALL_SITES, visible_site_ids


def trial_get_for(user, protocol_code: str, capability: Capability = Capability.VIEW_TRIAL) -> Trial:
    """The trial, if ``user`` is a member (404 otherwise, so non-members cannot probe which trials exist)."""
    trial = Trial.objects.filter(protocol_code=protocol_code).first()
    if trial is None or membership(user, trial) is None:
        raise Http404("No such trial")
    require(user, trial, capability)
    return trial


def site_enrolment(*, trial: Trial, user) -> list[dict]:
    """Screened, randomized and target per site the user may see (aggregate counts, no arms)."""
    site_ids = visible_site_ids(user, trial)
    sites = trial.sites.order_by("code")
    if site_ids is not ALL_SITES:
        sites = sites.filter(pk__in=site_ids)
    rows = sites.annotate(
        screened=Count("participants", distinct=True),
        randomized=Count("participants", filter=Q(participants__randomization__isnull=False), distinct=True),
        screen_failures=Count("participants", filter=Q(participants__status="screen_failed"), distinct=True),
    ).values("pk", "code", "name", "target_enrollment", "screened", "randomized", "screen_failures")
    return list(rows)


def member_emails(trial: Trial, roles) -> list[str]:
    """The e-mail addresses of the trial's active members in ``roles`` (active accounts with an address), sorted."""
    return sorted(
        set(
            TrialMembership.objects.filter(trial=trial, role__in=roles, is_active=True, user__is_active=True)
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )
