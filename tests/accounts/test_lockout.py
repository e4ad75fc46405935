"""Brute-force lockout (django-axes): login page, API token, and its report to the security officers."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
TOKEN = "/api/v1/auth/token/"
AFTER_COOL_OFF = dt.timedelta(hours=1, minutes=1)


def log_in(client, password, **headers):
    return client.post(LOGIN, {"username": "demo-site", "password": password}, headers=headers)


@pytest.mark.req("R23")
def test_axes_is_the_first_authentication_backend_and_trusts_no_proxy_by_default():
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert settings.AXES_FAILURE_LIMIT <= 5
    assert settings.AXES_IPWARE_META_PRECEDENCE_ORDER == ("REMOTE_ADDR",)
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"


@pytest.mark.req("R13", "R23")
def test_five_wrong_passwords_lock_the_login_and_the_right_one_is_refused_until_the_cool_off(demo_trial, demo_password):
    client = Client()
    statuses = [log_in(client, f"guess-{n}").status_code for n in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    # the right password is refused while locked, and does not log in
    refused = log_in(client, demo_password)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    # the security officers were told once, not once per refused attempt
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [address for _, address in settings.ADMINS]
    assert "demo-site" in mail.outbox[0].subject
    # after the cool-off the right password works
    with time_machine.travel(timezone.now() + AFTER_COOL_OFF, tick=False):
        accepted = log_in(client, demo_password)
    assert accepted.status_code == 302
    assert accepted["Location"] == "/"


@pytest.mark.req("R23")
def test_a_rotating_x_forwarded_for_does_not_reset_the_count(demo_trial, demo_password):
    client = Client()
    for n in range(6):
        log_in(client, f"guess-{n}", X_Forwarded_For=f"203.0.113.{n + 1}")
    refused = log_in(client, demo_password, X_Forwarded_For="198.51.100.77")
    assert refused.status_code == 429
    with time_machine.travel(timezone.now() + AFTER_COOL_OFF, tick=False):
        assert log_in(client, demo_password, X_Forwarded_For="198.51.100.78").status_code == 302


@pytest.mark.req("R23")
def test_the_lock_is_per_user_name_and_address(demo_trial, demo_password):
    client = Client()
    for n in range(5):
        log_in(client, f"guess-{n}")
    other_address = Client(REMOTE_ADDR="192.0.2.10")
    assert log_in(other_address, demo_password).status_code == 302
    other_user = client.post(LOGIN, {"username": "demo-monitor", "password": demo_password})
    assert other_user.status_code == 302


@pytest.mark.req("R23")
def test_the_api_token_endpoint_is_locked_too(demo_trial, demo_password):
    client = APIClient()
    for n in range(5):
        client.post(TOKEN, {"username": "demo-site", "password": f"guess-{n}"})
    refused = client.post(TOKEN, {"username": "demo-site", "password": demo_password})
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["code"] == "locked_out"
    assert "token" not in refused.json()
    with time_machine.travel(timezone.now() + AFTER_COOL_OFF, tick=False):
        accepted = client.post(TOKEN, {"username": "demo-site", "password": demo_password})
    assert accepted.status_code == 200
    assert accepted.json()["token"]


@pytest.mark.req("R23")
def test_failures_from_the_login_page_and_the_api_add_up(demo_trial, demo_password):
    client = Client()
    for n in range(3):
        log_in(client, f"guess-{n}")
    api = APIClient()
    for n in range(2):
        api.post(TOKEN, {"username": "demo-site", "password": f"api-guess-{n}"})
    assert log_in(client, demo_password).status_code == 429
