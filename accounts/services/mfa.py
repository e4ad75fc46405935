"""TOTP enrolment, second-factor checks and backup codes (django-otp)."""

from __future__ import annotations

import base64
import binascii

import segno
from django.conf import settings
from django.db import transaction
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.exceptions import OtpCodeError
from accounts.selectors import static_device, totp_device_confirmed

TOTP_DIGITS = 6


def totp_enrolment_device(user) -> TOTPDevice:
    """The unconfirmed authenticator device the user is enrolling (created on first call, reused until confirmed).

    Reusing it keeps the secret stable while the user scans the code; a new secret would silently invalidate the
    one already in their app.
    """
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def totp_secret_text(device: TOTPDevice) -> str:
    """The base32 secret, in groups of four, for typing into an app that cannot scan."""
    secret = base64.b32encode(binascii.unhexlify(device.key)).decode()
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def totp_qr_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// provisioning URL as an SVG QR code in a data: URI (no request leaves the page)."""
    return segno.make(device.config_url, error="m").svg_data_uri(scale=5, border=2)


def totp_enrolment_confirm(*, request, device: TOTPDevice, code: str) -> list[str]:
    """Confirm the enrolling device with a code from the app; returns new single-use backup codes.

    The session becomes verified with the new device. Any earlier backup codes are replaced.
    """
    if device.confirmed or device.user_id != request.user.pk:
        raise OtpCodeError("This authenticator is not being enrolled.")
    _check(device, code)
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=request.user, confirmed=False).delete()
        backup_codes = backup_codes_replace(request.user)
    otp_login(request, device)
    return backup_codes


def backup_codes_replace(user) -> list[str]:
    """Replace the user's backup codes with a fresh set and return them (they are shown once)."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name="Backup codes", defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(settings.MFA_BACKUP_TOKEN_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def otp_device_for_code(user, code: str):
    """The user's device a code belongs to: six digits are an app code, anything else a backup code."""
    code = (code or "").strip().replace(" ", "")
    device = totp_device_confirmed(user) if code.isdigit() and len(code) == TOTP_DIGITS else static_device(user)
    return device, code


def otp_code_verify(user, code: str):
    """Check a second-factor code against the one device it belongs to; returns that device.

    Only that device records a failure, so a mistyped app code does not slow down the backup codes. A code is
    accepted once: TOTP remembers its last time step, a backup code is deleted when used.
    """
    device, code = otp_device_for_code(user, code)
    if device is None or not code:
        raise OtpCodeError("Enter the 6-digit code from your authenticator app, or a backup code.")
    _check(device, code)
    return device


def session_verify(*, request, code: str) -> None:
    """Verify the logged-in session with a second-factor code (OTPMiddleware then reports it verified)."""
    otp_login(request, otp_code_verify(request.user, code))


def _check(device, code: str) -> None:
    allowed, detail = device.verify_is_allowed()
    if not allowed:
        wait = detail.get("locked_until")
        when = f" until {wait:%H:%M:%S} UTC" if wait else ""
        raise OtpCodeError(f"Too many wrong codes: this device is paused{when}. Wait, then try again.")
    if not device.verify_token(code):
        raise OtpCodeError("That code is not valid (wrong, expired or already used).")
