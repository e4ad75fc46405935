"""The demo trial EXO-OA-201: set-up and synthetic clinical data with a known true effect.

Phase II, randomized, double-blind, placebo-controlled trial of intra-articular umbilical-cord MSC
exosomes in knee osteoarthritis; arms 1:1:1 placebo / 1×10⁹ / 1×10¹⁰ particles; 4 sites; stratified
permuted blocks (sizes 3 and 6) by site and baseline WOMAC pain (≤60 / >60); 240 randomized.

The truth the analyses must recover (``TRUE_EFFECT``): mean change from baseline in WOMAC pain at
week 12 is −10 points on placebo, −15 on low dose and −22 on high dose, i.e. treatment effects of
−5 (low) and −12 (high) points versus placebo. Participants whose baseline serum exosomal miR-140-3p
is above 1.0 (the population median) get 1.4× the arm effect, the others 0.6× — a true
treatment-by-biomarker interaction whose average is the effect above. Time to rescue medication is
exponential with a placebo median of 150 days and hazard ratios 0.75 (low) and 0.55 (high).

Everything is drawn from one ``numpy`` generator seeded by ``seed`` in a fixed order, with fixed
calendar dates (enrolment March 2025 – March 2026), so the same seed gives the same data on any day.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

from audit.context import INITIAL_ENTRY, audit_context
from participants.models import (
    AdverseEvent,
    AllocationList,
    DoseAdministration,
    EligibilityAnswer,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Randomization,
    UnblindingEvent,
    Visit,
)
from participants.services.randomization import allocation_list_generate
from trials.models import (
    AnalysisPlan,
    Arm,
    EligibilityCriterion,
    Endpoint,
    ExosomeProduct,
    LotMarkerResult,
    MembershipSite,
    ProductLot,
    Role,
    Site,
    StratificationFactor,
    Trial,
    TrialMembership,
    VisitDefinition,
)

PROTOCOL_CODE = "EXO-OA-201"
TARGET_RANDOMIZED = 240
DEFAULT_SEED = 20251
ENROLMENT_START = dt.date(2025, 3, 3)
ENROLMENT_END = dt.date(2026, 3, 31)

# Mean change from baseline in WOMAC pain at week 12, by arm code (the known truth).
TRUE_WEEK12_CHANGE = {"PBO": -10.0, "LOW": -15.0, "HIGH": -22.0}
TRUE_EFFECT = {code: change - TRUE_WEEK12_CHANGE["PBO"] for code, change in TRUE_WEEK12_CHANGE.items()}
# Share of the week-12 change reached at each post-baseline visit (the effect wanes by week 26).
CHANGE_PROFILE = {"W4": 0.5, "W12": 1.0, "W26": 0.8}
BIOMARKER_HIGH_THRESHOLD = 1.0
BIOMARKER_EFFECT_MULTIPLIER = {True: 1.4, False: 0.6}
RESCUE_PLACEBO_MEDIAN_DAYS = 150.0
RESCUE_HAZARD_RATIO = {"PBO": 1.0, "LOW": 0.75, "HIGH": 0.55}

DEMO_ROLES = [
    ("demo-coordinator", Role.COORDINATOR, "Cora", "Ordinator"),
    ("demo-site", Role.SITE_STAFF, "Sam", "Siteworth"),
    ("demo-monitor", Role.MONITOR, "Mona", "Itor"),
    ("demo-datamanager", Role.DATA_MANAGER, "Dana", "Manager"),
    ("demo-blinded-stat", Role.BLINDED_STATISTICIAN, "Blake", "Statson"),
    ("demo-unblinded-stat", Role.UNBLINDED_STATISTICIAN, "Uma", "Statson"),
    ("demo-dsmb", Role.DSMB_MEMBER, "Dee", "Smbee"),
    ("demo-sponsor", Role.SPONSOR_VIEWER, "Spencer", "Sponsor"),
]

SITES = [
    ("S01", "Leeds Teaching Hospitals", "GB", "Dr A. Patel", 75),
    ("S02", "Universitätsklinikum Heidelberg", "DE", "Prof. K. Weber", 60),
    ("S03", "Hospital Clínic de Barcelona", "ES", "Dra. L. García", 60),
    ("S04", "UMC Utrecht", "NL", "Dr J. de Vries", 45),
]
SITE_SHARE = [0.3, 0.25, 0.25, 0.2]

VISITS = [
    # code, name, order, target day, window before, window after, baseline, dosing
    ("SCR", "Screening", 1, -14, 14, 13, False, False),
    ("BL", "Baseline (day 0)", 2, 0, 0, 0, True, True),
    ("W4", "Week 4", 3, 28, 7, 7, False, False),
    ("W12", "Week 12", 4, 84, 7, 14, False, False),
    ("W26", "Week 26", 5, 182, 14, 14, False, False),
]

CRITERIA = [
    ("IN01", "inclusion", "Age 40 to 80 years at screening", 1),
    ("IN02", "inclusion", "Radiographic knee OA, Kellgren–Lawrence grade 2 or 3", 2),
    ("IN03", "inclusion", "WOMAC pain ≥ 40 (0–100) in the index knee at screening", 3),
    ("IN04", "inclusion", "Written informed consent given", 4),
    ("EX01", "exclusion", "Intra-articular corticosteroid or hyaluronic acid in the last 3 months", 1),
    ("EX02", "exclusion", "Inflammatory arthritis (rheumatoid, psoriatic, gout)", 2),
    ("EX03", "exclusion", "Pregnant or breastfeeding", 3),
    ("EX04", "exclusion", "Active infection or skin lesion at the injection site", 4),
]
SCREEN_FAILURE_CRITERIA = ["IN03", "IN02", "EX01", "EX02", "EX04"]
SCREEN_FAILURE_REASONS = {
    "IN03": "WOMAC pain below 40 at screening",
    "IN02": "Kellgren–Lawrence grade 4 on X-ray",
    "EX01": "Corticosteroid injection 6 weeks ago",
    "EX02": "Rheumatoid arthritis on history",
    "EX04": "Cellulitis over the index knee",
}

# term, SOC code, weight, causality weights for (not_related, unlikely, possible, probable, definite)
AE_TERMS = [
    ("Injection site pain", "10018065", 5, (0.05, 0.1, 0.35, 0.4, 0.1)),
    ("Joint swelling", "10028395", 4, (0.1, 0.2, 0.4, 0.25, 0.05)),
    ("Arthralgia", "10028395", 4, (0.2, 0.3, 0.35, 0.15, 0.0)),
    ("Joint effusion", "10028395", 2, (0.1, 0.2, 0.4, 0.3, 0.0)),
    ("Headache", "10029205", 3, (0.5, 0.35, 0.15, 0.0, 0.0)),
    ("Nasopharyngitis", "10021881", 3, (0.8, 0.2, 0.0, 0.0, 0.0)),
    ("Nausea", "10017947", 2, (0.5, 0.3, 0.2, 0.0, 0.0)),
    ("Fatigue", "10018065", 2, (0.5, 0.3, 0.2, 0.0, 0.0)),
    ("Back pain", "10028395", 2, (0.8, 0.2, 0.0, 0.0, 0.0)),
    ("Hypertension", "10047065", 1, (0.8, 0.2, 0.0, 0.0, 0.0)),
    ("Rash", "10040785", 1, (0.3, 0.3, 0.4, 0.0, 0.0)),
    ("Fall", "10022117", 1, (1.0, 0.0, 0.0, 0.0, 0.0)),
]
AE_RATE = {"PBO": 0.7, "LOW": 0.9, "HIGH": 1.1}
# term, SOC, grade, seriousness criterion, causality if on an active arm, expected
SAE_TERMS = [
    ("Septic arthritis", "10021881", 3, "hospitalization", "probable", False),
    ("Pneumonia", "10021881", 3, "hospitalization", "not_related", False),
    ("Femoral neck fracture", "10022117", 3, "hospitalization", "not_related", False),
    ("Atrial fibrillation", "10007541", 3, "important_medical_event", "unlikely", False),
]
CAUSALITY = ["not_related", "unlikely", "possible", "probable", "definite"]


@dataclass
class SeedResult:
    trial: Trial
    created: bool
    counts: dict[str, int] = field(default_factory=dict)
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # username, role, password


def seed_demo(*, seed: int = DEFAULT_SEED, password: str | None = None) -> SeedResult:
    """Create EXO-OA-201 with its data once; later calls only (re)set the demo logins' passwords."""
    with transaction.atomic(), audit_context(reason=INITIAL_ENTRY, username="seed_demo"):
        trial = Trial.objects.filter(protocol_code=PROTOCOL_CODE).first()
        created = trial is None
        if created:
            trial = _create_trial_setup()
        logins = _ensure_demo_users(trial, password)
        if created:
            statistician = get_user_model().objects.get(username="demo-unblinded-stat")
            allocation_list_generate(trial=trial, user=statistician)
            _create_clinical_data(trial, np.random.default_rng(seed))
            _create_data_management(trial)
    counts = {
        "sites": trial.sites.count(),
        "arms": trial.arms.count(),
        "visits defined": trial.visit_definitions.count(),
        "product lots": trial.lots.count(),
        "participants screened": trial.participants.count(),
        "participants randomized": trial.randomizations.count(),
        "visits": Visit.objects.filter(participant__trial=trial).count(),
        "outcome measurements": OutcomeMeasurement.objects.filter(visit__participant__trial=trial).count(),
        "adverse events": AdverseEvent.objects.filter(participant__trial=trial).count(),
        "doses": DoseAdministration.objects.filter(participant__trial=trial).count(),
        "protocol deviations": ProtocolDeviation.objects.filter(participant__trial=trial).count(),
    }
    return SeedResult(trial=trial, created=created, counts=counts, logins=logins)


def _create_trial_setup() -> Trial:
    trial = Trial.objects.create(
        protocol_code=PROTOCOL_CODE,
        title="Intra-articular umbilical-cord MSC exosomes for knee osteoarthritis: a randomized, "
        "double-blind, placebo-controlled phase II trial",
        phase=Trial.Phase.II,
        status=Trial.Status.RECRUITING,
        blinding=Trial.Blinding.DOUBLE,
        target_enrollment=TARGET_RANDOMIZED,
        sponsor="ExoTrial Demo Sponsor Ltd",
        registry_id="NCT09990201",
        primary_estimand=(
            "Difference between each exosome dose and placebo in mean change from baseline in WOMAC pain at "
            "week 12 in all randomized participants, regardless of rescue medication (treatment policy)."
        ),
    )
    for code, name, country, investigator, target in SITES:
        Site.objects.create(
            trial=trial,
            code=code,
            name=name,
            country=country,
            principal_investigator=investigator,
            target_enrollment=target,
        )
    product = ExosomeProduct.objects.get_or_create(
        name="UC-MSC exosomes (ExoKnee)",
        defaults={
            "source_cell": ExosomeProduct.SourceCell.UMBILICAL_CORD_MSC,
            "isolation_method": ExosomeProduct.IsolationMethod.TANGENTIAL_FLOW,
            "manufacturer": "Demo Biologics GmbH",
            "description": "Small extracellular vesicles from umbilical-cord MSC conditioned medium, TFF + SEC.",
        },
    )[0]
    arm_specs = [
        ("PBO", "Placebo (saline)", Arm.Role.PLACEBO, None, None),
        ("LOW", "Exosomes 1×10⁹ particles", Arm.Role.EXPERIMENTAL, product, 1e9),
        ("HIGH", "Exosomes 1×10¹⁰ particles", Arm.Role.EXPERIMENTAL, product, 1e10),
    ]
    for code, name, role, arm_product, dose in arm_specs:
        Arm.objects.create(
            trial=trial,
            code=code,
            name=name,
            role=role,
            allocation_weight=1,
            product=arm_product,
            dose_particles=dose,
            route=Arm.Route.INTRA_ARTICULAR,
            schedule="Single injection at baseline (day 0), 2 mL into the index knee",
        )
    _create_lots(trial, product)
    visits = {}
    for code, name, order, day, before, after, baseline, dosing in VISITS:
        visits[code] = VisitDefinition.objects.create(
            trial=trial,
            code=code,
            name=name,
            order=order,
            target_day=day,
            window_before_days=before,
            window_after_days=after,
            is_baseline=baseline,
            is_dosing_visit=dosing,
        )
    endpoints = {
        "WOMACP": Endpoint.objects.create(
            trial=trial,
            code="WOMACP",
            name="WOMAC pain (0–100)",
            kind=Endpoint.Kind.CONTINUOUS,
            unit="points",
            min_value=0,
            max_value=100,
            role=Endpoint.EndpointRole.PRIMARY,
            direction=Endpoint.Direction.LOWER_BETTER,
            rank=0,
        ),
        "RESP": Endpoint.objects.create(
            trial=trial,
            code="RESP",
            name="OMERACT-OARSI responder (pain criteria)",
            kind=Endpoint.Kind.BINARY,
            unit="",
            min_value=0,
            max_value=1,
            role=Endpoint.EndpointRole.KEY_SECONDARY,
            direction=Endpoint.Direction.HIGHER_BETTER,
            rank=1,
        ),
        "TTRESC": Endpoint.objects.create(
            trial=trial,
            code="TTRESC",
            name="Time to first rescue medication",
            kind=Endpoint.Kind.TIME_TO_EVENT,
            unit="days",
            min_value=0,
            max_value=400,
            role=Endpoint.EndpointRole.KEY_SECONDARY,
            direction=Endpoint.Direction.HIGHER_BETTER,
            rank=2,
        ),
        "EVMIR140": Endpoint.objects.create(
            trial=trial,
            code="EVMIR140",
            name="Serum exosomal miR-140-3p (relative expression, 2^-ΔΔCt)",
            kind=Endpoint.Kind.CONTINUOUS,
            unit="relative expression",
            min_value=0.001,
            max_value=1000,
            role=Endpoint.EndpointRole.BIOMARKER,
            direction=Endpoint.Direction.HIGHER_BETTER,
            rank=3,
            description="Serum EVs isolated by SEC (qEV 70 nm) from fasting samples frozen within 2 h; "
            "qPCR normalised to miR-16 and cel-miR-39 spike-in.",
        ),
    }
    endpoints["WOMACP"].visits.set([visits[c] for c in ("BL", "W4", "W12", "W26")])
    endpoints["RESP"].visits.set([visits["W12"]])
    endpoints["TTRESC"].visits.set([visits["W26"]])
    endpoints["EVMIR140"].visits.set([visits["BL"], visits["W12"]])
    for code, kind, text, order in CRITERIA:
        EligibilityCriterion.objects.create(trial=trial, code=code, kind=kind, text=text, order=order)
    basepain = StratificationFactor.objects.create(
        trial=trial, code="basepain", name="Baseline WOMAC pain", levels=["<=60", ">60"]
    )
    plan = AnalysisPlan.objects.create(
        trial=trial,
        version="1.0",
        primary_endpoint=endpoints["WOMACP"],
        primary_visit=visits["W12"],
        alpha_one_sided=0.025,
        power=0.9,
        design_effect=-12.0,
        design_sd=20.0,
        look_fractions=[0.5, 0.75, 1.0],
        spending_function=AnalysisPlan.Spending.OBRIEN_FLEMING,
        futility_rule=AnalysisPlan.Futility.CONDITIONAL_POWER,
        futility_conditional_power=0.10,
        stratify_by_site=True,
        randomization_scheme=AnalysisPlan.Scheme.PERMUTED_BLOCKS,
        block_size_multiples=[1, 2],
        randomization_seed=DEFAULT_SEED,
        approved_on=dt.date(2025, 2, 14),
    )
    plan.stratification_factors.set([basepain])
    return trial


def _create_lots(trial: Trial, product: ExosomeProduct) -> None:
    lot_specs = [
        # lot, made, expires, status, released, particles/mL, mean nm, modal nm, protein µg/mL, endotoxin
        (
            "EXO-UC-2501",
            dt.date(2024, 12, 2),
            dt.date(2025, 12, 31),
            "released",
            dt.date(2025, 1, 20),
            5.0e9,
            118.0,
            104.0,
            42.0,
            0.12,
        ),
        (
            "EXO-UC-2502",
            dt.date(2025, 8, 18),
            dt.date(2027, 2, 28),
            "released",
            dt.date(2025, 10, 1),
            5.0e9,
            121.0,
            108.0,
            45.0,
            0.09,
        ),
        ("EXO-UC-2601", dt.date(2026, 9, 7), dt.date(2028, 3, 31), "quarantine", None, 5.0e9, 115.0, 101.0, 40.0, 0.10),
    ]
    for number, made, expires, status, released, conc, mean_nm, modal_nm, protein, endotoxin in lot_specs:
        lot = ProductLot.objects.create(
            product=product,
            trial=trial,
            lot_number=number,
            manufactured_on=made,
            expires_on=expires,
            storage_temperature_c=-80,
            particle_concentration_per_ml=conc,
            mean_diameter_nm=mean_nm,
            modal_diameter_nm=modal_nm,
            protein_concentration_ug_per_ml=protein,
            characterization_method="NTA",
            endotoxin_eu_per_ml=endotoxin,
            sterility="pass" if released else "pending",
            mycoplasma="pass" if released else "pending",
            potency_assay="Chondrocyte migration (scratch assay)",
            potency_result=1.8 if released else None,
            potency_unit="fold vs vehicle" if released else "",
            release_status=status,
            released_on=released,
            release_note="Meets release specification." if released else "Awaiting sterility (14-day) result.",
        )
        markers = [
            ("CD9", "present", "western_blot"),
            ("CD63", "present", "western_blot"),
            ("CD81", "present", "flow"),
            ("TSG101", "present", "western_blot"),
            ("ALIX", "present", "western_blot"),
            ("SYNTENIN", "present", "western_blot"),
            ("CALNEXIN", "absent", "western_blot"),
            ("GM130", "absent", "western_blot"),
            ("APOA1", "absent", "elisa"),
        ]
        LotMarkerResult.objects.bulk_create(
            LotMarkerResult(lot=lot, marker=marker, result=result, method=method) for marker, result, method in markers
        )


@dataclass
class _Candidate:
    site: Site
    screened_on: dt.date
    sex: str
    age: int
    failed_criterion: str | None


def _create_clinical_data(trial: Trial, rng: np.random.Generator) -> None:  # noqa: C901
    sites = list(trial.sites.order_by("code"))
    arms = {arm.code: arm for arm in trial.arms.all()}
    visits = {v.code: v for v in trial.visit_definitions.all()}
    endpoints = {e.code: e for e in trial.endpoints.all()}
    criteria = {c.code: c for c in trial.eligibility_criteria.all()}
    lots = {lot.lot_number: lot for lot in trial.lots.all()}
    next_slot = _slot_dispenser(trial)

    candidates = _screening_candidates(rng, sites)
    per_site_counter: dict[str, int] = {}
    participants: list[Participant] = []
    plans: list[dict] = []
    for candidate in candidates:
        per_site_counter[candidate.site.code] = per_site_counter.get(candidate.site.code, 0) + 1
        number = f"{candidate.site.code}-{per_site_counter[candidate.site.code]:04d}"
        birth_year = candidate.screened_on.year - candidate.age - int(rng.integers(0, 2))
        participant = Participant(
            trial=trial,
            site=candidate.site,
            screening_number=number,
            screened_on=candidate.screened_on,
            sex=candidate.sex,
            birth_year=birth_year,
            age_at_screening=candidate.age,
            consent_version="2.1",
            consent_date=candidate.screened_on,
        )
        if candidate.failed_criterion:
            participant.status = Participant.Status.SCREEN_FAILED
            participant.screen_failure_criterion = criteria[candidate.failed_criterion]
            participant.screen_failure_reason = SCREEN_FAILURE_REASONS[candidate.failed_criterion]
            participants.append(participant)
            plans.append({"failed": candidate.failed_criterion})
            continue
        baseline_pain = float(np.clip(rng.normal(62, 11), 40, 95))
        randomized_on = candidate.screened_on + dt.timedelta(days=int(rng.integers(3, 15)))
        stratum_level = ">60" if baseline_pain > 60 else "<=60"
        participant.strata = {"basepain": stratum_level}
        participant.status = Participant.Status.RANDOMIZED
        slot = next_slot(f"site={candidate.site.code}|basepain={stratum_level}")
        participants.append(participant)
        plans.append(
            {
                "failed": None,
                "slot": slot,
                "arm": slot.arm.code,
                "baseline_pain": baseline_pain,
                "randomized_on": randomized_on,
                "random_intercept": rng.normal(0, 8),
                "biomarker": float(np.exp(rng.normal(0, 0.6))),
                "dropout_day": int(rng.integers(10, 180)) if rng.random() < 0.10 else None,
                "dropout_reason": rng.choice(
                    ["withdrawal_by_subject"] * 5
                    + ["adverse_event"] * 2
                    + ["lost_to_follow_up"] * 2
                    + ["physician_decision"]
                ),
            }
        )
    waiting = _awaiting_randomization(trial, sites, criteria, per_site_counter, rng)
    participants += [participant for participant, _ in waiting]
    plans += [plan for _, plan in waiting]
    Participant.objects.bulk_create(participants)

    answers = []
    for participant, plan in zip(participants, plans, strict=True):
        for code, criterion in criteria.items():
            met = code != plan["failed"]
            answer = met if criterion.kind == "inclusion" else not met
            answers.append(EligibilityAnswer(participant=participant, criterion=criterion, answer=answer))
    EligibilityAnswer.objects.bulk_create(answers)

    randomized = sorted(
        ((p, plan) for p, plan in zip(participants, plans, strict=True) if not plan["failed"] and "slot" in plan),
        key=lambda pair: (pair[1]["randomized_on"], pair[0].screening_number),
    )
    site_staff = _site_staff_users(trial, sites)
    randomizations = []
    for index, (participant, plan) in enumerate(randomized, start=1):
        randomized_at = dt.datetime.combine(plan["randomized_on"], dt.time(9, 0), tzinfo=dt.UTC) + dt.timedelta(
            minutes=int(rng.integers(0, 480))
        )
        randomizations.append(
            Randomization(
                trial=trial,
                participant=participant,
                arm=arms[plan["arm"]],
                randomization_number=f"R{index:04d}",
                stratum=f"site={participant.site.code}|basepain={participant.strata['basepain']}",
                randomized_at=randomized_at,
                randomized_by=site_staff[participant.site.code],
            )
        )
        plan["randomized_at"] = randomized_at
    Randomization.objects.bulk_create(randomizations)
    AllocationList.objects.filter(trial=trial).update(randomized_count=len(randomizations))

    visit_rows: list[Visit] = []
    measurement_plans: list[tuple[Visit, Endpoint, float | None, bool | None, str]] = []
    deviations: list[ProtocolDeviation] = []
    doses: list[DoseAdministration] = []
    adverse_events: list[AdverseEvent] = []
    disposition_updates: list[Participant] = []
    death_index = int(rng.integers(0, len(randomized)))
    for position, (participant, plan) in enumerate(randomized):
        day0 = plan["randomized_on"]
        arm_code = plan["arm"]
        biomarker_high = plan["biomarker"] > BIOMARKER_HIGH_THRESHOLD
        effect = TRUE_EFFECT[arm_code] * BIOMARKER_EFFECT_MULTIPLIER[biomarker_high]
        week12_change = TRUE_WEEK12_CHANGE["PBO"] + effect
        end_day = plan["dropout_day"]
        death_day = int(rng.integers(40, 170)) if position == death_index else None
        if death_day is not None:
            end_day = death_day

        screening = Visit(
            participant=participant,
            visit_definition=visits["SCR"],
            visit_date=participant.screened_on,
            study_day=(participant.screened_on - day0).days,
            in_window=True,
        )
        baseline = Visit(
            participant=participant, visit_definition=visits["BL"], visit_date=day0, study_day=0, in_window=True
        )
        visit_rows += [screening, baseline]
        measurement_plans.append((baseline, endpoints["WOMACP"], round(plan["baseline_pain"], 1), None, ""))
        measurement_plans.append((baseline, endpoints["EVMIR140"], round(plan["biomarker"], 3), None, ""))
        doses.append(_dose_for(participant, baseline, arm_code, arms[arm_code], lots, plan["randomized_at"], rng))

        last_attended_day = 0
        last_attended_visit = baseline
        pain_by_visit: dict[str, float] = {}
        for code in ("W4", "W12", "W26"):
            definition = visits[code]
            study_day = definition.target_day + round(rng.normal(0, 4.5))
            if end_day is not None and study_day >= end_day:
                break
            if rng.random() < 0.03:
                visit_rows.append(
                    Visit(
                        participant=participant,
                        visit_definition=definition,
                        status=Visit.Status.MISSED,
                        missed_reason="Participant unavailable",
                    )
                )
                continue
            visit_date = day0 + dt.timedelta(days=study_day)
            in_window = definition.is_day_in_window(study_day)
            visit = Visit(
                participant=participant,
                visit_definition=definition,
                visit_date=visit_date,
                study_day=study_day,
                in_window=in_window,
            )
            visit_rows.append(visit)
            last_attended_day, last_attended_visit = study_day, visit
            if not in_window:
                deviations.append(
                    ProtocolDeviation(
                        participant=participant,
                        visit=visit,
                        category=ProtocolDeviation.Category.VISIT_WINDOW,
                        severity=ProtocolDeviation.Severity.MINOR,
                        occurred_on=visit_date,
                        detected_on=visit_date,
                        is_automatic=True,
                        description=f"{definition.name} on study day {study_day}, outside {definition.window_label}",
                    )
                )
            pain = (
                plan["baseline_pain"]
                + CHANGE_PROFILE[code] * week12_change
                + plan["random_intercept"]
                + rng.normal(0, 10)
            )
            pain = round(float(np.clip(pain, 0, 100)), 1)
            if rng.random() < 0.02:
                measurement_plans.append((visit, endpoints["WOMACP"], None, None, "Questionnaire not completed"))
            else:
                measurement_plans.append((visit, endpoints["WOMACP"], pain, None, ""))
                pain_by_visit[code] = pain
            if code == "W12":
                if "W12" in pain_by_visit:
                    improvement = plan["baseline_pain"] - pain
                    relative = improvement / plan["baseline_pain"]
                    responder = (relative >= 0.5 and improvement >= 20) or (relative >= 0.2 and improvement >= 10)
                    measurement_plans.append((visit, endpoints["RESP"], 1.0 if responder else 0.0, None, ""))
                shift = -0.15 if arm_code != "PBO" else 0.0
                biomarker12 = plan["biomarker"] * float(np.exp(rng.normal(shift, 0.3)))
                measurement_plans.append((visit, endpoints["EVMIR140"], round(biomarker12, 3), None, ""))

        if last_attended_day > 0:
            rate = np.log(2) / RESCUE_PLACEBO_MEDIAN_DAYS * RESCUE_HAZARD_RATIO[arm_code]
            rescue_day = float(rng.exponential(1 / rate))
            event = rescue_day <= last_attended_day
            days = round(rescue_day if event else float(last_attended_day), 1)
            # Time to rescue is recorded at week 26, where the protocol schedules it; a participant who left
            # earlier has no record and is censored at their last visit in the analysis datasets.
            if last_attended_visit.visit_definition.code == "W26":
                measurement_plans.append((last_attended_visit, endpoints["TTRESC"], days, event, ""))

        follow_up_days = end_day if end_day is not None else 182
        adverse_events += _adverse_events_for(participant, arm_code, day0, follow_up_days, rng)
        if death_day is not None:
            death_date = day0 + dt.timedelta(days=death_day)
            adverse_events.append(
                _ae(
                    participant,
                    "Myocardial infarction",
                    "10007541",
                    death_date,
                    death_date,
                    5,
                    "not_related",
                    False,
                    "not_applicable",
                    "fatal",
                    criteria=("results_in_death",),
                    rng=rng,
                )
            )
            participant.status = Participant.Status.WITHDRAWN
            participant.withdrawn_on = death_date
            participant.withdrawal_reason = Participant.WithdrawalReason.DEATH
            participant.withdrawal_detail = "Died of myocardial infarction (unrelated to study product)."
        elif end_day is not None:
            stop_date = day0 + dt.timedelta(days=end_day)
            reason = str(plan["dropout_reason"])
            if reason == "lost_to_follow_up":
                participant.status = Participant.Status.LOST_TO_FOLLOW_UP
            else:
                participant.status = Participant.Status.WITHDRAWN
            participant.withdrawn_on = stop_date
            participant.withdrawal_reason = reason
            if reason == "adverse_event":
                participant.withdrawal_detail = "Persistent knee effusion"
                adverse_events.append(
                    _ae(
                        participant,
                        "Joint effusion",
                        "10028395",
                        stop_date - dt.timedelta(days=10),
                        None,
                        2,
                        "possible",
                        True,
                        "withdrawn",
                        "not_recovered",
                        rng=rng,
                    )
                )
        else:
            participant.status = Participant.Status.COMPLETED
            participant.completed_on = last_attended_visit.visit_date
        disposition_updates.append(participant)

    Visit.objects.bulk_create(visit_rows)
    OutcomeMeasurement.objects.bulk_create(
        OutcomeMeasurement(
            visit=visit,
            endpoint=endpoint,
            value=value,
            event_occurred=event,
            unit=endpoint.unit,
            measured_on=visit.visit_date,
            not_done_reason=reason,
        )
        for visit, endpoint, value, event, reason in measurement_plans
    )
    ProtocolDeviation.objects.bulk_create(deviations)
    DoseAdministration.objects.bulk_create(doses)
    AdverseEvent.objects.bulk_create(adverse_events)
    _record_emergency_unblinding(trial, adverse_events, site_staff)
    with audit_context(reason="disposition recorded at end of participation"):
        Participant.objects.bulk_update(
            disposition_updates, ["status", "withdrawn_on", "withdrawal_reason", "withdrawal_detail", "completed_on"]
        )


def _create_data_management(trial: Trial) -> None:
    """A monitor's queries and source verification, investigator signatures and a locked casebook at the first
    site, so that every data-management page has something to show."""
    from participants.models import DataQuery, RecordLock, Signature, SourceVerification
    from participants.services.sdv import visit_content_hash
    from participants.services.signatures import casebook_hash

    user_model = get_user_model()
    monitor, investigator, manager = (
        user_model.objects.get(username=name) for name in ("demo-monitor", "demo-site", "demo-datamanager")
    )
    completed = list(
        Participant.objects.filter(trial=trial, site__code="S01", status="completed").order_by("screening_number")[:6]
    )
    for participant in completed[:4]:
        for visit in participant.visits.filter(status="completed").order_by("visit_definition__order")[:3]:
            SourceVerification.objects.create(visit=visit, verified_by=monitor, content_hash=visit_content_hash(visit))
    for participant in completed[:3]:
        Signature.objects.create(
            participant=participant,
            signer=investigator,
            signer_name=investigator.get_full_name(),
            meaning=Signature.Meaning.APPROVAL,
            content_hash=casebook_hash(participant),
        )
    week12 = Visit.objects.filter(participant=completed[4], visit_definition__code="W12").first()
    measurement = week12.measurements.filter(endpoint__code="WOMACP").first() if week12 else None
    if measurement is not None:
        DataQuery.objects.create(
            participant=completed[4],
            target_model="participants.outcomemeasurement",
            target_id=measurement.pk,
            field_name="value",
            raised_by=monitor,
            message="WOMAC pain differs from the paper questionnaire total; please check.",
        )
    baseline = Visit.objects.filter(participant=completed[5], visit_definition__code="BL").first()
    if baseline is not None:
        DataQuery.objects.create(
            participant=completed[5],
            target_model="participants.visit",
            target_id=baseline.pk,
            field_name="visit_date",
            raised_by=monitor,
            message="Baseline date differs from the clinic note.",
            status=DataQuery.Status.CLOSED,
            answer="Clinic note was dated the next day; eCRF date is correct.",
            answered_by=investigator,
            answered_at=baseline.visit_date and _aware(baseline.visit_date, 14),
            closed_by=monitor,
            closed_at=_aware(baseline.visit_date, 16),
        )
    RecordLock.objects.create(
        trial=trial, participant=completed[3], locked_by=manager, reason="Casebook complete, verified and signed"
    )


def _aware(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, 0), tzinfo=dt.UTC)


def _record_emergency_unblinding(trial: Trial, adverse_events: list[AdverseEvent], site_staff) -> None:
    """The first SUSAR (else the first SAE): its investigator unblinded the participant for the treating team."""
    serious = [e for e in adverse_events if e.serious and e.grade < 5]
    event = next((e for e in serious if e.is_susar), serious[0] if serious else None)
    if event is None:
        return
    UnblindingEvent.objects.create(
        trial=trial,
        participant=event.participant,
        requested_by=site_staff[event.participant.site.code],
        reason=f"{event.term} (serious, {event.get_causality_display().lower()}): the treating team asked "
        "whether exosomes were injected.",
    )


WAITING_SCREENED_ON = (dt.date(2026, 11, 16), dt.date(2026, 11, 18), dt.date(2026, 11, 19), dt.date(2026, 11, 23))


def _awaiting_randomization(trial, sites, criteria, per_site_counter, rng):
    """Four recently screened, consented and eligible people (three at the first site) for the site app."""
    waiting = []
    for index, screened_on in enumerate(WAITING_SCREENED_ON):
        site = sites[0] if index < 3 else sites[1]
        per_site_counter[site.code] = per_site_counter.get(site.code, 0) + 1
        age = int(rng.integers(45, 78))
        participant = Participant(
            trial=trial,
            site=site,
            screening_number=f"{site.code}-{per_site_counter[site.code]:04d}",
            screened_on=screened_on,
            sex="F" if index % 2 == 0 else "M",
            birth_year=screened_on.year - age,
            age_at_screening=age,
            consent_date=screened_on,
            consent_version="2.1",
            status=Participant.Status.ELIGIBLE,
            strata={"basepain": ">60" if index % 2 else "<=60"},
        )
        waiting.append((participant, {"failed": None}))
    return waiting


def _slot_dispenser(trial: Trial):
    """Hand out the concealed list's slots in sequence per stratum, as the randomize service would."""
    slots: dict[str, list] = {}
    for slot in trial.allocation_list.slots.select_related("arm").order_by("stratum", "sequence"):
        slots.setdefault(slot.stratum, []).append(slot)
    positions = dict.fromkeys(slots, 0)

    def next_slot(stratum: str):
        slot = slots[stratum][positions[stratum]]
        positions[stratum] += 1
        return slot

    return next_slot


def _screening_candidates(rng: np.random.Generator, sites: list[Site]) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    eligible = 0
    span = (ENROLMENT_END - ENROLMENT_START).days
    while eligible < TARGET_RANDOMIZED:
        site = sites[int(rng.choice(len(sites), p=SITE_SHARE))]
        failed = str(rng.choice(SCREEN_FAILURE_CRITERIA)) if rng.random() < 0.18 else None
        age = int(np.clip(round(rng.normal(62, 8)), 40, 80))
        sex = "F" if rng.random() < 0.6 else "M"
        screened_on = ENROLMENT_START + dt.timedelta(days=int(rng.integers(0, span)))
        candidates.append(_Candidate(site=site, screened_on=screened_on, sex=sex, age=age, failed_criterion=failed))
        eligible += failed is None
    candidates.sort(key=lambda c: (c.screened_on, c.site.code))
    return candidates


def _dose_for(participant, visit, arm_code, arm, lots, randomized_at, rng) -> DoseAdministration:
    administered_at = randomized_at + dt.timedelta(minutes=int(rng.integers(20, 90)))
    if arm.dose_particles is None:
        return DoseAdministration(
            participant=participant,
            visit=visit,
            lot=None,
            administered_at=administered_at,
            volume_ml=2.0,
            particles_given=0.0,
            route=arm.route,
            administered_by="Unblinded pharmacist",
            notes="Matching saline placebo",
        )
    lot = lots["EXO-UC-2501"] if administered_at.date() <= dt.date(2025, 12, 15) else lots["EXO-UC-2502"]
    stock_volume = arm.dose_particles / lot.particle_concentration_per_ml
    return DoseAdministration(
        participant=participant,
        visit=visit,
        lot=lot,
        administered_at=administered_at,
        volume_ml=round(stock_volume, 3),
        particles_given=stock_volume * lot.particle_concentration_per_ml,
        route=arm.route,
        administered_by="Unblinded pharmacist",
        notes="Stock diluted to 2 mL with saline by pharmacy",
    )


def _adverse_events_for(participant, arm_code, day0, follow_up_days, rng) -> list[AdverseEvent]:
    events = []
    weights = np.array([t[2] for t in AE_TERMS], dtype=float)
    for _ in range(int(rng.poisson(AE_RATE[arm_code]))):
        term, soc, _weight, causality_weights = AE_TERMS[int(rng.choice(len(AE_TERMS), p=weights / weights.sum()))]
        onset = day0 + dt.timedelta(days=int(rng.integers(0, max(1, follow_up_days))))
        stop = onset + dt.timedelta(days=int(rng.integers(1, 30))) if rng.random() > 0.1 else None
        grade = int(rng.choice([1, 2, 3], p=[0.65, 0.28, 0.07]))
        causality = CAUSALITY[int(rng.choice(5, p=causality_weights))]
        outcome = "recovered" if stop else str(rng.choice(["recovering", "not_recovered"]))
        events.append(_ae(participant, term, soc, onset, stop, grade, causality, True, "none", outcome, rng=rng))
    if rng.random() < 0.035:
        term, soc, grade, criterion, active_causality, expected = SAE_TERMS[int(rng.integers(0, len(SAE_TERMS)))]
        causality = active_causality if arm_code != "PBO" else "unlikely"
        onset = day0 + dt.timedelta(days=int(rng.integers(1, max(2, follow_up_days))))
        stop = onset + dt.timedelta(days=int(rng.integers(5, 25)))
        events.append(
            _ae(
                participant,
                term,
                soc,
                onset,
                stop,
                grade,
                causality,
                expected,
                "none",
                "recovered",
                criteria=(criterion,),
                rng=rng,
            )
        )
    return events


def _ae(
    participant,
    term,
    soc,
    onset,
    stop,
    grade,
    causality,
    expected,
    action,
    outcome,
    *,
    rng,
    criteria: tuple[str, ...] = (),
) -> AdverseEvent:
    site_aware_at = dt.datetime.combine(onset, dt.time(8, 0), tzinfo=dt.UTC) + dt.timedelta(
        hours=int(rng.integers(0, 48))
    )
    notified = site_aware_at + dt.timedelta(hours=int(rng.integers(2, 30))) if criteria else None
    related_unexpected = bool(criteria) and causality in AdverseEvent.RELATED and not expected
    regulator = site_aware_at + dt.timedelta(days=6) if related_unexpected else None
    return AdverseEvent(
        participant=participant,
        term=term,
        soc=soc,
        onset_date=onset,
        stop_date=stop,
        grade=grade,
        serious=bool(criteria),
        causality=causality,
        expected=expected,
        action_taken=action,
        outcome=outcome,
        site_aware_at=site_aware_at,
        sponsor_notified_at=notified,
        regulator_reported_at=regulator,
        **dict.fromkeys(criteria, True),
    )


def _site_staff_users(trial: Trial, sites: list[Site]) -> dict[str, object]:
    """The investigator who randomized at each site: demo-site at the first site, data-only users elsewhere."""
    users = {}
    for index, site in enumerate(sites):
        username = "demo-site" if index == 0 else f"investigator-{site.code.lower()}"
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"first_name": site.principal_investigator, "email": f"{username}@example.org"}
        )
        if created and index > 0:
            user.set_unusable_password()
            user.save()
        membership, created = TrialMembership.objects.get_or_create(
            user=user, trial=trial, defaults={"role": Role.SITE_STAFF}
        )
        if created:
            MembershipSite.objects.create(membership=membership, site=site)
        users[site.code] = user
    return users


def _ensure_demo_users(trial: Trial, password: str | None) -> list[tuple[str, str, str]]:
    groups = _staff_groups()
    first_site = trial.sites.order_by("code").first()
    logins = []
    user_model = get_user_model()
    for username, role, first, last in DEMO_ROLES:
        user, _ = user_model.objects.get_or_create(username=username)
        user.first_name, user.last_name = first, last
        user.email = f"{username}@example.org"
        user.is_staff = role in groups
        secret = password or secrets.token_urlsafe(12)
        user.set_password(secret)
        user.save()
        if role in groups:
            user.groups.add(groups[role])
        membership, created = TrialMembership.objects.get_or_create(
            user=user, trial=trial, defaults={"role": role, "may_unlock": role == Role.DATA_MANAGER}
        )
        if created and role in (Role.SITE_STAFF, Role.MONITOR):
            MembershipSite.objects.create(membership=membership, site=first_site)
        logins.append((username, Role(role).label, secret))
    return logins


def _staff_groups() -> dict[str, Group]:
    """Django permissions for the admin: coordinators edit set-up; both read clinical data (scoped by role)."""
    coordinators, _ = Group.objects.get_or_create(name="Trial coordinators")
    coordinators.permissions.set(
        Permission.objects.filter(
            Q(content_type__app_label="trials", codename__regex=r"^(view|add|change)_")
            | Q(content_type__app_label="participants", codename__startswith="view_")
        )
    )
    data_managers, _ = Group.objects.get_or_create(name="Data managers")
    data_managers.permissions.set(
        Permission.objects.filter(content_type__app_label__in=["trials", "participants"], codename__startswith="view_")
    )
    return {Role.COORDINATOR: coordinators, Role.DATA_MANAGER: data_managers}
