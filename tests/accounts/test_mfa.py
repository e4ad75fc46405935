"""TOTP multi-factor authentication for privileged and unblinded roles (django-otp)."""

from __future__ import annotations

import re
import time

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.selectors import mfa_required

pytestmark = pytest.mark.django_db

RUNS = "/trials/EXO-OA-201/analyses/"
API_TRIALS = "/api/v1/trials/"
TOKEN = "/api/v1/auth/token/"


def password_login(client, username, password):
    response = client.post("/accounts/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content[:500]
    return response


def enrol(client, totp_code) -> tuple[TOTPDevice, list[str]]:
    """Go through the enrolment page as a person would: read the secret, type the app's code, read the codes."""
    page = client.get("/accounts/mfa/enrol/")
    assert page.status_code == 200
    device = TOTPDevice.objects.get(user__username=page.context["user"].username, confirmed=False)
    confirmed = client.post("/accounts/mfa/enrol/", {"code": totp_code(device), "next": RUNS})
    assert confirmed.status_code == 302
    codes_page = client.get(confirmed["Location"])
    codes = re.findall(r"<li>([a-z0-9]+)</li>", codes_page.content.decode())
    device.refresh_from_db()
    return device, codes


@pytest.mark.parametrize(
    ("username", "required"),
    [
        ("demo-coordinator", True),  # staff: the admin site
        ("demo-datamanager", True),
        ("demo-unblinded-stat", True),
        ("demo-dsmb", True),
        ("demo-site", False),
        ("demo-monitor", False),
        ("demo-blinded-stat", False),
        ("demo-sponsor", False),
    ],
)
@pytest.mark.req("R24")
def test_mfa_is_required_for_staff_data_managers_and_unblinded_roles(demo_trial, username, required):
    assert mfa_required(get_user_model().objects.get(username=username)) is required


@pytest.mark.req("R24")
def test_a_password_only_session_of_a_dsmb_member_reaches_nothing_but_enrolment(demo_trial, demo_password):
    client = Client()
    password_login(client, "demo-dsmb", demo_password)
    page = client.get(RUNS)
    assert page.status_code == 302
    assert page["Location"].startswith("/accounts/mfa/enrol/?next=")
    api = client.get(API_TRIALS)
    assert api.status_code == 403
    assert api.json()["errors"][0]["code"] == "mfa_required"
    assert client.get("/admin/").status_code == 302


@pytest.mark.req("R24")
def test_enrolment_shows_a_qr_code_and_the_secret_then_backup_codes_once(demo_trial, demo_password, totp_code):
    client = Client()
    password_login(client, "demo-dsmb", demo_password)
    page = client.get("/accounts/mfa/enrol/").content.decode()
    assert 'src="data:image/svg+xml' in page
    device = TOTPDevice.objects.get(user__username="demo-dsmb", confirmed=False)
    assert re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
    # a wrong code confirms nothing
    wrong = client.post("/accounts/mfa/enrol/", {"code": "000000" if totp_code(device) != "000000" else "111111"})
    assert wrong.status_code == 200
    assert not TOTPDevice.objects.filter(user__username="demo-dsmb", confirmed=True).exists()
    # the app's code confirms it (a step later: a wrong code pauses the device for a second)
    with time_machine.travel(time.time() + device.step, tick=False):
        device, codes = enrol(client, totp_code)
    assert device.confirmed
    assert len(codes) == 10
    assert len(set(codes)) == 10
    # verified now: the reports open
    assert client.get(RUNS).status_code == 200
    assert client.get(API_TRIALS).status_code == 200
    # the codes are not shown a second time
    again = client.get("/accounts/mfa/backup-codes/")
    assert again.status_code == 302
    assert codes[0] not in client.get(RUNS).content.decode()


@pytest.mark.req("R24")
def test_next_login_asks_for_the_code_and_a_replayed_code_is_refused(demo_trial, demo_password, totp_code):
    now = time.time()
    # the clock stands still so that enrolment and the replay fall in the same 30-second step
    with time_machine.travel(now, tick=False):
        first = Client()
        password_login(first, "demo-dsmb", demo_password)
        device, _ = enrol(first, totp_code)
        # a second login in the same step: the code just used for enrolment is refused
        second = Client()
        password_login(second, "demo-dsmb", demo_password)
        assert second.get(RUNS)["Location"].startswith("/accounts/mfa/?next=")
        replay = second.post("/accounts/mfa/", {"code": totp_code(device)})
        assert replay.status_code == 200
        assert "already used" in replay.content.decode()
        assert second.get(RUNS).status_code == 302
    # the next time step's code is accepted
    later = now + device.step
    device.refresh_from_db()

    with time_machine.travel(later, tick=False):
        accepted = second.post("/accounts/mfa/", {"code": totp_code(device, at=later), "next": RUNS})
        assert accepted.status_code == 302
        assert accepted["Location"] == RUNS
        assert second.get(RUNS).status_code == 200


@pytest.mark.req("R24")
def test_a_backup_code_works_once(demo_trial, demo_password, totp_code):
    first = Client()
    password_login(first, "demo-dsmb", demo_password)
    _, codes = enrol(first, totp_code)
    second = Client()
    password_login(second, "demo-dsmb", demo_password)
    assert second.post("/accounts/mfa/", {"code": codes[0]}).status_code == 302
    assert second.get(RUNS).status_code == 200
    third = Client()
    password_login(third, "demo-dsmb", demo_password)
    assert third.post("/accounts/mfa/", {"code": codes[0]}).status_code == 200
    assert third.get(RUNS).status_code == 302
    assert StaticToken.objects.filter(device__user__username="demo-dsmb").count() == 9


@pytest.mark.req("R24")
def test_wrong_codes_throttle_the_device(demo_trial, demo_password, totp_code):
    first = Client()
    password_login(first, "demo-dsmb", demo_password)
    device, _ = enrol(first, totp_code)
    client = Client()
    password_login(client, "demo-dsmb", demo_password)
    start = time.time()
    # ten wrong codes, each after the pause the previous ones imposed (1 s, 2 s, 4 s, …)
    for n in range(10):
        at = start + 2**n + n
        wrong = "123456" if totp_code(device, at=at) != "123456" else "654321"
        with time_machine.travel(at, tick=False):
            assert client.post("/accounts/mfa/", {"code": wrong}).status_code == 200
    device.refresh_from_db()
    assert device.throttling_failure_count == 10
    # now even the right code is refused for the next 2⁹ s
    later = start + 2**9 + 9 + device.step
    with time_machine.travel(later, tick=False):
        paused = client.post("/accounts/mfa/", {"code": totp_code(device, at=later)})
        assert paused.status_code == 200
        assert "Too many wrong codes" in paused.content.decode()
        assert client.get(RUNS).status_code == 302


@pytest.mark.req("R24")
def test_roles_without_mfa_may_work_without_a_second_factor(demo_trial, demo_password):
    client = Client()
    password_login(client, "demo-site", demo_password)
    assert client.get("/trials/EXO-OA-201/participants/").status_code == 200


@pytest.mark.req("R13", "R24")
def test_api_token_for_an_mfa_user_needs_a_code_and_dies_with_the_device(demo_trial, demo_password, totp_code):
    client = Client()
    password_login(client, "demo-unblinded-stat", demo_password)
    device, _ = enrol(client, totp_code)
    api = APIClient()
    # password alone: no token
    refused = api.post(TOKEN, {"username": "demo-unblinded-stat", "password": demo_password})
    assert refused.status_code == 400
    assert "token" not in refused.json()
    # password and the next step's code: a token that works
    later = time.time() + device.step

    with time_machine.travel(later, tick=False):
        issued = api.post(
            TOKEN,
            {"username": "demo-unblinded-stat", "password": demo_password, "otp_code": totp_code(device, at=later)},
        )
    assert issued.status_code == 200, issued.content
    api.credentials(HTTP_AUTHORIZATION=f"Token {issued.json()['token']}")
    assert api.get(API_TRIALS).status_code == 200
    # removing the authenticator (an administrator de-authorising it) ends the token and the session's verification
    device.delete()
    assert api.get(API_TRIALS).status_code in (401, 403)
    assert client.get(RUNS).status_code == 302


@pytest.mark.req("R24")
def test_a_token_created_without_a_code_is_refused_for_an_mfa_user(demo_trial):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=get_user_model().objects.get(username="demo-dsmb"))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = api.get(API_TRIALS)
    assert response.status_code in (401, 403)
    assert response.json()["errors"][0]["code"] == "authentication_failed"


@pytest.mark.req("R24")
def test_an_mfa_user_who_has_not_enrolled_gets_no_token(demo_trial, demo_password):
    response = APIClient().post(TOKEN, {"username": "demo-dsmb", "password": demo_password})
    assert response.status_code == 400
    assert "authenticator" in response.content.decode()
