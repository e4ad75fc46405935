from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection

from audit.history import record_history
from participants.exceptions import (
    AllocationListExistsError,
    AllocationListMissingError,
    NotEligibleError,
    RandomizationClosedError,
)
from participants.models import AllocationList, AllocationSlot, Participant, Randomization
from participants.services.randomization import (
    allocation_list_generate,
    participant_randomize,
    randomization_balance,
)
from trials.models import Trial


@pytest.mark.req("R17")
@pytest.mark.django_db
def test_allocation_list_is_generated_once_from_the_recorded_seed(small_trial):
    allocation = small_trial.trial.allocation_list
    assert allocation.seed == 1234
    assert len(allocation.checksum) == 64
    # 2 sites × 2 severity levels, each with a sequence as long as the target enrolment
    assert AllocationSlot.objects.filter(allocation_list=allocation).count() == 4 * 40
    with pytest.raises(AllocationListExistsError):
        allocation_list_generate(trial=small_trial.trial, user=small_trial.users["stat"])


@pytest.mark.django_db
def test_list_checksum_depends_only_on_the_seed(small_trial_factory):
    first = small_trial_factory(code="TST-SEED-1").trial.allocation_list
    second = small_trial_factory(code="TST-SEED-2").trial.allocation_list
    other = small_trial_factory(code="TST-SEED-3", generate_list=False)
    third = allocation_list_generate(trial=other.trial, user=other.users["stat"], seed=99)
    assert first.checksum == second.checksum
    assert third.checksum != first.checksum


@pytest.mark.django_db
def test_each_stratum_sequence_is_balanced_at_every_block_end(small_trial):
    slots = AllocationSlot.objects.filter(
        allocation_list=small_trial.trial.allocation_list, stratum="site=A1|severity=low"
    )
    arms = list(slots.order_by("sequence").values_list("arm__code", flat=True))
    balanced_points = [i for i in range(1, len(arms) + 1) if Counter(arms[:i])["CTRL"] * 2 == i]
    # blocks of 2 or 4: the sequence returns to balance at least every 4 assignments
    gaps = [b - a for a, b in zip([0, *balanced_points], balanced_points, strict=False)]
    assert max(gaps) <= 4


@pytest.mark.req("R17")
@pytest.mark.django_db
def test_only_the_unblinded_statistician_generates_the_list(small_trial_factory):
    small = small_trial_factory(code="TST-RND-NL", generate_list=False)
    for name in ("coord", "nurse-A1", "blind-stat", "monitor"):
        with pytest.raises(PermissionDenied):
            allocation_list_generate(trial=small.trial, user=small.users[name])
    assert not AllocationList.objects.filter(trial=small.trial).exists()


@pytest.mark.django_db
def test_randomize_takes_the_next_slot_of_the_stratum_and_is_audited(small_trial):
    # given two eligible participants in the same stratum
    first, second = small_trial.screen_eligible("A1", "high", n=2)
    nurse = small_trial.users["nurse-A1"]
    expected = list(
        AllocationSlot.objects.filter(stratum="site=A1|severity=high", allocation_list__trial=small_trial.trial)
        .order_by("sequence")
        .values_list("pk", "arm_id")[:2]
    )
    # when both are randomized
    r1 = participant_randomize(participant=first, user=nurse)
    r2 = participant_randomize(participant=second, user=nurse)
    # then they take slots 1 and 2 of their stratum, in order, with consecutive numbers
    assert [(r1.slot_id, r1.arm_id), (r2.slot_id, r2.arm_id)] == expected
    assert (r1.randomization_number, r2.randomization_number) == ("R0001", "R0002")
    assert r1.stratum == "site=A1|severity=high"
    first.refresh_from_db()
    assert first.status == Participant.Status.RANDOMIZED
    assert record_history(r1)[0].reason == "randomization"
    assert record_history(r1)[0].username == nurse.username


@pytest.mark.req("R18")
@pytest.mark.django_db
def test_randomize_is_idempotent_per_participant(small_trial):
    (participant,) = small_trial.screen_eligible()
    nurse = small_trial.users["nurse-A1"]
    first = participant_randomize(participant=participant, user=nurse)
    again = participant_randomize(participant=participant, user=nurse)
    assert again.pk == first.pk
    assert Randomization.objects.filter(participant=participant).count() == 1
    assert small_trial.trial.allocation_list.__class__.objects.get(trial=small_trial.trial).randomized_count == 1


@pytest.mark.django_db
def test_randomize_refuses_the_ineligible_the_unconsented_and_other_sites(small_trial):
    nurse_a, nurse_b = small_trial.users["nurse-A1"], small_trial.users["nurse-B2"]
    (participant,) = small_trial.screen_eligible("A1")
    with pytest.raises(NotEligibleError, match="not at one of your sites"):
        participant_randomize(participant=participant, user=nurse_b)
    for name in ("coord", "monitor", "stat", "blind-stat"):
        with pytest.raises(PermissionDenied):
            participant_randomize(participant=participant, user=small_trial.users[name])
    from audit.context import audit_context

    with audit_context(reason="test: consent withdrawn before randomization"):
        Participant.objects.filter(pk=participant.pk).update(status="screening")
    participant.refresh_from_db()
    with pytest.raises(NotEligibleError, match="only eligible, consented participants"):
        participant_randomize(participant=participant, user=nurse_a)
    assert not Randomization.objects.filter(trial=small_trial.trial).exists()


@pytest.mark.django_db
def test_randomize_refuses_when_the_trial_is_not_recruiting(small_trial):
    from audit.context import audit_context

    (participant,) = small_trial.screen_eligible()
    with audit_context(reason="recruitment closed"):
        Trial.objects.filter(pk=small_trial.trial.pk).update(status=Trial.Status.ACTIVE_FOLLOW_UP)
    participant.trial.refresh_from_db()
    with pytest.raises(RandomizationClosedError):
        participant_randomize(participant=participant, user=small_trial.users["nurse-A1"])


@pytest.mark.django_db
def test_randomize_needs_an_allocation_list(small_trial_factory):
    small = small_trial_factory(code="TST-NOLIST", generate_list=False)
    (participant,) = small.screen_eligible()
    with pytest.raises(AllocationListMissingError):
        participant_randomize(participant=participant, user=small.users["nurse-A1"])


@pytest.mark.django_db
def test_minimization_scheme_balances_factor_margins(small_trial_factory):
    small = small_trial_factory(code="TST-MIN", scheme="minimization", generate_list=False)
    allocation = allocation_list_generate(trial=small.trial, user=small.users["stat"])
    assert not allocation.slots.exists()
    participants = small.screen_eligible("A1", "low", n=6) + small.screen_eligible("B2", "high", n=6)
    nurses = {"A1": small.users["nurse-A1"], "B2": small.users["nurse-B2"]}
    for participant in participants:
        participant_randomize(participant=participant, user=nurses[participant.site.code])
    counts = Counter(Randomization.objects.filter(trial=small.trial).values_list("arm__code", flat=True))
    assert abs(counts["CTRL"] - counts["EXO"]) <= 2
    _arm_codes, rows = randomization_balance(trial=small.trial, user=small.users["stat"])
    assert rows[-1].total == 12
    with pytest.raises(PermissionDenied):
        randomization_balance(trial=small.trial, user=small.users["coord"])


# -- concurrency: real threads, real row locks, separate database connections -------------------------


def _randomize_in_thread(participant_id: int, user, results: list, errors: list, barrier: threading.Barrier):
    try:
        participant = Participant.objects.select_related("trial", "site").get(pk=participant_id)
        barrier.wait(timeout=30)
        results.append(participant_randomize(participant=participant, user=user))
    except Exception as error:
        errors.append(error)
    finally:
        connection.close()


def _run_concurrently(targets: list[tuple[int, object]]) -> tuple[list, list]:
    results: list = []
    errors: list = []
    barrier = threading.Barrier(len(targets))
    threads = [
        threading.Thread(target=_randomize_in_thread, args=(pid, user, results, errors, barrier))
        for pid, user in targets
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


@pytest.mark.req("R18")
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("repetition", range(3))
def test_concurrent_randomizations_in_one_stratum_take_distinct_consecutive_slots(small_trial_factory, repetition):
    # given 12 eligible participants in one stratum, randomized at the same instant by 12 threads
    small = small_trial_factory(code=f"TST-CONC-{repetition}")
    participants = small.screen_eligible("A1", "low", n=12)
    nurse = small.users["nurse-A1"]
    # when
    results, errors = _run_concurrently([(p.pk, nurse) for p in participants])
    # then every participant has exactly one slot: the first 12 of the stratum, none shared, none skipped
    assert errors == []
    slots = sorted(r.slot.sequence for r in results)
    assert slots == list(range(1, 13))
    assert Randomization.objects.filter(trial=small.trial).count() == 12
    assert sorted(r.randomization_number for r in results) == [f"R{n:04d}" for n in range(1, 13)]


@pytest.mark.req("R18")
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_concurrent_requests_for_the_same_participant_randomize_once(small_trial_factory):
    small = small_trial_factory(code="TST-CONC-SAME")
    (participant,) = small.screen_eligible("B2", "high")
    nurse = small.users["nurse-B2"]
    results, errors = _run_concurrently([(participant.pk, nurse)] * 8)
    assert errors == []
    assert {r.pk for r in results} == {Randomization.objects.get(participant=participant).pk}
    assert AllocationList.objects.get(trial=small.trial).randomized_count == 1
