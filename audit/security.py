"""Security events (R8): who did what security-relevant thing, from where, when — append-only and hash-chained.

``record_security_event`` is the one API. The receivers below record sign-in, sign-out, failed sign-in,
account changes (creation, (de)activation, password) and trial role and site changes whatever path made them
(page, admin, API, management command), because they listen to the model and auth signals rather than to
one view. Lockouts are recorded by ``accounts`` (it reports each lockout once, with the e-mail alert).

Details must identify, not copy: ids, codes, counts — never participant data.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from pghistory import runtime as pghistory_runtime

from audit.middleware import current_request
from audit.models import SecurityEvent

Kind = SecurityEvent.Kind
USER_AGENT_MAX_LENGTH = 500


def record_security_event(
    kind: str,
    *,
    request=None,
    user=None,
    username: str | None = None,
    remote_addr: str | None = None,
    details: Mapping[str, object] | None = None,
    **more_details: object,
) -> SecurityEvent:
    """Record one security event.

    ``request`` defaults to the request being served; ``user`` to its authenticated user, else to the user of
    the open audit context (a service run with ``audit_context(user=...)``). ``username`` names
    the account concerned when there is no user object (a failed sign-in); ``remote_addr`` overrides the
    client address. ``details`` and keyword arguments are merged into the event's JSON details.
    """
    if kind not in Kind.values:
        raise ValueError(f"Unknown security event kind {kind!r}; use one of {', '.join(Kind.values)}.")
    request = request if request is not None else current_request.get()
    if user is None and request is not None:
        user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        actor_id, actor_username = user.pk, user.get_username()
    else:
        actor_id, actor_username = _audit_context_actor()
        actor_username = actor_username or username or ""
    return SecurityEvent.objects.create(
        kind=kind,
        actor_id=actor_id,
        actor_username=actor_username,
        ip_address=remote_addr or (client_address(request) if request is not None else None),
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:USER_AGENT_MAX_LENGTH],
        details={**(details or {}), **more_details},
    )


def _audit_context_actor() -> tuple[int | None, str]:
    """The actor of the open audit context (``audit_context(user=...)`` in a service or command), if any."""
    tracker = getattr(pghistory_runtime._tracker, "value", None)
    metadata = tracker.metadata if tracker is not None else {}
    user_id = metadata.get("user")
    if not isinstance(user_id, int):
        return None, ""
    return user_id, str(metadata.get("username") or "")


def client_address(request) -> str | None:
    """The client's address as the lockout (django-axes) sees it: X-Forwarded-For only from trusted proxies."""
    try:
        from axes.helpers import get_client_ip_address
    except ImportError:  # django-axes not installed: the socket's address
        return request.META.get("REMOTE_ADDR") or None
    return get_client_ip_address(request) or None


@receiver(user_logged_in, dispatch_uid="audit.security.login")
def _logged_in(sender, request, user, **kwargs) -> None:
    record_security_event(Kind.LOGIN, request=request, user=user)


@receiver(user_logged_out, dispatch_uid="audit.security.logout")
def _logged_out(sender, request, user, **kwargs) -> None:
    record_security_event(Kind.LOGOUT, request=request, user=user)


@receiver(user_login_failed, dispatch_uid="audit.security.login_failed")
def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    # Django has already masked the password in ``credentials``; only the claimed user name is kept.
    username = str(credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username") or "")
    record_security_event(Kind.LOGIN_FAILED, request=request, user=None, username=username)


# Model changes: the row's earlier values are read before the save so that only real changes are recorded.
_WATCHED_FIELDS = {
    "account": ("password", "is_active"),
    "trials.trialmembership": ("role", "is_active", "may_unlock"),
}


def _earlier_values(instance, fields: tuple[str, ...], update_fields) -> dict[str, object] | None:
    if instance._state.adding or instance.pk is None:
        return None
    if update_fields is not None and not set(fields) & set(update_fields):
        return {}
    return type(instance).objects.filter(pk=instance.pk).values(*fields).first()


@receiver(pre_save, dispatch_uid="audit.security.before_save")
def _remember_earlier_values(sender, instance, update_fields=None, **kwargs) -> None:
    key = _watch_key(sender)
    if key is not None:
        instance._security_earlier_values = _earlier_values(instance, _WATCHED_FIELDS[key], update_fields)


def _watch_key(sender) -> str | None:
    if sender is get_user_model():
        return "account"
    label = sender._meta.label_lower
    return label if label in _WATCHED_FIELDS else None


@receiver(post_save, dispatch_uid="audit.security.after_save")
def _record_change(sender, instance, created, **kwargs) -> None:
    if sender._meta.label_lower == "trials.membershipsite":
        if created:
            record_security_event(Kind.SITE_GRANTED, **_site_details(instance))
        return
    key = _watch_key(sender)
    if key is None:
        return
    earlier = getattr(instance, "_security_earlier_values", None)
    instance._security_earlier_values = None
    if key == "account":
        _record_account_change(instance, created, earlier)
    else:
        _record_membership_change(instance, created, earlier)


def _record_account_change(account, created: bool, earlier: dict | None) -> None:
    subject = {"account_id": account.pk, "account_username": account.get_username()}
    if created:
        record_security_event(Kind.ACCOUNT_CREATED, **subject)
        return
    if not earlier:
        return
    if earlier["password"] != account.password:
        record_security_event(Kind.PASSWORD_CHANGED, **subject)
    if earlier["is_active"] != account.is_active:
        kind = Kind.ACCOUNT_ACTIVATED if account.is_active else Kind.ACCOUNT_DEACTIVATED
        record_security_event(kind, **subject)


def _record_membership_change(membership, created: bool, earlier: dict | None) -> None:
    watched = ("role", "is_active", "may_unlock")
    unchanged = not earlier or all(earlier[field] == getattr(membership, field) for field in watched)
    if not created and unchanged:
        return
    kind = Kind.ROLE_CHANGED if membership.is_active else Kind.ROLE_REVOKED
    record_security_event(
        kind,
        trial=membership.trial.protocol_code,
        membership_id=membership.pk,
        member_id=membership.user_id,
        role=membership.role,
        previous_role=earlier["role"] if earlier else None,
        may_unlock=membership.may_unlock,
    )


@receiver(post_delete, dispatch_uid="audit.security.after_delete")
def _record_removal(sender, instance, **kwargs) -> None:
    label = sender._meta.label_lower
    if label == "trials.membershipsite":
        record_security_event(Kind.SITE_REVOKED, **_site_details(instance))
    elif label == "trials.trialmembership":
        record_security_event(
            Kind.ROLE_REVOKED, membership_id=instance.pk, member_id=instance.user_id, role=instance.role
        )


def _site_details(link) -> dict[str, object]:
    return {"membership_id": link.membership_id, "site_id": link.site_id}
