"""Data management: queries on values, source data verification, locks and e-signatures."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import Q

from audit.tracking import audited, require_reason_triggers


@audited()
class DataQuery(models.Model):
    """A question a monitor or data manager raises on one recorded value; site staff answer it."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ANSWERED = "answered", "Answered"
        CLOSED = "closed", "Closed"

    participant = models.ForeignKey("participants.Participant", on_delete=models.PROTECT, related_name="queries")
    target_model = models.CharField(
        max_length=60, help_text="Model label of the queried record, e.g. participants.visit."
    )
    target_id = models.PositiveBigIntegerField()
    field_name = models.CharField(max_length=60, help_text="Field (or endpoint code) the query is about.")
    message = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    raised_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    raised_at = models.DateTimeField(auto_now_add=True)
    answer = models.TextField(blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    reopened_count = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-raised_at"]
        indexes = [models.Index(fields=["participant", "status"]), models.Index(fields=["target_model", "target_id"])]
        constraints = [
            models.CheckConstraint(condition=~Q(message=""), name="query_has_message"),
            models.CheckConstraint(
                condition=~Q(status="answered") | (~Q(answer="") & Q(answered_at__isnull=False)),
                name="answered_query_has_answer",
            ),
            models.CheckConstraint(
                condition=~Q(status="closed") | Q(closed_at__isnull=False), name="closed_query_has_time"
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"Query on {self.field_name} of {self.participant}: {self.get_status_display()}"


@audited()
class SourceVerification(models.Model):
    """A monitor's mark that a visit's values match the source documents; cleared by any later change."""

    visit = models.OneToOneField("participants.Visit", on_delete=models.PROTECT, related_name="verification")
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    verified_at = models.DateTimeField(auto_now_add=True)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the visit's values when verified.")

    class Meta:
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"SDV of {self.visit}"


@audited()
class RecordLock(models.Model):
    """A data manager's lock on one participant's casebook, or (participant empty) on the whole trial."""

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="locks")
    participant = models.ForeignKey(
        "participants.Participant", on_delete=models.PROTECT, null=True, blank=True, related_name="locks"
    )
    locked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    locked_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=300)
    unlocked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    unlocked_at = models.DateTimeField(null=True, blank=True)
    unlock_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-locked_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["trial", "participant"],
                condition=Q(unlocked_at__isnull=True),
                name="one_active_lock_per_participant",
            ),
            models.UniqueConstraint(
                fields=["trial"],
                condition=Q(unlocked_at__isnull=True, participant__isnull=True),
                name="one_active_trial_lock",
            ),
            models.CheckConstraint(
                condition=Q(unlocked_at__isnull=True) | ~Q(unlock_reason=""), name="unlock_has_reason"
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"Lock on {self.participant or self.trial}"


@audited()
class Signature(models.Model):
    """An investigator's e-signature of a participant's casebook (21 CFR 11.50/11.70).

    Bound to the exact content signed by its SHA-256; any later change makes the stored hash differ from
    the casebook's current hash, and the signature shows as invalidated.
    """

    class Meaning(models.TextChoices):
        APPROVAL = "approval", "I approve the data as accurate"
        REVIEW = "review", "I have reviewed the data"

    participant = models.ForeignKey("participants.Participant", on_delete=models.PROTECT, related_name="signatures")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signer_name = models.CharField(max_length=200, help_text="Printed name of the signer at signing time.")
    signed_at = models.DateTimeField(auto_now_add=True)
    meaning = models.CharField(max_length=10, choices=Meaning.choices)
    content_hash = models.CharField(max_length=64)
    invalidated_at = models.DateTimeField(null=True, blank=True)
    invalidated_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-signed_at"]
        triggers = [
            *require_reason_triggers(),
            # 11.70: a signature can be invalidated, never moved to other content, another casebook or signer,
            # nor removed. Enforced by the database, so no code path (admin, raw SQL, bulk update) can do it.
            pgtrigger.ReadOnly(
                name="signature_link_immutable",
                fields=["participant", "signer", "signer_name", "signed_at", "meaning", "content_hash"],
            ),
            pgtrigger.Protect(name="signature_not_deleted", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.signer_name}, {self.signed_at:%Y-%m-%d %H:%M} UTC: {self.get_meaning_display()}"
