"""A research nurse and a monitor use the site app in a real browser (issue: site data entry)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.e2e.conftest import PASSWORD
from trials import demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded(transactional_db):
    trial = demo.seed_demo(password=PASSWORD).trial
    return {"site_pk": str(trial.sites.get(code="S01").pk)}


def test_nurse_enrolls_enters_a_visit_records_an_sae_doses_and_answers_a_query(
    seeded, live_server, page, screenshot, log_in
):
    base = live_server.url
    today = dt.datetime.now(dt.UTC).date().isoformat()
    log_in(page, base, "demo-site")

    # screen → eligibility and consent → randomize
    page.goto(f"{base}/trials/EXO-OA-201/participants/screen/")
    page.fill("#id_birth_year", "1958")
    page.select_option("#id_sex", "F")
    screenshot("entry-screen")
    page.click("button:has-text('Assign screening number')")
    page.wait_for_selector("text=Eligibility and consent")
    for radio in page.locator("input[type=radio][value=yes]").all():
        name = radio.get_attribute("name")
        label = page.locator(f"input[name={name}]").first.locator("xpath=ancestor::fieldset/legend").inner_text()
        page.check(f"input[name={name}][value={'yes' if '(inclusion)' in label else 'no'}]")
    page.fill("#id_consent_version", "2.1")
    page.select_option("select[name='strata.basepain']", ">60")
    screenshot("entry-eligibility")
    page.click("button:has-text('Record eligibility')")
    page.wait_for_selector("text=ready to randomize")
    page.click("text=Randomize…")
    page.click("text=Confirm randomization")
    page.wait_for_selector("text=randomization number R0241")
    participant_url = page.url

    # baseline visit with an out-of-range value: the error is next to the field; fix it and save
    page.click("tr:has-text('Baseline (day 0)') >> text=Enter")
    page.fill("#id_visit_date", today)
    page.fill("#id_endpoint_WOMACP", "140")
    page.fill("#id_endpoint_EVMIR140", "1.25")
    page.click("button:has-text('Save visit')")
    page.wait_for_selector("text=Must be at most 100 points.")
    assert page.input_value("#id_endpoint_EVMIR140") == "1.25"  # nothing typed is lost
    screenshot("entry-visit-error")
    page.fill("#id_endpoint_WOMACP", "74")
    page.click("button:has-text('Save visit')")
    page.wait_for_selector("text=Baseline (day 0) saved.")

    # a serious adverse event shows its reporting clocks
    page.click("text=Record adverse event")
    page.fill("#id_term", "Septic arthritis")
    page.select_option("#id_soc", "10021881")
    page.fill("#id_onset_date", today)
    page.select_option("#id_grade", "3")
    page.check("#id_hospitalization")
    page.select_option("#id_causality", "probable")
    page.check("input[name=expected][value=no]")
    page.select_option("#id_action_taken", "none")
    page.select_option("#id_outcome", "recovering")
    screenshot("entry-sae-form")
    page.click("button:has-text('Save adverse event')")
    page.wait_for_selector("text=report it to the sponsor within 24 hours")
    assert "Sponsor report (24 h):" in page.inner_text("table:has-text('Reporting clocks')")
    assert "SUSAR to regulators (15 days)" in page.content()
    screenshot("entry-sae-clocks")

    # dosing: an expired lot is refused, a released one accepted
    page.click("text=Record dose")
    page.fill("#id_lot_number", "EXO-UC-2501")
    page.fill("#id_volume_ml", "2")
    page.click("button:has-text('Record dose')")
    page.wait_for_selector("text=expired on 2025-12-31")
    screenshot("entry-dose-refused")
    page.fill("#id_lot_number", "EXO-UC-2502")
    page.click("button:has-text('Record dose')")
    page.wait_for_selector("text=Dose recorded: lot EXO-UC-2502")
    screenshot("entry-participant")

    # the monitor raises a query on the baseline pain value …
    log_in(page, base, "demo-monitor")
    page.goto(participant_url)
    page.click("tr:has-text('Baseline (day 0)') >> text=Open")
    page.fill("#query-WOMACP", "74 here, 47 on the paper questionnaire?")
    page.click("form.raise-query:has(#query-WOMACP) >> button")
    page.wait_for_selector("text=Query raised")
    screenshot("monitor-query")

    # … which the site answers
    log_in(page, base, "demo-site")
    page.goto(participant_url)
    page.fill("textarea[name=answer]", "Paper total is 74; 47 was a misreading.")
    page.click("button:has-text('Send answer')")
    page.wait_for_selector("text=Answer sent to the monitor.")
    assert "Answered" in page.inner_text("#queries + table")
    screenshot("site-query-answered")
    assert page.console_errors == []
