from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from audit.tracking import audited, require_reason_triggers
from participants.meddra import SOC_CHOICES
from participants.models.participant import VersionedModel

SERIOUSNESS_CRITERIA = (
    "results_in_death",
    "life_threatening",
    "hospitalization",
    "disability",
    "congenital_anomaly",
    "important_medical_event",
)
_ANY_SERIOUSNESS_CRITERION = Q(results_in_death=True)
for _criterion in SERIOUSNESS_CRITERIA[1:]:
    _ANY_SERIOUSNESS_CRITERION |= Q(**{_criterion: True})


@audited()
class AdverseEvent(VersionedModel):
    class Grade(models.IntegerChoices):
        # CTCAE v5.0
        MILD = 1, "1 – Mild"
        MODERATE = 2, "2 – Moderate"
        SEVERE = 3, "3 – Severe or medically significant"
        LIFE_THREATENING = 4, "4 – Life-threatening"
        DEATH = 5, "5 – Death related to AE"

    class Causality(models.TextChoices):
        NOT_RELATED = "not_related", "Not related"
        UNLIKELY = "unlikely", "Unlikely"
        POSSIBLE = "possible", "Possible"
        PROBABLE = "probable", "Probable"
        DEFINITE = "definite", "Definite"

    class Action(models.TextChoices):
        NONE = "none", "None / dose not changed"
        INTERRUPTED = "interrupted", "Dosing interrupted"
        WITHDRAWN = "withdrawn", "Product withdrawn"
        NOT_APPLICABLE = "not_applicable", "Not applicable"

    class Outcome(models.TextChoices):
        RECOVERED = "recovered", "Recovered / resolved"
        RECOVERING = "recovering", "Recovering / resolving"
        NOT_RECOVERED = "not_recovered", "Not recovered / not resolved"
        SEQUELAE = "sequelae", "Recovered with sequelae"
        FATAL = "fatal", "Fatal"
        UNKNOWN = "unknown", "Unknown"

    RELATED = ("possible", "probable", "definite")

    participant = models.ForeignKey("participants.Participant", on_delete=models.PROTECT, related_name="adverse_events")
    term = models.CharField(max_length=200, help_text="Verbatim term as reported.")
    soc = models.CharField("MedDRA system organ class", max_length=8, choices=SOC_CHOICES)
    onset_date = models.DateField()
    stop_date = models.DateField(null=True, blank=True)
    grade = models.PositiveSmallIntegerField("CTCAE grade", choices=Grade.choices)
    serious = models.BooleanField(default=False)
    results_in_death = models.BooleanField(default=False)
    life_threatening = models.BooleanField(default=False)
    hospitalization = models.BooleanField("requires or prolongs hospitalization", default=False)
    disability = models.BooleanField("persistent or significant disability", default=False)
    congenital_anomaly = models.BooleanField(default=False)
    important_medical_event = models.BooleanField(default=False)
    causality = models.CharField(max_length=12, choices=Causality.choices)
    expected = models.BooleanField(help_text="Listed in the investigator's brochure (reference safety information).")
    action_taken = models.CharField(max_length=16, choices=Action.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    site_aware_at = models.DateTimeField(help_text="When the site first learned of the event (starts SAE clocks).")
    sponsor_notified_at = models.DateTimeField(null=True, blank=True)
    regulator_reported_at = models.DateTimeField(
        null=True, blank=True, help_text="When the SUSAR was reported to the regulators (stops the 7/15-day clock)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["participant", "onset_date", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(grade__gte=1) & Q(grade__lte=5), name="ae_grade_1_to_5"),
            models.CheckConstraint(
                condition=Q(soc__in=[code for code, _ in SOC_CHOICES]), name="ae_soc_in_meddra_list"
            ),
            models.CheckConstraint(
                condition=Q(stop_date__isnull=True) | Q(stop_date__gte=F("onset_date")),
                name="ae_stop_not_before_onset",
            ),
            models.CheckConstraint(
                condition=(Q(serious=True) & _ANY_SERIOUSNESS_CRITERION)
                | Q(serious=False, **dict.fromkeys(SERIOUSNESS_CRITERIA, False)),
                name="ae_serious_iff_a_criterion",
            ),
            models.CheckConstraint(
                condition=Q(grade=5, outcome="fatal", results_in_death=True) | (~Q(grade=5) & ~Q(outcome="fatal")),
                name="ae_grade_5_iff_fatal",
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.term} (grade {self.grade})"

    @property
    def is_related(self) -> bool:
        return self.causality in self.RELATED

    @property
    def is_susar(self) -> bool:
        """Suspected unexpected serious adverse reaction: reportable to regulators in 7 or 15 days."""
        return self.serious and self.is_related and not self.expected
