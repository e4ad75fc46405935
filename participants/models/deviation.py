from __future__ import annotations

from django.db import models

from audit.tracking import audited, require_reason_triggers
from participants.models.participant import VersionedModel


@audited()
class ProtocolDeviation(VersionedModel):
    class Category(models.TextChoices):
        VISIT_WINDOW = "visit_window", "Visit out of window"
        ELIGIBILITY = "eligibility", "Eligibility"
        CONSENT = "consent", "Informed consent"
        DOSING = "dosing", "Dosing / investigational product"
        PROCEDURE = "procedure", "Study procedure"
        OTHER = "other", "Other"

    class Severity(models.TextChoices):
        MINOR = "minor", "Minor"
        MAJOR = "major", "Major (affects per-protocol set)"

    participant = models.ForeignKey("participants.Participant", on_delete=models.PROTECT, related_name="deviations")
    visit = models.ForeignKey(
        "participants.Visit", on_delete=models.PROTECT, null=True, blank=True, related_name="deviations"
    )
    category = models.CharField(max_length=16, choices=Category.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.MINOR)
    description = models.CharField(max_length=500)
    occurred_on = models.DateField()
    detected_on = models.DateField()
    is_automatic = models.BooleanField(default=False, help_text="Raised by the system (e.g. a visit out of window).")

    class Meta:
        ordering = ["participant", "occurred_on"]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.get_category_display()}: {self.description}"
