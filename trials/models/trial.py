from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from audit.tracking import audited, require_reason_triggers

protocol_code_validator = RegexValidator(
    r"^[A-Z0-9][A-Z0-9-]{2,31}$", "Use 3–32 upper-case letters, digits and hyphens, e.g. EXO-OA-201."
)
short_code_validator = RegexValidator(r"^[A-Z0-9][A-Z0-9_-]{0,15}$", "Use up to 16 upper-case letters and digits.")


@audited()
class Trial(models.Model):
    class Phase(models.TextChoices):
        I = "I", "Phase I"  # noqa: E741 - the phase's own name
        I_II = "I/II", "Phase I/II"
        II = "II", "Phase II"
        II_III = "II/III", "Phase II/III"
        III = "III", "Phase III"

    class Status(models.TextChoices):
        PLANNING = "planning", "Planning"
        RECRUITING = "recruiting", "Recruiting"
        ACTIVE_FOLLOW_UP = "active_follow_up", "Active follow-up"
        DATABASE_LOCKED = "database_locked", "Database locked"
        CLOSED = "closed", "Closed"

    class Blinding(models.TextChoices):
        OPEN = "open", "Open label"
        SINGLE = "single", "Single blind"
        DOUBLE = "double", "Double blind"

    protocol_code = models.CharField(max_length=32, unique=True, validators=[protocol_code_validator])
    title = models.CharField(max_length=300)
    phase = models.CharField(max_length=8, choices=Phase.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLANNING)
    blinding = models.CharField(max_length=8, choices=Blinding.choices, default=Blinding.DOUBLE)
    target_enrollment = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    sponsor = models.CharField(max_length=200, blank=True)
    registry_id = models.CharField(
        "registry id",
        max_length=40,
        blank=True,
        help_text="Public registry identifier, e.g. NCT01234567 or EUCT 2024-512345-12-00.",
    )
    primary_estimand = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["protocol_code"]
        constraints = [
            models.CheckConstraint(condition=Q(target_enrollment__gte=1), name="trial_target_enrollment_positive"),
            models.UniqueConstraint(
                fields=["registry_id"], condition=~Q(registry_id=""), name="trial_registry_id_unique"
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return self.protocol_code

    @property
    def is_blinded(self) -> bool:
        return self.blinding != self.Blinding.OPEN

    @property
    def is_locked(self) -> bool:
        return self.status in {self.Status.DATABASE_LOCKED, self.Status.CLOSED}


@audited()
class Site(models.Model):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="sites")
    code = models.CharField(max_length=16, validators=[short_code_validator])
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 country code.")
    principal_investigator = models.CharField(max_length=200, blank=True)
    target_enrollment = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["trial", "code"]
        constraints = [models.UniqueConstraint(fields=["trial", "code"], name="site_code_unique_per_trial")]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


@audited()
class Arm(models.Model):
    class Role(models.TextChoices):
        EXPERIMENTAL = "experimental", "Experimental"
        PLACEBO = "placebo_comparator", "Placebo comparator"
        ACTIVE = "active_comparator", "Active comparator"

    class Route(models.TextChoices):
        INTRA_ARTICULAR = "intra_articular", "Intra-articular"
        INTRAVENOUS = "intravenous", "Intravenous"
        SUBCUTANEOUS = "subcutaneous", "Subcutaneous"
        INTRADERMAL = "intradermal", "Intradermal"
        INTRATHECAL = "intrathecal", "Intrathecal"
        INHALED = "inhaled", "Inhaled / nebulised"
        TOPICAL = "topical", "Topical"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="arms")
    code = models.CharField(max_length=16, validators=[short_code_validator])
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=20, choices=Role.choices)
    allocation_weight = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    product = models.ForeignKey(
        "trials.ExosomeProduct", on_delete=models.PROTECT, null=True, blank=True, related_name="arms"
    )
    dose_particles = models.FloatField(
        null=True, blank=True, help_text="Particles per administration, e.g. 1e10.", validators=[MinValueValidator(0)]
    )
    dose_protein_ug = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0)])
    route = models.CharField(max_length=20, choices=Route.choices)
    schedule = models.CharField(max_length=200, blank=True, help_text="E.g. single injection at baseline.")
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["trial", "code"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "code"], name="arm_code_unique_per_trial"),
            models.UniqueConstraint(fields=["trial", "name"], name="arm_name_unique_per_trial"),
            models.CheckConstraint(condition=Q(allocation_weight__gte=1), name="arm_allocation_weight_positive"),
            models.CheckConstraint(
                condition=Q(dose_particles__isnull=True) | Q(dose_particles__gte=0), name="arm_dose_not_negative"
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.code} {self.name}"
