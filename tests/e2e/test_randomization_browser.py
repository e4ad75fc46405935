"""Site staff randomize and emergency-unblind in a real browser; the unblinded statistician checks balance."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import PASSWORD
from trials import demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded(transactional_db):
    trial = demo.seed_demo(password=PASSWORD).trial
    return {"arm_names": list(trial.arms.values_list("name", flat=True))}


def test_site_staff_randomize_and_unblind_then_the_unblinded_statistician_reviews_balance(
    seeded, live_server, page, screenshot, log_in
):
    # one seeded trial, server and browser for both people (each logs in afresh; the statistician's pages do not
    # depend on the participant the site randomized)
    log_in(page, live_server.url, "demo-site")
    screenshot("site-home")
    page.click("text=EXO-OA-201")
    page.wait_for_selector("text=Enrolment by site")
    screenshot("site-trial-home")
    page.click("nav >> text=Participants")
    page.select_option("#status", "eligible")
    page.click("button:has-text('Filter')")
    screenshot("site-participants-eligible")
    page.click("table tbody tr td a")
    page.click("text=Randomize…")
    screenshot("site-randomize-confirm")
    page.click("text=Confirm randomization")
    page.wait_for_selector("text=randomization number R0241")
    screenshot("site-randomized")
    for arm_name in seeded["arm_names"]:
        assert arm_name not in page.content()

    page.click("text=Emergency unblinding…")
    page.fill("#id_reason", "Anaphylaxis after injection; ICU needs the treatment")
    page.check("#id_confirm")
    screenshot("site-unblind-form")
    page.click("button:has-text('Unblind this participant')")
    page.wait_for_selector("text=is unblinded for you")
    assert page.locator("dt:has-text('Treatment') + dd").inner_text().strip() != ""
    screenshot("site-unblinded")
    assert page.console_errors == []

    # the unblinded statistician reviews allocation balance and simulates
    log_in(page, live_server.url, "demo-unblinded-stat")
    page.goto(f"{live_server.url}/trials/EXO-OA-201/randomization/")
    screenshot("stat-allocation")
    page.click("nav >> text=Balance")
    assert "All strata" in page.inner_text("table")
    screenshot("stat-balance")
    page.click("nav >> text=Simulate")
    page.fill("#id_n_trials", "300")
    page.click("button:has-text('Run simulation')")
    page.wait_for_selector("text=Imbalance per stratum")
    screenshot("stat-simulation")
    assert page.console_errors == []
