"""Reads about a user's authentication state: whether MFA is required, which OTP devices they hold."""

from __future__ import annotations

from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from trials.models import Role, TrialMembership

# Roles that see treatment assignments, closed reports or can lock data: a stolen password alone must not be
# enough for them (R24). Staff (the admin site) and superusers need MFA too.
MFA_ROLES = frozenset({Role.DATA_MANAGER, Role.UNBLINDED_STATISTICIAN, Role.DSMB_MEMBER})


def mfa_required(user) -> bool:
    """Whether the user may work only in a session verified with a second factor (memoised per request)."""
    if user is None or not user.is_authenticated:
        return False
    if "_mfa_required" not in user.__dict__:
        user.__dict__["_mfa_required"] = (
            user.is_staff
            or user.is_superuser
            or TrialMembership.objects.filter(user=user, is_active=True, role__in=MFA_ROLES).exists()
        )
    return user.__dict__["_mfa_required"]


def totp_device_confirmed(user) -> TOTPDevice | None:
    """The user's confirmed authenticator-app device, if they have enrolled one."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def static_device(user) -> StaticDevice | None:
    """The user's backup-code device, if they have one."""
    return StaticDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def has_second_factor(user) -> bool:
    """Whether the user has a confirmed authenticator (memoised per request)."""
    if "_has_second_factor" not in user.__dict__:
        user.__dict__["_has_second_factor"] = totp_device_confirmed(user) is not None
    return user.__dict__["_has_second_factor"]


def verified_session_required(user) -> bool:
    """Whether each session must be verified with a second factor: the user's roles need it, or they enrolled one.

    Someone who enrolled by choice gets the protection they asked for: a password alone no longer logs them in.
    """
    return mfa_required(user) or (user.is_authenticated and has_second_factor(user))
