"""ODM 1.3.2 export of the demo trial, validated against the official CDISC schema shipped beside this file."""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from lxml import etree

from audit.context import audit_context
from participants.exchange.odm import write_odm
from participants.models import AdverseEvent, DoseAdministration, OutcomeMeasurement, Participant, Visit

SCHEMA_DIR = Path(__file__).with_name("odm_schema")
SCHEMA = SCHEMA_DIR / "cdisc-odm-1.3.2" / "ODM1-3-2.xsd"
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
ARM_REVEALING = ["PBO", "LOW", "HIGH", "Placebo (saline)", "Exosomes 1×10⁹ particles", "Exosomes 1×10¹⁰ particles"]
# SHA-256 of the CDISC files as distributed in the Define-XML 2.1 release package (CRLF line ends).
CDISC_SCHEMA_SHA256 = {
    "cdisc-odm-1.3.2/ODM1-3-2.xsd": "8410af65a6dcda189755a3a6b443e7621efa870e577c52d18ef94d17a947ddcf",
    "cdisc-odm-1.3.2/ODM1-3-2-foundation.xsd": "ccf3776b9754e29c359cd45d820043a1213cf242c7f8a9db4e40858739c704bd",
}


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def user(username: str):
    return get_user_model().objects.get(username=username)


def whole_word(text: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![\w])" + re.escape(text.encode("utf-8")) + rb"(?![\w])")


@pytest.fixture
def unblinded_odm(demo_trial, tmp_path):
    return write_odm(trial=demo_trial, user=user("demo-unblinded-stat"), path=tmp_path / "unblinded.xml")


@pytest.fixture
def blinded_odm(demo_trial, tmp_path):
    return write_odm(trial=demo_trial, user=user("demo-blinded-stat"), path=tmp_path / "blinded.xml")


def test_shipped_schema_is_the_cdisc_release(schema):
    for name, digest in CDISC_SCHEMA_SHA256.items():
        assert hashlib.sha256((SCHEMA_DIR / name).read_bytes()).hexdigest() == digest, name
    # and it really constrains: a wrong FileType is refused
    bad = etree.fromstring(
        b'<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileType="Draft" FileOID="x"'
        b' CreationDateTime="2025-01-01T00:00:00Z" ODMVersion="1.3.2"/>'
    )
    assert not schema.validate(bad)


@pytest.mark.parametrize("who", ["demo-unblinded-stat", "demo-blinded-stat", "demo-site"])
def test_export_validates_against_the_odm_132_schema(demo_trial, tmp_path, schema, who):
    path = write_odm(trial=demo_trial, user=user(who), path=tmp_path / "odm.xml")
    document = etree.parse(str(path))
    assert schema.validate(document), schema.error_log.filter_from_errors()[:5]
    root = document.getroot()
    assert root.get("ODMVersion") == "1.3.2"
    assert root.get("FileType") == "Snapshot"
    assert root.tag == "{http://www.cdisc.org/ns/odm/v1.3}ODM"


def test_metadata_describes_visits_endpoints_and_codelists(demo_trial, unblinded_odm):
    root = etree.parse(str(unblinded_odm)).getroot()
    mdv = root.find("odm:Study/odm:MetaDataVersion", NS)
    scheduled = mdv.findall("odm:StudyEventDef[@Type='Scheduled']", NS)
    assert [event.get("OID") for event in scheduled] == [
        f"SE.{code}" for code in demo_trial.visit_definitions.order_by("order").values_list("code", flat=True)
    ]
    for endpoint in demo_trial.endpoints.all():
        item = mdv.find(f"odm:ItemDef[@OID='IT.EFF.{endpoint.code}']", NS)
        assert item is not None, endpoint.code
        assert item.get("DataType") == ("integer" if endpoint.kind == "binary" else "float")
        assert int(item.get("Length")) >= 1
        checks = {
            check.get("Comparator"): check.findtext("odm:CheckValue", namespaces=NS)
            for check in item.findall("odm:RangeCheck", NS)
        }
        assert float(checks["GE"]) == endpoint.min_value
        assert float(checks["LE"]) == endpoint.max_value
        if endpoint.unit:
            unit_oid = item.find("odm:MeasurementUnitRef", NS).get("MeasurementUnitOID")
            unit = root.find(f"odm:Study/odm:BasicDefinitions/odm:MeasurementUnit[@OID='{unit_oid}']", NS)
            assert unit.get("Name") == endpoint.unit
    womac = mdv.find("odm:ItemDef[@OID='IT.EFF.WOMACP']", NS)
    assert womac.get("SignificantDigits") == "1"
    codelists = {codelist.get("OID") for codelist in mdv.findall("odm:CodeList", NS)}
    assert {"CL.SEX", "CL.GRADE", "CL.CAUSALITY", "CL.AEOUT", "CL.ARM"} <= codelists
    grades = mdv.findall("odm:CodeList[@OID='CL.GRADE']/odm:CodeListItem", NS)
    assert [grade.get("CodedValue") for grade in grades] == ["1", "2", "3", "4", "5"]
    arms = mdv.findall("odm:CodeList[@OID='CL.ARM']/odm:CodeListItem", NS)
    assert {arm.get("CodedValue") for arm in arms} == {"PBO", "LOW", "HIGH"}


def test_clinical_data_matches_the_database(demo_trial, unblinded_odm):
    root = etree.parse(str(unblinded_odm)).getroot()
    subjects = root.findall("odm:ClinicalData/odm:SubjectData", NS)
    assert len(subjects) == Participant.objects.filter(trial=demo_trial).count()
    measurement = (
        OutcomeMeasurement.objects.filter(
            visit__participant__trial=demo_trial, endpoint__code="WOMACP", value__isnull=False
        )
        .select_related("visit__participant", "visit__visit_definition")
        .order_by("pk")
        .first()
    )
    key = f"EXO-OA-201-{measurement.visit.participant.screening_number}"
    subject = root.find(f"odm:ClinicalData/odm:SubjectData[@SubjectKey='{key}']", NS)
    assert subject.find("odm:SiteRef", NS).get("LocationOID") == f"LOC.{measurement.visit.participant.site.code}"
    item = subject.find(
        f"odm:StudyEventData[@StudyEventOID='SE.{measurement.visit.visit_definition.code}']"
        "/odm:FormData/odm:ItemGroupData[@ItemGroupOID='IG.EFF']/odm:ItemData[@ItemOID='IT.EFF.WOMACP']",
        NS,
    )
    assert float(item.get("Value")) == measurement.value
    total_items = root.findall(".//odm:ItemGroupData[@ItemGroupOID='IG.EFF']/odm:ItemData", NS)
    tte = OutcomeMeasurement.objects.filter(
        visit__participant__trial=demo_trial, endpoint__kind="time_to_event", event_occurred__isnull=False
    ).count()
    assert len(total_items) == OutcomeMeasurement.objects.filter(visit__participant__trial=demo_trial).count() + tte
    not_done = root.findall(".//odm:ItemData[@IsNull='Yes']", NS)
    assert (
        len(not_done)
        == OutcomeMeasurement.objects.filter(visit__participant__trial=demo_trial, value__isnull=True).count()
    )
    assert not_done[0].findtext("odm:Annotation/odm:Comment", namespaces=NS)
    assert (
        len(root.findall(".//odm:ItemGroupData[@ItemGroupOID='IG.AE']", NS))
        == AdverseEvent.objects.filter(participant__trial=demo_trial).count()
    )
    assert (
        len(root.findall(".//odm:ItemGroupData[@ItemGroupOID='IG.SV']", NS))
        == Visit.objects.filter(participant__trial=demo_trial).count()
    )
    lots = {item.get("Value") for item in root.findall(".//odm:ItemData[@ItemOID='IT.EX.LOT']", NS)}
    assert lots == {"EXO-UC-2501", "EXO-UC-2502"}


def test_audit_records_come_from_the_audit_trail(demo_trial, tmp_path):
    unblinded = user("demo-unblinded-stat")
    measurement = (
        OutcomeMeasurement.objects.filter(
            visit__participant__trial=demo_trial, endpoint__code="WOMACP", value__isnull=False
        )
        .select_related("visit__participant__site", "visit__visit_definition")
        .order_by("pk")
        .first()
    )
    editor = user("demo-site")
    with audit_context(reason="Transcription error corrected against the paper questionnaire", user=editor):
        OutcomeMeasurement.objects.filter(pk=measurement.pk).update(value=55.5)
    path = write_odm(trial=demo_trial, user=unblinded, path=tmp_path / "odm.xml")
    root = etree.parse(str(path)).getroot()

    key = f"EXO-OA-201-{measurement.visit.participant.screening_number}"
    item = root.find(
        f"odm:ClinicalData/odm:SubjectData[@SubjectKey='{key}']/odm:StudyEventData"
        f"[@StudyEventOID='SE.{measurement.visit.visit_definition.code}']/odm:FormData/odm:ItemGroupData/"
        "odm:ItemData[@ItemOID='IT.EFF.WOMACP']",
        NS,
    )
    assert item.get("Value") == "55.5"
    record = item.find("odm:AuditRecord", NS)
    assert record.find("odm:UserRef", NS).get("UserOID") == "USR.demo-site"
    assert record.find("odm:LocationRef", NS).get("LocationOID") == f"LOC.{measurement.visit.participant.site.code}"
    assert (
        record.findtext("odm:ReasonForChange", namespaces=NS)
        == "Transcription error corrected against the paper questionnaire"
    )
    latest = measurement.pgh_event_model.objects.filter(pgh_obj_id=measurement.pk).order_by("-pgh_id").first()
    assert record.findtext("odm:SourceID", namespaces=NS).endswith(f":{latest.pgh_id}")
    stamp = record.findtext("odm:DateTimeStamp", namespaces=NS)
    assert stamp == latest.pgh_created_at.isoformat()

    # untouched records carry their insert event: the seed's user and reason
    other = root.find(".//odm:ItemGroupData[@ItemGroupOID='IG.AE']/odm:AuditRecord", NS)
    assert other.find("odm:UserRef", NS).get("UserOID") == "USR.seed_demo"
    assert other.findtext("odm:ReasonForChange", namespaces=NS) == "initial entry"

    # every UserRef and LocationRef resolves to AdminData
    users = {node.get("OID") for node in root.findall("odm:AdminData/odm:User", NS)}
    locations = {node.get("OID") for node in root.findall("odm:AdminData/odm:Location", NS)}
    assert {"USR.demo-site", "USR.seed_demo"} <= users
    assert locations == {f"LOC.{code}" for code in demo_trial.sites.values_list("code", flat=True)}
    assert {node.get("UserOID") for node in root.iter(f"{{{NS['odm']}}}UserRef")} <= users
    assert {node.get("LocationOID") for node in root.iter(f"{{{NS['odm']}}}LocationRef")} <= locations
    site_user = root.find("odm:AdminData/odm:User[@OID='USR.demo-site']", NS)
    assert site_user.get("UserType") == "Investigator"
    assert site_user.findtext("odm:LoginName", namespaces=NS) == "demo-site"


def test_blinded_odm_has_no_arm_or_dose_details(blinded_odm, schema):
    data = html.unescape(blinded_odm.read_text(encoding="utf-8")).encode("utf-8")
    assert [word for word in ARM_REVEALING if whole_word(word).search(data)] == []
    root = etree.parse(str(blinded_odm)).getroot()
    oids = {node.get("OID") for node in root.iter()} | {node.get("ItemOID") for node in root.iter()}
    for hidden in ("CL.ARM", "IT.RAND.ARMCD", "IT.EX.LOT", "IT.EX.VOLUME", "IT.EX.PARTICLES"):
        assert hidden not in oids
    assert root.findall(".//odm:ItemData[@ItemOID='IT.EX.ROUTE']", NS)  # dosing itself is not hidden
    assert root.findall(".//odm:ItemData[@ItemOID='IT.RAND.RANDNO']", NS)
    assert schema.validate(etree.parse(str(blinded_odm)))


def test_unblinded_odm_has_the_arms(unblinded_odm):
    data = html.unescape(unblinded_odm.read_text(encoding="utf-8")).encode("utf-8")
    assert [word for word in ARM_REVEALING if whole_word(word).search(data)] == ARM_REVEALING
    assert DoseAdministration.objects.exists()


def test_site_staff_odm_holds_only_their_site(demo_trial, tmp_path):
    path = write_odm(trial=demo_trial, user=user("demo-site"), path=tmp_path / "odm.xml")
    root = etree.parse(str(path)).getroot()
    sites = {node.get("LocationOID") for node in root.findall("odm:ClinicalData/odm:SubjectData/odm:SiteRef", NS)}
    assert sites == {"LOC.S01"}
