"""Security events (R8): one append-only row per security-relevant action, with actor, address and UTC time."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse

from audit.context import audit_context
from audit.models import SecurityEvent
from audit.security import record_security_event
from trials.models import Role, TrialMembership
from trials.services import membership_grant

pytestmark = pytest.mark.django_db
Kind = SecurityEvent.Kind
PASSWORD = "correct-horse-battery-9"


def new_events(since: int, kind: str | None = None):
    events = SecurityEvent.objects.filter(pk__gt=since).order_by("pk")
    return list(events.filter(kind=kind) if kind else events)


def last_id() -> int:
    latest = SecurityEvent.objects.order_by("-pk").first()
    return latest.pk if latest else 0


def assert_stamped_now(event: SecurityEvent) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (database_now,) = cursor.fetchone()
    assert event.occurred_at.utcoffset() == dt.timedelta(0)
    assert abs(database_now - event.occurred_at) < dt.timedelta(minutes=1)


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("sec-member", password=PASSWORD)


@pytest.mark.req("R8")
def test_login_and_logout_are_recorded_once_each_with_actor_address_and_time(client, member):
    since = last_id()
    response = client.post(
        reverse("login"),
        {"username": "sec-member", "password": PASSWORD},
        REMOTE_ADDR="203.0.113.7",
        HTTP_USER_AGENT="pytest-browser/1.0",
    )
    assert response.status_code == 302
    (login,) = new_events(since, Kind.LOGIN)
    assert (login.actor_id, login.actor_username, login.ip_address) == (member.pk, "sec-member", "203.0.113.7")
    assert login.user_agent == "pytest-browser/1.0"
    assert_stamped_now(login)

    since = last_id()
    client.post(reverse("logout"), REMOTE_ADDR="203.0.113.7")
    (logout,) = new_events(since, Kind.LOGOUT)
    assert (logout.actor_id, logout.ip_address) == (member.pk, "203.0.113.7")


@pytest.mark.req("R8")
def test_a_failed_login_is_recorded_with_the_claimed_name_and_never_the_password(client, member):
    since = last_id()
    client.post(reverse("login"), {"username": "sec-member", "password": "wrong-guess-123"}, REMOTE_ADDR="198.51.100.4")
    (failed,) = new_events(since, Kind.LOGIN_FAILED)
    assert (failed.actor_id, failed.actor_username, failed.ip_address) == (None, "sec-member", "198.51.100.4")
    assert "wrong-guess-123" not in str(failed.details)


@pytest.mark.req("R8")
def test_account_creation_password_change_and_deactivation_are_recorded(member):
    since = last_id()
    user = get_user_model().objects.create_user("sec-new", password=PASSWORD)
    user.set_password("another-horse-battery-10")
    user.save()
    user.is_active = False
    user.save()
    user.last_name = "Unrelated"
    user.save()
    kinds = [(event.kind, event.details["account_username"]) for event in new_events(since)]
    assert kinds == [
        (Kind.ACCOUNT_CREATED, "sec-new"),
        (Kind.PASSWORD_CHANGED, "sec-new"),
        (Kind.ACCOUNT_DEACTIVATED, "sec-new"),
    ]


@pytest.mark.req("R8")
def test_a_password_changed_through_the_admin_page_is_recorded(client, django_user_model, log_in):
    admin = django_user_model.objects.create_superuser("sec-admin", password=PASSWORD)
    log_in(client, admin)
    since = last_id()
    response = client.post(
        reverse("admin:password_change"),
        {"old_password": PASSWORD, "new_password1": "brand-new-horse-77", "new_password2": "brand-new-horse-77"},
        REMOTE_ADDR="192.0.2.10",
    )
    assert response.status_code in (200, 302)
    (changed,) = new_events(since, Kind.PASSWORD_CHANGED)
    assert (changed.actor_id, changed.ip_address) == (admin.pk, "192.0.2.10")


@pytest.mark.req("R8")
def test_role_grant_change_and_site_changes_are_recorded_with_the_granting_user(demo_trial, coordinator, member):
    site_codes = list(demo_trial.sites.order_by("code").values_list("code", flat=True)[:2])
    since = last_id()
    membership_grant(
        trial=demo_trial,
        user=member,
        role=Role.MONITOR,
        site_codes=site_codes[:1],
        granted_by=coordinator,
        reason="new monitor",
    )
    granted = new_events(since)
    assert [event.kind for event in granted] == [Kind.ROLE_CHANGED, Kind.SITE_GRANTED]
    assert {event.actor_username for event in granted} == {"demo-coordinator"}
    assert granted[0].details["role"] == Role.MONITOR

    since = last_id()
    membership_grant(
        trial=demo_trial,
        user=member,
        role=Role.MONITOR,
        site_codes=site_codes[1:2],
        granted_by=coordinator,
        reason="moved to the second site",
    )
    assert [event.kind for event in new_events(since)] == [Kind.SITE_REVOKED, Kind.SITE_GRANTED]

    since = last_id()
    membership_grant(
        trial=demo_trial,
        user=member,
        role=Role.DATA_MANAGER,
        site_codes=[],
        granted_by=coordinator,
        reason="now data manager",
    )
    role_changes = new_events(since, Kind.ROLE_CHANGED)
    assert [(e.details["previous_role"], e.details["role"]) for e in role_changes] == [
        (Role.MONITOR, Role.DATA_MANAGER)
    ]

    since = last_id()
    with audit_context(reason="left the study", user=coordinator):
        TrialMembership.objects.get(user=member, trial=demo_trial).delete()
    assert Kind.ROLE_REVOKED in [event.kind for event in new_events(since)]


@pytest.mark.req("R8")
def test_a_csv_export_is_recorded_once(client, demo_trial, log_in):
    log_in(client, "demo-datamanager")
    since = last_id()
    response = client.get(
        reverse("export_csv", args=[demo_trial.protocol_code, "participants"]), REMOTE_ADDR="192.0.2.33"
    )
    assert response.status_code == 200
    b"".join(response.streaming_content)
    (export,) = new_events(since, Kind.EXPORT)
    assert (export.actor_username, export.ip_address) == ("demo-datamanager", "192.0.2.33")
    assert export.details == {"trial": demo_trial.protocol_code, "format": "csv", "table": "participants"}


@pytest.mark.req("R8")
def test_an_unknown_kind_is_refused_and_records_nothing():
    since = last_id()
    with pytest.raises(ValueError, match="Unknown security event kind"):
        record_security_event("coffee_break")
    assert new_events(since) == []


@pytest.mark.req("R3", "R8")
def test_the_admin_shows_security_events_read_only(client, django_user_model, log_in):
    admin = django_user_model.objects.create_superuser("sec-viewer", password=PASSWORD)
    log_in(client, admin)
    event = SecurityEvent.objects.order_by("-pk").first()
    assert client.get(reverse("admin:audit_securityevent_changelist")).status_code == 200
    assert client.get(reverse("admin:audit_securityevent_add")).status_code == 403
    assert client.get(reverse("admin:audit_securityevent_delete", args=[event.pk])).status_code == 403
    page = client.get(reverse("admin:audit_securityevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content


@pytest.mark.req("R8")
def test_a_report_download_is_recorded_once(client, interim_run, log_in):
    artifact = interim_run.artifacts.get(name="closed/report.pdf")
    log_in(client, "demo-dsmb")
    since = last_id()
    response = client.get(
        reverse("analysis:download", args=[interim_run.trial.protocol_code, interim_run.pk, artifact.pk]),
        REMOTE_ADDR="192.0.2.44",
    )
    assert response.status_code == 200
    (download,) = new_events(since, Kind.ARTIFACT_DOWNLOAD)
    assert (download.actor_username, download.ip_address) == ("demo-dsmb", "192.0.2.44")
    assert download.details == {"run_id": interim_run.pk, "artifact_id": artifact.pk}


@pytest.mark.req("R8")
def test_the_lockout_report_of_accounts_is_recorded_with_the_locked_name():
    since = last_id()
    record_security_event(Kind.LOCKOUT, username="sec-locked", details={"ip": "192.0.2.9", "path": "/accounts/login/"})
    (lockout,) = new_events(since)
    assert (lockout.kind, lockout.actor_id, lockout.actor_username) == (Kind.LOCKOUT, None, "sec-locked")
    assert lockout.details == {"ip": "192.0.2.9", "path": "/accounts/login/"}
