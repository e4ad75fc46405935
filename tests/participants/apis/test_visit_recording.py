"""Recording a visit through the API: the answer is the visit as it is read back, from a fixed number of queries."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
API = "/api/v1/trials/EXO-OA-201"


@pytest.fixture
def site_client():
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username="demo-site"))
    return client


def baseline(participant) -> dict:
    return {
        "visit": "BL",
        "visit_date": participant.randomization.randomized_at.date().isoformat(),
        "measurements": [{"endpoint": "EVMIR140", "value": 1.2}, {"endpoint": "WOMACP", "value": 72}],
    }


def test_the_answer_to_a_recorded_visit_is_the_visit_as_read_back(site_client, fresh):
    # given: the baseline, then week 12 with its values in another order than the protocol's, one not done
    url = f"{API}/participants/{fresh.pk}/visits/"
    assert site_client.post(url, baseline(fresh), format="json").status_code == 201
    week12 = {
        "visit": "W12",
        "visit_date": baseline(fresh)["visit_date"],
        "measurements": [
            {"endpoint": "EVMIR140", "value": None, "not_done_reason": "  sample haemolysed "},
            {"endpoint": "RESP", "value": 1},
            {"endpoint": "WOMACP", "value": 40.25},
        ],
    }
    # when
    created = site_client.post(url, week12, format="json")
    # then: byte for byte what a later read gives, measurements in the protocol's order
    assert created.status_code == 201
    read = site_client.get(f"{API}/visits/{created.json()['id']}/")
    assert created.content == read.content
    assert created["ETag"] == read["ETag"]
    body = created.json()
    assert [m["endpoint"] for m in body["measurements"]] == ["WOMACP", "RESP", "EVMIR140"]
    assert body["measurements"][2]["not_done_reason"] == "sample haemolysed"
    assert body["in_window"] is False  # study day 0, far before week 12's window


def test_recording_a_visit_reads_each_thing_once(site_client, fresh, django_assert_num_queries):
    # given: a participant with a baseline, and a client whose user is read afresh as for any new request
    url = f"{API}/participants/{fresh.pk}/visits/"
    assert site_client.post(url, baseline(fresh), format="json").status_code == 201
    week4 = {**baseline(fresh), "visit": "W4", "measurements": [{"endpoint": "WOMACP", "value": 60}]}
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username="demo-site"))
    # when / then: the trial, the membership with its sites, the participant, the visit definition, its endpoints,
    # and in one read the lock state, trial status and visits recorded so far; then in a savepoint (the test's
    # transaction stands for the request's) the visit, its measurements and its window deviation (day 0 is out of
    # week 4's window). The answer is not read back.
    with django_assert_num_queries(11):
        response = client.post(url, week4, format="json")
    assert response.status_code == 201
