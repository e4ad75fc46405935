"""Telling the security officers at once that an account was locked out (21 CFR 11.300(d), R13)."""

from __future__ import annotations

import logging

from django.core.mail import mail_admins
from django.utils import timezone

logger = logging.getLogger(__name__)


def lockout_report(*, username: str, ip_address: str | None, path: str, request=None) -> None:
    """E-mail the ADMINS and record a security event for a lockout of ``username`` from ``ip_address``."""
    when = timezone.now().isoformat(timespec="seconds")
    logger.warning("account locked out: %s from %s at %s (%s)", username, ip_address, when, path)
    mail_admins(
        subject=f"Account locked out: {username}",
        message=(
            f"The account {username!r} was locked out after repeated failed authentication attempts.\n\n"
            f"Address: {ip_address or 'unknown'}\nWhere: {path}\nWhen (UTC): {when}\n\n"
            "If this was not the account owner, treat it as an attempt at unauthorised use."
        ),
        fail_silently=False,
    )
    try:
        from audit.security import record_security_event
    except ImportError:  # an installation without the security-event log still gets the e-mail
        return
    record_security_event("lockout", request=request, username=username, remote_addr=ip_address, path=path)
