"""Re-entering credentials for an act that must be the account owner's own (e-signature, API token).

A session cookie or a token proves that someone logged in earlier, not who is at the keyboard now. The password
is therefore checked through Django's ``authenticate`` (so django-axes counts a wrong one and refuses a locked-out
user name and address), and a user with an authenticator must also give a current code.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_login_failed

from accounts.exceptions import OtpCodeError, ReauthenticationError
from accounts.selectors import has_second_factor
from accounts.services.mfa import otp_code_verify


def credentials_reverify(*, user, password: str, otp_code: str = "", request=None):
    """Check the user's password (and second-factor code if enrolled); returns the OTP device used, or None.

    ``request`` is the HTTP request the credentials came with: its address keys the lockout. Without one (a
    management command, a service test) the password is still checked, but no lockout applies.
    """
    username = user.get_username()
    if request is not None:
        authenticated = authenticate(request, username=username, password=password or "")
        if getattr(request, "axes_locked_out", False):
            raise ReauthenticationError(
                "Too many failed attempts: this account is locked for an hour from this address.", field="password"
            )
        if authenticated is None or authenticated.pk != user.pk:
            raise ReauthenticationError("The password is not correct.", field="password")
    elif not password or not user.check_password(password):
        raise ReauthenticationError("The password is not correct.", field="password")
    if not has_second_factor(user):
        return None
    try:
        return otp_code_verify(user, otp_code)
    except OtpCodeError as error:
        if request is not None:
            # A wrong second factor with a right password is still a failed attempt at the account.
            user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)
        raise ReauthenticationError(error.message, field="otp_code") from error
