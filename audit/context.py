"""Attach the acting user and the reason for change to every audit event written in a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pghistory
from django.db import DatabaseError, connection
from pghistory import runtime as pghistory_runtime

from audit.exceptions import ReasonForChangeRequiredError
from audit.tracking import REASON_REQUIRED_SQLSTATE

INITIAL_ENTRY = "initial entry"


def actor_context(user) -> dict[str, object]:
    if user is None or not getattr(user, "is_authenticated", False):
        return {"user": None, "username": "system"}
    return {"user": user.pk, "username": user.get_username()}


@contextlib.contextmanager
def audit_context(*, reason: str, user=None, **extra: object) -> Iterator[None]:
    """Run the block with ``reason`` (and the user) recorded on each audit event it causes.

    Nested inside a web request, the request's context (user, url) is extended, not replaced.
    A database refusal for a missing reason surfaces as ``ReasonForChangeRequiredError``.
    """
    metadata: dict[str, object] = {"reason": reason.strip(), **extra}
    if user is not None:
        metadata.update(actor_context(user))
    # pghistory merges nested metadata into the open (request) context for good; we restore the
    # outer metadata afterwards so this reason cannot leak onto an unrelated later write.
    outer = getattr(pghistory_runtime._tracker, "value", None)
    saved = dict(outer.metadata) if outer is not None else None
    try:
        with pghistory.context(**metadata):
            yield
        if outer is None:
            # On an error the enclosing transaction or savepoint rolls back, and the setting with it.
            _forget_transaction_context()
    except DatabaseError as error:
        raise_if_reason_missing(error)
        raise
    finally:
        if outer is not None and saved is not None:
            outer.metadata.clear()
            outer.metadata.update(saved)


def _forget_transaction_context() -> None:
    """pghistory sets the context with ``set_config(..., is_local => true)``: it would outlive this block
    until the end of the enclosing transaction, lending its reason to later, unexplained writes."""
    if not connection.in_atomic_block or connection.needs_rollback:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('pghistory.context_metadata', '', true), set_config('pghistory.context_id', '', true)"
        )


def is_reason_missing_error(error: BaseException) -> bool:
    cause = getattr(error, "__cause__", None)
    return getattr(cause, "sqlstate", None) == REASON_REQUIRED_SQLSTATE


def raise_if_reason_missing(error: BaseException) -> None:
    if is_reason_missing_error(error):
        raise ReasonForChangeRequiredError(
            "A reason for change is required to change or delete existing clinical data.", field="reason"
        ) from error
