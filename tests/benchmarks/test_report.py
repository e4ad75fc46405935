"""The benchmark report: goals are checked as written, the table lists every figure, bench.json holds the keys."""

from __future__ import annotations

import json

import pytest

from benchmarks.report import Figure, ratio, table, write_json


def test_goals_compare_the_value_as_written():
    assert Figure("a", 4.0, "<=", 4).met
    assert not Figure("b", 4.01, "<=", 4).met
    assert not Figure("c", 60.0, "<", 60).met
    assert Figure("d", 0.5, ">=", 0.5).met
    assert Figure("e", 0, "==", 0).met


def test_an_unknown_comparison_and_a_zero_baseline_are_refused():
    with pytest.raises(ValueError, match="Unknown goal comparison"):
        Figure("a", 1.0, "=<", 4)
    with pytest.raises(ValueError, match="undefined"):
        ratio(1.0, 0.0)
    assert ratio(3.0, 1.5) == 2.0


def test_table_lists_each_figure_with_its_goal_and_notes():
    figures = [
        Figure("import_vs_copy", 3.2, "<=", 4, platform=32.0, baseline=10.0, note="1,000,000 rows"),
        Figure("api_write_vs_bare", 0.25, ">=", 0.5, platform=100.0, baseline=400.0),
    ]

    text = table(figures)

    lines = text.splitlines()
    assert lines[0].split() == ["figure", "value", "unit", "platform", "baseline", "goal", "met"]
    assert "import_vs_copy" in lines[2]
    assert lines[2].split()[-1] == "yes"
    assert lines[3].split()[-1] == "NO"
    assert "import_vs_copy: 1,000,000 rows" in text


def test_bench_json_has_each_figure_under_its_key_with_details_and_the_machine(tmp_path):
    figures = [Figure("freeze_vs_copy", 1.2, "<=", 1.5, detail={"runs_s": [1.0, 1.2, 1.3]})]

    path = write_json(tmp_path / "var" / "bench.json", figures, machine={"cpu_count": 2}, settings={"repeats": 3})

    document = json.loads(path.read_text())
    assert document["freeze_vs_copy"] == 1.2
    assert document["figures"]["freeze_vs_copy"]["met"] is True
    assert document["figures"]["freeze_vs_copy"]["detail"]["runs_s"] == [1.0, 1.2, 1.3]
    assert document["machine"] == {"cpu_count": 2}
    assert document["settings"] == {"repeats": 3}
