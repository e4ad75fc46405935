from __future__ import annotations

from django.conf import settings
from django.db import models

from audit.tracking import audited, require_reason_triggers


@audited()
class AllocationList(models.Model):
    """A trial's concealed allocation sequence, generated once from a recorded seed.

    For stratified permuted blocks the slots are pre-generated; for minimization the seed drives the
    random element of each assignment. This row is also the lock that serialises a trial's
    randomizations (``SELECT … FOR UPDATE``), so concurrent requests never share or skip a slot.
    """

    class Scheme(models.TextChoices):
        PERMUTED_BLOCKS = "permuted_blocks", "Stratified permuted blocks"
        MINIMIZATION = "minimization", "Pocock–Simon minimization"

    trial = models.OneToOneField("trials.Trial", on_delete=models.PROTECT, related_name="allocation_list")
    scheme = models.CharField(max_length=16, choices=Scheme.choices)
    seed = models.BigIntegerField()
    factors = models.JSONField(help_text="Stratification factors and their levels, in stratum-key order.")
    block_size_multiples = models.JSONField(default=list)
    minimization_probability = models.FloatField(null=True, blank=True)
    slots_per_stratum = models.PositiveIntegerField(default=0)
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the canonical slot list (or scheme + seed).")
    generated_at = models.DateTimeField(auto_now_add=True)
    generated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    randomized_count = models.PositiveIntegerField(default=0)

    class Meta:
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"Allocation list of {self.trial} ({self.get_scheme_display()})"


@audited()
class AllocationSlot(models.Model):
    """One pre-generated assignment in a stratum's sequence. Never shown through any interface."""

    allocation_list = models.ForeignKey(AllocationList, on_delete=models.PROTECT, related_name="slots")
    stratum = models.CharField(max_length=200)
    sequence = models.PositiveIntegerField()
    arm = models.ForeignKey("trials.Arm", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["allocation_list", "stratum", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["allocation_list", "stratum", "sequence"], name="slot_unique_in_stratum")
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.stratum} #{self.sequence}"


@audited()
class Randomization(models.Model):
    """The treatment assignment of one participant. Unblinded information: see the blinding policy."""

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="randomizations")
    participant = models.OneToOneField(
        "participants.Participant", on_delete=models.PROTECT, related_name="randomization"
    )
    arm = models.ForeignKey("trials.Arm", on_delete=models.PROTECT, related_name="randomizations")
    slot = models.OneToOneField(
        AllocationSlot, on_delete=models.PROTECT, null=True, blank=True, related_name="randomization"
    )
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


@audited()
class UnblindingEvent(models.Model):
    """An emergency unblinding of one participant by an investigator (ICH E6(R3) §4.1.4)."""

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="unblinding_events")
    participant = models.ForeignKey(
        "participants.Participant", on_delete=models.PROTECT, related_name="unblinding_events"
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(reason=""), name="unblinding_has_reason"),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"Emergency unblinding of {self.participant} by {self.requested_by}"
