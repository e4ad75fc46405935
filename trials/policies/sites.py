"""Site scoping: site staff and monitors see only their sites; a site-scoped user with no site sees nothing."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from trials.models import Trial
from trials.policies.access import SITE_SCOPED_ROLES, Capability, membership, trials_with

ALL_SITES = None


def visible_site_ids(user, trial: Trial) -> frozenset[int] | None:
    """Site ids the user may see in ``trial``: ``ALL_SITES`` (None) for trial-wide roles, else a set."""
    found = membership(user, trial)
    if found is None:
        return frozenset()
    if found.role in SITE_SCOPED_ROLES:
        return frozenset(found.site_ids)
    return ALL_SITES


def scope(
    queryset: QuerySet,
    user,
    *,
    trial_path: str,
    site_path: str | None,
    capability: Capability = Capability.VIEW_PARTICIPANTS,
) -> QuerySet:
    """Restrict ``queryset`` to rows of trials (and sites) where ``user`` holds ``capability``.

    ``trial_path``/``site_path`` are the lookups from the queryset's model to its trial and site, e.g.
    ``"participant__trial"`` and ``"participant__site"`` (``trial_path=""`` for the Trial model itself).
    Works across several trials at once.
    """
    if user is None or not user.is_authenticated:
        return queryset.none()
    allowed = Q(pk__in=[])
    for trial in trials_with(user, capability):
        condition = Q(**{f"{trial_path}_id": trial.pk}) if trial_path else Q(pk=trial.pk)
        site_ids = visible_site_ids(user, trial) if site_path else ALL_SITES
        if site_ids is not ALL_SITES:
            condition &= Q(**{f"{site_path}_id__in": sorted(site_ids)})
        allowed |= condition
    return queryset.filter(allowed)


def can_see_site(user, trial: Trial, site_id: int) -> bool:
    site_ids = visible_site_ids(user, trial)
    return site_ids is ALL_SITES or site_id in site_ids
