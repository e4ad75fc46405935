"""Who may request analyses and download which report artifacts (FDA DMC guidance: closed data to the DMC only)."""

from __future__ import annotations

from trials.models import Trial
from trials.policies.access import Capability, can

OPEN, CLOSED, FINAL, DATASETS = "open", "closed", "final", "datasets"
AUDIENCE_CAPABILITY = {
    OPEN: Capability.VIEW_REPORTS_OPEN,
    CLOSED: Capability.VIEW_REPORTS_CLOSED,
    FINAL: Capability.VIEW_REPORTS_CLOSED,
    DATASETS: Capability.VIEW_REPORTS_CLOSED,  # frozen datasets carry TRT01P
}


def may_read(user, trial: Trial, audience: str) -> bool:
    capability = AUDIENCE_CAPABILITY.get(audience)
    return capability is not None and can(user, trial, capability)


def readable_audiences(user, trial: Trial) -> set[str]:
    return {audience for audience in AUDIENCE_CAPABILITY if may_read(user, trial, audience)}


def may_request(user, trial: Trial) -> bool:
    return can(user, trial, Capability.REQUEST_ANALYSES)
