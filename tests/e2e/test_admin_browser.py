"""A coordinator uses the admin in a real browser: log in, find the demo trial, its lots and participants."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import PASSWORD
from trials import demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded(transactional_db):
    trial = demo.seed_demo(password=PASSWORD).trial
    return {"site_pk": trial.sites.get(code="S01").pk}


def test_coordinator_logs_in_and_reviews_the_demo_trial(seeded, live_server, page, screenshot, browser_log_in):
    # the admin's own login page; the coordinator is staff, so the first login enrols an authenticator
    browser_log_in(page, live_server.url, "demo-coordinator", PASSWORD, path="/admin/login/?next=/admin/")
    page.wait_for_selector("text=Trial set-up")
    screenshot("admin-index")

    page.goto(f"{live_server.url}/admin/trials/trial/")
    page.click(f"text={demo.PROTOCOL_CODE}")
    page.wait_for_selector("text=Sites")
    assert page.locator("#sites-group tbody tr.has_original").count() == 4
    screenshot("admin-trial")

    page.goto(f"{live_server.url}/admin/trials/productlot/")
    assert page.locator("#result_list tbody tr").count() == 3
    screenshot("admin-lots")

    page.goto(f"{live_server.url}/admin/participants/participant/?status__exact=randomized")
    page.goto(f"{live_server.url}/admin/participants/participant/")
    assert "291" in page.inner_text("#changelist-form .paginator") or page.locator("#result_list").count() == 1
    screenshot("admin-participants")

    page.goto(f"{live_server.url}/admin/trials/site/{seeded['site_pk']}/change/")
    page.fill("#id_principal_investigator", "Dr A. Patel-Smith")
    page.click("input[name=_save]")
    assert page.locator(".errorlist").first.inner_text().startswith("Give a reason")
    page.fill("#id_change_reason", "PI name change after marriage")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was changed successfully")
    page.goto(f"{live_server.url}/admin/trials/site/{seeded['site_pk']}/history/")
    assert "PI name change after marriage" in page.inner_text("#audit-trail")
    screenshot("admin-site-history")
    assert page.console_errors == []
