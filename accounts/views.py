"""Login second factor: verify a session, enrol an authenticator, show backup codes once; the lockout page."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts.exceptions import OtpCodeError
from accounts.forms import OtpCodeForm, TotpConfirmForm
from accounts.selectors import has_second_factor, mfa_required
from accounts.services.mfa import (
    session_verify,
    totp_enrolment_confirm,
    totp_enrolment_device,
    totp_qr_data_uri,
    totp_secret_text,
)

NEW_BACKUP_CODES = "accounts:new_backup_codes"


def _next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


@login_required
@require_http_methods(["GET", "POST"])
def mfa_verify(request):
    if not has_second_factor(request.user):
        return redirect("mfa_enrol")
    if request.user.is_verified():
        return redirect(_next(request))
    form = OtpCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            session_verify(request=request, code=form.cleaned_data["code"])
        except OtpCodeError as error:
            form.add_error("code", error.message)
        else:
            return redirect(_next(request))
    return render(request, "accounts/mfa_verify.html", {"form": form, "next": _next(request)})


@login_required
@require_http_methods(["GET", "POST"])
def mfa_enrol(request):
    if has_second_factor(request.user):
        # Replacing an authenticator needs the old one first; a lost one is reset by an administrator.
        return redirect("mfa_verify")
    device = totp_enrolment_device(request.user)
    form = TotpConfirmForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = totp_enrolment_confirm(request=request, device=device, code=form.cleaned_data["code"])
        except OtpCodeError as error:
            form.add_error("code", error.message)
        else:
            request.session[NEW_BACKUP_CODES] = codes
            return redirect(f"{reverse('mfa_backup_codes')}?{urlencode({'next': _next(request)})}")
    context = {
        "form": form,
        "qr_data_uri": totp_qr_data_uri(device),
        "secret": totp_secret_text(device),
        "required": mfa_required(request.user),
        "next": _next(request),
    }
    return render(request, "accounts/mfa_enrol.html", context)


@login_required
@require_http_methods(["GET"])
def mfa_backup_codes(request):
    """The backup codes, once: they leave the session as they are shown."""
    codes = request.session.pop(NEW_BACKUP_CODES, None)
    if codes is None:
        messages.info(request, "Backup codes are shown only once, right after enrolment.")
        return redirect(_next(request))
    return render(request, "accounts/backup_codes.html", {"codes": codes, "next": _next(request)})


def lockout_response(request, original_response=None, credentials=None):
    """django-axes' answer to a locked-out user name and address: the API's error JSON, or a page."""
    message = "Too many failed attempts: this account is locked for an hour from this address."
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"errors": [{"field": None, "code": "locked_out", "message": message}]},
            status=settings.AXES_HTTP_RESPONSE_CODE,
        )
    return render(request, "accounts/locked_out.html", {"message": message}, status=settings.AXES_HTTP_RESPONSE_CODE)
