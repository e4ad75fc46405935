"""Property-based fuzzing of every API operation from the OpenAPI schema (schemathesis, in-process WSGI).

Runs with a blinded and an unblinded token: no 5xx, responses conform to the schema, and (custom check)
no blinded response carries an arm code, name or dose.

Schemathesis's coverage phase varies a request body while it pins the object id of the path to ``0``, an object
that cannot exist: every such variant is answered 404 before the view reads the body. One variant per coverage
scenario and schema location is sent (every kind of malformed or boundary body still goes out, with every token);
the hundreds of repeats of a kind are not, unless one of the variants sent was answered with anything but a 404 —
then the body does reach the view and every variant of that operation is sent.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from accounts.testing import api_token_for

ARM_TEXT = re.compile(r"\b(PBO|LOW|HIGH)\b|Placebo \(saline\)|Exosomes 1×10|1e\+?09|1e\+?10|10000000000")


# Loaded once at collection: the schema view needs neither the database nor a user.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def keep_test_connection():
    """Django's own test client keeps the test transaction's connection open across requests; a plain WSGI
    call would close it at the end of each request (close_old_connections), so do as the test client does."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


USERS = ("demo-blinded-stat", "demo-unblinded-stat", "demo-site")


@pytest.fixture
def tokens(demo_trial) -> dict[str, str]:
    """Each user's API token, as the token endpoint issues it (the unblinded statistician's against an MFA code).

    Issued once per operation: no fuzzed request can change a token (the token endpoint needs the password)."""
    return {username: api_token_for(username) for username in USERS}


# (method, path, generation mode, coverage scenario, schema location) of body variants sent to the object id 0
_PINNED_BODY_VARIANTS_SENT: Counter = Counter()
# operations where a body variant sent to the object id 0 was answered with something else than a 404
_BODY_REACHES_VIEW: set[tuple[str, str]] = set()


def _value(member) -> object:
    return getattr(member, "value", member)


def _pinned_to_a_missing_object(case) -> bool:
    """A coverage-phase body variant on a path whose object id the phase pinned to 0 (no such object)."""
    phase = getattr(case.meta, "phase", None)
    if phase is None or _value(phase.name) != "coverage":
        return False
    if _value(getattr(phase.data, "parameter_location", None)) != "body":
        return False
    ids = {name: value for name, value in (case.path_parameters or {}).items() if name != "code"}
    return bool(ids) and any(str(value) == "0" for value in ids.values())


def _repeats_a_variant_already_sent(case) -> bool:
    if (case.method, case.path) in _BODY_REACHES_VIEW or not _pinned_to_a_missing_object(case):
        return False
    data = case.meta.phase.data
    kind = (case.method, case.path, _value(case.meta.generation.mode), _value(data.scenario), data.location)
    _PINNED_BODY_VARIANTS_SENT[kind] += 1
    return _PINNED_BODY_VARIANTS_SENT[kind] > 1


@pytest.mark.req("R16", "R26")
@pytest.mark.django_db
@pytest.mark.timeout(600)
@schema.parametrize()
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_operations_hold_under_fuzzing(case, demo_trial, tokens, keep_test_connection):
    if "code" in (case.path_parameters or {}):
        case.path_parameters["code"] = "EXO-OA-201"  # reach real data, not only 404s
    if _repeats_a_variant_already_sent(case):
        return  # the same kind of body, to the same missing object: answered 404 like the one already sent
    pinned = _pinned_to_a_missing_object(case)
    for username in USERS:
        response = case.call_and_validate(
            headers={"Authorization": f"Token {tokens[username]}"},
            checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        )
        if pinned and response.status_code != 404:
            _BODY_REACHES_VIEW.add((case.method, case.path))  # the body is read: send every variant from now on
        content_type = response.headers.get("Content-Type", [""])[0]
        if username != "demo-unblinded-stat" and response.status_code < 300 and "application/json" in content_type:
            leaked = ARM_TEXT.findall(response.text)
            assert not leaked, f"{case.method} {case.path} revealed treatment to {username}: {leaked[:3]}"


@pytest.mark.req("R26")
def test_ordering_cannot_inject_sql(client, demo_trial):
    import time

    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="demo-blinded-stat"))
    assert client.get("/api/v1/trials/EXO-OA-201/participants/").status_code == 200  # warm-up: not timed
    started = time.monotonic()
    response = client.get("/api/v1/trials/EXO-OA-201/participants/", {"ordering": "(select pg_sleep(5))"})
    assert time.monotonic() - started < 1
    # refused before any query runs, naming what may be used instead
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "ordering"
    assert "(select pg_sleep(5))" in error["message"]
    assert "screening_number" in error["message"]
