"""Celery task of the audit trail: thin, takes nothing, returns counts only."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="audit.verify_audit_trail")
def verify_audit_trail_task() -> dict[str, object]:
    from audit.services import audit_trail_check_and_alert

    result = audit_trail_check_and_alert()
    return {
        "ok": result.ok,
        "links": result.chain.links,
        "events": result.chain.events,
        "head_seq": result.chain.head_seq,
        "findings": result.chain.finding_count,
        "trigger_problems": len(result.trigger_problems),
    }
