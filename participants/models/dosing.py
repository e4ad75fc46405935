from __future__ import annotations

from django.db import models
from django.db.models import Q

from audit.tracking import audited, require_reason_triggers
from participants.models.participant import VersionedModel


@audited()
class DoseAdministration(VersionedModel):
    participant = models.ForeignKey("participants.Participant", on_delete=models.PROTECT, related_name="doses")
    visit = models.ForeignKey(
        "participants.Visit", on_delete=models.PROTECT, null=True, blank=True, related_name="doses"
    )
    lot = models.ForeignKey(
        "trials.ProductLot",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="doses",
        help_text="Blank only for a matching placebo (saline), which carries no particles.",
    )
    administered_at = models.DateTimeField()
    volume_ml = models.FloatField()
    particles_given = models.FloatField(help_text="Volume × lot particle concentration.")
    route = models.CharField(max_length=20)
    administered_by = models.CharField(max_length=200)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["participant", "administered_at"]
        constraints = [
            models.CheckConstraint(condition=Q(volume_ml__gt=0) & Q(volume_ml__lte=500), name="dose_volume_range"),
            models.CheckConstraint(condition=Q(particles_given__gte=0), name="dose_particles_not_negative"),
            models.CheckConstraint(
                condition=Q(lot__isnull=False) | Q(particles_given=0), name="dose_without_lot_is_placebo"
            ),
        ]
        triggers = require_reason_triggers()

    @property
    def route_label(self) -> str:
        from trials.models import Arm

        return dict(Arm.Route.choices).get(self.route, self.route)

    def __str__(self) -> str:
        return f"{self.participant} {self.administered_at:%Y-%m-%d}"
