"""Background work in the admin, for operators: read-only, except acknowledging an alert."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from audit.admin import ReadOnlyModelAdmin
from operations.models import OperationalAlert, OutboxMessage, TaskExecution


@admin.register(TaskExecution)
class TaskExecutionAdmin(ReadOnlyModelAdmin):
    list_display = ["task_name", "key", "status", "attempts", "last_started_at", "finished_at", "worker"]
    list_filter = ["status", "task_name"]
    search_fields = ["key", "task_id"]
    date_hierarchy = "last_started_at"


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyModelAdmin):
    list_display = ["kind", "key", "created_at", "delivered_at", "attempts", "given_up_at"]
    list_filter = ["kind", ("delivered_at", admin.EmptyFieldListFilter), ("given_up_at", admin.EmptyFieldListFilter)]
    search_fields = ["key"]
    date_hierarchy = "created_at"


@admin.register(OperationalAlert)
class OperationalAlertAdmin(ReadOnlyModelAdmin):
    list_display = ["created_at", "kind", "subject", "acknowledged_at"]
    list_filter = ["kind", ("acknowledged_at", admin.EmptyFieldListFilter)]
    actions = ["acknowledge"]

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.is_superuser  # the installation's operators, not trial roles

    @admin.action(description="Acknowledge the selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        count = queryset.filter(acknowledged_at__isnull=True).update(acknowledged_at=timezone.now())
        self.message_user(request, f"{count} alert(s) acknowledged.")
