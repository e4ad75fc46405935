"""Database constraints hold even when forms and services are bypassed."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit.context import INITIAL_ENTRY, audit_context
from trials.models import AnalysisPlan, Arm, Endpoint, ProductLot, Trial

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _initial_entry():
    with audit_context(reason=INITIAL_ENTRY):
        yield


def new_trial(code="TST-C-1") -> Trial:
    return Trial.objects.create(protocol_code=code, title="t", phase="II", target_enrollment=10)


def test_protocol_code_is_unique():
    new_trial()
    with pytest.raises(IntegrityError), transaction.atomic():
        new_trial()


def test_registry_id_is_unique_when_given_but_may_be_blank_for_many():
    Trial.objects.create(protocol_code="TST-R-1", title="t", phase="I", target_enrollment=1, registry_id="")
    Trial.objects.create(protocol_code="TST-R-2", title="t", phase="I", target_enrollment=1, registry_id="")
    Trial.objects.create(protocol_code="TST-R-3", title="t", phase="I", target_enrollment=1, registry_id="NCT1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Trial.objects.create(protocol_code="TST-R-4", title="t", phase="I", target_enrollment=1, registry_id="NCT1")


def test_target_enrollment_must_be_positive():
    with pytest.raises(IntegrityError), transaction.atomic():
        Trial.objects.create(protocol_code="TST-Z-1", title="t", phase="I", target_enrollment=0)


def test_arm_codes_are_unique_per_trial_and_weights_positive():
    trial = new_trial()
    Arm.objects.create(trial=trial, code="A", name="Arm A", role="experimental", route="intravenous")
    with pytest.raises(IntegrityError), transaction.atomic():
        Arm.objects.create(trial=trial, code="A", name="Other", role="experimental", route="intravenous")
    with pytest.raises(IntegrityError), transaction.atomic():
        Arm.objects.create(
            trial=trial, code="B", name="Arm B", role="experimental", route="intravenous", allocation_weight=0
        )


def lot_kwargs(trial, **overrides):
    from trials.models import ExosomeProduct

    product, _ = ExosomeProduct.objects.get_or_create(name="P", source_cell="bm_msc", isolation_method="uc")
    values = {
        "product": product,
        "trial": trial,
        "lot_number": "L1",
        "manufactured_on": dt.date(2025, 1, 1),
        "expires_on": dt.date(2026, 1, 1),
        "particle_concentration_per_ml": 1e10,
        "mean_diameter_nm": 110,
        "modal_diameter_nm": 100,
        "protein_concentration_ug_per_ml": 50,
        "endotoxin_eu_per_ml": 0.1,
    }
    return {**values, **overrides}


@pytest.mark.parametrize(
    "overrides",
    [
        {"expires_on": dt.date(2024, 12, 1)},  # expires before it was made
        {"particle_concentration_per_ml": 0},
        {"mean_diameter_nm": 5},  # not an extracellular vesicle
        {"endotoxin_eu_per_ml": -1},
        {"release_status": "released"},  # released without date and passed sterility/mycoplasma
        {"release_status": "released", "released_on": dt.date(2025, 2, 1), "sterility": "fail", "mycoplasma": "pass"},
    ],
)
def test_lot_constraints(overrides):
    trial = new_trial()
    with pytest.raises(IntegrityError), transaction.atomic():
        ProductLot.objects.create(**lot_kwargs(trial, **overrides))


def test_released_lot_with_passed_tests_is_accepted_and_dosable_only_while_unexpired():
    trial = new_trial()
    lot = ProductLot.objects.create(
        **lot_kwargs(
            trial, release_status="released", released_on=dt.date(2025, 2, 1), sterility="pass", mycoplasma="pass"
        )
    )
    assert lot.dosing_refusal(trial_id=trial.pk, on=dt.date(2025, 6, 1)) is None
    assert "expired on 2026-01-01" in lot.dosing_refusal(trial_id=trial.pk, on=dt.date(2026, 1, 2))
    assert "another trial" in lot.dosing_refusal(trial_id=trial.pk + 1, on=dt.date(2025, 6, 1))
    assert lot.particle_to_protein_ratio == pytest.approx(2e8)


def test_quarantined_lot_is_not_dosable():
    trial = new_trial()
    lot = ProductLot.objects.create(**lot_kwargs(trial))
    assert lot.dosing_refusal(trial_id=trial.pk, on=dt.date(2025, 6, 1)) == "Lot L1 is quarantine, not released."


def test_one_primary_endpoint_per_trial_and_ordered_range():
    trial = new_trial()
    Endpoint.objects.create(
        trial=trial, code="P1", name="p", kind="continuous", role="primary", direction="lower_better"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Endpoint.objects.create(
            trial=trial, code="P2", name="p", kind="continuous", role="primary", direction="lower_better"
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Endpoint.objects.create(
            trial=trial,
            code="S1",
            name="s",
            kind="continuous",
            role="secondary",
            direction="lower_better",
            min_value=10,
            max_value=5,
        )


def test_endpoint_range_messages():
    endpoint = Endpoint(code="WOMACP", kind="continuous", unit="points", min_value=0, max_value=100)
    assert endpoint.range_error(50) is None
    assert endpoint.range_error(101) == "Must be at most 100 points."
    assert Endpoint(kind="binary").range_error(2) == "Must be 0 (no) or 1 (yes)."
    assert Endpoint(kind="count").range_error(1.5) == "Must be a whole number."


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ([0.5, 0.4, 1.0], "strictly increasing"),
        ([0.5, 0.75], "must be 1.0"),
        ([], "At least one look"),
        ([0.0, 1.0], "in (0, 1]"),
        ([i / 11 for i in range(1, 11)] + [1.0], "At most 10"),
    ],
)
def test_analysis_plan_rejects_bad_look_fractions(demo_trial, fractions, message):
    plan = demo_trial.analysis_plan
    plan.look_fractions = fractions
    with pytest.raises(ValidationError, match=re.escape(message)):
        plan.full_clean()


def test_analysis_plan_alpha_is_checked_in_the_database(demo_trial):
    with pytest.raises(IntegrityError), transaction.atomic(), audit_context(reason="test"):
        AnalysisPlan.objects.filter(trial=demo_trial).update(alpha_one_sided=0.6)
