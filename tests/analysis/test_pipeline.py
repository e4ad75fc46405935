"""The analysis pipeline end to end on the demo trial: datasets, results, reports, access, reproducibility."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.testing import log_in
from analysis.compute import compute
from analysis.models import AnalysisRun, ArtifactDownload
from analysis.services import (
    analysis_run_execute,
    analysis_run_request,
    analysis_run_verify,
    artifact_root,
    read_datasets,
    run_folder,
    spec_from_dict,
)
from analysis.stats.efficacy import ancova
from trials import demo

pytestmark = pytest.mark.django_db


def artifact_text(run, name: str) -> str:
    path = run_folder(run) / name
    if path.suffix == ".pdf":
        from pypdf import PdfReader

        return "\n".join(page.extract_text() for page in PdfReader(path).pages)
    if path.suffix == ".xlsx":
        from openpyxl import load_workbook

        book = load_workbook(path)
        return "\n".join(
            str(cell.value) for sheet in book for row in sheet.iter_rows() for cell in row if cell.value is not None
        )
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return "\n".join(archive.read(name).decode() for name in archive.namelist())
    return path.read_text(encoding="utf-8")


def test_interim_run_succeeds_with_every_artifact(interim_run):
    assert interim_run.status == AnalysisRun.Status.SUCCEEDED, interim_run.error
    names = set(interim_run.artifacts.values_list("name", flat=True))
    for expected in (
        "results.json",
        "datasets/adsl.csv",
        "datasets/adeff.csv",
        "datasets/adae.csv",
        "datasets/adtte.csv",
        "open/report.pdf",
        "open/report.xlsx",
        "closed/report.pdf",
        "closed/report.xlsx",
        "open/tables.zip",
        "closed/tables.zip",
        "open/report.html",
    ):
        assert expected in names
    assert interim_run.progress == 100
    assert set(interim_run.timings) >= {"extracting data", "fitting models", "writing XLSX"}


def test_final_run_has_the_final_layout(final_run):
    assert final_run.status == AnalysisRun.Status.SUCCEEDED, final_run.error
    names = set(final_run.artifacts.values_list("name", flat=True))
    assert {"results.json", "report.pdf", "report.xlsx", "tables.zip", "datasets/adsl.csv"} <= names
    assert final_run.results["monitoring"]["looks"][-1]["fraction"] == 1.0
    assert len(final_run.results["monitoring"]["looks"]) == 2  # the interim look, then the final


def test_adam_datasets_have_the_adam_variables(interim_run):
    datasets = read_datasets(run_folder(interim_run) / "datasets")
    assert {
        "USUBJID",
        "SITEID",
        "TRT01P",
        "TRT01A",
        "RANDDT",
        "ITTFL",
        "SAFFL",
        "PPROTFL",
        "AGE",
        "SEX",
        "BASEPAIN",
        "EOSSTT",
    } <= set(datasets["adsl"].columns)
    assert list(datasets["adeff"].columns) == [
        "USUBJID",
        "PARAMCD",
        "PARAM",
        "AVISIT",
        "AVISITN",
        "ADY",
        "AVAL",
        "BASE",
        "CHG",
        "ANL01FL",
    ]
    assert {"USUBJID", "AEBODSYS", "AEDECOD", "AETOXGR", "AESER", "AEREL", "TRTEMFL", "ASTDT", "AENDT"} <= set(
        datasets["adae"].columns
    )
    assert {"USUBJID", "PARAMCD", "AVAL", "CNSR", "STARTDT", "ADT"} <= set(datasets["adtte"].columns)
    # nothing after the cut-off
    assert pd.to_datetime(datasets["adsl"]["RANDDT"]).max() <= pd.Timestamp(interim_run.cutoff)
    assert set(datasets["adtte"]["CNSR"]) <= {0, 1}


def test_results_json_has_the_documented_keys(interim_run):
    results = json.loads((run_folder(interim_run) / "results.json").read_text())
    primary = results["primary"]
    assert (primary["paramcd"], primary["visit"]) == ("WOMACP", "W12")
    assert primary["covariates"] == ["BASE", "SITEID", "BASEPAIN"]
    adsl = pd.read_csv(run_folder(interim_run) / "datasets" / "adsl.csv")
    for contrast in primary["contrasts"]:
        assert {"arm", "reference", "estimate", "ci_lower", "ci_upper", "pvalue"} <= set(contrast)
        assert contrast["arm"] in set(adsl["TRT01P"])
        assert contrast["reference"] in set(adsl["TRT01P"])
    monitoring = results["monitoring"]
    for look in monitoring["looks"]:
        assert {"fraction", "z_statistic", "efficacy_bound", "cumulative_alpha"} <= set(look)
    assert set(monitoring["conditional_power"]) >= {"current_trend", "design_effect"}
    assert monitoring["recommendation"] in {"continue", "stop for efficacy", "consider stopping for futility"}


def test_key_numbers_equal_the_statistics_engine_on_the_frozen_datasets(interim_run):
    folder = run_folder(interim_run)
    results = json.loads((folder / "results.json").read_text())
    adsl = pd.read_csv(folder / "datasets" / "adsl.csv")
    adeff = pd.read_csv(folder / "datasets" / "adeff.csv")
    rows = adeff[(adeff["PARAMCD"] == "WOMACP") & (adeff["AVISIT"] == "W12")].dropna(subset=["CHG"])
    data = rows.merge(adsl[["USUBJID", "TRT01P", "SITEID", "BASEPAIN"]], on="USUBJID")
    fit = ancova(data, reference="PBO", outcome="CHG", arm="TRT01P", baseline="BASE", strata=["SITEID", "BASEPAIN"])
    for contrast in results["primary"]["contrasts"]:
        engine = fit.contrast(contrast["arm"])
        assert contrast["estimate"] == pytest.approx(engine.estimate, abs=1e-6)
        assert contrast["ci_lower"] == pytest.approx(engine.ci_lower, abs=1e-6)
        assert contrast["pvalue"] == pytest.approx(engine.pvalue, rel=1e-6)
    high = fit.contrast("HIGH")
    z = -high.estimate / high.se  # lower WOMAC pain is better
    assert results["monitoring"]["looks"][-1]["z_statistic"] == pytest.approx(z, abs=1e-5)


def test_final_primary_analysis_recovers_the_true_effect(final_run):
    for contrast in final_run.results["primary"]["contrasts"]:
        assert contrast["ci_lower"] < demo.TRUE_EFFECT[contrast["arm"]] < contrast["ci_upper"]


@pytest.mark.req("R21", "R39")
def test_recompute_from_frozen_datasets_equals_stored_results(interim_run, final_run):
    for run in (interim_run, final_run):
        ok, problems = analysis_run_verify(run=run)
        assert ok, problems
    out = io.StringIO()
    call_command("verify_analysis", str(interim_run.pk), stdout=out)
    assert "verified" in out.getvalue()


@pytest.mark.req("R21")
def test_verification_detects_an_altered_dataset(final_run, tmp_path, settings):
    import shutil

    # work on a copy of the artifact store so the session's run stays intact
    copy = tmp_path / "artifacts"
    shutil.copytree(artifact_root(), copy)
    settings.ARTIFACT_ROOT = copy
    path = run_folder(final_run) / "datasets" / "adeff.csv"
    text = path.read_text()
    path.write_text(text.replace(",Y\n", ",\n", 1))
    ok, problems = analysis_run_verify(run=final_run)
    assert not ok
    assert any("adeff.csv" in problem for problem in problems)


def test_pdf_reports_are_valid_paginated_and_marked(interim_run):
    from pypdf import PdfReader

    for audience, heading in (("open", "Enrolment and screening"), ("closed", "Group-sequential monitoring")):
        reader = PdfReader(run_folder(interim_run) / audience / "report.pdf")
        assert len(reader.pages) > 1
        text = "\n".join(page.extract_text() for page in reader.pages)
        assert heading in text
        assert audience.upper() in text
        assert "CONFIDENTIAL" in text
        assert f"{interim_run.cutoff:%Y-%m-%d}" in text


def test_xlsx_reports_open_with_one_sheet_per_table(interim_run):
    from openpyxl import load_workbook

    closed = load_workbook(run_folder(interim_run) / "closed" / "report.xlsx")
    assert {"primary_ancova", "monitoring", "ae_overview_by_arm"} <= set(closed.sheetnames)
    sheet = closed["primary_ancova"]
    numeric = [cell for row in sheet.iter_rows(min_row=4) for cell in row if isinstance(cell.value, float)]
    assert numeric  # numbers as numbers


def arm_strings(trial) -> list[re.Pattern]:
    from trials.formatting import scientific

    patterns = []
    for arm in trial.arms.all():
        patterns += [re.compile(rf"\b{re.escape(arm.code)}\b"), re.compile(re.escape(arm.name))]
        if arm.dose_particles:
            patterns += [
                re.compile(re.escape(text))
                for text in (
                    scientific(arm.dose_particles),
                    f"{arm.dose_particles:g}",
                    f"{arm.dose_particles:.0f}",
                    f"{arm.dose_particles:.1e}",
                    f"{arm.dose_particles:.2e}",
                )
            ]
    return patterns


@pytest.mark.req("R20")
def test_open_artifacts_contain_no_treatment_information(interim_run, demo_trial):
    patterns = arm_strings(demo_trial)
    open_artifacts = interim_run.artifacts.filter(audience="open")
    assert open_artifacts.count() >= 4
    for artifact in open_artifacts:
        text = artifact_text(interim_run, artifact.name)
        leaked = [p.pattern for p in patterns if p.search(text)]
        assert leaked == [], f"{artifact.name} reveals {leaked}"
    closed_text = artifact_text(interim_run, "closed/report.pdf")
    assert any(p.search(closed_text) for p in patterns)  # the check is not vacuous


def test_a_failing_step_leaves_a_failed_run_and_no_artifacts(demo_trial, monkeypatch):
    from analysis import assemble

    statistician = get_user_model().objects.get(username="demo-unblinded-stat")
    run = analysis_run_request(trial=demo_trial, user=statistician, kind="final", cutoff=demo.ENROLMENT_END)

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure while assembling")

    monkeypatch.setattr(assemble, "final_report", broken)
    with pytest.raises(RuntimeError):
        analysis_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.FAILED
    assert "injected failure while assembling" in run.error
    assert not run.artifacts.exists()
    assert not run_folder(run).exists()
    assert not any(Path(artifact_root(), "scratch").glob(f"run-{run.pk}-*"))


def test_redelivered_task_does_not_duplicate_artifacts(interim_run):
    before = (interim_run.artifacts.count(), interim_run.attempts, interim_run.finished_at)
    again = analysis_run_execute(run_id=interim_run.pk)
    assert (again.artifacts.count(), again.attempts, again.finished_at) == before


def test_run_analysis_command_writes_the_documented_layout(demo_trial, tmp_path):
    out = tmp_path / "out"
    call_command(
        "run_analysis",
        "EXO-OA-201",
        "--kind",
        "final",
        "--cutoff",
        "2026-10-01",
        "--sync",
        "--out",
        str(out),
        stdout=io.StringIO(),
    )
    for name in ("results.json", "datasets/adsl.csv", "report.pdf", "report.xlsx", "tables.zip"):
        assert (out / name).exists(), name
    with pytest.raises(CommandError, match="needs --sync"):
        call_command("run_analysis", "EXO-OA-201", "--kind", "final", "--out", str(out), stdout=io.StringIO())


@pytest.mark.req("R20")
def test_only_the_unblinded_statistician_requests_analyses(demo_trial):
    from analysis.services import AnalysisRequestError

    for username in ("demo-coordinator", "demo-blinded-stat", "demo-dsmb", "demo-sponsor", "demo-site"):
        with pytest.raises(AnalysisRequestError):
            analysis_run_request(trial=demo_trial, user=get_user_model().objects.get(username=username), kind="final")


@pytest.mark.parametrize(
    ("username", "audience", "status"),
    [
        ("demo-dsmb", "closed", 200),
        ("demo-unblinded-stat", "closed", 200),
        ("demo-sponsor", "closed", 404),
        ("demo-blinded-stat", "closed", 404),
        ("demo-coordinator", "closed", 404),
        ("demo-sponsor", "open", 200),
        ("demo-blinded-stat", "open", 200),
        ("demo-site", "open", 403),
        ("demo-sponsor", "datasets", 404),
    ],
)
@pytest.mark.req("R20", "R27")
def test_downloads_follow_the_report_policy_and_are_audited(client, interim_run, username, audience, status):
    log_in(client, username)
    artifact = interim_run.artifacts.filter(audience=audience).order_by("name").first()
    before = ArtifactDownload.objects.count()
    response = client.get(f"/trials/EXO-OA-201/analyses/{interim_run.pk}/artifacts/{artifact.pk}/")
    assert response.status_code == status
    if status == 200:
        assert response["Content-Disposition"].startswith("attachment;")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert ArtifactDownload.objects.count() == before + 1
        assert ArtifactDownload.objects.order_by("-pk").first().user.username == username
    else:
        assert ArtifactDownload.objects.count() == before


def test_run_page_and_html_report(client, interim_run):
    client.force_login(get_user_model().objects.get(username="demo-sponsor"))
    page = client.get(f"/trials/EXO-OA-201/analyses/{interim_run.pk}/").content.decode()
    assert "open/report.pdf" in page
    assert "closed/report.pdf" not in page
    html = client.get(f"/trials/EXO-OA-201/analyses/{interim_run.pk}/report/open/").content.decode()
    assert "Enrolment and screening" in html
    assert client.get(f"/trials/EXO-OA-201/analyses/{interim_run.pk}/report/closed/").status_code == 404
    status = client.get(f"/trials/EXO-OA-201/analyses/{interim_run.pk}/status/").json()
    assert status == {"status": "succeeded", "progress": 100, "step": "done", "error": ""}


def test_compute_refuses_incomplete_datasets():
    from analysis.compute import AnalysisSpec

    spec = AnalysisSpec(
        kind="final",
        look_number=None,
        primary_paramcd="X",
        primary_visit="V",
        lower_is_better=True,
        reference_arm="A",
        monitored_arm="B",
        strata=(),
        alpha=0.025,
        power=0.9,
        look_fractions=(1.0,),
        spending="obf",
        hsd_gamma=None,
        futility_threshold=None,
        planned_n=10,
    )
    with pytest.raises(ValueError, match="missing analysis datasets"):
        compute({"adsl": pd.DataFrame()}, spec)


def test_stored_spec_round_trips(interim_run):
    spec = spec_from_dict(interim_run.results["provenance"]["plan"])
    assert spec.look_fractions == (0.5, 0.75, 1.0)
    assert spec.strata == ("SITEID", "BASEPAIN")
