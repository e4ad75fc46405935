from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import models
from django.utils import timezone

from audit.admin import AuditedAdmin
from trials.admin_base import TrialScopedAdmin
from trials.formatting import scientific
from trials.models import (
    AnalysisPlan,
    Arm,
    EligibilityCriterion,
    Endpoint,
    ExosomeProduct,
    LotMarkerResult,
    MembershipSite,
    ProductLot,
    Site,
    StratificationFactor,
    Trial,
    TrialMembership,
    VisitDefinition,
)
from trials.policies.access import Capability, can, trials_for
from trials.policies.blinding import sees_arm_definitions


class NoDeleteInline:
    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class SiteInline(NoDeleteInline, admin.TabularInline):
    model = Site
    extra = 0
    fields = ["code", "name", "country", "principal_investigator", "target_enrollment", "is_active"]


class ArmInline(NoDeleteInline, admin.TabularInline):
    model = Arm
    extra = 0
    fields = ["code", "name", "role", "allocation_weight", "product", "dose_particles", "route", "schedule"]


class VisitDefinitionInline(NoDeleteInline, admin.TabularInline):
    model = VisitDefinition
    extra = 0
    fields = [
        "order",
        "code",
        "name",
        "target_day",
        "window_before_days",
        "window_after_days",
        "is_baseline",
        "is_dosing_visit",
    ]


class EndpointInline(NoDeleteInline, admin.TabularInline):
    model = Endpoint
    extra = 0
    fields = ["code", "name", "kind", "unit", "min_value", "max_value", "role", "direction", "rank", "visits"]
    formfield_overrides = {models.ManyToManyField: {"widget": forms.CheckboxSelectMultiple}}


class EligibilityCriterionInline(NoDeleteInline, admin.TabularInline):
    model = EligibilityCriterion
    extra = 0
    fields = ["code", "kind", "text", "order"]


class StratificationFactorInline(NoDeleteInline, admin.TabularInline):
    model = StratificationFactor
    extra = 0
    fields = ["code", "name", "levels"]


class AnalysisPlanInline(NoDeleteInline, admin.StackedInline):
    model = AnalysisPlan
    extra = 0
    max_num = 1
    autocomplete_fields = ["primary_endpoint", "primary_visit"]
    filter_horizontal = ["stratification_factors"]


@admin.register(Trial)
class TrialAdmin(TrialScopedAdmin):
    trial_path = ""
    list_display = [
        "protocol_code",
        "title",
        "phase",
        "status",
        "blinding",
        "target_enrollment",
        "enrolled",
        "registry_id",
    ]
    list_filter = ["status", "phase", "blinding"]
    search_fields = ["protocol_code", "title", "registry_id", "sponsor"]
    inlines = [
        SiteInline,
        ArmInline,
        VisitDefinitionInline,
        EndpointInline,
        EligibilityCriterionInline,
        StratificationFactorInline,
        AnalysisPlanInline,
    ]

    def get_queryset(self, request):
        from django.db.models import Count, Q

        return (
            super()
            .get_queryset(request)
            .annotate(randomized_count=Count("randomizations", distinct=True, filter=Q(randomizations__isnull=False)))
        )

    def get_inline_instances(self, request, obj=None):
        # Arm names and doses are treatment information once a blinded trial has gone live.
        hide_arms = obj is not None and not sees_arm_definitions(request.user, obj)
        return [
            inline
            for inline in super().get_inline_instances(request, obj)
            if not (hide_arms and isinstance(inline, ArmInline))
        ]

    @admin.display(description="Randomized", ordering="randomized_count")
    def enrolled(self, trial) -> int:
        return trial.randomized_count


@admin.register(Site)
class SiteAdmin(TrialScopedAdmin):
    list_display = ["code", "name", "trial", "country", "principal_investigator", "target_enrollment", "is_active"]
    list_filter = ["trial", "country", "is_active"]
    search_fields = ["code", "name", "principal_investigator"]
    list_select_related = ["trial"]


@admin.register(Arm)
class ArmAdmin(TrialScopedAdmin):
    superuser_sees_all = False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(trial_id__in=self._visible_trial_ids(request))

    def has_add_permission(self, request) -> bool:
        return bool(self._visible_trial_ids(request)) and super().has_add_permission(request)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "trial":
            kwargs["queryset"] = Trial.objects.filter(pk__in=self._visible_trial_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @staticmethod
    def _visible_trial_ids(request) -> list[int]:
        return [trial.pk for trial in trials_for(request.user) if sees_arm_definitions(request.user, trial)]

    list_display = ["code", "name", "trial", "role", "allocation_weight", "dose", "route"]
    list_filter = ["trial", "role", "route"]
    search_fields = ["code", "name"]
    list_select_related = ["trial"]

    @admin.display(description="Dose (particles)")
    def dose(self, arm) -> str:
        return scientific(arm.dose_particles)


@admin.register(VisitDefinition)
class VisitDefinitionAdmin(TrialScopedAdmin):
    list_display = [
        "name",
        "code",
        "trial",
        "order",
        "target_day",
        "window_before_days",
        "window_after_days",
        "is_baseline",
        "is_dosing_visit",
    ]
    list_filter = ["trial", "is_dosing_visit"]
    search_fields = ["name", "code"]
    list_select_related = ["trial"]


@admin.register(Endpoint)
class EndpointAdmin(TrialScopedAdmin):
    list_display = ["code", "name", "trial", "kind", "unit", "min_value", "max_value", "role", "direction"]
    list_filter = ["trial", "kind", "role"]
    search_fields = ["code", "name"]
    list_select_related = ["trial"]
    filter_horizontal = ["visits"]


@admin.register(EligibilityCriterion)
class EligibilityCriterionAdmin(TrialScopedAdmin):
    list_display = ["code", "kind", "text", "trial"]
    list_filter = ["trial", "kind"]
    search_fields = ["code", "text"]
    list_select_related = ["trial"]


@admin.register(StratificationFactor)
class StratificationFactorAdmin(TrialScopedAdmin):
    list_display = ["code", "name", "trial", "levels"]
    list_filter = ["trial"]
    search_fields = ["code", "name"]
    list_select_related = ["trial"]


@admin.register(AnalysisPlan)
class AnalysisPlanAdmin(TrialScopedAdmin):
    list_display = [
        "trial",
        "version",
        "primary_endpoint",
        "primary_visit",
        "alpha_one_sided",
        "spending_function",
        "look_fractions",
        "randomization_scheme",
    ]
    list_filter = ["spending_function", "randomization_scheme", "futility_rule"]
    search_fields = ["trial__protocol_code"]
    list_select_related = ["trial", "primary_endpoint", "primary_visit"]
    filter_horizontal = ["stratification_factors"]


@admin.register(ExosomeProduct)
class ExosomeProductAdmin(TrialScopedAdmin):
    trial_path = "lots__trial"

    def get_queryset(self, request):
        # Products are shared across trials: a coordinator sees those supplied to their trials.
        return super().get_queryset(request).distinct()

    def has_change_permission(self, request, obj=None) -> bool:
        allowed = AuditedAdmin.has_change_permission(self, request, obj)
        if not allowed or obj is None or request.user.is_superuser:
            return allowed
        # A product shared by several trials is changed only by someone who manages all of them.
        return all(
            can(request.user, trial, Capability.MANAGE_TRIAL)
            for trial in Trial.objects.filter(lots__product=obj).distinct()
        )

    list_display = ["name", "source_cell", "isolation_method", "manufacturer"]
    list_filter = ["source_cell", "isolation_method"]
    search_fields = ["name", "manufacturer"]


class LotMarkerResultInline(NoDeleteInline, admin.TabularInline):
    model = LotMarkerResult
    extra = 0
    fields = ["marker", "result", "method"]


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request, model_admin):
        return [("valid", "Not expired"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        today = timezone.localdate()
        if self.value() == "valid":
            return queryset.filter(expires_on__gte=today)
        if self.value() == "expired":
            return queryset.filter(expires_on__lt=today)
        return queryset


@admin.register(ProductLot)
class ProductLotAdmin(TrialScopedAdmin):
    list_display = [
        "lot_number",
        "product",
        "trial",
        "release_status",
        "expires_on",
        "is_expired",
        "concentration",
        "mean_diameter_nm",
        "purity",
        "endotoxin_eu_per_ml",
    ]
    list_filter = ["trial", "release_status", ExpiryFilter, "product"]
    search_fields = ["lot_number", "product__name"]
    list_select_related = ["product", "trial"]
    inlines = [LotMarkerResultInline]
    fieldsets = [
        (
            None,
            {"fields": ["product", "trial", "lot_number", "manufactured_on", "expires_on", "storage_temperature_c"]},
        ),
        (
            "Characterisation (MISEV2023)",
            {
                "fields": [
                    "characterization_method",
                    "particle_concentration_per_ml",
                    "mean_diameter_nm",
                    "modal_diameter_nm",
                    "protein_concentration_ug_per_ml",
                ]
            },
        ),
        (
            "Safety and potency release tests",
            {
                "fields": [
                    "endotoxin_eu_per_ml",
                    "sterility",
                    "mycoplasma",
                    "potency_assay",
                    "potency_result",
                    "potency_unit",
                ]
            },
        ),
        ("Release", {"fields": ["release_status", "released_on", "release_note"]}),
    ]

    @admin.display(boolean=True, description="Expired")
    def is_expired(self, lot) -> bool:
        return lot.expires_on < timezone.localdate()

    @admin.display(description="Particles/mL", ordering="particle_concentration_per_ml")
    def concentration(self, lot) -> str:
        return scientific(lot.particle_concentration_per_ml)

    @admin.display(description="Particles/µg protein")
    def purity(self, lot) -> str:
        return scientific(lot.particle_to_protein_ratio)


class MembershipSiteInline(admin.TabularInline):
    """Removing a site from a membership is a real change (the grant ends), so it may be deleted — the
    deletion is audited with the reason given on the membership form."""

    model = MembershipSite
    extra = 0
    autocomplete_fields = ["site"]


@admin.register(TrialMembership)
class TrialMembershipAdmin(TrialScopedAdmin):
    scope_capability = Capability.MANAGE_MEMBERSHIPS
    edit_capability = Capability.MANAGE_MEMBERSHIPS
    list_display = ["user", "trial", "role", "site_codes", "may_unlock", "is_active", "granted_at"]
    list_filter = ["trial", "role", "is_active"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "trial__protocol_code"]
    list_select_related = ["user", "trial"]
    autocomplete_fields = ["user"]
    inlines = [MembershipSiteInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("site_links__site")

    def has_change_permission(self, request, obj=None) -> bool:
        # Nobody changes their own role or sites: a blinded coordinator cannot unblind themselves.
        if obj is not None and obj.user_id == request.user.pk and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description="Sites")
    def site_codes(self, membership) -> str:
        return ", ".join(link.site.code for link in membership.site_links.all()) or "—"
