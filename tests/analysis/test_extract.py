"""The analysis freeze read through PostgreSQL COPY."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from django.db.models import Max

from analysis import extract
from participants.models import OutcomeMeasurement, Participant, Visit

MID_TRIAL = dt.date(2025, 10, 1)
AFTER_THE_TRIAL = dt.date(2030, 1, 1)


def test_the_freeze_works_with_the_debug_cursor(demo_trial, settings):
    """``make run`` runs with DEBUG=True, where Django wraps cursors in its query-logging debug wrapper."""
    cutoff = dt.date(2030, 1, 1)
    plain = extract.freeze(demo_trial, cutoff)
    settings.DEBUG = True
    debug = extract.freeze(demo_trial, cutoff)
    assert plain.keys() == debug.keys()
    for name, frame in plain.items():
        assert frame.equals(debug[name]), name
    assert len(plain["adeff"]) > 0


def test_text_is_read_as_stored(db):
    """CSV writes an empty text and NULL alike; neither may become missing, nor a code that looks like a number."""
    rows = "SELECT * FROM (VALUES ('', '007', 1.5), (NULL, '', NULL)) AS t(reason, code, value)"
    frame = extract.copy_frame(rows, [], text=("reason", "code"))
    assert frame[["reason", "code"]].to_dict("list") == {"reason": ["", ""], "code": ["007", ""]}
    assert frame["value"].isna().tolist() == [False, True]


def test_a_freeze_before_the_first_randomization_has_every_column_and_no_row(demo_trial):
    datasets = extract.freeze(demo_trial, dt.date(2024, 1, 1))
    assert {name: len(frame) for name, frame in datasets.items()} == dict.fromkeys(extract.DATASET_ORDER, 0)
    assert list(datasets["adsl"].columns) == [*extract.ADSL_COLUMNS, "BASEPAIN"]
    assert list(datasets["adtte"].columns) == extract.ADTTE_COLUMNS


def test_subject_dates_and_disposition_are_those_of_the_participant_records(demo_trial):
    adsl = extract.adsl(demo_trial, MID_TRIAL).set_index("pk")
    randomized = Participant.objects.filter(trial=demo_trial, randomization__randomized_at__date__lte=MID_TRIAL)
    assert set(adsl.index) == set(randomized.values_list("pk", flat=True))
    for participant in randomized.select_related("randomization").prefetch_related("doses"):
        subject = adsl.loc[participant.pk]
        assert subject["RANDDT"] == participant.randomization.randomized_at.astimezone(dt.UTC).date()
        doses = [dose.administered_at.date() for dose in participant.doses.all()]
        assert subject["TRTSDT"] == min(day for day in doses if day <= MID_TRIAL)
        if participant.withdrawn_on and participant.withdrawn_on <= MID_TRIAL:
            expected = ("DISCONTINUED", participant.withdrawn_on, participant.withdrawal_reason.upper())
        elif participant.completed_on and participant.completed_on <= MID_TRIAL:
            expected = ("COMPLETED", participant.completed_on, "")
        else:
            expected = ("ONGOING", None, "")
        end_of_study = None if pd.isna(subject["EOSDT"]) else subject["EOSDT"]
        assert (subject["EOSSTT"], end_of_study, subject["DCSREAS"]) == expected
    assert set(adsl["EOSSTT"]) == {"ONGOING", "COMPLETED", "DISCONTINUED"}


def adtte_participant_by_participant(trial, cutoff, subjects: pd.DataFrame) -> pd.DataFrame:
    """The definition ``extract.adtte`` computes for all participants at once."""
    endpoints = list(trial.endpoints.filter(kind="time_to_event").values_list("pk", "code", "name"))
    recorded = {
        (participant, endpoint): (value, event)
        for participant, endpoint, value, event in OutcomeMeasurement.objects.filter(
            visit__participant__trial=trial, endpoint__kind="time_to_event", value__isnull=False
        )
        .order_by("visit__visit_definition__order")
        .values_list("visit__participant_id", "endpoint_id", "value", "event_occurred")
    }
    last_visit = dict(
        Visit.objects.filter(participant__trial=trial, visit_date__lte=cutoff, status="completed")
        .values("participant_id")
        .annotate(last=Max("visit_date"))
        .values_list("participant_id", "last")
    )
    rows = []
    for subject in subjects.itertuples():
        start = subject.RANDDT
        follow_up = (cutoff - start).days
        for endpoint_id, code, name in endpoints:
            value, event = recorded.get((subject.pk, endpoint_id), (None, None))
            if value is not None and event and value <= follow_up:
                time, censored = value, 0
            elif value is not None:
                time, censored = min(value, follow_up), 1
            else:
                time, censored = max((last_visit.get(subject.pk, start) - start).days, 0), 1
            end = start + dt.timedelta(days=round(time))
            rows.append((subject.pk, subject.USUBJID, code, name, float(time), censored, start, end))
    return pd.DataFrame(rows, columns=["pk", *extract.ADTTE_COLUMNS])


def test_time_to_event_is_censored_at_the_cutoff_or_at_the_last_visit(demo_trial):
    for cutoff in (MID_TRIAL, AFTER_THE_TRIAL):
        subjects = extract.adsl(demo_trial, cutoff)
        computed = extract.adtte(demo_trial, cutoff, subjects)
        pd.testing.assert_frame_equal(
            computed, adtte_participant_by_participant(demo_trial, cutoff, subjects), check_exact=True
        )
        assert set(computed["CNSR"]) == {0, 1}
