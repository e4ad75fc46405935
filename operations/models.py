"""What background work did and still owes, kept in PostgreSQL (the broker is not a source of truth).

- ``TaskExecution``: one row per (task, business key). Counts attempts across redeliveries, so a message
  that keeps killing its worker is dead-lettered instead of looping, and a finished key is never redone.
- ``OutboxMessage``: safety-relevant notifications written in the same transaction as the data that
  calls for them; a beat job delivers them once the broker and workers are reachable (transactional outbox).
- ``OperationalAlert``: something an operator must look at (a dead-lettered task, an undeliverable message).

Rows carry ids and task names only — never participant data or treatment allocation.
"""

from __future__ import annotations

from django.db import models


class TaskExecution(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DEAD_LETTER = "dead_letter", "Dead-lettered"

    task_name = models.CharField(max_length=200)
    key = models.CharField(max_length=200, help_text="The business key: the same key means the same effect.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    attempts = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=255, blank=True, help_text="Celery id of the latest attempt.")
    worker = models.CharField(max_length=255, blank=True, help_text="host and pid of the latest attempt.")
    first_started_at = models.DateTimeField()
    last_started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True, help_text="What the succeeded attempt returned (ids only).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task_name", "key"], name="one_execution_per_task_and_key")]
        indexes = [models.Index(fields=["status", "last_started_at"], name="taskexecution_status_started")]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.key}] {self.status} after {self.attempts} attempt(s)"


class OutboxMessage(models.Model):
    kind = models.CharField(max_length=40)
    key = models.CharField(max_length=200, unique=True, help_text="One message per key, however often it is asked.")
    payload = models.JSONField(default=dict, help_text="Ids only; the message is composed when it is delivered.")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    given_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=models.Q(delivered_at__isnull=True, given_up_at__isnull=True),
                name="outbox_pending",
            )
        ]

    def __str__(self) -> str:
        state = "delivered" if self.delivered_at else "given up" if self.given_up_at else "pending"
        return f"{self.kind} {self.key} ({state})"


class OperationalAlert(models.Model):
    class Kind(models.TextChoices):
        DEAD_LETTER = "dead_letter", "Task dead-lettered"
        UNDELIVERABLE = "undeliverable", "Notification could not be delivered"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    subject = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.subject
