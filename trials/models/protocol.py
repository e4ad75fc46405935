"""The protocol as declared data: visit schedule, endpoints, eligibility, strata and the analysis plan."""

from __future__ import annotations

import itertools

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from audit.tracking import audited, require_reason_triggers

paramcd_validator = RegexValidator(r"^[A-Z][A-Z0-9]{0,7}$", "Use 1–8 upper-case letters/digits (CDISC PARAMCD).")


@audited()
class VisitDefinition(models.Model):
    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="visit_definitions")
    code = models.CharField(max_length=16, help_text="Short code, e.g. W12.")
    name = models.CharField(max_length=100)
    order = models.PositiveSmallIntegerField(help_text="Visit number (AVISITN).")
    target_day = models.IntegerField(help_text="Study day relative to baseline (day 0).")
    window_before_days = models.PositiveSmallIntegerField(default=0)
    window_after_days = models.PositiveSmallIntegerField(default=0)
    is_dosing_visit = models.BooleanField(default=False)
    is_baseline = models.BooleanField(default=False)

    class Meta:
        ordering = ["trial", "order"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "code"], name="visit_code_unique_per_trial"),
            models.UniqueConstraint(fields=["trial", "order"], name="visit_order_unique_per_trial"),
            models.UniqueConstraint(
                fields=["trial"], condition=Q(is_baseline=True), name="one_baseline_visit_per_trial"
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return self.name

    @property
    def window_label(self) -> str:
        return f"day {self.target_day} (−{self.window_before_days}/+{self.window_after_days})"

    def is_day_in_window(self, study_day: int) -> bool:
        return self.target_day - self.window_before_days <= study_day <= self.target_day + self.window_after_days


@audited()
class Endpoint(models.Model):
    class Kind(models.TextChoices):
        CONTINUOUS = "continuous", "Continuous"
        BINARY = "binary", "Binary"
        ORDINAL = "ordinal", "Ordinal"
        COUNT = "count", "Count"
        TIME_TO_EVENT = "time_to_event", "Time to event"

    class EndpointRole(models.TextChoices):
        PRIMARY = "primary", "Primary"
        KEY_SECONDARY = "key_secondary", "Key secondary"
        SECONDARY = "secondary", "Secondary"
        EXPLORATORY = "exploratory", "Exploratory"
        SAFETY = "safety", "Safety"
        BIOMARKER = "biomarker", "Biomarker"

    class Direction(models.TextChoices):
        HIGHER_BETTER = "higher_better", "Higher is better"
        LOWER_BETTER = "lower_better", "Lower is better"

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="endpoints")
    code = models.CharField(max_length=8, validators=[paramcd_validator], help_text="CDISC PARAMCD, e.g. WOMACP.")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    unit = models.CharField(max_length=40, blank=True, help_text="Unit of measure; blank for unitless scores.")
    min_value = models.FloatField(null=True, blank=True)
    max_value = models.FloatField(null=True, blank=True)
    role = models.CharField(max_length=16, choices=EndpointRole.choices)
    direction = models.CharField(max_length=16, choices=Direction.choices)
    visits = models.ManyToManyField(VisitDefinition, related_name="endpoints", blank=True)
    rank = models.PositiveSmallIntegerField(
        default=0, help_text="Order of key secondaries in the fixed-sequence (hierarchical) testing procedure."
    )
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["trial", "rank", "code"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "code"], name="endpoint_code_unique_per_trial"),
            models.UniqueConstraint(
                fields=["trial"], condition=Q(role="primary"), name="one_primary_endpoint_per_trial"
            ),
            models.CheckConstraint(
                condition=Q(min_value__isnull=True) | Q(max_value__isnull=True) | Q(min_value__lt=F("max_value")),
                name="endpoint_range_ordered",
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    def range_error(self, value: float) -> str | None:
        """Why ``value`` is outside the allowed range, or None when it is inside."""
        if self.kind == self.Kind.BINARY and value not in (0, 1):
            return "Must be 0 (no) or 1 (yes)."
        if self.kind in (self.Kind.COUNT, self.Kind.ORDINAL) and value != int(value):
            return "Must be a whole number."
        if self.min_value is not None and value < self.min_value:
            return f"Must be at least {self.min_value:g}{(' ' + self.unit) if self.unit else ''}."
        if self.max_value is not None and value > self.max_value:
            return f"Must be at most {self.max_value:g}{(' ' + self.unit) if self.unit else ''}."
        return None


@audited()
class EligibilityCriterion(models.Model):
    class Kind(models.TextChoices):
        INCLUSION = "inclusion", "Inclusion"
        EXCLUSION = "exclusion", "Exclusion"

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="eligibility_criteria")
    code = models.CharField(max_length=16, help_text="E.g. IN01, EX03.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    text = models.CharField(max_length=500)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["trial", "kind", "order"]
        verbose_name_plural = "eligibility criteria"
        constraints = [models.UniqueConstraint(fields=["trial", "code"], name="criterion_code_unique_per_trial")]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.code}: {self.text}"

    def is_met_by(self, answer: bool) -> bool:
        """An inclusion criterion must be answered yes, an exclusion criterion no."""
        return answer if self.kind == self.Kind.INCLUSION else not answer


@audited()
class StratificationFactor(models.Model):
    """A prognostic factor used to stratify randomization, e.g. baseline pain ≤60 / >60."""

    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="stratification_factors")
    code = models.SlugField(max_length=32, help_text="Column name in analysis datasets, e.g. basepain.")
    name = models.CharField(max_length=100)
    levels = ArrayField(models.CharField(max_length=40), help_text="Allowed values, e.g. ≤60, >60.")

    class Meta:
        ordering = ["trial", "code"]
        constraints = [models.UniqueConstraint(fields=["trial", "code"], name="factor_code_unique_per_trial")]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if len(self.levels or []) < 2:
            raise ValidationError({"levels": "A stratification factor needs at least two levels."})
        if len(set(self.levels)) != len(self.levels):
            raise ValidationError({"levels": "Levels must be distinct."})


@audited()
class AnalysisPlan(models.Model):
    """The statistical analysis plan's machine-readable parameters."""

    class Spending(models.TextChoices):
        OBRIEN_FLEMING = "obf", "O'Brien–Fleming-type (Lan–DeMets)"
        POCOCK = "pocock", "Pocock-type (Lan–DeMets)"
        HWANG_SHIH_DECANI = "hsd", "Hwang–Shih–DeCani"

    class Futility(models.TextChoices):
        NONE = "none", "None"
        CONDITIONAL_POWER = "conditional_power", "Non-binding, conditional power below threshold"

    class Scheme(models.TextChoices):
        PERMUTED_BLOCKS = "permuted_blocks", "Stratified permuted blocks"
        MINIMIZATION = "minimization", "Pocock–Simon minimization"

    trial = models.OneToOneField("trials.Trial", on_delete=models.PROTECT, related_name="analysis_plan")
    version = models.CharField(max_length=20, default="1.0")
    primary_endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+")
    primary_visit = models.ForeignKey(VisitDefinition, on_delete=models.PROTECT, related_name="+")
    alpha_one_sided = models.FloatField(
        default=0.025, validators=[MinValueValidator(0.0001), MaxValueValidator(0.4999)]
    )
    power = models.FloatField(default=0.9, validators=[MinValueValidator(0.5), MaxValueValidator(0.999)])
    design_effect = models.FloatField(
        null=True, blank=True, help_text="Treatment effect assumed at design (primary endpoint units)."
    )
    design_sd = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0)])
    look_fractions = ArrayField(
        models.FloatField(), help_text="Planned information fractions of the looks, increasing, last = 1.0."
    )
    spending_function = models.CharField(max_length=8, choices=Spending.choices, default=Spending.OBRIEN_FLEMING)
    hsd_gamma = models.FloatField(null=True, blank=True, help_text="Hwang–Shih–DeCani γ (only for HSD spending).")
    futility_rule = models.CharField(max_length=20, choices=Futility.choices, default=Futility.CONDITIONAL_POWER)
    futility_conditional_power = models.FloatField(
        default=0.10, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    stratify_by_site = models.BooleanField(default=True)
    stratification_factors = models.ManyToManyField(StratificationFactor, blank=True, related_name="+")
    randomization_scheme = models.CharField(max_length=16, choices=Scheme.choices, default=Scheme.PERMUTED_BLOCKS)
    block_size_multiples = ArrayField(
        models.PositiveSmallIntegerField(),
        default=list,
        blank=True,
        help_text="Block sizes as multiples of the allocation-ratio total, chosen at random, e.g. 1, 2.",
    )
    minimization_probability = models.FloatField(default=0.8, validators=[MinValueValidator(0.5), MaxValueValidator(1)])
    randomization_seed = models.BigIntegerField(null=True, blank=True)
    approved_on = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(alpha_one_sided__gt=0) & Q(alpha_one_sided__lt=0.5), name="plan_alpha_in_range"
            ),
            models.CheckConstraint(
                condition=~Q(spending_function="hsd") | Q(hsd_gamma__isnull=False), name="plan_hsd_needs_gamma"
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"SAP {self.version} for {self.trial}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        fractions = list(self.look_fractions or [])
        if not fractions:
            errors["look_fractions"] = "At least one look (the final analysis, 1.0) is required."
        elif len(fractions) > 10:
            errors["look_fractions"] = "At most 10 looks are supported."
        elif any(not 0 < f <= 1 for f in fractions):
            errors["look_fractions"] = "Each fraction must be in (0, 1]."
        elif any(b <= a for a, b in itertools.pairwise(fractions)):
            errors["look_fractions"] = "Fractions must be strictly increasing."
        elif abs(fractions[-1] - 1.0) > 1e-12:
            errors["look_fractions"] = "The last look is the final analysis: its fraction must be 1.0."
        if self.trial_id and self.primary_endpoint_id and self.primary_endpoint.trial_id != self.trial_id:
            errors["primary_endpoint"] = "The primary endpoint belongs to another trial."
        if self.trial_id and self.primary_visit_id and self.primary_visit.trial_id != self.trial_id:
            errors["primary_visit"] = "The primary visit belongs to another trial."
        if self.spending_function == self.Spending.HWANG_SHIH_DECANI and self.hsd_gamma is None:
            errors["hsd_gamma"] = "Hwang–Shih–DeCani spending needs γ."
        if any(m < 1 for m in self.block_size_multiples or []):
            errors["block_size_multiples"] = "Block size multiples must be at least 1."
        if errors:
            raise ValidationError(errors)
