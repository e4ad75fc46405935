"""Every role × every URL of the product: the expected status, and no treatment information for blinded roles.

URLs are found by walking the URL resolver, so new pages are covered automatically: a URL without an
expectation below fails the test until its access rule is written down here.
"""

from __future__ import annotations

import re
from functools import cache

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.middleware import HEALTH_URL_NAMES
from accounts.testing import log_in
from participants.models import DoseAdministration, Participant, UnblindingEvent
from trials.formatting import scientific
from trials.models import Arm, Role, TrialMembership

pytestmark = pytest.mark.django_db

ROLES = {
    "anonymous": None,
    Role.COORDINATOR: "demo-coordinator",
    Role.SITE_STAFF: "demo-site",
    Role.MONITOR: "demo-monitor",
    Role.DATA_MANAGER: "demo-datamanager",
    Role.BLINDED_STATISTICIAN: "demo-blinded-stat",
    Role.UNBLINDED_STATISTICIAN: "demo-unblinded-stat",
    Role.DSMB_MEMBER: "demo-dsmb",
    Role.SPONSOR_VIEWER: "demo-sponsor",
}
UNBLINDED = {Role.UNBLINDED_STATISTICIAN, Role.DSMB_MEMBER}
# Staff (the admin) and the roles that see unblinded or lockable data work only in an MFA-verified session.
MFA_ROLES = {Role.COORDINATOR, Role.DATA_MANAGER, Role.UNBLINDED_STATISTICIAN, Role.DSMB_MEMBER}
ADMIN_STAFF = {Role.COORDINATOR, Role.DATA_MANAGER}
PARTICIPANT_READERS = {
    Role.COORDINATOR,
    Role.SITE_STAFF,
    Role.MONITOR,
    Role.DATA_MANAGER,
    Role.BLINDED_STATISTICIAN,
    Role.UNBLINDED_STATISTICIAN,
}
MEMBERS = set(ROLES) - {"anonymous"}
REPORT_READERS = {
    Role.COORDINATOR,
    Role.DATA_MANAGER,
    Role.BLINDED_STATISTICIAN,
    Role.UNBLINDED_STATISTICIAN,
    Role.DSMB_MEMBER,
    Role.SPONSOR_VIEWER,
}
# Health probes (config/health.py) are open to every role, anonymous included: never a login redirect nor a 403.
# Liveness and the database answer 200 here; the broker and worker probes answer with their dependency's state
# (503 while no Celery worker runs, as in this test), so either 200 or 503 is right for them.
HEALTH_OK_OR_UNAVAILABLE = -2
# Actions that change data accept POST only; a GET is refused before any permission check.
POST_ONLY = {
    "visit_missed",
    "adverse_event_notify",
    "query_raise",
    "query_answer",
    "query_close",
    "query_reopen",
    "verify",
    "lock",
}


def walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield pattern.name, prefix + str(pattern.pattern)


ROUTES = sorted(set(walk(get_resolver().url_patterns)), key=lambda item: item[1])


@cache
def demo_objects():
    """A participant at the first site, not emergency-unblinded, on an active arm (so that a leak of the dose
    would show), with adverse events and visits."""
    participant = (
        Participant.objects.filter(
            site__code="S01", randomization__isnull=False, doses__particles_given__gt=0, adverse_events__isnull=False
        )
        .exclude(pk__in=UnblindingEvent.objects.values("participant_id"))
        .order_by("pk")
        .first()
    )
    visit = participant.visits.filter(status="completed").order_by("pk").first()
    from analysis.models import AnalysisRun

    run = AnalysisRun.objects.filter(kind="interim", status="succeeded").order_by("pk").first()
    return {
        "run": run.pk,
        "closed_artifact": run.artifacts.get(name="closed/report.pdf").pk,
        "participant": participant.pk,
        "dose": participant.doses.order_by("pk").first().pk,
        "event": participant.adverse_events.order_by("pk").first().pk,
        "visit": visit.pk,
        "definition": visit.visit_definition_id,
    }


def object_id_for(route: str) -> str:
    match = re.match(r"admin/(\w+)/(\w+)/", route)
    app_label, model_name = match.groups()
    from django.apps import apps

    model = apps.get_model(app_label, model_name)
    if model is Participant:
        return str(demo_objects()["participant"])
    if model is DoseAdministration:
        return str(demo_objects()["dose"])
    if model is TrialMembership:
        return str(TrialMembership.objects.get(user__username="demo-site").pk)
    if model is get_user_model():
        return str(get_user_model().objects.get(username="demo-site").pk)
    obj = model.objects.order_by("pk").first()
    return str(obj.pk) if obj else "1"


def concrete_urls(route: str) -> list[str]:
    """Fill in a route's parameters with objects of the demo trial."""
    if route.startswith("admin/^(?P<app_label>"):
        labels = re.search(r"\(\?P<app_label>([^)]*)\)", route).group(1).split("|")
        return [f"/admin/{label}/" for label in labels]
    if route == "admin/(?P<url>.*)$":
        return ["/admin/no-such-page/"]
    objects = demo_objects()
    url = (
        route.replace("<str:code>", "EXO-OA-201")
        .replace("<int:participant_id>", str(objects["participant"]))
        .replace("<int:definition_id>", str(objects["definition"]))
        .replace("<int:event_id>", str(objects["event"]))
        .replace("<int:visit_id>", str(objects["visit"]))
        .replace("<int:query_id>", "1")
        .replace("<str:kind>", "participants")
        .replace("<str:table>", "participants")
        .replace("<str:fmt>", "xlsx")
        .replace("<int:job_id>", "999999")
        .replace("<int:record_id>", str(objects["participant"]))
        .replace("<int:run_id>", str(objects["run"]))
        .replace("<str:audience>", "closed")
        .replace("<int:artifact_id>", str(objects["closed_artifact"]))
    )
    if "<path:content_type_id>" in url:
        url = url.replace("<path:content_type_id>", "1").replace("<path:object_id>", "1")
    if "<path:object_id>" in url or "<id>" in url or "<int:pk>" in url:
        object_id = object_id_for(route)
        url = url.replace("<path:object_id>", object_id).replace("<id>", object_id).replace("<int:pk>", object_id)
    return ["/" + url]


def admin_expectation(role, name: str | None, route: str) -> int:  # noqa: C901 - one rule per admin view kind
    if route == "admin/login/":
        return 302 if role in ADMIN_STAFF else 200
    if route == "admin/logout/":
        return 405 if role in ADMIN_STAFF else 302  # logging out is POST-only
    if role not in ADMIN_STAFF:
        return 302  # to the admin login
    if route == "admin/(?P<url>.*)$":
        return 404
    if route.startswith("admin/^(?P<app_label>"):
        return -1  # per app, see app_index_expectation
    if name in {"index", "password_change", "password_change_done", "jsi18n"}:
        return 200
    if name == "autocomplete":
        return 403
    if name == "view_on_site":
        return 404
    match = re.match(r"admin/(\w+)/(\w+)/", route)
    app_label, model_name = match.groups()
    view = "redirect" if name is None else name.rsplit("_", 1)[1]
    if name is not None and name.endswith("_password_change"):
        view = "password"
    if app_label not in {"trials", "participants"}:
        # no permission on other apps (task results, tokens, OTP devices, lockout records); "history" of a missing
        # object redirects before any permission check
        from django.apps import apps

        missing_object = view == "history" and not apps.get_model(app_label, model_name).objects.exists()
        return 302 if view == "redirect" or missing_object else 403
    if view == "redirect":
        return 302
    if view == "delete":
        return 403
    if view == "add":
        editable = role == Role.COORDINATOR and app_label == "trials" and model_name != "arm"
        return 200 if editable else 403
    if model_name == "trialmembership" and role != Role.COORDINATOR and view in {"change", "history"}:
        return 302 if view == "change" else 404  # memberships are the coordinator's to manage
    if model_name == "arm" and view in {"change", "history"}:
        # the demo trial is live and blinded: no staff role sees its arm definitions
        return 302 if view == "change" else 404
    return 200


def page_expectation(role, name: str | None, route: str) -> int:
    if name in HEALTH_URL_NAMES:
        return 200 if name in {"health_live", "health_db"} else HEALTH_OK_OR_UNAVAILABLE
    if name == "login":
        return 200
    if name == "logout":
        return 405
    if role == "anonymous":
        return 302
    if name in POST_ONLY:
        return 405
    if name in ("mfa_verify", "mfa_backup_codes"):
        return 302  # the session is already verified (or has no authenticator); codes are shown only after enrolment
    if name == "mfa_enrol":  # optional for roles without MFA; those with an authenticator are sent to verify
        return 302 if role in MFA_ROLES else 200
    rules = {
        "home": MEMBERS,
        "screen": {Role.SITE_STAFF},
        "eligibility": {Role.SITE_STAFF},
        "visit": PARTICIPANT_READERS,
        "adverse_event_new": PARTICIPANT_READERS,
        "adverse_event": PARTICIPANT_READERS,
        "dose_new": {Role.SITE_STAFF},
        "history": PARTICIPANT_READERS,
        "sign": {Role.SITE_STAFF},
        "trial_lock": {Role.DATA_MANAGER},
        "exports": PARTICIPANT_READERS,
        "export_csv": PARTICIPANT_READERS,
        "export_download": PARTICIPANT_READERS,
        "imports": PARTICIPANT_READERS,
        "runs": REPORT_READERS,
        "run": REPORT_READERS,
        "run_status": REPORT_READERS,
        "trial_home": MEMBERS,
        "list": PARTICIPANT_READERS,
        "detail": PARTICIPANT_READERS,
        "randomize": {Role.SITE_STAFF},
        "unblind": {Role.SITE_STAFF},
        "overview": {Role.UNBLINDED_STATISTICIAN},
        "balance": {Role.UNBLINDED_STATISTICIAN},
        "simulate": {Role.UNBLINDED_STATISTICIAN},
        "password_change": MEMBERS,
        "password_change_done": MEMBERS,
    }
    if name == "import_job":  # nobody has an import 999999
        return 404 if role in PARTICIPANT_READERS else 403
    if name in ("report", "download"):  # the closed report: unblinded readers only; others are told nothing
        if role in UNBLINDED:
            return 200
        return 404 if role in REPORT_READERS else 403
    if name not in rules:
        raise AssertionError(f"no access rule for URL {route!r} ({name}); add it to the matrix")
    return 200 if role in rules[name] else 403


API_POST_ONLY = {
    "api-token",
    "api-imports",
    "api-participant-adverse-events",
    "api-participant-doses",
    "api-participant-queries",
    "api-query-action",
}
API_RULES = {
    "api-trials": MEMBERS,
    "api-trial": MEMBERS,
    "api-sites": MEMBERS,
    "api-visit-definitions": MEMBERS,
    "api-endpoints": MEMBERS,
    "api-lots": MEMBERS,
    "api-arms": UNBLINDED,
    "api-participants": PARTICIPANT_READERS,
    "api-participant": PARTICIPANT_READERS,
    "api-participant-visits": PARTICIPANT_READERS,
    "api-visit": PARTICIPANT_READERS,
    "api-measurements": PARTICIPANT_READERS,
    "api-adverse-events": PARTICIPANT_READERS,
    "api-adverse-event": PARTICIPANT_READERS,
    "api-doses": PARTICIPANT_READERS,
    "api-deviations": PARTICIPANT_READERS,
    "api-queries": PARTICIPANT_READERS,
    "api-history": PARTICIPANT_READERS,
    "api-export-table": PARTICIPANT_READERS,
    "api-export": PARTICIPANT_READERS,
    "api-runs": REPORT_READERS,
    "api-run": REPORT_READERS,
    "api-run-artifacts": REPORT_READERS,
}


def api_expectation(role, name: str | None) -> int:
    if name in ("api-schema", "api-docs"):
        return 200  # the schema and its documentation are public; every operation they describe is not
    if name == "api-token":
        return 405  # POST only, open to anyone (throttled)
    if role == "anonymous":
        return 403
    if name in API_POST_ONLY:
        return 405
    if name == "api-artifact":  # the closed report's PDF
        if role in UNBLINDED:
            return 200
        return 404 if role in REPORT_READERS else 403
    if name == "api-import":
        return 404 if role in PARTICIPANT_READERS else 403
    if name not in API_RULES:
        raise AssertionError(f"no access rule for API operation {name}; add it to the matrix")
    return 200 if role in API_RULES[name] else 403


def expected_status(role, name, route) -> int:
    if route.startswith("api/"):
        return api_expectation(role, name)
    if route.startswith("admin/"):
        return admin_expectation(role, name, route)
    return page_expectation(role, name, route)


def app_index_expectation(role, url: str) -> int:
    if role not in ADMIN_STAFF:
        return 302
    return 200 if url in {"/admin/trials/", "/admin/participants/"} else 404


@cache
def arm_patterns() -> list[re.Pattern]:
    patterns = []
    for arm in Arm.objects.filter(trial__protocol_code="EXO-OA-201"):
        patterns.append(re.compile(rf"\b{re.escape(arm.code)}\b"))
        patterns.append(re.compile(re.escape(arm.name)))
        if arm.dose_particles:
            dose = arm.dose_particles
            renderings = (scientific(dose), repr(dose), f"{dose:g}", f"{dose:.0f}", f"{dose:.1e}")
            patterns.extend(re.compile(re.escape(text)) for text in renderings)
    return patterns


def leaks(body: str) -> list[str]:
    return [pattern.pattern for pattern in arm_patterns() if pattern.search(body)]


@pytest.mark.req("R14", "R15", "R16")
@pytest.mark.parametrize("role", list(ROLES), ids=str)
def test_every_url_for_every_role(client, demo_trial, demo_runs, role, settings):
    settings.HEALTH_CHECK_TIMEOUT = 0.2  # no worker answers the health ping here: do not wait 2 s per role
    username = ROLES[role]
    if username:
        log_in(client, username)  # verified with MFA for the roles that need it
    failures = []
    for name, route in ROUTES:
        for url in concrete_urls(route):
            expected = expected_status(role, name, route)
            if expected == -1:
                expected = app_index_expectation(role, url)
            response = client.get(url)
            if expected == HEALTH_OK_OR_UNAVAILABLE and response.status_code in (200, 503):
                expected = response.status_code
            if response.status_code != expected:
                print(f"MATRIX {role} {url} ({name}): expected {expected}, got {response.status_code}")
                failures.append(f"{url} ({name}): expected {expected}, got {response.status_code}")
            if role not in UNBLINDED and response.status_code == 200:
                body = b"".join(response.streaming_content) if response.streaming else response.content
                found = leaks(body.decode(errors="replace"))
                if found:
                    failures.append(f"{url} ({name}) reveals treatment to {role}: {found}")
    assert failures == []


def test_the_matrix_covers_every_page_and_a_blinded_page_really_is_checked(demo_trial):
    # the leak check is not vacuous: the unblinded statistician's list does show arms
    from django.test import Client

    client = Client()
    log_in(client, "demo-unblinded-stat")
    body = client.get("/trials/EXO-OA-201/participants/").content.decode()
    assert leaks(body)
    assert len(ROUTES) > 100


@pytest.mark.parametrize(
    "query",
    [
        {"ordering": "randomization__arm__code"},
        {"ordering": "-randomization__arm"},
        {"arm": "HIGH"},
        {"randomization__arm__code": "HIGH"},
        {"status": "completed", "arm": "PBO"},
    ],
)
@pytest.mark.req("R16", "R26")
def test_filtering_or_ordering_by_arm_reveals_nothing_to_blinded_users(client, demo_trial, query):
    client.force_login(get_user_model().objects.get(username="demo-blinded-stat"))
    baseline = client.get("/trials/EXO-OA-201/participants/", {k: v for k, v in query.items() if k == "status"})
    probed = client.get("/trials/EXO-OA-201/participants/", query)
    assert probed.status_code == 200
    assert listed_participants(probed) == listed_participants(baseline)
    assert listed_participants(baseline)


def listed_participants(response) -> list[str]:
    return re.findall(r'participants/\d+/">([^<]+)</a>', response.content.decode())


@pytest.mark.req("R16")
def test_admin_refuses_arm_lookups_in_the_query_string(client, demo_trial):
    log_in(client, "demo-coordinator")
    response = client.get("/admin/participants/participant/", {"randomization__arm__code": "HIGH"})
    # Django admin refuses lookups that are not declared filters (DisallowedModelAdminLookup)
    assert response.status_code == 400
