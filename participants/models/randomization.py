from __future__ import annotations

from django.conf import settings
from django.db import models

from audit.tracking import audited, require_reason_triggers


@audited()
class Randomization(models.Model):
    """The treatment assignment of one participant. Unblinded information: see the blinding policy."""

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="randomizations")
    participant = models.OneToOneField(
        "participants.Participant", on_delete=models.PROTECT, related_name="randomization"
    )
    arm = models.ForeignKey("trials.Arm", on_delete=models.PROTECT, related_name="randomizations")
    randomization_number = models.CharField(max_length=24, help_text="Shown to blinded users instead of the arm.")
    stratum = models.CharField(max_length=200, help_text="Stratum key, e.g. site=S01|basepain=>60.")
    randomized_at = models.DateTimeField()
    randomized_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["trial", "randomization_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["trial", "randomization_number"], name="randomization_number_unique_per_trial"
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return self.randomization_number
