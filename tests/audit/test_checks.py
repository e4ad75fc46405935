"""System check audit.E001 (R5) and the daily verification job with its alert (R4)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from audit.checks import audited_models, check_audit_triggers
from audit.context import INITIAL_ENTRY, audit_context
from audit.models import AuditChainLink, SecurityEvent
from audit.tasks import verify_audit_trail_task
from participants.models import Participant
from trials.models import Trial

pytestmark = pytest.mark.django_db


def execute(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def pgid(model, name: str) -> str:
    import pgtrigger

    (trigger,) = [t for m, t in pgtrigger.registered() if m is model and t.name == name]
    return trigger.get_pgid(model)


def audit_errors() -> list:
    return check_audit_triggers(databases=["default"])


@pytest.mark.req("R5")
def test_every_audited_model_is_known_and_the_migrated_database_passes():
    tracked = {model for model, _ in audited_models()}
    assert {Trial, Participant} <= tracked
    assert len(tracked) >= 30
    assert audit_errors() == []


@pytest.mark.req("R5")
def test_a_dropped_history_trigger_is_reported_by_table_through_manage_py_check():
    execute(f"DROP TRIGGER {pgid(Participant, 'update_update')} ON participants_participant")
    with pytest.raises(SystemCheckError, match=r"audit\.E001.*participants_participant.*'update_update'"):
        call_command("check", "--deploy", "--database", "default")


@pytest.mark.req("R5")
@pytest.mark.parametrize(
    ("model", "trigger"),
    [
        (Trial, "require_reason_update"),
        (Trial.pgh_event_model, "audit_chain"),
        (Trial.pgh_event_model, "append_only"),
        (Trial.pgh_event_model, "protect_truncate"),
        (SecurityEvent, "audit_chain"),
        (AuditChainLink, "protect_truncate"),
    ],
    ids=lambda value: value if isinstance(value, str) else value._meta.db_table,
)
def test_a_disabled_audit_trigger_is_reported(model, trigger):
    table = model._meta.db_table
    execute(f"ALTER TABLE {table} DISABLE TRIGGER {pgid(model, trigger)}")
    errors = audit_errors()
    assert [(error.id, error.obj) for error in errors] == [("audit.E001", table)]
    assert f"{trigger!r} is disabled" in errors[0].msg


@pytest.mark.req("R5")
def test_a_replaced_chain_function_is_reported():
    execute(
        "CREATE OR REPLACE FUNCTION audit_append_chain_link() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NULL; END; $$"
    )
    assert [error.obj for error in audit_errors()] == ["audit_append_chain_link"]


@pytest.mark.req("R4")
def test_the_daily_job_is_scheduled():
    entry = settings.CELERY_BEAT_SCHEDULE["verify-audit-trail"]
    assert entry["task"] == verify_audit_trail_task.name == "audit.verify_audit_trail"


@pytest.mark.req("R4")
def test_the_daily_job_returns_counts_and_sends_nothing_when_the_trail_verifies():
    result = verify_audit_trail_task.run()
    assert result["ok"] is True
    assert result["findings"] == 0
    assert set(result) == {"ok", "links", "events", "head_seq", "findings", "trigger_problems"}
    assert mail.outbox == []


@pytest.mark.req("R4", "R8")
def test_the_daily_job_alerts_and_records_a_security_event_when_an_event_was_altered():
    with audit_context(reason=INITIAL_ENTRY):
        trial = Trial.objects.create(protocol_code="CHK-1", title="Check", phase="II", target_enrollment=1)
    target = Trial.pgh_event_model.objects.get(pgh_obj_id=trial.pk).pgh_id
    execute("ALTER TABLE trials_trialevent DISABLE TRIGGER ALL")
    execute("UPDATE trials_trialevent SET title = title || ' (forged)' WHERE pgh_id = %s", [target])
    execute("ALTER TABLE trials_trialevent ENABLE TRIGGER ALL")

    result = verify_audit_trail_task.run()

    assert (result["ok"], result["findings"]) == (False, 1)
    (alert,) = mail.outbox
    assert alert.to == [address for _, address in settings.ADMINS]
    assert f"event id {target}" in alert.body
    assert "FAILED" in alert.subject
    recorded = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.AUDIT_VERIFICATION_FAILED).get()
    assert recorded.details["findings"] == 1
    assert "trials_trialevent" in recorded.details["first_finding"]
