"""A small recruiting trial built through the services, for randomization and enrolment tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model

from audit.context import INITIAL_ENTRY, audit_context
from participants.services.enrollment import participant_record_eligibility, participant_screen
from participants.services.randomization import allocation_list_generate
from trials.models import (
    AnalysisPlan,
    Arm,
    EligibilityCriterion,
    Endpoint,
    MembershipSite,
    Role,
    Site,
    StratificationFactor,
    Trial,
    TrialMembership,
    VisitDefinition,
)


@dataclass
class SmallTrial:
    trial: Trial
    sites: dict[str, Site]
    users: dict[str, object]
    factor: StratificationFactor

    def screen_eligible(self, site_code: str = "A1", level: str = "low", n: int = 1):
        """Screen ``n`` participants at ``site_code`` and record them eligible in stratum ``level``."""
        nurse = self.users[f"nurse-{site_code}"]
        answers = {c.pk: c.kind == "inclusion" for c in self.trial.eligibility_criteria.all()}
        participants = []
        for _ in range(n):
            participant = participant_screen(
                trial=self.trial,
                site=self.sites[site_code],
                user=nurse,
                screened_on=dt.date(2026, 1, 5),
                sex="F",
                birth_year=1960,
            )
            participants.append(
                participant_record_eligibility(
                    participant=participant,
                    user=nurse,
                    answers=answers,
                    consent_date=dt.date(2026, 1, 5),
                    consent_version="1.0",
                    strata={"severity": level},
                )
            )
        return participants


def build_small_trial(
    *, scheme: str = "permuted_blocks", slots_target: int = 40, code: str = "TST-RND-1", generate_list: bool = True
):
    users = {}
    user_model = get_user_model()
    with audit_context(reason=INITIAL_ENTRY):
        trial = Trial.objects.create(
            protocol_code=code,
            title="Randomization test",
            phase="II",
            status=Trial.Status.RECRUITING,
            blinding="double",
            target_enrollment=slots_target,
        )
        sites = {c: Site.objects.create(trial=trial, code=c, name=f"Site {c}", country="GB") for c in ("A1", "B2")}
        Arm.objects.create(trial=trial, code="CTRL", name="Control", role="placebo_comparator", route="intravenous")
        Arm.objects.create(
            trial=trial, code="EXO", name="Exosome 5e9", role="experimental", route="intravenous", dose_particles=5e9
        )
        baseline = VisitDefinition.objects.create(
            trial=trial, code="BL", name="Baseline", order=1, target_day=0, is_baseline=True
        )
        endpoint = Endpoint.objects.create(
            trial=trial, code="SCORE", name="Score", kind="continuous", role="primary", direction="lower_better"
        )
        EligibilityCriterion.objects.create(trial=trial, code="IN01", kind="inclusion", text="Adult", order=1)
        EligibilityCriterion.objects.create(trial=trial, code="EX01", kind="exclusion", text="Pregnant", order=1)
        factor = StratificationFactor.objects.create(
            trial=trial, code="severity", name="Severity", levels=["low", "high"]
        )
        plan = AnalysisPlan.objects.create(
            trial=trial,
            primary_endpoint=endpoint,
            primary_visit=baseline,
            look_fractions=[1.0],
            randomization_scheme=scheme,
            block_size_multiples=[1, 2],
            randomization_seed=1234,
            minimization_probability=0.8,
        )
        plan.stratification_factors.set([factor])
        roles = {
            "stat": Role.UNBLINDED_STATISTICIAN,
            "coord": Role.COORDINATOR,
            "monitor": Role.MONITOR,
            "nurse-A1": Role.SITE_STAFF,
            "nurse-B2": Role.SITE_STAFF,
            "blind-stat": Role.BLINDED_STATISTICIAN,
        }
        for name, role in roles.items():
            user = user_model.objects.create_user(f"{code}-{name}", email=f"{name}@example.org", password="x-pass-1234")
            membership = TrialMembership.objects.create(user=user, trial=trial, role=role)
            if name.startswith("nurse-") or name == "monitor":
                MembershipSite.objects.create(membership=membership, site=sites[name[-2:] if "-" in name else "A1"])
            users[name] = user
    if generate_list:
        allocation_list_generate(trial=trial, user=users["stat"])
    return SmallTrial(trial=trial, sites=sites, users=users, factor=factor)


@pytest.fixture
def small_trial(db):
    return build_small_trial()


@pytest.fixture
def small_trial_factory(db):
    return build_small_trial
