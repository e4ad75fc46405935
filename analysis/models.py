"""Analysis runs and their artifacts. An artifact's file lives outside the web root (ARTIFACT_ROOT) and is
served only through an access-checked, audited download view."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from audit.tracking import audited, require_reason_triggers


@audited()
class AnalysisRun(models.Model):
    class Kind(models.TextChoices):
        INTERIM = "interim", "Interim analysis (DSMB open and closed reports)"
        FINAL = "final", "Final analysis"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="analysis_runs")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    look_number = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Interim look (1, 2, …).")
    cutoff = models.DateField(help_text="Data cut-off: clinical data dated after it are not analysed.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per step.")
    error = models.TextField(blank=True)
    provenance = models.JSONField(
        default=dict, blank=True, help_text="Code and package versions, plan, dataset hashes."
    )
    results = models.JSONField(default=dict, blank=True, help_text="results.json: the key results, machine-readable.")

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__lte=100), name="run_progress_percent"),
            models.CheckConstraint(
                condition=Q(kind="final") | Q(look_number__isnull=False), name="interim_run_has_look_number"
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        label = f"interim look {self.look_number}" if self.kind == self.Kind.INTERIM else "final analysis"
        return f"{self.trial} {label} (cut-off {self.cutoff:%Y-%m-%d})"


@audited()
class Artifact(models.Model):
    class Audience(models.TextChoices):
        OPEN = "open", "Open (pooled, no treatment information)"
        CLOSED = "closed", "Closed (by arm: DSMB and unblinded statistician)"
        FINAL = "final", "Final (unblinded)"
        DATASETS = "datasets", "Frozen analysis datasets (unblinded)"

    run = models.ForeignKey(AnalysisRun, on_delete=models.PROTECT, related_name="artifacts")
    audience = models.CharField(max_length=10, choices=Audience.choices)
    name = models.CharField(max_length=100, help_text="File name offered on download, chosen by the server.")
    media_type = models.CharField(max_length=100)
    relative_path = models.CharField(max_length=300, help_text="Path under ARTIFACT_ROOT; never from user input.")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["run", "audience", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "audience", "name"], name="artifact_unique_per_run")]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.run} — {self.audience}/{self.name}"


@audited()
class ArtifactDownload(models.Model):
    """Who downloaded which artifact, when (every download is recorded)."""

    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="downloads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    downloaded_at = models.DateTimeField(auto_now_add=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-downloaded_at"]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.user} downloaded {self.artifact} at {self.downloaded_at:%Y-%m-%d %H:%M}"


@audited()
class LookNotification(models.Model):
    """A planned interim look whose information fraction was reached (notified once)."""

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="look_notifications")
    look_number = models.PositiveSmallIntegerField()
    fraction = models.FloatField()
    notified_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trial", "look_number"], name="look_notified_once")]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.trial} look {self.look_number} reached at {self.fraction:.2f}"
