from __future__ import annotations

from django.db import models
from django.db.models import Q

from audit.tracking import audited, require_reason_triggers
from participants.models.participant import VersionedModel


@audited()
class Visit(VersionedModel):
    class Status(models.TextChoices):
        COMPLETED = "completed", "Completed"
        MISSED = "missed", "Missed"

    participant = models.ForeignKey("participants.Participant", on_delete=models.PROTECT, related_name="visits")
    visit_definition = models.ForeignKey("trials.VisitDefinition", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETED)
    visit_date = models.DateField(null=True, blank=True)
    study_day = models.IntegerField(null=True, blank=True, help_text="Days since baseline (baseline = day 0).")
    in_window = models.BooleanField(null=True, help_text="Whether the visit date fell in the protocol window.")
    missed_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["participant", "visit_definition__order"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "visit_definition"], name="visit_once_per_participant"),
            models.CheckConstraint(
                condition=(Q(status="completed") & Q(visit_date__isnull=False))
                | (Q(status="missed") & ~Q(missed_reason="")),
                name="visit_completed_has_date_missed_has_reason",
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.participant} {self.visit_definition}"


@audited()
class OutcomeMeasurement(VersionedModel):
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="measurements")
    endpoint = models.ForeignKey("trials.Endpoint", on_delete=models.PROTECT, related_name="measurements")
    value = models.FloatField(null=True, blank=True)
    event_occurred = models.BooleanField(
        null=True, blank=True, help_text="Time-to-event endpoints: event (true) or censored (false) at `value` days."
    )
    unit = models.CharField(max_length=40, blank=True)
    measured_on = models.DateField()
    not_done_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["visit", "endpoint"]
        constraints = [
            models.UniqueConstraint(fields=["visit", "endpoint"], name="measurement_once_per_visit_and_endpoint"),
            models.CheckConstraint(
                condition=Q(value__isnull=False) | ~Q(not_done_reason=""),
                name="measurement_value_or_reason_not_done",
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.endpoint.code}={self.value}"
