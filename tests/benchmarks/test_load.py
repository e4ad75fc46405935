"""The API write benchmark at a tiny scale: gunicorn and wrk drive the product endpoint and the bare one."""

from __future__ import annotations

import os
import shutil

import pytest
from django.db import connection

from benchmarks import bare
from benchmarks.load import LoadSettings, api_write_vs_bare, write_targets
from benchmarks.synthetic import build_trial
from participants.models import Visit


@pytest.mark.django_db
def test_targets_are_the_visits_not_recorded_yet_each_once(tmp_path):
    trial = build_trial(4, follow_up=False)

    product, plain, count = write_targets(trial, tmp_path)

    assert count == 4 * 10  # ten post-baseline visits each
    text = product.read_text()
    assert text.count("/visits/") == count
    assert '"visit": "W4"' in text
    assert plain.read_text().count("/bench/bare/") == count


# CI installs wrk (.ci/run) and must never skip this; a developer machine without it may.
@pytest.mark.skipif(
    shutil.which("wrk") is None and os.environ.get("CI") != "true", reason="wrk (Debian package) is not installed"
)
def test_api_benchmark_writes_through_both_endpoints_under_load(test_database_env, tmp_path):
    trial = build_trial(200, follow_up=False, seed=7)  # enough visits for a fast machine: 2,000 targets
    load = LoadSettings(duration_s=2, warmup_s=2, threads=1, connections=2, gunicorn_workers=1)

    figure = api_write_vs_bare(trial, tmp_path, load=load, env=test_database_env)

    product = figure.detail["product"]["measured"]
    plain = figure.detail["bare"]["measured"]
    assert product["requests"] > 0
    assert plain["requests"] > 0
    assert figure.detail["product_p99_ms"] > 0
    assert figure.detail["bare_p99_ms"] > 0
    assert figure.value == pytest.approx(product["rps"] / plain["rps"])
    created = Visit.objects.filter(participant__trial=trial, visit_definition__target_day__gt=0).count()
    assert created >= product["requests"] + figure.detail["product"]["warmup"]["requests"]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {bare.TABLE}")  # noqa: S608 - a constant table name
        (bare_rows,) = cursor.fetchone()
    assert bare_rows >= plain["requests"]
