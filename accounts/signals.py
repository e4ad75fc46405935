"""Receivers: stamp a new session's start on login; report a lockout once."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.core.cache import cache
from django.dispatch import receiver

from accounts.services.lockout import lockout_report
from accounts.services.sessions import session_start


@receiver(user_logged_in, dispatch_uid="accounts.session_start")
def _stamp_session(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        session_start(request.session)


@receiver(user_locked_out, dispatch_uid="accounts.lockout_report")
def _report_lockout(sender, request, username, ip_address, **kwargs) -> None:
    # axes signals again for every attempt refused during the lockout: report the first one only.
    if cache.add(f"accounts:lockout-reported:{username}:{ip_address}", True, timeout=settings.AXES_COOLOFF_TIME * 3600):
        lockout_report(username=username, ip_address=ip_address, path=getattr(request, "path", ""), request=request)
