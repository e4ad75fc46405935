"""seed_demo: counts, the known effect, reproducibility and idempotency."""

from __future__ import annotations

import hashlib
import io
from collections import Counter

import pytest
from django.core.management import call_command
from django.db import transaction

from participants.models import AdverseEvent, DoseAdministration, OutcomeMeasurement, Participant, Randomization
from trials import demo
from trials.models import Trial

pytestmark = pytest.mark.django_db


def test_demo_trial_has_its_design(demo_trial):
    assert demo_trial.sites.count() == 4
    assert sorted(demo_trial.arms.values_list("code", flat=True)) == ["HIGH", "LOW", "PBO"]
    assert demo_trial.visit_definitions.count() == 5
    assert demo_trial.lots.count() == 3
    assert demo_trial.lots.filter(release_status="released").count() == 2
    assert all(lot.markers.count() == 9 for lot in demo_trial.lots.all())
    plan = demo_trial.analysis_plan
    assert (plan.primary_endpoint.code, plan.primary_visit.code) == ("WOMACP", "W12")
    assert plan.look_fractions == [0.5, 0.75, 1.0]
    assert (plan.spending_function, plan.alpha_one_sided) == ("obf", 0.025)


def test_demo_trial_has_240_randomized_with_balanced_stratified_blocks(demo_trial):
    randomizations = Randomization.objects.filter(trial=demo_trial)
    assert randomizations.count() == demo.TARGET_RANDOMIZED
    per_arm = Counter(randomizations.values_list("arm__code", flat=True))
    assert set(per_arm) == {"PBO", "LOW", "HIGH"}
    # Blocks of 3 and 6 per stratum (8 strata): each arm is within 8 × 4 of an exact third.
    assert max(per_arm.values()) - min(per_arm.values()) <= 32
    for stratum in randomizations.values_list("stratum", flat=True).distinct():
        counts = Counter(randomizations.filter(stratum=stratum).values_list("arm__code", flat=True))
        # Within a stratum, permuted blocks of at most 6 keep arms within 4 of each other.
        assert max(counts.values()) - min(counts.get(code, 0) for code in ("PBO", "LOW", "HIGH")) <= 4
    screened = Participant.objects.filter(trial=demo_trial)
    waiting = screened.filter(status="eligible").count()
    assert waiting == 4  # consented and eligible, for the site app's randomize flow
    assert screened.filter(status="screen_failed").count() == screened.count() - 240 - waiting
    assert not screened.filter(status="screen_failed", screen_failure_criterion__isnull=True).exists()


def test_demo_data_are_clinically_plausible(demo_trial):
    participants = Participant.objects.filter(trial=demo_trial, randomization__isnull=False)
    assert participants.filter(status__in=["withdrawn", "lost_to_follow_up"]).exists()
    assert participants.filter(status="completed").count() > 180
    events = AdverseEvent.objects.filter(participant__trial=demo_trial)
    assert events.filter(serious=True).exists()
    assert events.filter(grade=5, outcome="fatal").count() == 1
    assert events.filter(causality__in=AdverseEvent.RELATED).exists()
    doses = DoseAdministration.objects.filter(participant__trial=demo_trial)
    assert doses.count() == 240
    for dose in doses.filter(lot__isnull=False).select_related("lot"):
        assert dose.lot.dosing_refusal(trial_id=demo_trial.pk, on=dose.administered_at.date()) is None
    missing = OutcomeMeasurement.objects.filter(visit__participant__trial=demo_trial, value__isnull=True)
    assert missing.exists()
    assert not missing.filter(not_done_reason="").exists()


def test_demo_week12_change_reflects_the_true_effect(demo_trial):
    import pandas as pd

    rows = OutcomeMeasurement.objects.filter(
        visit__participant__trial=demo_trial, endpoint__code="WOMACP", value__isnull=False
    ).values_list(
        "visit__participant_id",
        "visit__visit_definition__code",
        "value",
        "visit__participant__randomization__arm__code",
    )
    frame = pd.DataFrame(list(rows), columns=["participant", "visit", "value", "arm"])
    wide = frame.pivot_table(index=["participant", "arm"], columns="visit", values="value").reset_index()
    change = (wide["W12"] - wide["BL"]).groupby(wide["arm"]).agg(["mean", "count", "std"])
    for arm, truth in demo.TRUE_WEEK12_CHANGE.items():
        standard_error = change.loc[arm, "std"] / change.loc[arm, "count"] ** 0.5
        # Clipping at 0–100 biases little; 4 standard errors is a generous but failing-capable bound.
        assert abs(change.loc[arm, "mean"] - truth) < 4 * standard_error


def fingerprint(trial: Trial) -> str:
    digest = hashlib.sha256()
    for row in (
        Participant.objects.filter(trial=trial)
        .order_by("screening_number")
        .values_list(
            "screening_number",
            "status",
            "sex",
            "birth_year",
            "strata",
            "screened_on",
            "withdrawn_on",
            "randomization__arm__code",
            "randomization__randomization_number",
        )
    ):
        digest.update(repr(row).encode())
    for row in (
        OutcomeMeasurement.objects.filter(visit__participant__trial=trial)
        .order_by("visit__participant__screening_number", "visit__visit_definition__order", "endpoint__code")
        .values_list("visit__participant__screening_number", "endpoint__code", "value", "measured_on")
    ):
        digest.update(repr(row).encode())
    for row in (
        AdverseEvent.objects.filter(participant__trial=trial)
        .order_by("participant__screening_number", "onset_date", "term")
        .values_list("participant__screening_number", "term", "grade", "serious", "causality", "onset_date")
    ):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def seeded_fingerprint(seed: int) -> str:
    """Seed a fresh copy of the demo trial inside a savepoint that is rolled back afterwards."""
    with transaction.atomic():
        savepoint = transaction.savepoint()
        value = fingerprint(_seed_beside_existing(seed))
        transaction.savepoint_rollback(savepoint)
    return value


def _seed_beside_existing(seed: int) -> Trial:
    from audit.context import audit_context

    with audit_context(reason="test: move the session demo trial aside"):
        Trial.objects.filter(protocol_code=demo.PROTOCOL_CODE).update(protocol_code="EXO-OA-201-KEEP", registry_id="")
    return demo.seed_demo(seed=seed, password="x-pass-123456").trial


def test_same_seed_gives_the_same_data_and_another_seed_differs(demo_trial):
    first = seeded_fingerprint(7)
    second = seeded_fingerprint(7)
    other = seeded_fingerprint(8)
    assert first == second
    assert first != other


def test_seed_demo_is_idempotent(demo_trial):
    before = (Participant.objects.count(), OutcomeMeasurement.objects.count(), AdverseEvent.objects.count())
    output = io.StringIO()
    call_command("seed_demo", "--password", "another-pass-99", stdout=output)
    after = (Participant.objects.count(), OutcomeMeasurement.objects.count(), AdverseEvent.objects.count())
    assert before == after
    assert "already exists" in output.getvalue()
    assert "demo-coordinator" in output.getvalue()


def test_seed_demo_creates_one_login_per_role_with_the_given_password(demo_trial, client, demo_password):
    from trials.models import Role, TrialMembership

    roles = set(
        TrialMembership.objects.filter(trial=demo_trial, user__username__startswith="demo-").values_list(
            "role", flat=True
        )
    )
    assert roles == set(Role.values)
    site_user = TrialMembership.objects.get(trial=demo_trial, user__username="demo-site")
    assert list(site_user.site_links.values_list("site__code", flat=True)) == ["S01"]
    # through the login page: django-axes checks every authentication against the request's address
    logged_in = client.post("/accounts/login/", {"username": "demo-coordinator", "password": demo_password})
    assert logged_in.status_code == 302
