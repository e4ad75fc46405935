"""A paused, then killed, Redis while site staff save serious adverse events (R32, R33).

The web (gunicorn, two workers), a Celery worker running beat, and the redis-server are the test's own, on
loopback. Saving an SAE never waits for the broker: the notification is an outbox row in the same
transaction, and beat's drain delivers it once Redis is back — exactly once per SAE.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from accounts.testing import api_token_for
from operations.models import OutboxMessage
from participants.models import AdverseEvent
from participants.services.randomization import participant_randomize
from tests.fault.processes import (
    app_env,
    database_url,
    free_port,
    http,
    require,
    running,
    start_gunicorn,
    start_worker,
    wait_until,
)
from tests.fault.redis_server import RedisServer, redis_available
from tests.participants.conftest import build_small_trial

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker]

SAVE_BUDGET_SECONDS = 5


def sent_notifications(mail_dir: Path, key: str) -> int:
    """How many e-mails carrying the outbox key's Message-ID the worker wrote (file-based mail backend)."""
    header = f"Message-ID: <outbox-{key}@exotrial>"
    return sum(path.read_text(errors="replace").count(header) for path in mail_dir.glob("*"))


def serious_adverse_event(term: str) -> bytes:
    return json.dumps(
        {
            "term": term,
            "soc": "10021881",
            "onset_date": timezone.localdate().isoformat(),
            "stop_date": None,
            "grade": 3,
            "results_in_death": False,
            "life_threatening": False,
            "hospitalization": True,
            "disability": False,
            "congenital_anomaly": False,
            "important_medical_event": False,
            "causality": "possible",
            "expected": False,
            "action_taken": "none",
            "outcome": "recovering",
            "site_aware_at": (timezone.now() - dt.timedelta(hours=1)).isoformat(),
        }
    ).encode()


@pytest.mark.req("R32", "R33")
@pytest.mark.timeout(300)
def test_saving_an_sae_never_waits_for_redis_and_each_is_notified_exactly_once(transactional_db, tmp_path):
    require(redis_available(), "redis-server is not installed")
    small = build_small_trial(code="TST-R32")
    nurse = small.users["nurse-A1"]
    (participant,) = small.screen_eligible("A1", "low")
    participant_randomize(participant=participant, user=nurse)
    token = api_token_for(nurse)
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()

    redis = RedisServer()
    redis.start()
    port = free_port()
    env = app_env(
        database_url(connection.settings_dict),
        REDIS_URL=redis.url,
        EXOTRIAL_OUTBOX_DRAIN_SECONDS="1",
        EXOTRIAL_TEST_EMAIL_DIR=str(mail_dir),
    )
    web = start_gunicorn(env, port, tmp_path / "gunicorn.log")
    worker = start_worker(
        env,
        tmp_path / "worker.log",
        queue="celery",
        hostname=f"fault-beat-{os.getpid()}@%h",
        extra_arguments=["--beat", "--schedule", str(tmp_path / "beat-schedule")],
    )
    url = f"http://127.0.0.1:{port}/api/v1/trials/{small.trial.protocol_code}/participants/{participant.pk}/adverse-events/"
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    try:
        with running(web, worker, ready_timeout=90):
            pids = (web.pid, worker.pid)
            # Redis stops answering: every client is paused for 20 s
            redis.cli("CLIENT", "PAUSE", "20000", "ALL")
            paused = http("POST", url, headers=headers, data=serious_adverse_event("Septic arthritis"), timeout=30)
            assert paused.status == 201, paused.body[:500]
            assert paused.seconds < SAVE_BUDGET_SECONDS
            # Redis dies
            redis.kill()
            dead = http("POST", url, headers=headers, data=serious_adverse_event("Pneumonia"), timeout=30)
            assert dead.status == 201, dead.body[:500]
            assert dead.seconds < SAVE_BUDGET_SECONDS

            events = list(AdverseEvent.objects.filter(participant=participant).order_by("pk"))
            assert [event.term for event in events] == ["Septic arthritis", "Pneumonia"]
            keys = [f"sae-reported:{event.pk}" for event in events]
            assert set(OutboxMessage.objects.values_list("key", flat=True)) == set(keys)

            # Redis comes back (a new process on the same port, empty): the outbox is drained
            redis.start()
            wait_until(
                lambda: not OutboxMessage.objects.filter(key__in=keys, delivered_at__isnull=True).exists(),
                120,
                interval=0.5,
                message="outbox drained after Redis returned",
            )
            # a few more drains change nothing: exactly one e-mail per SAE
            wait_until(lambda: sent_notifications(mail_dir, keys[1]) >= 1, 10, message="mail written")
            beats = OutboxMessage.objects.get(key=keys[0]).delivered_at
            wait_until(lambda: timezone.now() > beats + dt.timedelta(seconds=4), 10)
            assert [sent_notifications(mail_dir, key) for key in keys] == [1, 1]
            assert (web.pid, worker.pid) == pids
            assert web.alive()
            assert worker.alive()
    finally:
        redis.destroy()
