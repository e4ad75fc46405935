"""The membership a request is judged by: its sites are read with it, and a change shows on the next request."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from audit.context import audit_context
from trials.models import TrialMembership
from trials.policies.access import membership
from trials.policies.sites import ALL_SITES, visible_site_ids
from trials.services import membership_grant

pytestmark = pytest.mark.django_db


def next_request(username):
    """The user as a new request authenticates it: nothing memoised."""
    return get_user_model().objects.get(username=username)


def test_a_site_role_sees_exactly_the_sites_of_its_membership(demo_trial, django_assert_num_queries):
    user = next_request("demo-monitor")
    granted = set(TrialMembership.objects.get(user=user, trial=demo_trial).site_links.values_list("site_id", flat=True))
    # when: the membership and its sites in one read, then from memory for the rest of the request
    with django_assert_num_queries(1):
        assert visible_site_ids(user, demo_trial) == granted
        assert visible_site_ids(user, demo_trial) == granted
    assert membership(user, demo_trial).role == "monitor"


def test_a_trial_wide_role_sees_every_site(demo_trial):
    assert visible_site_ids(next_request("demo-coordinator"), demo_trial) is ALL_SITES


def test_changed_sites_and_a_revoked_membership_count_from_the_next_request(demo_trial):
    coordinator = next_request("demo-coordinator")
    monitor = next_request("demo-monitor")
    membership_grant(
        trial=demo_trial,
        user=monitor,
        role="monitor",
        site_codes=["S02"],
        granted_by=coordinator,
        reason="monitor reassigned",
    )
    s02 = demo_trial.sites.get(code="S02").pk
    assert visible_site_ids(next_request("demo-monitor"), demo_trial) == {s02}
    # when
    with audit_context(reason="left the study", user=coordinator):
        TrialMembership.objects.filter(user=monitor, trial=demo_trial).update(is_active=False)
    # then
    assert membership(next_request("demo-monitor"), demo_trial) is None
    assert visible_site_ids(next_request("demo-monitor"), demo_trial) == frozenset()
