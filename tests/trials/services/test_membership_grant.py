import io

import pytest
from django.core.management import CommandError, call_command

from audit.history import record_history
from trials.models import TrialMembership

pytestmark = pytest.mark.django_db


def test_grant_role_appoints_a_first_coordinator_with_an_audit_trail(demo_trial, django_user_model):
    user = django_user_model.objects.create_user("new-coordinator", password="a-long-pass-123")
    out = io.StringIO()
    call_command(
        "grant_role", "new-coordinator", "EXO-OA-201", "coordinator", "--staff", "--reason", "appointed", stdout=out
    )
    membership = TrialMembership.objects.get(user=user, trial=demo_trial)
    assert membership.role == "coordinator"
    user.refresh_from_db()
    assert user.is_staff
    assert record_history(membership)[0].reason == "appointed"


def test_grant_role_changes_a_role_and_its_sites_with_a_reason(demo_trial):
    call_command(
        "grant_role",
        "demo-monitor",
        "EXO-OA-201",
        "monitor",
        "--site",
        "S02",
        "--site",
        "S03",
        "--reason",
        "monitor reassigned",
        stdout=io.StringIO(),
    )
    membership = TrialMembership.objects.get(user__username="demo-monitor", trial=demo_trial)
    assert sorted(membership.site_links.values_list("site__code", flat=True)) == ["S02", "S03"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "EXO-OA-201", "monitor", "--site", "S01"], "No user"),
        (["demo-monitor", "NOPE-1", "monitor", "--site", "S01"], "No trial"),
        (["demo-monitor", "EXO-OA-201", "monitor"], "at least one site"),
        (["demo-monitor", "EXO-OA-201", "monitor", "--site", "S99"], "no site S99"),
    ],
)
def test_grant_role_explains_bad_input(demo_trial, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("grant_role", *args, stdout=io.StringIO())
