"""Session lifetime and the MFA gate, applied to every page and API call."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth import logout
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse

from accounts.selectors import has_second_factor, verified_session_required
from accounts.services.sessions import session_expired, session_touch

API_PREFIX = "/api/"
# Load balancer and operator probes (config/health.py): open to anyone, they read no session or user. A session
# that still owes MFA may open them, and they are not a user's activity: a monitoring tab left open on /health/
# neither keeps a session alive nor is redirected to the login page when the session ends.
HEALTH_PREFIX = "/health/"
HEALTH_URL_NAMES = frozenset({"health", "health_live", "health_db", "health_broker", "health_workers"})
# Pages a user who still owes a second factor may open: how to give it, how to leave, and the health probes.
MFA_OPEN_URL_NAMES = (
    frozenset({"login", "logout", "mfa_verify", "mfa_enrol", "mfa_backup_codes", "api-token"}) | HEALTH_URL_NAMES
)


def _api_error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"errors": [{"field": None, "code": code, "message": message}]}, status=status)


def _url_name(request) -> str | None:
    try:
        return resolve(request.path_info).url_name
    except Resolver404:
        return None


def _is_health_check(request) -> bool:
    return request.path_info.startswith(HEALTH_PREFIX) and _url_name(request) in HEALTH_URL_NAMES


class SessionLifetimeMiddleware:
    """Ends a logged-in session idle for too long or older than the absolute limit, on the server.

    The session is flushed (its row deleted), so the old cookie is worthless even if replayed. Pages redirect to
    the login with ``next``; the API answers 401.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated and request.session.session_key and not _is_health_check(request):
            if session_expired(request.session):
                logout(request)
                if request.path.startswith(API_PREFIX):
                    return _api_error(401, "session_expired", "Your session has expired; log in again.")
                if _url_name(request) != "login":  # a login posted from an expired session goes ahead
                    return redirect(f"{reverse('login')}?{urlencode({'next': request.get_full_path()})}")
            else:
                session_touch(request.session)
        return self.get_response(request)


class MfaRequiredMiddleware:
    """Keeps a user who must use MFA (or enrolled an authenticator) on the MFA pages until the session is verified.

    Token-authenticated API calls never reach this with a user (DRF authenticates them later); their rule is in
    ``accounts.authentication.MfaTokenAuthentication``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if verified_session_required(user) and not user.is_verified() and not self._open(request):
            if request.path.startswith(API_PREFIX):
                return _api_error(403, "mfa_required", "Verify this session with your authenticator code first.")
            target = "mfa_verify" if has_second_factor(user) else "mfa_enrol"
            return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)

    @staticmethod
    def _open(request) -> bool:
        return _url_name(request) in MFA_OPEN_URL_NAMES
