"""Concealed randomization: the allocation list, the randomize service and the balance report.

Concurrency: every randomization of a trial locks the trial's ``AllocationList`` row
(``SELECT … FOR UPDATE``) before it reads the next free slot, so two concurrent requests can neither take
the same slot nor skip one, and a rolled-back attempt frees nothing it had not taken. Randomizations are
rare events (seconds apart at most), so serialising them per trial costs nothing noticeable.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from audit.context import audit_context
from participants.allocation import minimization_assign, permuted_block_sequence
from participants.exceptions import (
    AllocationExhaustedError,
    AllocationListExistsError,
    AllocationListMissingError,
    NotEligibleError,
    RandomizationClosedError,
)
from participants.models import AllocationList, AllocationSlot, Participant, Randomization
from trials.models import AnalysisPlan, Trial
from trials.policies.access import Capability, require
from trials.policies.sites import can_see_site

SITE_FACTOR = "site"


def stratification_factors(trial: Trial) -> list[tuple[str, list[str]]]:
    """The plan's factors with their levels, in the fixed order used to build stratum keys."""
    plan = trial.analysis_plan
    factors: list[tuple[str, list[str]]] = []
    if plan.stratify_by_site:
        factors.append((SITE_FACTOR, list(trial.sites.order_by("code").values_list("code", flat=True))))
    factors += [(f.code, list(f.levels)) for f in plan.stratification_factors.order_by("code")]
    return factors


def stratum_key(levels: dict[str, str], factors: list[tuple[str, list[str]]]) -> str:
    return "|".join(f"{code}={levels[code]}" for code, _ in factors)


def participant_levels(participant: Participant, factors: list[tuple[str, list[str]]]) -> dict[str, str]:
    levels = {}
    for code, allowed in factors:
        value = participant.site.code if code == SITE_FACTOR else (participant.strata or {}).get(code)
        if value not in allowed:
            raise NotEligibleError(
                f"Stratification factor {code!r} of {participant} is {value!r}; expected one of {allowed}.",
                field=f"strata.{code}",
            )
        levels[code] = value
    return levels


def allocation_list_generate(*, trial: Trial, user, seed: int | None = None) -> AllocationList:
    """Generate the trial's concealed allocation list once, from a recorded seed (SHA-256 kept for audit).

    Permuted blocks: each stratum (site × factor levels) gets its own sequence, long enough for the whole
    target enrolment, with block sizes drawn from the plan's multiples of the allocation-ratio total.
    Minimization: no slots; the seed drives the random element of every assignment.
    """
    require(user, trial, Capability.MANAGE_ALLOCATION)
    if AllocationList.objects.filter(trial=trial).exists():
        raise AllocationListExistsError(
            f"{trial} already has an allocation list; it cannot be regenerated without breaking concealment."
        )
    plan = trial.analysis_plan
    seed = int(seed if seed is not None else plan.randomization_seed or secrets.randbits(62))
    factors = stratification_factors(trial)
    arms = list(trial.arms.order_by("code"))
    if len(arms) < 2:
        raise NotEligibleError(f"{trial} needs at least two arms before an allocation list can be generated.")
    with transaction.atomic(), audit_context(reason="allocation list generated", user=user):
        allocation = AllocationList(
            trial=trial,
            scheme=plan.randomization_scheme,
            seed=seed,
            factors=[list(f) for f in factors],
            block_size_multiples=list(plan.block_size_multiples or [1]),
            minimization_probability=plan.minimization_probability,
            generated_by=user,
            checksum="",
        )
        digest = hashlib.sha256(f"{plan.randomization_scheme}|{seed}|".encode())
        slots = []
        if plan.randomization_scheme == AnalysisPlan.Scheme.PERMUTED_BLOCKS:
            allocation.slots_per_stratum = trial.target_enrollment
            arm_weights = [(arm.code, arm.allocation_weight) for arm in arms]
            arm_by_code = {arm.code: arm for arm in arms}
            for index, combination in enumerate(itertools.product(*(levels for _, levels in factors))):
                stratum = stratum_key(dict(zip([code for code, _ in factors], combination, strict=True)), factors)
                sequence = permuted_block_sequence(
                    arm_weights,
                    block_multiples=allocation.block_size_multiples,
                    length=allocation.slots_per_stratum,
                    rng=np.random.default_rng([seed, index]),
                )
                for position, code in enumerate(sequence[: allocation.slots_per_stratum], start=1):
                    slots.append(AllocationSlot(stratum=stratum, sequence=position, arm=arm_by_code[code]))
                    digest.update(f"{stratum}|{position}|{code}\n".encode())
        allocation.checksum = digest.hexdigest()
        allocation.save()
        for slot in slots:
            slot.allocation_list = allocation
        AllocationSlot.objects.bulk_create(slots, batch_size=5000)
    return allocation


def _check_can_randomize(participant: Participant) -> None:
    if participant.status != Participant.Status.ELIGIBLE:
        raise NotEligibleError(
            f"{participant} is {participant.get_status_display().lower()}; only eligible, consented participants "
            "can be randomized.",
            field="status",
        )
    if participant.consent_date is None:
        raise NotEligibleError(f"{participant} has no consent date.", field="consent_date")
    criteria = set(participant.trial.eligibility_criteria.values_list("pk", flat=True))
    answers = {a.criterion_id: a for a in participant.eligibility_answers.select_related("criterion")}
    if criteria - set(answers):
        raise NotEligibleError(f"The eligibility checklist of {participant} is incomplete.", field="answers")
    unmet = [a.criterion.code for a in answers.values() if not a.criterion.is_met_by(a.answer)]
    if unmet:
        raise NotEligibleError(f"{participant} does not meet {', '.join(sorted(unmet))}.", field="answers")


def participant_randomize(*, participant: Participant, user) -> Randomization:
    """Assign the participant's arm: the next free slot of their stratum (or minimization).

    Idempotent per participant: randomizing an already randomized participant returns the existing
    randomization and changes nothing. Checks role, site, recruitment status, consent and eligibility.
    """
    trial = participant.trial
    require(user, trial, Capability.RANDOMIZE)
    if not can_see_site(user, trial, participant.site_id):
        raise NotEligibleError(f"{participant} is not at one of your sites.")
    with transaction.atomic():
        try:
            allocation = AllocationList.objects.select_for_update().get(trial=trial)
        except AllocationList.DoesNotExist:
            raise AllocationListMissingError(
                f"{trial} has no allocation list yet; the unblinded statistician generates it."
            ) from None
        participant = Participant.objects.select_related("site", "trial").get(pk=participant.pk)
        existing = Randomization.objects.filter(participant=participant).first()
        if existing is not None:
            return existing
        if trial.status != Trial.Status.RECRUITING:
            raise RandomizationClosedError(f"{trial} is not recruiting ({trial.get_status_display().lower()}).")
        _check_can_randomize(participant)
        factors = [(code, levels) for code, levels in allocation.factors]
        levels = participant_levels(participant, factors)
        stratum = stratum_key(levels, factors)
        slot, arm = _next_assignment(allocation, trial, stratum, levels, factors)
        number = allocation.randomized_count + 1
        with audit_context(reason="randomization", user=user):
            randomization = Randomization.objects.create(
                trial=trial,
                participant=participant,
                arm=arm,
                slot=slot,
                randomization_number=f"R{number:04d}",
                stratum=stratum,
                randomized_at=timezone.now(),
                randomized_by=user,
            )
            AllocationList.objects.filter(pk=allocation.pk).update(randomized_count=F("randomized_count") + 1)
            Participant.objects.filter(pk=participant.pk).update(
                status=Participant.Status.RANDOMIZED, version=F("version") + 1
            )
    return randomization


def _next_assignment(allocation, trial, stratum, levels, factors):
    arms = {arm.code: arm for arm in trial.arms.all()}
    if allocation.scheme == AllocationList.Scheme.PERMUTED_BLOCKS:
        slot = allocation.slots.filter(stratum=stratum, randomization__isnull=True).order_by("sequence").first()
        if slot is None:
            raise AllocationExhaustedError(f"The allocation list has no free slot left in stratum {stratum}.")
        return slot, slot.arm
    counts = minimization_counts(trial, factors)
    rng = np.random.default_rng([allocation.seed, allocation.randomized_count + 1])
    code = minimization_assign(
        arm_weights=[(a.code, a.allocation_weight) for a in sorted(arms.values(), key=lambda a: a.code)],
        factor_levels=levels,
        counts=counts,
        probability=allocation.minimization_probability,
        rng=rng,
    )
    return None, arms[code]


def minimization_counts(trial: Trial, factors) -> dict[tuple[str, str, str], int]:
    """Participants already assigned per (factor, level, arm), from the randomizations' stratum keys."""
    counts: dict[tuple[str, str, str], int] = {}
    rows = Randomization.objects.filter(trial=trial).values("stratum", "arm__code").annotate(n=Count("pk"))
    for row in rows:
        for part in row["stratum"].split("|"):
            code, _, level = part.partition("=")
            key = (code, level, row["arm__code"])
            counts[key] = counts.get(key, 0) + row["n"]
    return counts


@dataclass(frozen=True)
class BalanceRow:
    stratum: str
    counts: dict[str, int]
    total: int
    imbalance: int


def randomization_balance(*, trial: Trial, user) -> tuple[list[str], list[BalanceRow]]:
    """Counts per arm per stratum (unblinded statistician only), with the overall row last."""
    require(user, trial, Capability.MANAGE_ALLOCATION)
    arm_codes = list(trial.arms.order_by("code").values_list("code", flat=True))
    table: dict[str, dict[str, int]] = {}
    for row in Randomization.objects.filter(trial=trial).values("stratum", "arm__code").annotate(n=Count("pk")):
        table.setdefault(row["stratum"], dict.fromkeys(arm_codes, 0))[row["arm__code"]] = row["n"]
    overall = dict.fromkeys(arm_codes, 0)
    rows = []
    for stratum in sorted(table):
        counts = table[stratum]
        for code, n in counts.items():
            overall[code] += n
        rows.append(BalanceRow(stratum, counts, sum(counts.values()), max(counts.values()) - min(counts.values())))
    rows.append(
        BalanceRow(
            "All strata",
            overall,
            sum(overall.values()),
            max(overall.values(), default=0) - min(overall.values(), default=0),
        )
    )
    return arm_codes, rows
