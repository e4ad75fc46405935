"""Roles and the capabilities they grant. The table is the access model; views and admin never test roles."""

from __future__ import annotations

import enum

from django.core.exceptions import PermissionDenied

from trials.models import MembershipSite, Role, Trial, TrialMembership


class Capability(enum.StrEnum):
    VIEW_TRIAL = "view_trial"  # trial home, aggregate enrolment figures
    VIEW_PARTICIPANTS = "view_participants"  # participant-level data (site-scoped for site roles)
    MANAGE_TRIAL = "manage_trial"  # set-up: sites, visits, endpoints, lots, plan
    MANAGE_MEMBERSHIPS = "manage_memberships"
    ENROLL = "enroll"  # screen, consent, eligibility
    RANDOMIZE = "randomize"
    ENTER_DATA = "enter_data"
    EMERGENCY_UNBLIND = "emergency_unblind"
    RAISE_QUERIES = "raise_queries"
    VERIFY_SOURCE = "verify_source"
    LOCK_DATA = "lock_data"
    UNLOCK_DATA = "unlock_data"  # never from a role alone: TrialMembership.may_unlock grants it
    MANAGE_ALLOCATION = "manage_allocation"  # generate the concealed list, balance report, simulation
    VIEW_REPORTS_OPEN = "view_reports_open"
    VIEW_REPORTS_CLOSED = "view_reports_closed"
    REQUEST_ANALYSES = "request_analyses"


C = Capability
ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.COORDINATOR: frozenset(
        {C.VIEW_TRIAL, C.VIEW_PARTICIPANTS, C.MANAGE_TRIAL, C.MANAGE_MEMBERSHIPS, C.VIEW_REPORTS_OPEN}
    ),
    Role.SITE_STAFF: frozenset(
        {C.VIEW_TRIAL, C.VIEW_PARTICIPANTS, C.ENROLL, C.RANDOMIZE, C.ENTER_DATA, C.EMERGENCY_UNBLIND}
    ),
    Role.MONITOR: frozenset({C.VIEW_TRIAL, C.VIEW_PARTICIPANTS, C.RAISE_QUERIES, C.VERIFY_SOURCE}),
    Role.DATA_MANAGER: frozenset(
        {C.VIEW_TRIAL, C.VIEW_PARTICIPANTS, C.RAISE_QUERIES, C.LOCK_DATA, C.VIEW_REPORTS_OPEN}
    ),
    # Analyses produce the closed (by-arm) report too, so only the unblinded statistician requests them (R20).
    Role.BLINDED_STATISTICIAN: frozenset({C.VIEW_TRIAL, C.VIEW_PARTICIPANTS, C.VIEW_REPORTS_OPEN}),
    Role.UNBLINDED_STATISTICIAN: frozenset(
        {
            C.VIEW_TRIAL,
            C.VIEW_PARTICIPANTS,
            C.MANAGE_ALLOCATION,
            C.VIEW_REPORTS_OPEN,
            C.VIEW_REPORTS_CLOSED,
            C.REQUEST_ANALYSES,
        }
    ),
    Role.DSMB_MEMBER: frozenset({C.VIEW_TRIAL, C.VIEW_REPORTS_OPEN, C.VIEW_REPORTS_CLOSED}),
    Role.SPONSOR_VIEWER: frozenset({C.VIEW_TRIAL, C.VIEW_REPORTS_OPEN}),
}

# Roles that see treatment assignment in a blinded trial (everyone sees it in an open-label trial).
UNBLINDED_ROLES = frozenset({Role.UNBLINDED_STATISTICIAN, Role.DSMB_MEMBER})
# Roles limited to the sites listed on their membership.
SITE_SCOPED_ROLES = frozenset({Role.SITE_STAFF, Role.MONITOR})


# Read on every request, where the ORM would take several times as long to build the query as the database to
# answer it. At most one membership per user and trial; ``site_ids``: the sites the membership covers.
_MEMBERSHIP_SQL = f"""
SELECT m.*, ARRAY(SELECT s.site_id FROM {MembershipSite._meta.db_table} s WHERE s.membership_id = m.id) AS site_ids
FROM {TrialMembership._meta.db_table} m
WHERE m.user_id = %s AND m.trial_id = %s AND m.is_active
"""  # noqa: S608 - table names from the models, values are parameters


def membership(user, trial: Trial) -> TrialMembership | None:
    """The user's active membership in ``trial``, with ``site_ids`` (memoised on the user object for the request)."""
    if user is None or not user.is_authenticated:
        return None
    cache = user.__dict__.setdefault("_trial_memberships", {})
    if trial.pk not in cache:
        cache[trial.pk] = next(iter(TrialMembership.objects.raw(_MEMBERSHIP_SQL, [user.pk, trial.pk])), None)
    return cache[trial.pk]


def role(user, trial: Trial) -> str | None:
    found = membership(user, trial)
    return found.role if found else None


def membership_capabilities(member: TrialMembership) -> frozenset[Capability]:
    """What the membership allows: its role's capabilities, plus unlocking where it was granted on its own."""
    capabilities = ROLE_CAPABILITIES[member.role]
    if member.may_unlock and Capability.LOCK_DATA in capabilities:
        return capabilities | {Capability.UNLOCK_DATA}
    return capabilities


def can(user, trial: Trial, capability: Capability) -> bool:
    found = membership(user, trial)
    return found is not None and capability in membership_capabilities(found)


def require(user, trial: Trial, capability: Capability) -> None:
    if not can(user, trial, capability):
        raise PermissionDenied(f"Your role in {trial.protocol_code} does not allow this ({capability.value}).")


def trials_for(user):
    """Trials the user is an active member of."""
    if user is None or not user.is_authenticated:
        return Trial.objects.none()
    return Trial.objects.filter(memberships__user=user, memberships__is_active=True).distinct()


def trials_with(user, capability: Capability):
    roles = [name for name, capabilities in ROLE_CAPABILITIES.items() if capability in capabilities]
    if user is None or not user.is_authenticated:
        return Trial.objects.none()
    return Trial.objects.filter(
        memberships__user=user, memberships__is_active=True, memberships__role__in=roles
    ).distinct()
