"""Session lifecycle: idle and absolute timeouts on the server, new id on login, logout, password change."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
import time_machine
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

PAGE = "/trials/EXO-OA-201/participants/"
API = "/api/v1/trials/"
NEW_PASSWORD = "a-new-passphrase-2026"


def logged_in(demo_password, username="demo-site") -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": demo_password})
    assert response.status_code == 302
    return client


@pytest.mark.req("R25")
def test_the_session_id_changes_at_login(demo_trial, demo_password):
    client = Client()
    client.get("/accounts/login/")
    client.session.save()
    before = client.session.session_key
    client.post("/accounts/login/", {"username": "demo-site", "password": demo_password})
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert before
    assert after != before
    assert not Session.objects.filter(session_key=before).exists()


@pytest.mark.req("R25")
def test_an_idle_session_ends_on_the_server(demo_trial, demo_password):
    assert settings.SESSION_IDLE_SECONDS <= 30 * 60
    client = logged_in(demo_password)
    key = client.session.session_key
    assert client.get(PAGE).status_code == 200
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=settings.SESSION_IDLE_SECONDS + 61), tick=False):
        page = client.get(PAGE)
        assert page.status_code == 302
        assert page["Location"].startswith("/accounts/login/?next=")
        assert client.get(API).status_code in (401, 403)
    assert not Session.objects.filter(session_key=key).exists()


@pytest.mark.req("R25")
def test_the_api_answers_401_for_an_expired_session(demo_trial, demo_password):
    client = logged_in(demo_password)
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=settings.SESSION_IDLE_SECONDS + 61), tick=False):
        response = client.get(API)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "session_expired"


@pytest.mark.req("R25")
def test_an_active_session_still_ends_at_the_absolute_limit(demo_trial, demo_password):
    client = logged_in(demo_password)
    start = timezone.now()
    step = dt.timedelta(seconds=settings.SESSION_IDLE_SECONDS // 2)
    elapsed = dt.timedelta(0)
    while elapsed + step < dt.timedelta(seconds=settings.SESSION_ABSOLUTE_SECONDS):
        elapsed += step
        with time_machine.travel(start + elapsed, tick=False):
            assert client.get(API).status_code == 200, elapsed
    with time_machine.travel(start + dt.timedelta(seconds=settings.SESSION_ABSOLUTE_SECONDS + 1), tick=False):
        assert client.get(API).status_code == 401


@pytest.mark.req("R25")
def test_logout_ends_the_session_on_the_server(demo_trial, demo_password):
    client = logged_in(demo_password)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.post("/accounts/logout/").status_code == 302
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = cookie
    assert replay.get(PAGE).status_code == 302
    assert replay.get(API).status_code in (401, 403)
    assert not Session.objects.filter(session_key=cookie).exists()


@pytest.mark.req("R25")
def test_changing_the_password_ends_the_other_sessions_and_keeps_this_one(demo_trial, demo_password):
    this, other = logged_in(demo_password), logged_in(demo_password)
    assert other.get(PAGE).status_code == 200
    changed = this.post(
        "/accounts/password/",
        {"old_password": demo_password, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert changed.status_code == 302
    assert this.get(PAGE).status_code == 200
    assert other.get(PAGE).status_code == 302
    assert other.get(API).status_code in (401, 403)


def test_argon2_hashes_passwords_in_every_deployed_mode():
    # the test settings use MD5 for speed; what ships is base.py, which production does not override
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "x" * 20 + "k3y-for-the-hasher-check-only-2c9f1e7a8b6d5",
        "ALLOWED_HOSTS": "exotrial.example.org",
        "DATABASE_URL": "postgres://exotrial@db.invalid:5432/exotrial",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.PASSWORD_HASHERS[0])",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert completed.stdout.strip().endswith("Argon2PasswordHasher")
