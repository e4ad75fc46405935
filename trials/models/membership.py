from __future__ import annotations

from django.conf import settings
from django.db import models

from audit.tracking import audited, require_reason_triggers


class Role(models.TextChoices):
    COORDINATOR = "coordinator", "Trial coordinator"
    SITE_STAFF = "site_staff", "Site staff (investigator, research nurse)"
    MONITOR = "monitor", "Monitor"
    DATA_MANAGER = "data_manager", "Data manager"
    BLINDED_STATISTICIAN = "blinded_statistician", "Blinded statistician"
    UNBLINDED_STATISTICIAN = "unblinded_statistician", "Unblinded statistician"
    DSMB_MEMBER = "dsmb_member", "DSMB member"
    SPONSOR_VIEWER = "sponsor_viewer", "Sponsor viewer"


@audited()
class TrialMembership(models.Model):
    """A user's role in one trial and the sites it covers (a user has at most one role per trial)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trial_memberships")
    trial = models.ForeignKey("trials.Trial", on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=24, choices=Role.choices)
    sites = models.ManyToManyField("trials.Site", through="trials.MembershipSite", blank=True, related_name="+")
    is_active = models.BooleanField(default=True)
    # Unlocking re-opens signed data and negates its signatures, so it is a grant of its own (R12), not part of
    # the data manager's lock rights: a coordinator gives it to named data managers, with a reason, in the admin.
    may_unlock = models.BooleanField(
        "may unlock",
        default=False,
        help_text="Data managers only: may unlock a locked casebook or the locked trial (invalidates signatures).",
    )
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["trial", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "trial"], name="one_membership_per_user_and_trial"),
            models.CheckConstraint(
                condition=models.Q(may_unlock=False) | models.Q(role="data_manager"),
                name="only_data_managers_may_unlock",
                violation_error_message="Only a data manager may be given the right to unlock.",
            ),
        ]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} in {self.trial}"


@audited()
class MembershipSite(models.Model):
    """Which sites a membership covers; audited on its own so that site grants and removals are traced."""

    membership = models.ForeignKey(TrialMembership, on_delete=models.CASCADE, related_name="site_links")
    site = models.ForeignKey("trials.Site", on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["membership", "site"], name="membership_site_once")]
        triggers = require_reason_triggers()

    def __str__(self) -> str:
        return f"{self.membership.user} at {self.site.code}"
