from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from audit.tracking import audited, require_reason_triggers


class VersionedModel(models.Model):
    """Optimistic concurrency: every save of an edited record must name the version it was read at."""

    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        abstract = True


POST_CONSENT_STATUSES = ("eligible", "randomized", "completed", "withdrawn", "lost_to_follow_up")


@audited()
class Participant(VersionedModel):
    class Status(models.TextChoices):
        SCREENING = "screening", "Screening"
        SCREEN_FAILED = "screen_failed", "Screen failure"
        ELIGIBLE = "eligible", "Eligible, consented"
        RANDOMIZED = "randomized", "Randomized"
        COMPLETED = "completed", "Completed"
        WITHDRAWN = "withdrawn", "Withdrawn"
        LOST_TO_FOLLOW_UP = "lost_to_follow_up", "Lost to follow-up"

    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        UNDIFFERENTIATED = "U", "Undifferentiated / intersex"

    class WithdrawalReason(models.TextChoices):
        # CDISC DS (disposition) terms.
        ADVERSE_EVENT = "adverse_event", "Adverse event"
        LACK_OF_EFFICACY = "lack_of_efficacy", "Lack of efficacy"
        WITHDRAWAL_BY_SUBJECT = "withdrawal_by_subject", "Withdrawal by subject"
        PHYSICIAN_DECISION = "physician_decision", "Physician decision"
        PROTOCOL_DEVIATION = "protocol_deviation", "Protocol deviation"
        LOST_TO_FOLLOW_UP = "lost_to_follow_up", "Lost to follow-up"
        DEATH = "death", "Death"
        OTHER = "other", "Other"

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="participants")
    site = models.ForeignKey("trials.Site", on_delete=models.PROTECT, related_name="participants")
    screening_number = models.CharField(max_length=24, help_text="Generated per site, e.g. S01-0007.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SCREENING)
    screened_on = models.DateField()
    sex = models.CharField(max_length=1, choices=Sex.choices)
    birth_year = models.PositiveSmallIntegerField(validators=[MinValueValidator(1900), MaxValueValidator(2100)])
    age_at_screening = models.PositiveSmallIntegerField(validators=[MaxValueValidator(120)])
    strata = models.JSONField(default=dict, blank=True, help_text="Stratification factor code → level.")
    consent_date = models.DateField(null=True, blank=True)
    consent_version = models.CharField(max_length=20, blank=True)
    screen_failure_criterion = models.ForeignKey(
        "trials.EligibilityCriterion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    screen_failure_reason = models.CharField(max_length=300, blank=True)
    withdrawn_on = models.DateField(null=True, blank=True)
    withdrawal_reason = models.CharField(max_length=24, choices=WithdrawalReason.choices, blank=True)
    withdrawal_detail = models.CharField(max_length=500, blank=True)
    completed_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["trial", "screening_number"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "screening_number"], name="screening_number_unique_per_trial"),
            models.CheckConstraint(condition=Q(birth_year__range=(1900, 2100)), name="participant_birth_year_range"),
            models.CheckConstraint(condition=Q(age_at_screening__lte=120), name="participant_age_range"),
            models.CheckConstraint(
                condition=~Q(status__in=POST_CONSENT_STATUSES) | Q(consent_date__isnull=False),
                name="participant_consent_before_enrolment",
            ),
            models.CheckConstraint(
                condition=~Q(status="screen_failed") | ~Q(screen_failure_reason=""),
                name="participant_screen_failure_has_reason",
            ),
            models.CheckConstraint(
                condition=~Q(status="withdrawn") | (Q(withdrawn_on__isnull=False) & ~Q(withdrawal_reason="")),
                name="participant_withdrawal_has_date_and_reason",
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return self.screening_number

    @property
    def is_randomized(self) -> bool:
        return self.status in {"randomized", "completed", "withdrawn", "lost_to_follow_up"} and hasattr(
            self, "randomization"
        )


@audited()
class EligibilityAnswer(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="eligibility_answers")
    criterion = models.ForeignKey("trials.EligibilityCriterion", on_delete=models.PROTECT, related_name="+")
    answer = models.BooleanField(help_text="Yes/no answer to the criterion as worded.")

    class Meta:
        ordering = ["participant", "criterion"]
        constraints = [models.UniqueConstraint(fields=["participant", "criterion"], name="eligibility_answer_once")]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.criterion.code}: {'yes' if self.answer else 'no'}"
