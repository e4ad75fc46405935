"""Every admin page of every model renders for a coordinator, and lists do not reveal the arm."""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from trials.models import Arm

pytestmark = pytest.mark.django_db

APP_LABELS = {"trials", "participants"}
REGISTERED = sorted(
    (model._meta.app_label, model._meta.model_name)
    for model in admin.site._registry
    if model._meta.app_label in APP_LABELS
)


CONCEALED = {("participants", "allocationlist"), ("participants", "allocationslot")}
INLINE_ONLY = {("trials", "membershipsite"), ("participants", "eligibilityanswer"), ("trials", "lotmarkerresult")}
# Shown to their owner on the imports pages, not in the admin.
INLINE_ONLY |= {("participants", "importjob")}


def test_every_trial_and_participant_model_is_in_the_admin_except_the_concealed_allocation():
    from pghistory.models import Event

    models = {
        (m._meta.app_label, m._meta.model_name)
        for label in APP_LABELS
        for m in apps.get_app_config(label).get_models()
        if not issubclass(m, Event)
    }
    assert models - CONCEALED - INLINE_ONLY <= set(REGISTERED)
    assert not CONCEALED & set(REGISTERED)


@pytest.mark.parametrize(("app_label", "model_name"), REGISTERED)
def test_admin_pages_render_for_a_coordinator(coordinator_client, coordinator, app_label, model_name):
    model = apps.get_model(app_label, model_name)
    model_admin = admin.site._registry[model]
    changelist = reverse(f"admin:{app_label}_{model_name}_changelist")
    response = coordinator_client.get(changelist)
    assert response.status_code == 200, changelist
    assert coordinator_client.get(changelist, {"q": "S01"}).status_code == 200
    request = response.wsgi_request
    visible = model_admin.get_queryset(request).order_by("pk")
    if model is Arm:
        # A blinded coordinator of a trial that has gone live sees no arm definitions.
        assert not visible.exists()
        return
    obj = visible.first()
    assert obj is not None, f"the demo trial shows the coordinator no {model_name}"
    for view in ("change", "history"):
        url = reverse(f"admin:{app_label}_{model_name}_{view}", args=[obj.pk])
        assert coordinator_client.get(url).status_code == 200, url
    if model_admin.has_add_permission(request):
        assert coordinator_client.get(reverse(f"admin:{app_label}_{model_name}_add")).status_code == 200


def test_admin_index_lists_the_demo_trial(coordinator_client, demo_trial):
    response = coordinator_client.get(reverse("admin:trials_trial_changelist"))
    assert b"EXO-OA-201" in response.content
    assert b"240" in response.content  # randomized count column


@pytest.mark.req("R16")
@pytest.mark.parametrize("model_name", ["participant", "randomization", "doseadministration"])
def test_list_views_do_not_reveal_the_arm(coordinator_client, demo_trial, model_name):
    response = coordinator_client.get(reverse(f"admin:participants_{model_name}_changelist"), {"all": ""})
    body = response.content.decode()
    for arm in Arm.objects.filter(trial=demo_trial):
        assert arm.name not in body
        assert f">{arm.code}<" not in body
    assert "1×10" not in body
    assert "× 10¹" not in body


@pytest.mark.req("R7", "R16")
def test_randomization_history_hides_the_arm(coordinator_client, demo_trial):
    randomization = demo_trial.randomizations.select_related("arm").first()
    response = coordinator_client.get(reverse("admin:participants_randomization_history", args=[randomization.pk]))
    body = response.content.decode()
    assert re.search(r"<td>arm(_id)?</td><td>—</td><td>\(hidden\)</td>", body)
    assert not re.search(rf"<td>arm(_id)?</td><td>—</td><td>{randomization.arm_id}</td>", body)


@pytest.mark.req("R6")
def test_history_page_shows_old_new_reason_and_user(coordinator_client, demo_trial, coordinator):
    from audit.context import audit_context

    site = demo_trial.sites.get(code="S02")
    with audit_context(reason="PI changed per site letter", user=coordinator):
        site.principal_investigator = "Dr N. Neumann"
        site.save()
    body = coordinator_client.get(reverse("admin:trials_site_history", args=[site.pk])).content.decode()
    assert "PI changed per site letter" in body
    assert "Prof. K. Weber" in body
    assert "Dr N. Neumann" in body
    assert "demo-coordinator" in body


@pytest.mark.req("R1")
def test_admin_change_without_reason_is_refused_and_with_reason_is_audited(coordinator_client, demo_trial):
    site = demo_trial.sites.get(code="S03")
    url = reverse("admin:trials_site_change", args=[site.pk])
    form = {
        "trial": demo_trial.pk,
        "code": "S03",
        "name": "Hospital Clínic (renamed)",
        "country": "ES",
        "principal_investigator": site.principal_investigator,
        "target_enrollment": 60,
        "is_active": "on",
    }
    response = coordinator_client.post(url, {**form, "change_reason": ""})
    assert response.status_code == 200
    assert "Give a reason for changing saved data" in response.content.decode()
    site.refresh_from_db()
    assert site.name == "Hospital Clínic de Barcelona"

    response = coordinator_client.post(url, {**form, "change_reason": "Official name updated"})
    assert response.status_code == 302
    site.refresh_from_db()
    assert site.name == "Hospital Clínic (renamed)"
    event = site.pgh_event_model.objects.filter(pgh_obj_id=site.pk).order_by("pgh_id").last()
    assert event.pgh_context["reason"] == "Official name updated"
    assert event.pgh_context["username"] == "demo-coordinator"


def test_admin_never_offers_delete(coordinator_client, demo_trial):
    participant = demo_trial.participants.first()
    response = coordinator_client.get(reverse("admin:participants_participant_delete", args=[participant.pk]))
    assert response.status_code == 403


def test_lot_list_shows_release_status_and_expiry(coordinator_client, demo_trial):
    body = coordinator_client.get(reverse("admin:trials_productlot_changelist")).content.decode()
    for lot in demo_trial.lots.all():
        assert lot.lot_number in body
        assert lot.expires_on.isoformat() in body
    assert "Quarantine" in body
    assert "Released" in body
