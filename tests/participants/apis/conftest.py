"""What the API tests of participants share."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from participants.models import Participant
from participants.services.randomization import participant_randomize


@pytest.fixture
def fresh(demo_trial):
    """An eligible demo participant at site S01, randomized now (no visit recorded yet)."""
    participant = Participant.objects.filter(trial=demo_trial, site__code="S01", status="eligible").first()
    participant_randomize(participant=participant, user=get_user_model().objects.get(username="demo-site"))
    participant.refresh_from_db()
    return participant
