"""Admin building blocks: a reason for every change, and a read-only audit history per record."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from audit.context import INITIAL_ENTRY, audit_context, is_reason_missing_error
from audit.history import record_history
from audit.models import SecurityEvent


class ReasonForChangeForm(forms.ModelForm):
    change_reason = forms.CharField(
        label="Reason for change",
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Required when changing saved data. It is stored in the audit trail with your name and the time.",
    )

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and self.has_changed() and not (cleaned.get("change_reason") or "").strip():
            self.add_error("change_reason", "Give a reason for changing saved data (e.g. 'transcription error').")
        return cleaned

    def has_changed(self) -> bool:
        return any(name != "change_reason" for name in self.changed_data)


class AuditedAdmin(admin.ModelAdmin):
    """ModelAdmin for audited models: asks for a reason on change, never deletes, shows the audit trail."""

    form = ReasonForChangeForm
    change_form_template = "admin/audited_change_form.html"
    object_history_template = "admin/audit_history.html"

    def get_fieldsets(self, request, obj=None):
        # The reason is rendered by the template after the inlines, next to the save buttons.
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f != "change_reason"]})
            for name, options in super().get_fieldsets(request, obj)
        ]

    def has_delete_permission(self, request, obj=None) -> bool:
        # Clinical records are never deleted through the product: they are withdrawn, corrected or
        # marked not done, with a reason, so that nothing is silently lost.
        return False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        reason = INITIAL_ENTRY
        if request.method == "POST" and object_id is not None:
            reason = (request.POST.get("change_reason") or "").strip()
        try:
            with audit_context(reason=reason or "", user=request.user):
                return super().changeform_view(request, object_id, form_url, extra_context)
        except DatabaseError as error:
            if not is_reason_missing_error(error):
                raise
            # Reached when only inline rows changed: the database refused, the transaction rolled back.
            self.message_user(
                request, "Give a reason for changing saved data; nothing was saved.", level=messages.ERROR
            )
            return HttpResponseRedirect(request.get_full_path())

    def history_view(self, request, object_id, extra_context=None):
        obj = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"Audit trail: {obj}",
            "subtitle": None,
            "object": obj,
            "opts": self.model._meta,
            "entries": record_history(obj, hidden_fields=self.history_hidden_fields(request, obj)),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.object_history_template, context)

    def history_hidden_fields(self, request, obj) -> frozenset[str]:
        """Fields whose values this user may not see in the trail (blinding)."""
        return frozenset()


class ReadOnlyAuditedAdmin(AuditedAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Rows the application writes and people only read: no add, change or delete in the admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyModelAdmin):
    """Read-only: security events are written by the application and are never edited or deleted."""

    list_display = ["occurred_at", "kind", "actor_username", "ip_address"]
    list_filter = ["kind"]
    search_fields = ["actor_username", "ip_address"]
    date_hierarchy = "occurred_at"
    readonly_fields = ["kind", "actor_id", "actor_username", "occurred_at", "ip_address", "user_agent", "details"]
