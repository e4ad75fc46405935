"""Logging a Django test client in as a user who needs MFA, the way the MFA step would leave the session.

For test suites (ours and those of deployments that extend ExoTrial): ``client.force_login`` alone leaves a
privileged user on the MFA pages, as a real password-only login would.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.selectors import verified_session_required


def verify_session(client, user) -> None:
    """Mark the client's session verified with the user's confirmed TOTP device (created if missing)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Test authenticator", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


def login_verified(client, user) -> None:
    """Log the client in as ``user`` with a session verified by a second factor."""
    client.force_login(user)
    verify_session(client, user)


def log_in(client, user):
    """Log the client in as ``user`` (or a user name); verified with MFA when the user's roles need it."""
    if isinstance(user, str):
        user = get_user_model().objects.get(username=user)
    client.force_login(user)
    if verified_session_required(user):
        verify_session(client, user)
    return user


def api_token_for(user) -> str:
    """The user's API token as the token endpoint issues it: recorded as MFA-verified when the user needs MFA."""
    from rest_framework.authtoken.models import Token

    from accounts.models import MfaTokenGrant

    if isinstance(user, str):
        user = get_user_model().objects.get(username=user)
    token, _ = Token.objects.get_or_create(user=user)
    if verified_session_required(user):
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name="Test authenticator", confirmed=True)
        MfaTokenGrant.objects.update_or_create(token=token, defaults={"device_persistent_id": device.persistent_id})
    return token.key
