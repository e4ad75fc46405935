"""API token authentication that respects MFA.

Rule: a user who must use MFA (by role, or because they enrolled an authenticator) obtains a token only by giving
a current authenticator code with the password (``POST /api/v1/auth/token/`` with ``otp_code``); that issue is
recorded (``MfaTokenGrant``, naming the device). Such a user's token is accepted only while that record exists and
its device is still confirmed, so a token obtained before the user needed MFA, created by other means, or tied to
a device since removed, is refused.
"""

from __future__ import annotations

from django_otp.models import Device
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from accounts.selectors import verified_session_required


class MfaTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if verified_session_required(user) and not token_has_mfa(token):
            raise exceptions.AuthenticationFailed(
                "This account needs a token issued with an authenticator code; request a new one with otp_code."
            )
        return user, token


def token_has_mfa(token) -> bool:
    grant = getattr(token, "mfa_grant", None)
    if grant is None:
        return False
    device = Device.from_persistent_id(grant.device_persistent_id, for_verify=False)
    return device is not None and device.confirmed and device.user_id == token.user_id
