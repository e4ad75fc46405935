# The two commands of README.md: `make run` and `make test`. Python 3.11+ is the only prerequisite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench capacity clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(PY) -m config.run

test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

# The benchmark suite of issue 8 (minutes; not part of `make test`): synthetic trials in a database of their own,
# a table on stdout and var/bench.json. BENCH_SCALES, BENCH_ONLY, BENCH_REPEATS, BENCH_CSV_ROWS and BENCH_API_SECONDS
# choose what runs (see benchmarks/__main__.py). The API benchmark needs wrk, installed from Debian when missing.
bench: $(VENV)/.installed-bench
	@if ! command -v wrk >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	fi
	$(PY) -m benchmarks $(BENCH_ARGS)

# The capacity load test of R37 (about 3 minutes; not part of `make test`): gunicorn (2 workers) + 1 Celery worker
# on loopback, 20 locust users for 2 minutes of mixed reads and writes, then verify_audit; a table on stdout and
# var/capacity.json, non-zero exit when a limit is missed. CAPACITY_SECONDS, CAPACITY_USERS, CAPACITY_PARTICIPANTS
# and CAPACITY_WAIT change the load (see benchmarks/capacity.py). Uses REDIS_URL for the broker when it is set.
capacity: $(VENV)/.installed-bench
	$(PY) -m benchmarks.capacity $(CAPACITY_ARGS)

clean:
	rm -rf $(VENV) var
