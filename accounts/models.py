"""Which API tokens were issued against a second factor."""

from __future__ import annotations

from django.db import models
from rest_framework.authtoken.models import Token


class MfaTokenGrant(models.Model):
    """Records that an API token was issued against a TOTP code from the named device.

    A user who must use MFA may use a token only while this row exists and its device is still confirmed: deleting
    or de-authorising the device, or deleting the token, ends the grant.
    """

    token = models.OneToOneField(Token, on_delete=models.CASCADE, primary_key=True, related_name="mfa_grant")
    device_persistent_id = models.CharField(max_length=255)
    granted_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"token of {self.token.user} verified with {self.device_persistent_id}"
