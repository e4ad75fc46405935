"""API conventions shared by every endpoint: one error shape, strict input, allow-listed ordering, ETags for
optimistic concurrency."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.filters import OrderingFilter
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from audit.exceptions import ApplicationError, ReasonForChangeRequiredError


def _errors_from_detail(detail, field: str | None = None) -> list[dict]:
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            errors += _errors_from_detail(value, None if key == "non_field_errors" else key)
        return errors
    if isinstance(detail, list):
        errors = []
        for item in detail:
            errors += _errors_from_detail(item, field)
        return errors
    return [{"field": field, "code": getattr(detail, "code", "invalid"), "message": str(detail)}]


def exception_handler(exc, context):
    """Every error as ``{"errors": [{"field", "code", "message"}]}`` — domain errors included."""
    from participants.exceptions import ConcurrentEditError, DataValidationError, RecordLockedError

    if isinstance(exc, ConcurrentEditError):
        changed = [
            {"field": field, "code": "changed_meanwhile", "message": f"now {after!r} (was {before!r} when you read it)"}
            for field, (before, after) in exc.changes.items()
        ]
        return Response(
            {"errors": [{"field": None, "code": "precondition_failed", "message": exc.message}, *changed]},
            status=status.HTTP_412_PRECONDITION_FAILED,
        )
    if isinstance(exc, DataValidationError):
        errors = [
            {"field": None if field == "__all__" else field, "code": "invalid", "message": message}
            for field, message in exc.errors.items()
        ] or [{"field": None, "code": "invalid", "message": exc.message}]
        return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RecordLockedError):
        return Response(
            {"errors": [{"field": None, "code": "locked", "message": exc.message}]}, status=status.HTTP_423_LOCKED
        )
    if isinstance(exc, ReasonForChangeRequiredError):
        return Response(
            {"errors": [{"field": "reason", "code": "reason_required", "message": exc.message}]},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, ApplicationError):
        return Response(
            {"errors": [{"field": exc.field, "code": "refused", "message": exc.message}]},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = {
        "errors": _errors_from_detail(
            response.data.get("detail", response.data)
            if isinstance(response.data, dict) and "detail" in response.data
            else response.data
        )
    }
    return response


def etag(version: int) -> str:
    return f'W/"{version}"'


def expected_version(request, body_version: int | None) -> int:
    """The version a write is based on: ``If-Match`` (an ETag from a GET) or ``version`` in the body."""
    header = request.headers.get("If-Match", "").strip()
    if header:
        digits = header.removeprefix("W/").strip('"')
        if not digits.isdigit():
            raise exceptions.ValidationError({"If-Match": 'Send the ETag you received, e.g. W/"3".'})
        return int(digits)
    if body_version is None:
        raise exceptions.ValidationError(
            {"version": "Send the record's version (If-Match header or 'version'): it protects against lost updates."}
        )
    return body_version


class StrictInputMixin:
    """Put first in the bases of every serializer that accepts input: a field it does not accept is refused.

    DRF ignores unknown keys, so a misspelt ``grdae`` would save the record without the change the client
    meant to make; a read-only field sent back (``serious``, ``id``) would be dropped just as silently.
    Nested serializers check their own keys, so errors name the nested field too.
    """

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            accepted = sorted(name for name, field in self.fields.items() if not field.read_only)
            unknown = sorted(set(data) - set(accepted))
            if unknown:
                message = f"Unknown field. Accepted fields: {', '.join(accepted)}."
                raise exceptions.ValidationError(
                    {name: [ErrorDetail(message, code="unknown_field")] for name in unknown}
                )
        return super().to_internal_value(data)


class StrictOrderingFilter(OrderingFilter):
    """``?ordering=`` restricted to the view's explicit ``ordering_fields``; anything else is a 400.

    DRF's own filter silently drops unknown terms, and with ``ordering_fields = "__all__"`` (or none) it
    sorts by any model or serializer field — which would let a blinded user sort by arm. Here a view must
    list its fields, and a term outside the list is refused before any query runs, naming what is allowed.
    """

    def get_valid_fields(self, queryset, view, context=None):
        fields = getattr(view, "ordering_fields", None)
        if not isinstance(fields, list | tuple):
            raise ImproperlyConfigured(f"{type(view).__name__} must list its ordering_fields explicitly.")
        return [(name, name) for name in fields]

    def remove_invalid_fields(self, queryset, fields, view, request):
        allowed = [name for name, _label in self.get_valid_fields(queryset, view)]
        refused = [term for term in fields if term.removeprefix("-") not in allowed]
        if refused:
            choices = ", ".join(f"{name}, -{name}" for name in allowed)
            raise exceptions.ValidationError(
                {
                    self.ordering_param: [
                        ErrorDetail(f"Cannot order by {', '.join(refused)}. Allowed: {choices}.", code="invalid")
                    ]
                }
            )
        return fields

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        allowed = ", ".join(getattr(view, "ordering_fields", ()))
        for parameter in parameters:
            parameter["description"] = f"Comma-separated; prefix with - for descending. Allowed: {allowed}."
        return parameters


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"
