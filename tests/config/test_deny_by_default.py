"""Deny by default (R14): every operation of the OpenAPI schema refuses an anonymous caller, except an explicit
allow-list; the DRF default is not AllowAny, and no view opts out of authentication unnoticed.

(tests/participants/apis/test_api.py walks the URL resolver with GET/POST/PATCH; this walks the schema, so
every method a client is told about is covered, PUT and DELETE included when they appear.)
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

# (method, schema path) an anonymous caller may use: exchanging a password for a token (throttled).
ANONYMOUS_OPERATIONS = {("POST", "/api/v1/auth/token/")}
# URL names of views that need no login: the token exchange, and the schema and its docs (they describe
# the operations, all of which are refused above).
PUBLIC_VIEWS = {"api-token", "api-schema", "api-docs"}
# The health probes (/health/…, config/health.py) are open too, deliberately, but they are plain Django views
# outside the schema and outside DRF (no authentication runs for them), so neither list above concerns them:
# their rule (open to every role, anonymous included) is in test_access_matrix.py, proven in test_health.py.
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def schema_operations(client) -> list[tuple[str, str]]:
    schema = client.get("/api/schema/", {"format": "json"}).json()
    return sorted(
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    )


def concrete(path: str) -> str:
    return PLACEHOLDER.sub(lambda match: "EXO-OA-201" if match[1] == "code" else "1", path)


@pytest.mark.req("R14")
def test_the_drf_default_requires_authentication():
    defaults = settings.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"]
    assert defaults
    assert "rest_framework.permissions.AllowAny" not in defaults


@pytest.mark.req("R14")
def test_every_schema_operation_refuses_an_anonymous_caller(demo_trial):
    client = APIClient()
    operations = schema_operations(client)
    assert len(operations) > 30
    refused = {}
    for method, path in operations:
        response = client.generic(method, concrete(path), "{}", content_type="application/json")
        refused[(method, path)] = response.status_code
    allowed = {operation for operation, code in refused.items() if code not in (401, 403)}
    assert allowed == ANONYMOUS_OPERATIONS, {operation: refused[operation] for operation in allowed}


def named_views():
    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "cls"):
                yield pattern.name, pattern.callback.cls

    return list(walk(get_resolver().url_patterns))


@pytest.mark.req("R14")
def test_only_the_allow_listed_views_opt_out_of_authentication():
    views = named_views()
    assert views
    open_views = {
        name
        for name, view in views
        if not view.permission_classes
        or any(issubclass(permission, AllowAny) for permission in view.permission_classes)
    }
    assert open_views == PUBLIC_VIEWS
