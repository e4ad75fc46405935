"""Trial set-up services."""

from __future__ import annotations

from django.db import transaction

from audit.context import audit_context
from audit.exceptions import ApplicationError
from trials.models import MembershipSite, Role, Trial, TrialMembership


def membership_grant(
    *, trial: Trial, user, role: str, site_codes: list[str], granted_by, reason: str
) -> TrialMembership:
    """Give ``user`` ``role`` in ``trial`` (replacing a previous role), limited to ``site_codes`` for site roles."""
    if role not in Role.values:
        raise ApplicationError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.", field="role")
    sites = list(trial.sites.filter(code__in=site_codes))
    missing = sorted(set(site_codes) - {site.code for site in sites})
    if missing:
        raise ApplicationError(f"{trial} has no site {', '.join(missing)}.", field="sites")
    if role in (Role.SITE_STAFF, Role.MONITOR) and not sites:
        raise ApplicationError("Site staff and monitors need at least one site.", field="sites")
    with transaction.atomic(), audit_context(reason=reason, user=granted_by):
        membership, _ = TrialMembership.objects.update_or_create(
            user=user, trial=trial, defaults={"role": role, "is_active": True}
        )
        membership.site_links.exclude(site__in=sites).delete()
        for site in sites:
            MembershipSite.objects.get_or_create(membership=membership, site=site)
    return membership
