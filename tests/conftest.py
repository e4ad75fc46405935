from __future__ import annotations

import pytest

from trials import demo

TEST_PASSWORD = "correct-horse-battery-9"


@pytest.fixture(scope="session")
def demo_seed(django_db_setup, django_db_blocker):
    """EXO-OA-201 seeded once per test session (tests roll back their own changes around it)."""
    with django_db_blocker.unblock():
        return demo.seed_demo(seed=demo.DEFAULT_SEED, password=TEST_PASSWORD)


@pytest.fixture
def demo_password() -> str:
    return TEST_PASSWORD


@pytest.fixture
def demo_trial(demo_seed, db):
    from trials.models import Trial

    return Trial.objects.get(protocol_code=demo.PROTOCOL_CODE)


@pytest.fixture
def coordinator(demo_trial):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="demo-coordinator")


@pytest.fixture
def coordinator_client(client, coordinator):
    client.force_login(coordinator)
    return client
