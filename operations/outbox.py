"""The transactional outbox for safety-relevant notifications (R32, R33).

A service that saves a serious adverse event calls ``outbox_add`` inside its own transaction: the message
exists exactly when the data does, and saving never talks to Redis, so a paused or dead broker cannot
hold up a site nurse. ``outbox_deliver_pending`` (run by beat every ``OUTBOX_DRAIN_SECONDS``) delivers what
is pending once broker and worker are back. Each message is delivered while its row is locked
(``FOR UPDATE SKIP LOCKED``, so two drains never pick the same message) and marked delivered in the same
transaction. If the process dies between sending and committing, the message is sent again on the next
drain: delivery is at least once, and the Message-ID header carries the outbox key so mail systems can
drop the duplicate.

Payloads carry ids only. What a message says is composed when it is delivered, by the handler registered
for its kind in ``settings.OUTBOX_HANDLERS`` (so this module knows nothing of adverse events or looks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.mail import EmailMessage, mail_admins
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from operations.models import OperationalAlert, OutboxMessage

logger = logging.getLogger(__name__)


def outbox_add(*, kind: str, key: str, payload: dict) -> OutboxMessage:
    """Queue a notification in the caller's transaction; the same key again adds nothing."""
    if kind not in settings.OUTBOX_HANDLERS:
        raise ValueError(f"No outbox handler for {kind!r}: add it to OUTBOX_HANDLERS.")
    try:
        with transaction.atomic():
            return OutboxMessage.objects.create(kind=kind, key=key, payload=payload)
    except IntegrityError:
        return OutboxMessage.objects.get(key=key)


def _handler(kind: str) -> Callable[[dict], EmailMessage | None]:
    return import_string(settings.OUTBOX_HANDLERS[kind])


def outbox_deliver_pending(*, limit: int = 200) -> int:
    """Deliver pending messages, oldest first; returns how many were delivered."""
    delivered = 0
    pending = list(
        OutboxMessage.objects.filter(delivered_at__isnull=True, given_up_at__isnull=True)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    for message_id in pending:
        delivered += _deliver_one(message_id)
    return delivered


def _deliver_one(message_id: int) -> int:
    with transaction.atomic():
        message = (
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=message_id, delivered_at__isnull=True, given_up_at__isnull=True)
            .first()
        )
        if message is None:  # another drain has it, or it was delivered meanwhile
            return 0
        try:
            email = _handler(message.kind)(message.payload)
            if email is not None:  # None: nobody to tell any more (e.g. the AE was reported meanwhile)
                email.extra_headers["Message-ID"] = f"<outbox-{message.key}@exotrial>"
                email.send(fail_silently=False)
        except Exception as error:
            logger.exception("outbox message %s (%s) not delivered", message.pk, message.kind)
            _record_failure(message, error)
            return 0
        message.delivered_at = timezone.now()
        message.attempts += 1
        message.save(update_fields=["delivered_at", "attempts"])
    return 1


def _record_failure(message: OutboxMessage, error: Exception) -> None:
    message.attempts += 1
    message.last_error = f"{type(error).__name__}: {error}"[:2000]
    fields = ["attempts", "last_error"]
    if message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        message.given_up_at = timezone.now()
        fields.append("given_up_at")
        subject = f"Notification {message.kind} [{message.key}] undeliverable after {message.attempts} attempts"
        OperationalAlert.objects.create(
            kind=OperationalAlert.Kind.UNDELIVERABLE, subject=subject[:300], detail=message.last_error
        )
        transaction.on_commit(lambda: mail_admins(subject, message.last_error, fail_silently=True))
    message.save(update_fields=fields)
