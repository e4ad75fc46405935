"""Coordinators' and data managers' read-only view of clinical data, scoped by trial and site.

Site staff enter data in the web app. Treatment assignment and the dose details that reveal it are
never listed; detail and history pages hide them from blinded users (trials.policies.blinding)."""

from __future__ import annotations

from django.contrib import admin

from participants.models import (
    AdverseEvent,
    DataQuery,
    DoseAdministration,
    EligibilityAnswer,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Randomization,
    RecordLock,
    Signature,
    SourceVerification,
    UnblindingEvent,
    Visit,
)
from trials.admin_base import ClinicalDataAdmin


class EligibilityAnswerInline(admin.TabularInline):
    model = EligibilityAnswer
    extra = 0
    fields = ["criterion", "answer"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Participant)
class ParticipantAdmin(ClinicalDataAdmin):
    trial_path = "trial"
    site_path = "site"
    list_display = [
        "screening_number",
        "trial",
        "site",
        "status",
        "randomization_number",
        "sex",
        "age_at_screening",
        "screened_on",
        "consent_date",
    ]
    list_filter = ["trial", "site", "status", "sex"]
    search_fields = ["screening_number", "randomization__randomization_number"]
    list_select_related = ["trial", "site", "randomization"]
    date_hierarchy = "screened_on"
    inlines = [EligibilityAnswerInline]
    readonly_fields = ["version", "created_at"]
    fieldsets = [
        (None, {"fields": ["trial", "site", "screening_number", "status", "screened_on"]}),
        ("Demographics and strata", {"fields": ["sex", "birth_year", "age_at_screening", "strata"]}),
        (
            "Consent and eligibility",
            {"fields": ["consent_date", "consent_version", "screen_failure_criterion", "screen_failure_reason"]},
        ),
        ("Disposition", {"fields": ["withdrawn_on", "withdrawal_reason", "withdrawal_detail", "completed_on"]}),
        ("Record", {"fields": ["version", "created_at"]}),
    ]

    @admin.display(description="Randomization no.", ordering="randomization__randomization_number")
    def randomization_number(self, participant) -> str:
        randomization = getattr(participant, "randomization", None)
        return randomization.randomization_number if randomization else "—"


@admin.register(Randomization)
class RandomizationAdmin(ClinicalDataAdmin):
    trial_path = "trial"
    list_display = ["randomization_number", "participant", "trial", "stratum", "randomized_at", "randomized_by"]
    list_filter = ["trial"]
    search_fields = ["randomization_number", "participant__screening_number"]
    list_select_related = ["participant", "trial", "randomized_by"]
    # The arm is deliberately absent: randomizations are listed by number only.
    fields = ["randomization_number", "participant", "trial", "stratum", "randomized_at", "randomized_by"]


@admin.register(Visit)
class VisitAdmin(ClinicalDataAdmin):
    list_display = ["participant", "visit_definition", "status", "visit_date", "study_day", "in_window"]
    list_filter = ["participant__trial", "participant__site", "visit_definition", "status", "in_window"]
    search_fields = ["participant__screening_number"]
    list_select_related = ["participant", "visit_definition"]
    readonly_fields = ["version"]
    raw_id_fields = ["participant"]


@admin.register(OutcomeMeasurement)
class OutcomeMeasurementAdmin(ClinicalDataAdmin):
    trial_path = "visit__participant__trial"
    site_path = "visit__participant__site"
    list_display = [
        "participant",
        "visit_name",
        "endpoint",
        "value",
        "unit",
        "event_occurred",
        "measured_on",
        "not_done_reason",
    ]
    list_filter = ["endpoint__trial", "endpoint", "visit__visit_definition"]
    search_fields = ["visit__participant__screening_number", "endpoint__code"]
    list_select_related = ["visit__participant", "visit__visit_definition", "endpoint"]
    readonly_fields = ["version"]
    raw_id_fields = ["visit"]

    @admin.display(description="Participant", ordering="visit__participant__screening_number")
    def participant(self, measurement) -> str:
        return measurement.visit.participant.screening_number

    @admin.display(description="Visit", ordering="visit__visit_definition__order")
    def visit_name(self, measurement) -> str:
        return measurement.visit.visit_definition.name


@admin.register(AdverseEvent)
class AdverseEventAdmin(ClinicalDataAdmin):
    list_display = [
        "participant",
        "term",
        "soc_name",
        "grade",
        "serious",
        "causality",
        "expected",
        "onset_date",
        "stop_date",
        "outcome",
    ]
    list_filter = [
        "participant__trial",
        "participant__site",
        "grade",
        "serious",
        "causality",
        "expected",
        "outcome",
        "soc",
    ]
    search_fields = ["term", "participant__screening_number"]
    list_select_related = ["participant"]
    readonly_fields = ["version", "created_at"]
    raw_id_fields = ["participant"]
    date_hierarchy = "onset_date"

    @admin.display(description="System organ class", ordering="soc")
    def soc_name(self, event) -> str:
        return event.get_soc_display()


@admin.register(DoseAdministration)
class DoseAdministrationAdmin(ClinicalDataAdmin):
    # Lot, volume and particle count reveal the dose level, so they are not listed by default.
    list_display = ["participant", "administered_at", "route", "administered_by"]
    list_filter = ["participant__trial", "participant__site"]
    search_fields = ["participant__screening_number", "lot__lot_number"]
    list_select_related = ["participant", "lot"]
    readonly_fields = ["version"]
    raw_id_fields = ["participant", "visit"]


@admin.register(ProtocolDeviation)
class ProtocolDeviationAdmin(ClinicalDataAdmin):
    list_display = ["participant", "category", "severity", "description", "occurred_on", "detected_on", "is_automatic"]
    list_filter = ["participant__trial", "category", "severity", "is_automatic"]
    search_fields = ["participant__screening_number", "description"]
    list_select_related = ["participant"]
    readonly_fields = ["version"]
    raw_id_fields = ["participant", "visit"]


@admin.register(UnblindingEvent)
class UnblindingEventAdmin(ClinicalDataAdmin):
    """Who unblinded whom, when and why — without the treatment revealed."""

    trial_path = "trial"
    list_display = ["participant", "requested_by", "created_at", "reason"]
    list_filter = ["trial"]
    search_fields = ["participant__screening_number", "requested_by__username"]
    list_select_related = ["participant", "requested_by"]
    fields = ["trial", "participant", "requested_by", "created_at", "reason"]


@admin.register(DataQuery)
class DataQueryAdmin(ClinicalDataAdmin):
    list_display = ["participant", "field_name", "status", "raised_by", "raised_at", "answered_at", "closed_at"]
    list_filter = ["participant__trial", "status"]
    search_fields = ["participant__screening_number", "message", "answer"]
    list_select_related = ["participant", "raised_by"]


@admin.register(SourceVerification)
class SourceVerificationAdmin(ClinicalDataAdmin):
    trial_path = "visit__participant__trial"
    site_path = "visit__participant__site"
    list_display = ["visit", "verified_by", "verified_at"]
    list_filter = ["visit__participant__trial"]
    search_fields = ["visit__participant__screening_number"]
    list_select_related = ["visit__participant", "visit__visit_definition", "verified_by"]


@admin.register(Signature)
class SignatureAdmin(ClinicalDataAdmin):
    list_display = ["participant", "signer_name", "signed_at", "meaning", "invalidated_at"]
    list_filter = ["participant__trial", "meaning"]
    search_fields = ["participant__screening_number", "signer_name"]
    list_select_related = ["participant"]


@admin.register(RecordLock)
class RecordLockAdmin(ClinicalDataAdmin):
    trial_path = "trial"
    site_path = None
    list_display = ["trial", "participant", "locked_by", "locked_at", "reason", "unlocked_at"]
    list_filter = ["trial"]
    search_fields = ["participant__screening_number", "reason"]
    list_select_related = ["trial", "participant", "locked_by"]
