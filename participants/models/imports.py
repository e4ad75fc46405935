from __future__ import annotations

from django.conf import settings
from django.db import models

from audit.tracking import audited, require_reason_triggers


@audited()
class ImportJob(models.Model):
    """A bulk import of outcome measurements or adverse events from a CSV/XLSX file (all or nothing)."""

    class Kind(models.TextChoices):
        OUTCOMES = "outcomes", "Outcome measurements"
        ADVERSE_EVENTS = "adverse_events", "Adverse events"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        VALIDATING = "validating", "Validating"
        VALID = "valid", "Valid (dry run: nothing imported)"
        INVALID = "invalid", "Invalid: nothing imported"
        IMPORTING = "importing", "Importing"
        IMPORTED = "imported", "Imported"
        FAILED = "failed", "Failed"

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="import_jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OUTCOMES)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)
    file_name = models.CharField(max_length=255, help_text="Name of the uploaded file, as given (display only).")
    stored_path = models.CharField(max_length=300, help_text="Server-chosen path under ARTIFACT_ROOT.")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    dry_run = models.BooleanField(default=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    rows_imported = models.PositiveIntegerField(default=0)
    rows_unchanged = models.PositiveIntegerField(default=0, help_text="Identical to data already stored (re-import).")
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{row, column, code, message}], the first 1,000.")
    message = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"Import {self.pk} of {self.file_name} into {self.trial} ({self.get_status_display()})"
