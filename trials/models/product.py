"""Investigational exosome products and their lots, characterised as MISEV2023 asks."""

from __future__ import annotations

import datetime

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from audit.tracking import audited, require_reason_triggers


@audited()
class ExosomeProduct(models.Model):
    class SourceCell(models.TextChoices):
        BONE_MARROW_MSC = "bm_msc", "Bone-marrow MSC"
        ADIPOSE_MSC = "ad_msc", "Adipose MSC"
        UMBILICAL_CORD_MSC = "uc_msc", "Umbilical-cord MSC"
        IPSC = "ipsc", "iPSC-derived"
        PLATELET = "platelet", "Platelet"
        OTHER = "other", "Other"

    class IsolationMethod(models.TextChoices):
        ULTRACENTRIFUGATION = "uc", "Ultracentrifugation"
        SIZE_EXCLUSION = "sec", "Size-exclusion chromatography"
        TANGENTIAL_FLOW = "tff", "Tangential-flow filtration"
        PRECIPITATION = "precipitation", "Precipitation"
        COMBINATION = "combination", "Combination"

    name = models.CharField(max_length=200, unique=True)
    source_cell = models.CharField(max_length=16, choices=SourceCell.choices)
    isolation_method = models.CharField(max_length=16, choices=IsolationMethod.choices)
    manufacturer = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return self.name


@audited()
class ProductLot(models.Model):
    class ReleaseStatus(models.TextChoices):
        QUARANTINE = "quarantine", "Quarantine"
        RELEASED = "released", "Released"
        REJECTED = "rejected", "Rejected"
        RECALLED = "recalled", "Recalled"

    class TestResult(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"
        PENDING = "pending", "Pending"

    product = models.ForeignKey(ExosomeProduct, on_delete=models.PROTECT, related_name="lots")
    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="lots")
    lot_number = models.CharField(max_length=40)
    manufactured_on = models.DateField()
    expires_on = models.DateField()
    storage_temperature_c = models.FloatField(
        default=-80, validators=[MinValueValidator(-200), MaxValueValidator(25)], help_text="Storage temperature (°C)."
    )
    # Physical characterisation (NTA or similar).
    particle_concentration_per_ml = models.FloatField(
        validators=[MinValueValidator(1)], help_text="Particles per mL, e.g. 2.0e10."
    )
    mean_diameter_nm = models.FloatField(validators=[MinValueValidator(10), MaxValueValidator(1000)])
    modal_diameter_nm = models.FloatField(validators=[MinValueValidator(10), MaxValueValidator(1000)])
    protein_concentration_ug_per_ml = models.FloatField(validators=[MinValueValidator(0.001)])
    characterization_method = models.CharField(max_length=100, default="NTA")
    # Safety release tests.
    endotoxin_eu_per_ml = models.FloatField(validators=[MinValueValidator(0)])
    sterility = models.CharField(max_length=8, choices=TestResult.choices, default=TestResult.PENDING)
    mycoplasma = models.CharField(max_length=8, choices=TestResult.choices, default=TestResult.PENDING)
    potency_assay = models.CharField(max_length=200, blank=True, help_text="Assay name, e.g. chondrocyte migration.")
    potency_result = models.FloatField(null=True, blank=True)
    potency_unit = models.CharField(max_length=40, blank=True)
    release_status = models.CharField(max_length=12, choices=ReleaseStatus.choices, default=ReleaseStatus.QUARANTINE)
    released_on = models.DateField(null=True, blank=True)
    release_note = models.TextField(blank=True)

    class Meta:
        ordering = ["trial", "lot_number"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "lot_number"], name="lot_number_unique_per_trial"),
            models.CheckConstraint(condition=Q(expires_on__gt=F("manufactured_on")), name="lot_expires_after_made"),
            models.CheckConstraint(condition=Q(particle_concentration_per_ml__gt=0), name="lot_concentration_positive"),
            models.CheckConstraint(condition=Q(protein_concentration_ug_per_ml__gt=0), name="lot_protein_positive"),
            models.CheckConstraint(condition=Q(endotoxin_eu_per_ml__gte=0), name="lot_endotoxin_not_negative"),
            models.CheckConstraint(
                condition=Q(mean_diameter_nm__range=(10, 1000)) & Q(modal_diameter_nm__range=(10, 1000)),
                name="lot_diameter_plausible",
            ),
            models.CheckConstraint(
                condition=~Q(release_status="released")
                | (Q(released_on__isnull=False) & Q(sterility="pass") & Q(mycoplasma="pass")),
                name="lot_release_needs_date_and_passed_tests",
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return self.lot_number

    @property
    def particle_to_protein_ratio(self) -> float:
        """Particles per µg protein: the usual purity indicator (higher is purer)."""
        return self.particle_concentration_per_ml / self.protein_concentration_ug_per_ml

    def dosing_refusal(self, *, trial_id: int, on: datetime.date) -> str | None:
        """Why this lot may not be dosed in ``trial_id`` on ``on``, or None if it may."""
        if self.trial_id != trial_id:
            return f"Lot {self.lot_number} belongs to another trial."
        if self.release_status != self.ReleaseStatus.RELEASED:
            return f"Lot {self.lot_number} is {self.get_release_status_display().lower()}, not released."
        if on > self.expires_on:
            return f"Lot {self.lot_number} expired on {self.expires_on.isoformat()}."
        return None


@audited()
class LotMarkerResult(models.Model):
    """One MISEV2023 marker tested on a lot: tetraspanins/cytosolic (positive) or purity (negative) markers."""

    class Marker(models.TextChoices):
        CD9 = "CD9", "CD9"
        CD63 = "CD63", "CD63"
        CD81 = "CD81", "CD81"
        TSG101 = "TSG101", "TSG101"
        ALIX = "ALIX", "ALIX"
        SYNTENIN = "SYNTENIN", "Syntenin"
        CALNEXIN = "CALNEXIN", "Calnexin"
        GM130 = "GM130", "GM130"
        APOA1 = "APOA1", "APOA1"

    class Result(models.TextChoices):
        PRESENT = "present", "Present"
        ABSENT = "absent", "Absent"

    class Method(models.TextChoices):
        WESTERN_BLOT = "western_blot", "Western blot"
        FLOW = "flow", "Flow cytometry"
        ELISA = "elisa", "ELISA"
        MASS_SPEC = "mass_spec", "Mass spectrometry"

    POSITIVE_MARKERS = frozenset({"CD9", "CD63", "CD81", "TSG101", "ALIX", "SYNTENIN"})

    lot = models.ForeignKey(ProductLot, on_delete=models.PROTECT, related_name="markers")
    marker = models.CharField(max_length=10, choices=Marker.choices)
    result = models.CharField(max_length=8, choices=Result.choices)
    method = models.CharField(max_length=16, choices=Method.choices)

    class Meta:
        ordering = ["lot", "marker"]
        constraints = [models.UniqueConstraint(fields=["lot", "marker"], name="marker_once_per_lot")]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.marker}: {self.result}"

    @property
    def is_positive_marker(self) -> bool:
        return self.marker in self.POSITIVE_MARKERS

    @property
    def meets_expectation(self) -> bool:
        """EV markers should be present and purity (negative) markers absent."""
        return (self.result == self.Result.PRESENT) == self.is_positive_marker
