"""Screening, eligibility and consent: the steps before randomization."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import F

from audit.context import INITIAL_ENTRY, audit_context
from participants.exceptions import ScreeningError
from participants.models import EligibilityAnswer, Participant
from trials.models import Site, Trial
from trials.policies.access import Capability, require
from trials.policies.sites import can_see_site


def participant_screen(
    *, trial: Trial, site: Site, user, screened_on: dt.date, sex: str, birth_year: int
) -> Participant:
    """Register a person at screening; the screening number is the next one at ``site`` (e.g. S01-0042)."""
    require(user, trial, Capability.ENROLL)
    if site.trial_id != trial.pk or not can_see_site(user, trial, site.pk):
        raise ScreeningError("You cannot screen participants at this site.", field="site")
    age = screened_on.year - birth_year
    if not 18 <= age <= 120:
        raise ScreeningError(f"Age at screening would be {age}; check the birth year.", field="birth_year")
    with transaction.atomic(), audit_context(reason=INITIAL_ENTRY, user=user):
        # Lock the site row so two nurses screening at once get consecutive, distinct numbers.
        Site.objects.select_for_update().get(pk=site.pk)
        count = Participant.objects.filter(trial=trial, site=site).count()
        return Participant.objects.create(
            trial=trial,
            site=site,
            screening_number=f"{site.code}-{count + 1:04d}",
            screened_on=screened_on,
            sex=sex,
            birth_year=birth_year,
            age_at_screening=age,
        )


def participant_record_eligibility(
    *,
    participant: Participant,
    user,
    answers: dict[int, bool],
    consent_date: dt.date | None,
    consent_version: str,
    strata: dict[str, str],
) -> Participant:
    """Record the eligibility checklist, consent and strata; the participant becomes eligible or a screen failure.

    ``answers`` maps criterion id → the yes/no answer to the criterion as worded. Every criterion must be
    answered. The first criterion not met is recorded as the screen-failure reason (it feeds CONSORT).
    """
    trial = participant.trial
    require(user, trial, Capability.ENROLL)
    if not can_see_site(user, trial, participant.site_id):
        raise ScreeningError("This participant is not at one of your sites.")
    if participant.status != Participant.Status.SCREENING:
        raise ScreeningError(f"Eligibility of {participant} was already assessed ({participant.get_status_display()}).")
    criteria = list(trial.eligibility_criteria.order_by("kind", "order"))
    unanswered = [c.code for c in criteria if c.pk not in answers]
    if unanswered:
        raise ScreeningError(f"Answer every eligibility criterion (missing: {', '.join(unanswered)}).", field="answers")
    failed = next((c for c in criteria if not c.is_met_by(answers[c.pk])), None)
    if failed is None and consent_date is None:
        raise ScreeningError("Record the date of informed consent before confirming eligibility.", field="consent_date")
    if consent_date is not None and consent_date < participant.screened_on - dt.timedelta(days=60):
        raise ScreeningError("Consent is dated more than 60 days before screening.", field="consent_date")
    factor_levels = {f.code: f.levels for f in trial.stratification_factors.all()}
    for code, levels in factor_levels.items():
        if failed is None and strata.get(code) not in levels:
            raise ScreeningError(f"Choose {code}: one of {', '.join(levels)}.", field=f"strata.{code}")
    with transaction.atomic(), audit_context(reason="eligibility assessed", user=user):
        EligibilityAnswer.objects.bulk_create(
            [EligibilityAnswer(participant=participant, criterion=c, answer=answers[c.pk]) for c in criteria]
        )
        changes = {
            "consent_date": consent_date,
            "consent_version": consent_version,
            "strata": strata,
            "version": F("version") + 1,
        }
        if failed is None:
            changes["status"] = Participant.Status.ELIGIBLE
        else:
            changes.update(
                status=Participant.Status.SCREEN_FAILED,
                screen_failure_criterion=failed,
                screen_failure_reason=f"{failed.code}: {failed.text}",
            )
        Participant.objects.filter(pk=participant.pk).update(**changes)
    participant.refresh_from_db()
    return participant
