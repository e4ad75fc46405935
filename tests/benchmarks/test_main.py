"""``python -m benchmarks`` options: scales, subsets and labels (the run itself is ``make bench``)."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import _label, _options


def test_options_default_to_the_issue_scales_and_every_benchmark(monkeypatch):
    for name in ("BENCH_SCALES", "BENCH_ONLY", "BENCH_REPEATS", "BENCH_CSV_ROWS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", ["benchmarks"])

    options = _options()

    assert options.scales == [10_000, 100_000]
    assert options.csv_rows == 1_000_000
    assert options.repeats == 3
    assert options.only == ["import", "freeze", "interim", "export", "queries", "api"]


def test_environment_selects_a_part_and_smaller_scales(monkeypatch):
    monkeypatch.setenv("BENCH_SCALES", "10000, 1000")
    monkeypatch.setenv("BENCH_ONLY", "import,api")
    monkeypatch.setattr("sys.argv", ["benchmarks"])

    options = _options()

    assert options.scales == [1_000, 10_000]
    assert options.only == ["import", "api"]


def test_an_unknown_benchmark_is_refused(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["benchmarks", "--only", "import,imprt"])

    with pytest.raises(SystemExit):
        _options()

    assert "unknown benchmark(s) imprt" in capsys.readouterr().err


@pytest.mark.parametrize(("participants", "label"), [(10_000, "10k"), (100_000, "100k"), (300, "300"), (1_500, "1500")])
def test_labels_name_thousands_as_k(participants, label):
    assert _label(participants) == label
