"""Scheduled interim looks: when the primary endpoint's information reaches a planned fraction, the
coordinator and statisticians are told (once per look) that the interim analysis can be run."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.utils import timezone

from analysis.models import AnalysisRun, LookNotification
from audit.context import audit_context
from operations.outbox import outbox_add
from participants.models import OutcomeMeasurement
from trials.models import Role, Trial
from trials.selectors import member_emails

NOTIFIED_ROLES = (Role.COORDINATOR, Role.UNBLINDED_STATISTICIAN, Role.BLINDED_STATISTICIAN)


def information_fraction(trial: Trial) -> float:
    """Participants with the primary endpoint observed at the primary visit, over the planned number."""
    plan = trial.analysis_plan
    observed = OutcomeMeasurement.objects.filter(
        visit__participant__trial=trial,
        endpoint=plan.primary_endpoint,
        visit__visit_definition=plan.primary_visit,
        value__isnull=False,
        visit__visit_date__lte=timezone.localdate(),
    ).count()
    return observed / trial.target_enrollment


def notify_reached_looks() -> int:
    sent = 0
    for trial in Trial.objects.filter(status__in=[Trial.Status.RECRUITING, Trial.Status.ACTIVE_FOLLOW_UP]):
        plan = getattr(trial, "analysis_plan", None)
        if plan is None:
            continue
        fraction = information_fraction(trial)
        done = AnalysisRun.objects.filter(
            trial=trial, kind=AnalysisRun.Kind.INTERIM, status=AnalysisRun.Status.SUCCEEDED
        ).count()
        for look_number, planned in enumerate(plan.look_fractions[:-1], start=1):
            if look_number <= done or fraction < planned:
                continue
            try:
                with transaction.atomic(), audit_context(reason="planned look reached"):
                    LookNotification.objects.create(trial=trial, look_number=look_number, fraction=fraction)
                    # Delivered by the outbox: the record of the look and its e-mail commit together.
                    outbox_add(
                        kind="look_due",
                        key=f"look-due:{trial.pk}:{look_number}",
                        payload={"trial_id": trial.pk, "look_number": look_number, "fraction": round(fraction, 4)},
                    )
            except IntegrityError:
                continue  # already notified
            sent += 1
    return sent


def look_due_email(payload: dict) -> EmailMessage | None:
    """Outbox handler: tell the coordinator and statisticians that planned interim look N can be run."""
    trial = Trial.objects.select_related("analysis_plan").filter(pk=payload["trial_id"]).first()
    if trial is None:
        return None
    look_number = payload["look_number"]
    planned = trial.analysis_plan.look_fractions[look_number - 1]
    recipients = member_emails(trial, NOTIFIED_ROLES)
    if not recipients:
        return None
    return EmailMessage(
        subject=f"[{trial.protocol_code}] Interim look {look_number} is due",
        body=(
            f"The primary endpoint's information fraction is {payload['fraction']:.2f}, reaching planned look "
            f"{look_number} at {planned:.2f}. The unblinded statistician can start the interim analysis in ExoTrial."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
