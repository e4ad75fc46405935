"""Synthetic trials for the benchmarks: the demo trial's design at any size, built in seconds, the same for a seed.

``build_trial(10_000)`` creates a trial shaped like EXO-OA-201 (``trials.demo``: its sites, arms, product and lots,
eligibility criteria, endpoints, AE terms, true treatment effects and analysis plan) with ``participants``
randomized participants (plus about 15% screen failures) and ``visits`` visit definitions: screening, baseline
(day 0, dosing) and a post-baseline visit every four weeks (W4, W8, … — with the default 12 visits the last is W40).
Arms come from the product's permuted-block generator per stratum (site × baseline WOMAC pain); each participant
has a WOMAC pain value at baseline and every attended visit, the responder criterion and miR-140-3p at the primary
visit (W12), time to rescue at the last visit, a dose at baseline, adverse events (some serious), about 10% drop-out,
3% missed visits and automatic deviations for visits outside their window.

With ``follow_up=False`` only screening and baseline are recorded: the post-baseline values are then what
``write_outcome_csv`` writes, in the product's outcome import format (``participants.exchange.imports``), so that
importing the file adds every row of it.

Rows are written with ``COPY … FROM STDIN`` straight into the product tables (ids drawn from their sequences), inside
an audit context, so the statement-level audit triggers record every row as the product's own bulk paths do. The
concealed allocation list is not generated (the product would write ``strata × target`` slots, most of them
unused); randomizations carry no slot, as for a trial migrated from another system.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from audit.context import INITIAL_ENTRY, audit_context
from participants.allocation import permuted_block_sequence
from participants.models import (
    AdverseEvent,
    DoseAdministration,
    EligibilityAnswer,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Randomization,
    Visit,
)
from trials import demo
from trials.models import (
    AnalysisPlan,
    Arm,
    EligibilityCriterion,
    Endpoint,
    ExosomeProduct,
    MembershipSite,
    Role,
    Site,
    StratificationFactor,
    Trial,
    TrialMembership,
    VisitDefinition,
)

ENROLMENT_START = dt.date(2024, 1, 8)
ENROLMENT_DAYS = 540
SCREEN_FAILURE_SHARE = 0.15
DROPOUT_SHARE = 0.10
MISSED_VISIT_SHARE = 0.03
NOT_DONE_SHARE = 0.02
VISIT_INTERVAL_WEEKS = 4
VISIT_WINDOW_DAYS = 7
# Participants generated and written per COPY round: bounds memory at 100k participants.
CHUNK = 20_000
# Planned looks of the analysis plan: more interim looks than the demo's two, so a benchmark can repeat the interim
# run on one trial (each look is a separate run of the product's analysis).
DEFAULT_LOOK_FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
ROLE_SUFFIX = {
    Role.COORDINATOR: "coordinator",
    Role.SITE_STAFF: "site",
    Role.MONITOR: "monitor",
    Role.DATA_MANAGER: "datamanager",
    Role.BLINDED_STATISTICIAN: "blinded-stat",
    Role.UNBLINDED_STATISTICIAN: "unblinded-stat",
    Role.DSMB_MEMBER: "dsmb",
    Role.SPONSOR_VIEWER: "sponsor",
}
OUTCOME_CSV_COLUMNS = ["screening_number", "visit", "endpoint", "value", "unit", "measured_on", "event"]


def protocol_code_for(participants: int, seed: int) -> str:
    return f"BENCH-{participants}-S{seed}"


def trial_user(trial: Trial, role: str):
    """The synthetic trial's user holding ``role`` (site-scoped roles hold every site)."""
    return get_user_model().objects.get(username=f"{trial.protocol_code.lower()}-{ROLE_SUFFIX[role]}")


def build_trial(
    participants: int,
    *,
    visits: int = 12,
    seed: int = 0,
    follow_up: bool = True,
    protocol_code: str | None = None,
    look_fractions: Iterable[float] = DEFAULT_LOOK_FRACTIONS,
) -> Trial:
    """Create a synthetic trial with ``participants`` randomized participants and ``visits`` visits each.

    ``visits`` counts screening and baseline (at least 5, so that the primary visit W12 exists). The same
    ``participants``, ``visits``, ``seed`` and ``follow_up`` give the same rows (ids aside). ``protocol_code``
    defaults to ``BENCH-<participants>-S<seed>``; a trial with that code must not exist yet. Users named
    ``<code in lower case>-<role>`` hold one role each (see ``trial_user``).
    """
    if participants < 1:
        raise ValueError("A synthetic trial needs at least one participant.")
    if visits < 5:
        raise ValueError("A synthetic trial needs at least 5 visits (screening, baseline, W4, W8, W12).")
    code = protocol_code or protocol_code_for(participants, seed)
    if Trial.objects.filter(protocol_code=code).exists():
        raise ValueError(f"Trial {code} exists already; drop it or give another protocol_code.")
    rng = np.random.default_rng(seed)
    with transaction.atomic(), audit_context(reason=INITIAL_ENTRY, username="benchmarks.synthetic"):
        trial = _create_setup(code, participants, visits, list(look_fractions))
        users = _create_users(trial)
        design = _Design.load(trial, users[Role.SITE_STAFF])
        screened = _screened_people(participants, design, rng)
        with connection.cursor() as cursor:
            # Foreign keys are DEFERRABLE INITIALLY DEFERRED: checking each statement at its end keeps the
            # transaction's deferred-trigger queue empty (see participants.exchange.imports._write).
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for start in range(0, len(screened.site), CHUNK):
                _write_chunk(cursor, design, screened, slice(start, start + CHUNK), rng, follow_up=follow_up)
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    return trial


# --- Set-up -----------------------------------------------------------------------------------------------------


def _create_setup(code: str, participants: int, visits: int, look_fractions: list[float]) -> Trial:
    trial = Trial.objects.create(
        protocol_code=code,
        title=f"Synthetic benchmark trial of {participants:,} participants (design of {demo.PROTOCOL_CODE})",
        phase=Trial.Phase.II,
        status=Trial.Status.RECRUITING,
        blinding=Trial.Blinding.DOUBLE,
        target_enrollment=participants,
        sponsor="ExoTrial benchmarks",
        primary_estimand="Difference between each exosome dose and placebo in mean change from baseline in WOMAC "
        "pain at week 12 in all randomized participants (treatment policy).",
    )
    for site_code, name, country, investigator, _target in demo.SITES:
        Site.objects.create(
            trial=trial,
            code=site_code,
            name=name,
            country=country,
            principal_investigator=investigator,
            target_enrollment=round(participants / len(demo.SITES)),
        )
    product = ExosomeProduct.objects.get_or_create(
        name="UC-MSC exosomes (ExoKnee)",
        defaults={
            "source_cell": ExosomeProduct.SourceCell.UMBILICAL_CORD_MSC,
            "isolation_method": ExosomeProduct.IsolationMethod.TANGENTIAL_FLOW,
            "manufacturer": "Demo Biologics GmbH",
        },
    )[0]
    for arm_code, name, role, dose in (
        ("PBO", "Placebo (saline)", Arm.Role.PLACEBO, None),
        ("LOW", "Exosomes 1×10⁹ particles", Arm.Role.EXPERIMENTAL, 1e9),
        ("HIGH", "Exosomes 1×10¹⁰ particles", Arm.Role.EXPERIMENTAL, 1e10),
    ):
        Arm.objects.create(
            trial=trial,
            code=arm_code,
            name=name,
            role=role,
            allocation_weight=1,
            product=product if dose else None,
            dose_particles=dose,
            route=Arm.Route.INTRA_ARTICULAR,
            schedule="Single injection at baseline (day 0), 2 mL into the index knee",
        )
    demo._create_lots(trial, product)  # the demo's lots, characterised as MISEV2023 asks
    definitions = _create_visits(trial, visits)
    post_baseline = definitions[2:]
    primary_visit = next(d for d in post_baseline if d.code == "W12")
    endpoints = {
        "WOMACP": _endpoint(trial, "WOMACP", "WOMAC pain (0–100)", "continuous", "points", 0, 100, "primary", 0),
        "RESP": _endpoint(trial, "RESP", "OMERACT-OARSI responder", "binary", "", 0, 1, "key_secondary", 1),
        "TTRESC": _endpoint(
            trial, "TTRESC", "Time to first rescue medication", "time_to_event", "days", 0, 400, "key_secondary", 2
        ),
        "EVMIR140": _endpoint(
            trial,
            "EVMIR140",
            "Serum exosomal miR-140-3p",
            "continuous",
            "relative expression",
            0.001,
            1000,
            "biomarker",
            3,
        ),
    }
    endpoints["WOMACP"].visits.set([definitions[1], *post_baseline])
    endpoints["RESP"].visits.set([primary_visit])
    endpoints["TTRESC"].visits.set([post_baseline[-1]])
    endpoints["EVMIR140"].visits.set([definitions[1], primary_visit])
    for criterion_code, kind, text, order in demo.CRITERIA:
        EligibilityCriterion.objects.create(trial=trial, code=criterion_code, kind=kind, text=text, order=order)
    basepain = StratificationFactor.objects.create(
        trial=trial, code="basepain", name="Baseline WOMAC pain", levels=["<=60", ">60"]
    )
    plan = AnalysisPlan.objects.create(
        trial=trial,
        version="1.0",
        primary_endpoint=endpoints["WOMACP"],
        primary_visit=primary_visit,
        alpha_one_sided=0.025,
        power=0.9,
        design_effect=-12.0,
        design_sd=20.0,
        look_fractions=look_fractions,
        spending_function=AnalysisPlan.Spending.OBRIEN_FLEMING,
        futility_rule=AnalysisPlan.Futility.CONDITIONAL_POWER,
        futility_conditional_power=0.10,
        stratify_by_site=True,
        randomization_scheme=AnalysisPlan.Scheme.PERMUTED_BLOCKS,
        block_size_multiples=[1, 2],
        randomization_seed=demo.DEFAULT_SEED,
        approved_on=dt.date(2023, 12, 1),
    )
    plan.stratification_factors.set([basepain])
    return trial


def _create_visits(trial: Trial, visits: int) -> list[VisitDefinition]:
    specs = [("SCR", "Screening", -14, 14, 13, False, False), ("BL", "Baseline (day 0)", 0, 0, 0, True, True)]
    for number in range(1, visits - 1):
        week = number * VISIT_INTERVAL_WEEKS
        specs.append((f"W{week}", f"Week {week}", week * 7, VISIT_WINDOW_DAYS, VISIT_WINDOW_DAYS, False, False))
    return [
        VisitDefinition.objects.create(
            trial=trial,
            code=visit_code,
            name=name,
            order=order,
            target_day=day,
            window_before_days=before,
            window_after_days=after,
            is_baseline=baseline,
            is_dosing_visit=dosing,
        )
        for order, (visit_code, name, day, before, after, baseline, dosing) in enumerate(specs, start=1)
    ]


def _endpoint(trial, code, name, kind, unit, low, high, role, rank) -> Endpoint:
    direction = Endpoint.Direction.LOWER_BETTER if code == "WOMACP" else Endpoint.Direction.HIGHER_BETTER
    return Endpoint.objects.create(
        trial=trial,
        code=code,
        name=name,
        kind=kind,
        unit=unit,
        min_value=low,
        max_value=high,
        role=role,
        direction=direction,
        rank=rank,
    )


def _create_users(trial: Trial) -> dict[str, object]:
    sites = list(trial.sites.all())
    users = {}
    for role, suffix in ROLE_SUFFIX.items():
        user, _ = get_user_model().objects.get_or_create(
            username=f"{trial.protocol_code.lower()}-{suffix}",
            defaults={"first_name": "Bench", "last_name": suffix, "email": f"{suffix}@bench.example.org"},
        )
        user.set_unusable_password()
        user.save()
        membership = TrialMembership.objects.create(user=user, trial=trial, role=role)
        if role in (Role.SITE_STAFF, Role.MONITOR):
            MembershipSite.objects.bulk_create(MembershipSite(membership=membership, site=site) for site in sites)
        users[role] = user
    return users


# --- Clinical data ----------------------------------------------------------------------------------------------


@dataclass
class _Design:
    """What the generator needs of the trial, loaded once."""

    trial: Trial
    investigator_id: int
    sites: list[Site]
    arms: dict[str, Arm]
    screening: VisitDefinition
    baseline: VisitDefinition
    post_baseline: list[VisitDefinition]
    primary_code: str
    endpoints: dict[str, Endpoint]
    criteria: list[EligibilityCriterion]
    lots: dict[str, object]

    @classmethod
    def load(cls, trial: Trial, investigator) -> _Design:
        definitions = list(trial.visit_definitions.order_by("order"))
        return cls(
            trial=trial,
            investigator_id=investigator.pk,
            sites=list(trial.sites.order_by("code")),
            arms={arm.code: arm for arm in trial.arms.all()},
            screening=definitions[0],
            baseline=definitions[1],
            post_baseline=definitions[2:],
            primary_code=trial.analysis_plan.primary_visit.code,
            endpoints={endpoint.code: endpoint for endpoint in trial.endpoints.all()},
            criteria=list(trial.eligibility_criteria.order_by("kind", "order")),
            lots={lot.lot_number: lot for lot in trial.lots.all()},
        )


@dataclass
class _Screened:
    """Everyone screened, as parallel arrays in screening order (randomized participants and screen failures)."""

    site: np.ndarray
    number: list[str]
    screened_on: list[dt.date]
    age: np.ndarray
    female: np.ndarray
    failed: list[str | None]
    baseline_pain: np.ndarray
    arm: list[str | None]
    randomization_number: list[str | None]
    randomized_on: list[dt.date | None]


def _screened_people(randomized: int, design: _Design, rng: np.random.Generator) -> _Screened:
    failures = round(randomized * SCREEN_FAILURE_SHARE / (1 - SCREEN_FAILURE_SHARE))
    total = randomized + failures
    failed_positions = set(rng.choice(total, size=failures, replace=False).tolist())
    site = rng.choice(len(design.sites), size=total, p=demo.SITE_SHARE)
    screened_day = np.sort(rng.integers(0, ENROLMENT_DAYS, size=total))
    age = np.clip(np.round(rng.normal(62, 8, size=total)), 40, 80).astype(int)
    female = rng.random(total) < 0.6
    baseline_pain = np.clip(rng.normal(62, 11, size=total), 40, 95).round(1)
    randomize_delay = rng.integers(3, 15, size=total)
    failure_codes = rng.choice(demo.SCREEN_FAILURE_CRITERIA, size=total)
    per_site = [0] * len(design.sites)
    numbers, failed = [], []
    for position in range(total):
        per_site[site[position]] += 1
        numbers.append(f"{design.sites[site[position]].code}-{per_site[site[position]]:06d}")
        failed.append(str(failure_codes[position]) if position in failed_positions else None)
    screened_on = [ENROLMENT_START + dt.timedelta(days=int(day)) for day in screened_day]
    randomized_on = [
        None if failed[i] else screened_on[i] + dt.timedelta(days=int(randomize_delay[i])) for i in range(total)
    ]
    arm: list[str | None] = [None] * total
    # The product's permuted-block generator, one sequence per stratum, consumed in randomization order.
    order = sorted((i for i in range(total) if not failed[i]), key=lambda i: (randomized_on[i], numbers[i]))
    strata: dict[tuple[int, bool], list[int]] = {}
    for i in order:
        strata.setdefault((int(site[i]), bool(baseline_pain[i] > 60)), []).append(i)
    weights = [(code, design.arms[code].allocation_weight) for code in ("PBO", "LOW", "HIGH")]
    for index, (key, members) in enumerate(sorted(strata.items())):
        sequence = permuted_block_sequence(
            weights, block_multiples=[1, 2], length=len(members), rng=np.random.default_rng([index, *key])
        )
        for i, arm_code in zip(members, sequence, strict=False):
            arm[i] = arm_code
    randomization_number: list[str | None] = [None] * total
    for rank, i in enumerate(order, start=1):
        randomization_number[i] = f"R{rank:06d}"
    return _Screened(
        site, numbers, screened_on, age, female, failed, baseline_pain, arm, randomization_number, randomized_on
    )


class _Rows:
    """Rows for one COPY round, table by table, with ids drawn from each table's sequence."""

    def __init__(self) -> None:
        self.tables: dict[type[models.Model], list[dict]] = {}

    def add(self, model: type[models.Model], **values) -> dict:
        self.tables.setdefault(model, []).append(values)
        return values


def _write_chunk(cursor, design: _Design, screened: _Screened, part: slice, rng, *, follow_up: bool) -> None:
    rows = _Rows()
    now = dt.datetime.now(tz=dt.UTC)
    indices = range(*part.indices(len(screened.site)))
    people = []
    for i in indices:
        participant = rows.add(
            Participant,
            trial_id=design.trial.pk,
            site_id=design.sites[screened.site[i]].pk,
            screening_number=screened.number[i],
            status=Participant.Status.SCREEN_FAILED if screened.failed[i] else Participant.Status.RANDOMIZED,
            screened_on=screened.screened_on[i],
            sex="F" if screened.female[i] else "M",
            birth_year=screened.screened_on[i].year - int(screened.age[i]),
            age_at_screening=int(screened.age[i]),
            strata={} if screened.failed[i] else {"basepain": ">60" if screened.baseline_pain[i] > 60 else "<=60"},
            consent_date=screened.screened_on[i],
            consent_version="2.1",
            created_at=now,
        )
        if screened.failed[i]:
            criterion = next(c for c in design.criteria if c.code == screened.failed[i])
            participant["screen_failure_criterion_id"] = criterion.pk
            participant["screen_failure_reason"] = demo.SCREEN_FAILURE_REASONS[screened.failed[i]]
        people.append((i, participant))
    _assign_ids(cursor, rows, Participant)
    for i, participant in people:
        for criterion in design.criteria:
            met = criterion.code != screened.failed[i]
            answer = met if criterion.kind == "inclusion" else not met
            rows.add(EligibilityAnswer, participant_id=participant["id"], criterion_id=criterion.pk, answer=answer)
        if screened.failed[i]:
            continue
        randomized_at = dt.datetime.combine(screened.randomized_on[i], dt.time(9, 0), tzinfo=dt.UTC) + dt.timedelta(
            minutes=int(rng.integers(0, 480))
        )
        rows.add(
            Randomization,
            trial_id=design.trial.pk,
            participant_id=participant["id"],
            arm_id=design.arms[screened.arm[i]].pk,
            slot_id=None,
            randomization_number=screened.randomization_number[i],
            stratum=f"site={design.sites[screened.site[i]].code}|basepain={participant['strata']['basepain']}",
            randomized_at=randomized_at,
            randomized_by_id=design.investigator_id,
        )
        _clinical_course(rows, design, screened, i, participant, randomized_at, rng, follow_up=follow_up)
    _assign_ids(cursor, rows, Visit)
    for model in (Participant, EligibilityAnswer, Randomization, Visit):
        _copy(cursor, model, rows.tables.pop(model, []))
    for model, table_rows in rows.tables.items():
        for row in table_rows:
            visit = row.pop("_visit", None)
            if visit is not None:
                row["visit_id"] = visit["id"]
        _copy(cursor, model, table_rows)


def _clinical_course(rows: _Rows, design: _Design, screened, i, participant, randomized_at, rng, *, follow_up) -> None:
    day0 = screened.randomized_on[i]
    arm_code = screened.arm[i]
    biomarker = float(np.exp(rng.normal(0, 0.6)))
    effect = demo.TRUE_EFFECT[arm_code] * demo.BIOMARKER_EFFECT_MULTIPLIER[biomarker > demo.BIOMARKER_HIGH_THRESHOLD]
    primary_change = demo.TRUE_WEEK12_CHANGE["PBO"] + effect
    random_intercept = rng.normal(0, 8)
    dropout_day = int(rng.integers(10, design.post_baseline[-1].target_day)) if rng.random() < DROPOUT_SHARE else None
    pid = participant["id"]
    endpoints = design.endpoints
    rows.add(
        Visit,
        participant_id=pid,
        visit_definition_id=design.screening.pk,
        visit_date=screened.screened_on[i],
        study_day=(screened.screened_on[i] - day0).days,
        in_window=True,
    )
    baseline = rows.add(
        Visit, participant_id=pid, visit_definition_id=design.baseline.pk, visit_date=day0, study_day=0, in_window=True
    )
    _measurement(rows, baseline, endpoints["WOMACP"], float(screened.baseline_pain[i]))
    _measurement(rows, baseline, endpoints["EVMIR140"], round(biomarker, 3))
    _dose(rows, design, pid, baseline, arm_code, randomized_at, rng)
    if not follow_up:
        return
    last_day, last_visit = 0, baseline
    for definition in design.post_baseline:
        study_day = definition.target_day + round(rng.normal(0, 4.5))
        if dropout_day is not None and study_day >= dropout_day:
            break
        if rng.random() < MISSED_VISIT_SHARE:
            rows.add(
                Visit,
                participant_id=pid,
                visit_definition_id=definition.pk,
                status=Visit.Status.MISSED,
                missed_reason="Participant unavailable",
            )
            continue
        visit_date = day0 + dt.timedelta(days=study_day)
        in_window = definition.is_day_in_window(study_day)
        visit = rows.add(
            Visit,
            participant_id=pid,
            visit_definition_id=definition.pk,
            visit_date=visit_date,
            study_day=study_day,
            in_window=in_window,
        )
        last_day, last_visit = study_day, visit
        if not in_window:
            rows.add(
                ProtocolDeviation,
                participant_id=pid,
                _visit=visit,
                category=ProtocolDeviation.Category.VISIT_WINDOW,
                severity=ProtocolDeviation.Severity.MINOR,
                occurred_on=visit_date,
                detected_on=visit_date,
                is_automatic=True,
                description=f"{definition.name} on study day {study_day}, outside {definition.window_label}",
            )
        # The change grows to its full size at W12 and wanes slowly afterwards, as in the demo's profile.
        profile = min(1.0, definition.target_day / 84) * (0.8 if definition.target_day > 84 else 1.0)
        pain = screened.baseline_pain[i] + profile * primary_change + random_intercept + rng.normal(0, 10)
        pain = round(min(100.0, max(0.0, float(pain))), 1)
        if rng.random() < NOT_DONE_SHARE:
            _measurement(rows, visit, endpoints["WOMACP"], None, reason="Questionnaire not completed")
            continue
        _measurement(rows, visit, endpoints["WOMACP"], pain)
        if definition.code == design.primary_code:
            improvement = screened.baseline_pain[i] - pain
            relative = improvement / screened.baseline_pain[i]
            responder = (relative >= 0.5 and improvement >= 20) or (relative >= 0.2 and improvement >= 10)
            _measurement(rows, visit, endpoints["RESP"], 1.0 if responder else 0.0)
            shift = -0.15 if arm_code != "PBO" else 0.0
            _measurement(
                rows, visit, endpoints["EVMIR140"], round(biomarker * float(np.exp(rng.normal(shift, 0.3))), 3)
            )
    if last_day > 0 and last_visit["visit_definition_id"] == design.post_baseline[-1].pk:
        rate = np.log(2) / demo.RESCUE_PLACEBO_MEDIAN_DAYS * demo.RESCUE_HAZARD_RATIO[arm_code]
        rescue_day = float(rng.exponential(1 / rate))
        event = rescue_day <= last_day
        _measurement(
            rows, last_visit, endpoints["TTRESC"], round(rescue_day if event else float(last_day), 1), event=event
        )
    follow_up_days = dropout_day or last_day or 1
    for event in demo._adverse_events_for(None, arm_code, day0, follow_up_days, rng):  # the demo's AE terms and rates
        values = {field.attname: getattr(event, field.attname) for field in AdverseEvent._meta.concrete_fields}
        values.pop("id")
        values.pop("created_at")  # the model default (now), as for every other row
        values["participant_id"] = pid
        rows.add(AdverseEvent, **values)
    if dropout_day is not None:
        participant["status"] = Participant.Status.WITHDRAWN
        participant["withdrawn_on"] = day0 + dt.timedelta(days=dropout_day)
        participant["withdrawal_reason"] = Participant.WithdrawalReason.WITHDRAWAL_BY_SUBJECT
    else:
        participant["status"] = Participant.Status.COMPLETED
        participant["completed_on"] = last_visit["visit_date"]


def _measurement(rows: _Rows, visit: dict, endpoint: Endpoint, value, *, event=None, reason: str = "") -> None:
    rows.add(
        OutcomeMeasurement,
        _visit=visit,
        endpoint_id=endpoint.pk,
        value=value,
        event_occurred=event,
        unit=endpoint.unit,
        measured_on=visit["visit_date"],
        not_done_reason=reason,
    )


def _dose(rows: _Rows, design: _Design, pid: int, visit: dict, arm_code: str, randomized_at, rng) -> None:
    arm = design.arms[arm_code]
    administered_at = randomized_at + dt.timedelta(minutes=int(rng.integers(20, 90)))
    if arm.dose_particles is None:
        lot, volume, particles, notes = None, 2.0, 0.0, "Matching saline placebo"
    else:
        lot = design.lots["EXO-UC-2501"]
        volume = round(arm.dose_particles / lot.particle_concentration_per_ml, 3)
        particles, notes = volume * lot.particle_concentration_per_ml, "Stock diluted to 2 mL with saline by pharmacy"
    rows.add(
        DoseAdministration,
        participant_id=pid,
        _visit=visit,
        lot_id=lot.pk if lot else None,
        administered_at=administered_at,
        volume_ml=volume,
        particles_given=particles,
        route=arm.route,
        administered_by="Unblinded pharmacist",
        notes=notes,
    )


# --- COPY -------------------------------------------------------------------------------------------------------


def _assign_ids(cursor, rows: _Rows, model: type[models.Model]) -> None:
    pending = [row for row in rows.tables.get(model, []) if "id" not in row]
    if not pending:
        return
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
        [model._meta.db_table, len(pending)],
    )
    for row, (pk,) in zip(pending, cursor.fetchall(), strict=True):
        row["id"] = pk


def _column_default(field: models.Field):
    if isinstance(field, models.DateTimeField) and (field.auto_now or field.auto_now_add):
        return dt.datetime.now(tz=dt.UTC)
    return field.get_default()


def _copy(cursor, model: type[models.Model], rows: list[dict]) -> None:
    """COPY ``rows`` (dicts by attribute name) into ``model``'s table; absent fields get the model's default."""
    if not rows:
        return
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and "id" not in rows[0])]
    defaults = {f.attname: _column_default(f) for f in fields}
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    statement = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
        pgsql.Identifier(model._meta.db_table), pgsql.SQL(", ").join(pgsql.Identifier(f.column) for f in fields)
    )
    names = [f.attname for f in fields]
    with cursor.copy(statement) as copy:
        for row in rows:
            values = [row.get(name, defaults[name]) for name in names]
            for position, name in enumerate(names):
                if name in json_fields:
                    values[position] = Jsonb(values[position])
            copy.write_row(values)


# --- The outcome import file ------------------------------------------------------------------------------------


def outcome_rows(trial: Trial, *, seed: int = 0) -> Iterator[list[str]]:
    """Rows of the import format for every post-baseline value ``trial`` does not store yet, in a fixed order.

    Participants in screening-number order; per participant each post-baseline visit in order (a missing visit on
    its target day, which the import creates), per visit its scheduled endpoints in rank order. Values are valid
    for each endpoint's kind and range, so the whole file imports.
    """
    rng = np.random.default_rng([seed, 8])
    definitions = list(trial.visit_definitions.filter(is_baseline=False, target_day__gt=0).order_by("order"))
    schedule = {
        definition.pk: list(Endpoint.objects.filter(trial=trial, visits=definition).order_by("rank"))
        for definition in definitions
    }
    stored = set(
        OutcomeMeasurement.objects.filter(visit__participant__trial=trial).values_list(
            "visit__participant_id", "visit__visit_definition_id", "endpoint_id"
        )
    )
    visit_dates = {
        (pk, definition_id): visit_date
        for pk, definition_id, visit_date in Visit.objects.filter(participant__trial=trial).values_list(
            "participant_id", "visit_definition_id", "visit_date"
        )
    }
    baseline = trial.visit_definitions.get(is_baseline=True)
    people = Participant.objects.filter(trial=trial, randomization__isnull=False).order_by("screening_number")
    for pk, number in people.values_list("pk", "screening_number"):
        day0 = visit_dates.get((pk, baseline.pk))
        if day0 is None:
            continue
        for definition in definitions:
            key = (pk, definition.pk)
            visit_date = visit_dates.get(key) or day0 + dt.timedelta(days=definition.target_day)
            for endpoint in schedule[definition.pk]:
                if (pk, definition.pk, endpoint.pk) in stored:
                    continue
                yield _outcome_row(number, definition, endpoint, visit_date, rng)


def _outcome_row(number: str, definition, endpoint: Endpoint, visit_date: dt.date, rng) -> list[str]:
    event = ""
    if endpoint.kind == Endpoint.Kind.BINARY:
        value = str(int(rng.random() < 0.45))
    elif endpoint.kind == Endpoint.Kind.TIME_TO_EVENT:
        happened = rng.random() < 0.3
        value = f"{rng.uniform(1, definition.target_day) if happened else float(definition.target_day):.1f}"
        event = "1" if happened else "0"
    elif endpoint.code == "WOMACP":
        value = f"{float(np.clip(rng.normal(50, 15), 0, 100)):.1f}"
    else:
        value = f"{float(np.clip(np.exp(rng.normal(0, 0.6)), endpoint.min_value, endpoint.max_value)):.3f}"
    return [number, definition.code, endpoint.code, value, endpoint.unit, visit_date.isoformat(), event]


def write_outcome_csv(trial: Trial, path: str | os.PathLike[str], *, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` new outcome values of ``trial`` to ``path`` in the import format; returns the path.

    Raises ValueError, writing nothing, when the trial has fewer than ``rows`` values left to import (build it with
    ``follow_up=False`` and enough participants: 13 values per participant with the default 12 visits).
    """
    path = Path(path)
    source = outcome_rows(trial, seed=seed)
    first = [row for _, row in zip(range(rows), source, strict=False)]
    if len(first) < rows:
        raise ValueError(f"{trial} has only {len(first)} outcome values left to import; {rows} were asked for.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(OUTCOME_CSV_COLUMNS)
        writer.writerows(first)
    return path
