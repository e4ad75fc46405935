"""Operators see background work and alerts in the admin; only they acknowledge alerts."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from accounts.testing import login_verified
from operations.models import OperationalAlert

pytestmark = pytest.mark.django_db


def test_an_operator_lists_and_acknowledges_alerts(client):
    operator = get_user_model().objects.create_superuser("operator", "ops@example.org", "x-pass-98765")
    login_verified(client, operator)
    alert = OperationalAlert.objects.create(kind=OperationalAlert.Kind.DEAD_LETTER, subject="Task x [1] dead-lettered")
    for page in ("operationalalert", "taskexecution", "outboxmessage"):
        assert client.get(f"/admin/operations/{page}/").status_code == 200
    assert "Task x [1] dead-lettered" in client.get("/admin/operations/operationalalert/").content.decode()
    response = client.post(
        "/admin/operations/operationalalert/", {"action": "acknowledge", "_selected_action": [alert.pk]}, follow=True
    )
    assert response.status_code == 200
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None


def test_trial_roles_do_not_see_operations(client, coordinator):
    login_verified(client, coordinator)
    assert client.get("/admin/operations/operationalalert/").status_code == 403
