"""Admin classes that ask the policy module which trials, sites and fields a user may see."""

from __future__ import annotations

from functools import reduce

from audit.admin import AuditedAdmin, ReadOnlyAuditedAdmin
from trials.policies.access import Capability, can, trials_with
from trials.policies.blinding import ALLOCATION_FIELDS, hidden_fields
from trials.policies.sites import scope


def trial_of(obj, trial_path: str):
    """Follow ``trial_path`` (e.g. ``"participant__trial"``) from ``obj`` to its Trial."""
    if not trial_path:
        return obj
    return reduce(getattr, trial_path.split("__"), obj)


class TrialScopedAdmin(AuditedAdmin):
    """Rows limited to the trials (and sites) where the user's role holds ``scope_capability``.

    Installation superusers see trial set-up (they create trials and the first coordinator) but, having
    no trial role, no clinical data: ``superuser_sees_all`` is False for clinical models.
    """

    trial_path = "trial"
    site_path: str | None = None
    scope_capability = Capability.VIEW_TRIAL  # who may read these rows (Django permissions decide the admin)
    edit_capability = Capability.MANAGE_TRIAL  # who may change them, per trial
    superuser_sees_all = True

    def has_change_permission(self, request, obj=None) -> bool:
        allowed = super().has_change_permission(request, obj)
        if not allowed or obj is None or (request.user.is_superuser and self.superuser_sees_all):
            return allowed
        # Django permissions are global; a coordinator of one trial may only read another trial.
        return can(request.user, trial_of(obj, self.trial_path), self.edit_capability)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "trial" and not request.user.is_superuser:
            kwargs["queryset"] = trials_with(request.user, self.edit_capability)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser and self.superuser_sees_all:
            return queryset
        return scope(
            queryset,
            request.user,
            trial_path=self.trial_path,
            site_path=self.site_path,
            capability=self.scope_capability,
        )

    def blinded_fields(self, request, obj) -> frozenset[str]:
        if self.model._meta.label_lower not in ALLOCATION_FIELDS:
            return frozenset()
        trial = trial_of(obj, self.trial_path) if obj is not None else None
        return hidden_fields(request.user, trial, self.model._meta.label_lower)

    def history_hidden_fields(self, request, obj) -> frozenset[str]:
        return self.blinded_fields(request, obj)

    def get_fields(self, request, obj=None):
        hidden = self.blinded_fields(request, obj)
        return [field for field in super().get_fields(request, obj) if field not in hidden]


class ClinicalDataAdmin(TrialScopedAdmin, ReadOnlyAuditedAdmin):
    """Clinical data are entered by site staff in the web app; in the admin they are read-only and scoped."""

    trial_path = "participant__trial"
    site_path = "participant__site"
    scope_capability = Capability.VIEW_PARTICIPANTS
    superuser_sees_all = False
