from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from participants.models import Participant
from trials.models import Trial
from trials.policies.access import Capability, can
from trials.policies.sites import ALL_SITES, visible_site_ids

LIST_ORDERINGS = {
    "screening_number": "screening_number",
    "-screening_number": "-screening_number",
    "site": "site__code",
    "status": "status",
    "screened_on": "screened_on",
    "-screened_on": "-screened_on",
    "randomization_number": "randomization__randomization_number",
}


def participants_visible(*, trial: Trial, user) -> QuerySet[Participant]:
    """Participants of ``trial`` the user may see: their sites only for site staff and monitors."""
    if not can(user, trial, Capability.VIEW_PARTICIPANTS):
        return Participant.objects.none()
    queryset = Participant.objects.filter(trial=trial)
    site_ids = visible_site_ids(user, trial)
    if site_ids is not ALL_SITES:
        queryset = queryset.filter(site_id__in=site_ids)
    return queryset


def participant_list(
    *, trial: Trial, user, status: str = "", site: str = "", search: str = "", ordering: str = "screening_number"
) -> QuerySet[Participant]:
    """Filtered, ordered list. Orderings are allow-listed: nothing can sort (and so leak) by arm."""
    queryset = participants_visible(trial=trial, user=user).select_related("site", "randomization")
    if status in Participant.Status.values:
        queryset = queryset.filter(status=status)
    if site:
        queryset = queryset.filter(site__code=site)
    if search:
        queryset = queryset.filter(screening_number__icontains=search.strip())
    return queryset.order_by(LIST_ORDERINGS.get(ordering, "screening_number"), "pk")


def participant_get(*, trial: Trial, user, participant_id: int) -> Participant:
    """One participant the user may see; 404 for anyone else's (no hint that the id exists)."""
    participant = (
        participants_visible(trial=trial, user=user)
        .select_related("site", "trial", "randomization", "screen_failure_criterion")
        .filter(pk=participant_id)
        .first()
    )
    if participant is None:
        raise Http404("No such participant")
    return participant
