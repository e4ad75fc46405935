"""Site staff using the REST API (/api/v1/): the traffic of the capacity load test (R37, ``benchmarks.capacity``).

Run by ``python -m benchmarks.capacity``, which writes the plan this file reads (``CAPACITY_PLAN``: the trial, one
site-staff account and token per simulated user, the visits still to be entered per site, the adverse events each
account entered) and reads the summary it writes at exit (``CAPACITY_SUMMARY``). It imports nothing of Django: it
runs in locust's gevent process.

Each simulated user is one site-staff member at one site, pausing ``wait`` seconds (the plan's think time) between
actions. Reads: the trial list, a page of the site's participants, a participant's casebook header, their visits,
a page of the site's adverse events (and an AE before editing it). Writes: a visit with every measurement its
schedule asks for (the next visit due at the site, each handed out once), a new adverse event, and a change to an
adverse event with the version just read (``If-Match``).

Request names are endpoint templates prefixed ``read:`` or ``write:``; the runner applies the read and the write
p95 limit by that prefix. Every write is valid, so any 4xx (or 5xx) is a failure. The API documents a stale
version as ``412 Precondition Failed``; here no two users ever edit the same adverse event (each edits only those
its own account entered), so no edit can be stale and a 412 would be a defect, not contention: it counts as a
failure too. Nothing here is ever answered with 409, which the API reserves for refusals.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import os
import random
from collections import Counter
from pathlib import Path

from locust import FastHttpUser, between, events, task
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV, StatsEntry

PLAN = json.loads(Path(os.environ["CAPACITY_PLAN"]).read_text(encoding="utf-8"))

TRIAL = PLAN["trial"]
API = "/api/v1"
T = f"{API}/trials/{TRIAL}"
TODAY = dt.date.fromisoformat(PLAN["today"])
PAGE_SIZE = 50  # REST_FRAMEWORK["PAGE_SIZE"]
# Visits to enter, per site, earliest first: shared by the site's users (gevent: no two take the same one).
VISIT_QUEUES = {code: list(reversed(site["visit_targets"])) for code, site in PLAN["sites"].items()}
_numbers = itertools.count()
SUCCESSES: Counter = Counter()  # writes acknowledged with their 2xx, by kind, for the runner's persistence check
SKIPPED: Counter = Counter()  # actions a user had nothing to do for (e.g. no visit left to enter at the site)


def _pages(count: int) -> int:
    return max(1, -(-count // PAGE_SIZE))


def measurement_values(visit: str, participant: int, rng: random.Random) -> list[dict]:
    """A valid entry for every endpoint scheduled at ``visit``: in range, with the event flag time-to-event needs."""
    values = []
    for endpoint in PLAN["schedule"][visit]:
        low = endpoint["min"] if endpoint["min"] is not None else 0.0
        high = endpoint["max"] if endpoint["max"] is not None else 100.0
        if endpoint["kind"] == "binary":
            values.append({"endpoint": endpoint["code"], "value": float(rng.random() < 0.45)})
        elif endpoint["kind"] == "time_to_event":
            event = rng.random() < 0.3
            days = round(rng.uniform(1, min(high, 200)), 1) if event else float(min(high, 200))
            values.append({"endpoint": endpoint["code"], "value": days, "event_occurred": event})
        else:
            span = high - low
            values.append({"endpoint": endpoint["code"], "value": round(low + span * rng.uniform(0.2, 0.8), 3)})
    return values


class SiteStaff(FastHttpUser):
    wait_time = between(*PLAN["wait"])
    connection_timeout = 30.0
    network_timeout = 30.0

    def on_start(self) -> None:
        number = next(_numbers)
        account = PLAN["staff"][number % len(PLAN["staff"])]
        self.site = account["site"]
        self.rng = random.Random(f"{PLAN['seed']}-{number}")  # noqa: S311 - simulated choices, not secrets
        self.headers = {"Authorization": f"Token {account['token']}", "Accept": "application/json"}
        site = PLAN["sites"][self.site]
        self.participants = site["participants"]
        self.randomized = site["randomized"]
        self.participant_pages = _pages(len(self.participants))
        # Adverse events only grow during the run: a page that exists at the start exists throughout.
        self.ae_pages = _pages(site["adverse_events"])
        # Only this user edits these (see the module's docstring); the ones it enters are added.
        self.own_adverse_events = list(account["adverse_events"])
        self.edits = itertools.count()

    # --- reads -------------------------------------------------------------------------------------------------

    @task(1)
    def trial_list(self) -> None:
        self.client.get(f"{API}/trials/", headers=self.headers, name="read: GET /trials/")

    @task(4)
    def participant_list(self) -> None:
        page = self.rng.randint(1, self.participant_pages)
        self.client.get(
            f"{T}/participants/?page={page}", headers=self.headers, name="read: GET /trials/{code}/participants/?page"
        )

    @task(3)
    def participant_detail(self) -> None:
        participant = self.rng.choice(self.participants)
        self.client.get(
            f"{T}/participants/{participant}/", headers=self.headers, name="read: GET /trials/{code}/participants/{id}/"
        )

    @task(3)
    def participant_visits(self) -> None:
        participant = self.rng.choice(self.randomized)
        self.client.get(
            f"{T}/participants/{participant}/visits/",
            headers=self.headers,
            name="read: GET /trials/{code}/participants/{id}/visits/",
        )

    @task(2)
    def adverse_event_list(self) -> None:
        page = self.rng.randint(1, self.ae_pages)
        self.client.get(
            f"{T}/adverse-events/?page={page}",
            headers=self.headers,
            name="read: GET /trials/{code}/adverse-events/?page",
        )

    # --- writes ------------------------------------------------------------------------------------------------

    @task(3)
    def enter_visit(self) -> None:
        queue = VISIT_QUEUES[self.site]
        if not queue:
            SKIPPED["visit"] += 1
            return
        participant, visit, visit_date = queue.pop()
        body = {
            "visit": visit,
            "visit_date": visit_date,
            "measurements": measurement_values(visit, participant, self.rng),
        }
        with self.client.post(
            f"{T}/participants/{participant}/visits/",
            json=body,
            headers=self.headers,
            name="write: POST /trials/{code}/participants/{id}/visits/",
            catch_response=True,
        ) as response:
            if response.status_code == 201:
                SUCCESSES["visit"] += 1

    @task(1)
    def enter_adverse_event(self) -> None:
        participant = self.rng.choice(self.randomized)
        baseline = dt.date.fromisoformat(PLAN["baselines"][str(participant)])
        onset = min(TODAY, baseline + dt.timedelta(days=self.rng.randint(1, 120)))
        term, soc = self.rng.choice(PLAN["ae_terms"])
        body = {
            "term": term,
            "soc": soc,
            "onset_date": onset.isoformat(),
            "stop_date": None,
            "grade": self.rng.choice([1, 1, 1, 2, 2, 3]),
            "results_in_death": False,
            "life_threatening": False,
            "hospitalization": False,
            "disability": False,
            "congenital_anomaly": False,
            "important_medical_event": False,
            "causality": self.rng.choice(["not_related", "unlikely", "possible", "probable"]),
            "expected": True,
            "action_taken": "none",
            "outcome": "recovering",
            "site_aware_at": f"{onset.isoformat()}T10:30:00Z",
        }
        with self.client.post(
            f"{T}/participants/{participant}/adverse-events/",
            json=body,
            headers=self.headers,
            name="write: POST /trials/{code}/participants/{id}/adverse-events/",
            catch_response=True,
        ) as response:
            if response.status_code == 201:
                SUCCESSES["adverse_event"] += 1
                self.own_adverse_events.append(response.json()["id"])

    @task(1)
    def edit_adverse_event(self) -> None:
        """Open an adverse event, then save a change with the version read (the ETag, as ``If-Match``)."""
        if not self.own_adverse_events:
            SKIPPED["adverse_event_edit"] += 1
            return
        event_id = self.rng.choice(self.own_adverse_events)
        with self.client.get(
            f"{T}/adverse-events/{event_id}/",
            headers=self.headers,
            name="read: GET /trials/{code}/adverse-events/{id}/",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                return  # counted as a failed read
            event, version = response.json(), response.headers.get("ETag")
            if not version:
                response.failure("no ETag on the adverse event")
                return
        if event["outcome"] != "recovered":
            onset = dt.date.fromisoformat(event["onset_date"])
            stop = min(TODAY, onset + dt.timedelta(days=self.rng.randint(2, 20)))
            change = {"stop_date": stop.isoformat(), "outcome": "recovered", "reason": "Resolved (follow-up call)"}
        else:  # a different change each time: a no-op save would not exercise the write path
            change = {"grade": 2 if event["grade"] == 1 else 1, "reason": "Grade re-assessed by the investigator"}
        with self.client.patch(
            f"{T}/adverse-events/{event_id}/",
            json=change,
            headers={**self.headers, "If-Match": version},
            name="write: PATCH /trials/{code}/adverse-events/{id}/",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                SUCCESSES["adverse_event_edit"] += 1


def _write_final_csv(environment) -> None:
    """Rewrite the ``--csv`` files with the final figures, in locust's own format.

    Locust rewrites them once a second while it runs and not at exit, so requests of the last second (those that
    completed while the users were stopping included) can be missing from them. By ``quitting`` every user has
    stopped and the stats no longer change.
    """
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix:
        return
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("stats", writer.requests_csv),
        ("failures", writer.failures_csv),
        ("exceptions", writer.exceptions_csv),
    ):
        with Path(f"{prefix}_{suffix}.csv").open("w", encoding="utf-8", newline="") as handle:
            write(csv.writer(handle))


@events.quitting.add_listener
def _write_summary(environment, **_kwargs) -> None:
    """The final CSV, and reads and writes as two groups with their percentiles over every response (not an
    average of the endpoints' percentiles)."""
    _write_final_csv(environment)
    path = os.environ.get("CAPACITY_SUMMARY")
    if not path:
        return
    stats = environment.stats
    merged = {kind: StatsEntry(stats, kind, "") for kind in ("read", "write")}
    for entry in stats.entries.values():
        kind = entry.name.split(":", 1)[0]
        if kind in merged:
            merged[kind].extend(entry)
    classes = {
        kind: {
            "count": entry.num_requests,
            "failures": entry.num_failures,
            "median_ms": float(entry.get_response_time_percentile(0.5)),
            "p95_ms": float(entry.get_response_time_percentile(0.95)),
            "p99_ms": float(entry.get_response_time_percentile(0.99)),
            "max_ms": round(float(entry.max_response_time or 0), 1),
            "rps": round(entry.total_rps, 2),
        }
        for kind, entry in merged.items()
        if entry.num_requests
    }
    summary = {"classes": classes, "successes": dict(SUCCESSES), "skipped": dict(SKIPPED)}
    Path(path).write_text(json.dumps(summary), encoding="utf-8")
