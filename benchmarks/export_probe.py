"""Times the streamed CSV export of a trial's outcome measurements against COPY … TO STDOUT of the same rows.

Run in a fresh process by ``benchmarks.suite.export_vs_copy`` (``python -m benchmarks.export_probe CODE``), so that
the peak RSS it reports is the export's and not the benchmark runner's. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os

import django


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MB.

    Not ``getrusage``: its ``ru_maxrss`` survives ``exec`` on Linux, so a probe started by a large benchmark runner
    would report the runner's peak; ``VmHWM`` belongs to this process image alone.
    """
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{os.getpid()}/status has no {field}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("protocol_code")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    django.setup()

    from django.db import connection
    from psycopg import sql as pgsql

    from benchmarks.synthetic import trial_user
    from benchmarks.timing import measure
    from participants.exchange.exports import stream_csv
    from participants.models import OutcomeMeasurement, Participant, Visit
    from trials.models import Endpoint, Role, Trial, VisitDefinition

    trial = Trial.objects.get(protocol_code=options.protocol_code)
    user = trial_user(trial, Role.COORDINATOR)
    result: dict = {}

    def export() -> None:
        size = 0
        lines = 0
        for chunk in stream_csv(trial=trial, user=user, table="outcome_measurements"):
            size += len(chunk)
            lines += chunk.count("\r\n")
        result.update(bytes=size, rows=lines - 1)

    query = pgsql.SQL(
        """COPY (SELECT m.id, p.screening_number, d.code, d."order", e.code, e.name, m.value, m.event_occurred,
                        m.unit, m.measured_on, m.not_done_reason
                 FROM {measurement} m JOIN {visit} v ON v.id = m.visit_id
                 JOIN {participant} p ON p.id = v.participant_id
                 JOIN {definition} d ON d.id = v.visit_definition_id JOIN {endpoint} e ON e.id = m.endpoint_id
                 WHERE p.trial_id = {trial}
                 ORDER BY p.screening_number, d."order", e.code, m.id) TO STDOUT WITH (FORMAT csv, HEADER true)"""
    ).format(
        measurement=pgsql.Identifier(OutcomeMeasurement._meta.db_table),
        visit=pgsql.Identifier(Visit._meta.db_table),
        participant=pgsql.Identifier(Participant._meta.db_table),
        definition=pgsql.Identifier(VisitDefinition._meta.db_table),
        endpoint=pgsql.Identifier(Endpoint._meta.db_table),
        trial=pgsql.Literal(trial.pk),
    )

    def copy_out() -> None:
        size = 0
        with connection.cursor() as cursor, cursor.copy(query) as copy:
            for block in copy:
                size += len(block)
        result["baseline_bytes"] = size

    connection.ensure_connection()
    rss_before = _status_mb("VmRSS")
    platform = measure(export, repeats=options.repeats, warmup=options.warmup)
    peak_mb = _status_mb("VmHWM")
    baseline = measure(copy_out, repeats=options.repeats, warmup=options.warmup)
    print(
        json.dumps(
            {
                **result,
                "platform": platform.as_dict(),
                "baseline": baseline.as_dict(),
                "peak_rss_mb": round(peak_mb, 1),
                "rss_before_export_mb": round(rss_before, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
