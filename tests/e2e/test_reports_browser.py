"""The DSMB member reads an interim report in the browser; a blinded statistician sees only the open report."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.e2e.conftest import PASSWORD
from trials import demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def interim(transactional_db):
    from analysis.services import analysis_run_execute, analysis_run_request

    trial = demo.seed_demo(password=PASSWORD).trial
    statistician = get_user_model().objects.get(username="demo-unblinded-stat")
    run = analysis_run_request(trial=trial, user=statistician, kind="interim", cutoff=demo.ENROLMENT_END)
    run = analysis_run_execute(run_id=run.pk)
    return {"run": run.pk}


def test_dsmb_reads_the_closed_report_and_sponsor_only_the_open_one(interim, live_server, page, screenshot, log_in):
    base = f"{live_server.url}/trials/EXO-OA-201/analyses/{interim['run']}/"
    log_in(page, live_server.url, "demo-dsmb")
    page.goto(base)
    page.wait_for_selector("text=Downloads")
    assert "closed/report.pdf" in page.content()
    screenshot("dsmb-run")
    page.click("text=Closed report")
    page.wait_for_selector("text=Group-sequential monitoring of the primary endpoint")
    screenshot("dsmb-closed-html")
    log_in(page, live_server.url, "demo-sponsor")
    page.goto(base)
    assert "closed/report.pdf" not in page.content()
    page.click("text=Open report")
    page.wait_for_selector("text=Enrolment and screening")
    screenshot("sponsor-open-html")
    log_in(page, live_server.url, "demo-blinded-stat")
    page.goto(f"{live_server.url}/trials/EXO-OA-201/exports/")
    screenshot("blinded-exports")
    assert page.console_errors == []
