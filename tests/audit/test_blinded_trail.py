"""The audit trail does not unblind (R7): after randomisation, no history a blinded user reaches shows an arm."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from participants.services.randomization import participant_randomize
from tests.participants.conftest import build_small_trial
from trials.policies.blinding import ALLOCATION_FIELDS

pytestmark = pytest.mark.django_db
BLINDED = ("coord", "monitor", "nurse-A1", "nurse-B2", "blind-stat")
MASKED_FIELDS = sorted(
    ALLOCATION_FIELDS["participants.randomization"] | ALLOCATION_FIELDS["participants.allocationslot"]
)


@pytest.fixture
def randomized():
    small = build_small_trial(code="TST-R7-1")
    participants = small.screen_eligible("A1", "low", n=3) + small.screen_eligible("B2", "high", n=3)
    for participant in participants:
        participant_randomize(participant=participant, user=small.users[f"nurse-{participant.site.code}"])
    return small, participants


def arm_revealing_patterns(trial) -> list[re.Pattern]:
    patterns = []
    for arm in trial.arms.all():
        patterns += [re.compile(rf"\b{re.escape(arm.code)}\b"), re.compile(re.escape(arm.name))]
        if arm.dose_particles:
            dose = arm.dose_particles
            patterns += [re.compile(re.escape(text)) for text in (f"{dose:g}", f"{dose:.0f}", f"{dose:.1e}")]
    return patterns


def history_urls(trial, participant) -> list[str]:
    code = trial.protocol_code
    return [
        reverse("participants:history", args=[code, participant.pk]),
        f"/api/v1/trials/{code}/history/participants/{participant.pk}/",
    ]


def shown_arm_values(body: str) -> list[str]:
    """Values shown for the allocation fields, on the history page and in the API's JSON."""
    values = []
    for field in MASKED_FIELDS:
        values += re.findall(rf"<strong>{field}</strong>: ([^<]*)</div>", body)
        values += re.findall(rf'"field":\s*"{field}",\s*"old":\s*[^,]*,\s*"new":\s*("[^"]*"|[^,}}]*)', body)
    return values


@pytest.mark.req("R7")
@pytest.mark.parametrize("username", BLINDED)
def test_no_history_page_or_api_a_blinded_user_reaches_shows_an_arm(client, randomized, username, log_in):
    small, participants = randomized
    log_in(client, small.users[username])
    patterns = arm_revealing_patterns(small.trial)
    reached, masked_shown = 0, 0
    for participant in participants:
        for url in history_urls(small.trial, participant):
            response = client.get(url)
            if response.status_code != 200:
                assert response.status_code in (403, 404), url  # another site's participant
                continue
            reached += 1
            body = response.content.decode()
            assert "Randomization" in body or "/api/" in url
            leaks = [pattern.pattern for pattern in patterns if pattern.search(body)]
            assert leaks == [], f"{username} sees {leaks} at {url}"
            shown = shown_arm_values(body)
            assert set(shown) <= {"(hidden)", '"(hidden)"'}, url
            masked_shown += len(shown)
    assert masked_shown >= reached // 2  # each reached history page shows the randomization's arm, masked
    assert reached >= 3  # site staff reach their own site's three participants, the others all six


@pytest.mark.req("R7")
def test_the_unblinded_statistician_sees_the_assignment_in_the_same_trail(client, randomized, log_in):
    small, participants = randomized
    log_in(client, small.users["stat"])
    participant = participants[0]
    body = client.get(reverse("participants:history", args=[small.trial.protocol_code, participant.pk])).content
    assert f"<strong>arm_id</strong>: {participant.randomization.arm_id}</div>" in body.decode()
