"""Each benchmark at a tiny scale: it runs the product path and its baseline and reports sane figures.

No timing thresholds here (the figures are for ``make bench``); these tests keep the benchmarks from rotting.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from analysis.models import AnalysisRun
from benchmarks import suite
from benchmarks.synthetic import build_trial, write_outcome_csv
from participants.models import OutcomeMeasurement


@pytest.mark.django_db
def test_import_benchmark_imports_every_row_with_its_audit_events_and_leaves_nothing(tmp_path):
    trial = build_trial(20, follow_up=False)
    path = write_outcome_csv(trial, tmp_path / "outcomes.csv", rows=250)
    stored = OutcomeMeasurement.objects.filter(visit__participant__trial=trial).count()

    figure = suite.import_vs_copy(trial, path, repeats=2, warmup=0)

    assert figure.key == "import_vs_copy"
    assert figure.detail["rows_imported"] == 250
    assert figure.detail["audit_events"] >= 250
    assert len(figure.detail["platform"]["runs_s"]) == 2
    assert figure.value > 0
    assert figure.value == pytest.approx(figure.platform / figure.baseline)
    assert OutcomeMeasurement.objects.filter(visit__participant__trial=trial).count() == stored
    # PostgreSQL's own account of the writes: the foreign-key checks and audit triggers of the inserted rows.
    breakdown = figure.detail["breakdown_s"]
    assert breakdown["foreign_key_checks_s"] > 0
    assert breakdown["audit_triggers_s"] > 0
    assert breakdown["writes_s"] > 0
    assert breakdown["validation_s"] > 0
    assert breakdown["import_s"] == pytest.approx(
        breakdown["validation_s"] + breakdown["writes_s"] + breakdown["copy_and_python_s"], abs=0.02
    )
    assert "foreign key checks" in figure.note


@pytest.mark.django_db
def test_import_benchmark_refuses_to_time_an_import_that_did_not_import(tmp_path):
    trial = build_trial(5, follow_up=False)
    path = write_outcome_csv(trial, tmp_path / "outcomes.csv", rows=20)
    path.write_text(path.read_text().replace(",WOMACP,", ",NOSUCH,", 1))

    with pytest.raises(suite.BenchmarkError, match="ended invalid"):
        suite.import_vs_copy(trial, path, repeats=1, warmup=0)


@pytest.mark.django_db
def test_freeze_benchmark_reads_the_same_subjects_and_events_as_the_freeze():
    trial = build_trial(25, seed=1)

    figure = suite.freeze_vs_copy(trial, repeats=1, warmup=0)
    baseline = suite.copy_frames(trial, timezone.localdate())

    assert figure.detail["dataset_rows"]["adsl"] == 25 == len(baseline["adsl"])
    assert figure.detail["dataset_rows"]["adae"] == len(baseline["adae"])
    assert figure.detail["dataset_rows"]["adex"] == len(baseline["adex"]) == 25
    assert figure.value > 0


@pytest.mark.django_db
def test_interim_benchmark_runs_a_whole_successful_interim_look():
    trial = build_trial(30, seed=2)

    timing = suite.interim_run(trial, repeats=1, warmup=0)
    figures = suite.interim_figures(timing, timing, small_label="30", large_label="30b")

    runs = AnalysisRun.objects.filter(trial=trial)
    assert runs.count() == 1
    assert set(runs.values_list("status", flat=True)) == {AnalysisRun.Status.SUCCEEDED}
    assert {"report.pdf", "report.xlsx"} <= {
        name.rsplit("/", 1)[-1] for name in runs[0].artifacts.values_list("name", flat=True)
    }
    assert [f.key for f in figures] == ["interim_report_seconds_30", "scaling_30b_over_30"]
    assert figures[0].value > 0
    assert figures[1].value == pytest.approx(1.0)


@pytest.mark.django_db
def test_queries_per_page_counts_every_page_for_both_trials():
    small, large = build_trial(6, seed=3), build_trial(24, seed=4)

    figure = suite.queries_per_page(small, large)

    assert set(figure.detail) == set(suite.page_paths(small))
    for counts in figure.detail.values():
        assert set(counts) == {"6", "24"}
        assert all(count > 0 for count in counts.values())
    assert figure.value == sum(1 for counts in figure.detail.values() if len(set(counts.values())) > 1)


def test_export_benchmark_streams_every_outcome_row_in_a_fresh_process(test_database_env):
    trial = build_trial(10, seed=5)
    rows = OutcomeMeasurement.objects.filter(visit__participant__trial=trial).count()

    ratio, rss = suite.export_vs_copy(trial, repeats=1, warmup=0, env=test_database_env)

    assert ratio.key == "export_vs_copy"
    assert ratio.detail["rows"] == rows > 100
    assert ratio.value > 0
    assert rss.key == "export_peak_rss_mb"
    assert rss.value >= rss.detail["rss_before_export_mb"] > 0
