"""The periodic audit-trail check: verify the chain and the triggers, and alert when either fails."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail

from audit.checks import TriggerProblem, audit_trigger_problems
from audit.models import SecurityEvent
from audit.security import record_security_event
from audit.verification import ChainVerification, verify_audit_chain

logger = logging.getLogger("exotrial.audit")
ALERT_FINDINGS_LISTED = 20


@dataclass(frozen=True)
class AuditTrailCheck:
    chain: ChainVerification
    trigger_problems: list[TriggerProblem]

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.trigger_problems


def alert_recipients() -> list[str]:
    return list(settings.AUDIT_ALERT_EMAILS) or [address for _, address in settings.ADMINS]


def audit_trail_check_and_alert() -> AuditTrailCheck:
    """Verify the audit trail; on failure record a security event and e-mail the alert recipients."""
    result = AuditTrailCheck(chain=verify_audit_chain(), trigger_problems=audit_trigger_problems())
    if result.ok:
        logger.info("%s", result.chain.summary())
        return result
    first = result.chain.first_finding
    record_security_event(
        SecurityEvent.Kind.AUDIT_VERIFICATION_FAILED,
        user=None,
        findings=result.chain.finding_count,
        first_finding=first.describe() if first else None,
        trigger_problems=[f"{problem.table}: {problem.message}" for problem in result.trigger_problems],
    )
    _send_alert(result)
    return result


def _send_alert(result: AuditTrailCheck) -> None:
    lines = [
        "The daily verification of the ExoTrial audit trail failed. Until explained, treat the audit trail as",
        "possibly altered (21 CFR 11.10(a), (e)). Run `manage.py verify_audit` for the full list.",
        "",
        result.chain.summary(),
        *(f"- {finding.describe()}" for finding in result.chain.findings[:ALERT_FINDINGS_LISTED]),
    ]
    if result.trigger_problems:
        lines += ["", "Audit triggers missing, disabled or altered:"]
        lines += [f"- {problem.table}: {problem.message}" for problem in result.trigger_problems]
    recipients = alert_recipients()
    logger.error("audit trail verification failed: %s", result.chain.summary())
    if not recipients:
        logger.error("no AUDIT_ALERT_EMAILS or ADMINS configured: the audit alert was not e-mailed")
        return
    send_mail(
        subject="ExoTrial: audit trail verification FAILED",
        message="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
        fail_silently=False,
    )
