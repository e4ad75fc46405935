"""The audit chain and the security event log: both append-only at the database level."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now

from audit.chain import CHAIN_TABLE, append_only_protection, chained_event_table_triggers


class AuditChainLink(models.Model):
    """One link of the hash chain: the events one INSERT statement wrote into one audit table.

    Written only by the database trigger function ``audit_append_chain_link`` (see ``audit.chain``).
    """

    seq = models.BigIntegerField(primary_key=True)
    table_name = models.TextField()
    event_ids = ArrayField(models.BigIntegerField())
    event_columns = ArrayField(models.TextField())
    row_digests = models.BinaryField()
    prev_hash = models.BinaryField()
    hash = models.BinaryField()
    recorded_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = CHAIN_TABLE
        ordering = ["seq"]
        triggers = append_only_protection()

    def __str__(self) -> str:
        return f"link {self.seq} ({self.table_name}, {len(self.event_ids)} events)"


class SecurityEvent(models.Model):
    """A security-relevant action (login, role change, export, …): who, from where, when (database clock).

    The actor is stored by id and username, not as a foreign key, so that the record outlives the account.
    Record events through ``audit.security.record_security_event``.
    """

    class Kind(models.TextChoices):
        LOGIN = "login", "Login"
        LOGIN_FAILED = "login_failed", "Login failed"
        LOGOUT = "logout", "Logout"
        LOCKOUT = "lockout", "Account locked out"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        ACCOUNT_CREATED = "account_created", "Account created"
        ACCOUNT_ACTIVATED = "account_activated", "Account activated"
        ACCOUNT_DEACTIVATED = "account_deactivated", "Account deactivated"
        ROLE_CHANGED = "role_changed", "Trial role granted or changed"
        ROLE_REVOKED = "role_revoked", "Trial role removed"
        SITE_GRANTED = "site_granted", "Site access granted"
        SITE_REVOKED = "site_revoked", "Site access removed"
        EXPORT = "export", "Data export"
        ARTIFACT_DOWNLOAD = "artifact_download", "Report or dataset download"
        AUDIT_VERIFICATION_FAILED = "audit_verification_failed", "Audit trail verification failed"

    kind = models.CharField(max_length=40, choices=Kind.choices)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_username = models.CharField(max_length=150, blank=True)
    occurred_at = models.DateTimeField(db_default=Now())
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["kind", "occurred_at"]), models.Index(fields=["actor_id", "occurred_at"])]
        triggers = chained_event_table_triggers()

    def __str__(self) -> str:
        return f"{self.get_kind_display()} by {self.actor_username or 'anonymous'} at {self.occurred_at:%Y-%m-%d %H:%M}"
