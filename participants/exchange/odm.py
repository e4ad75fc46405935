"""A trial as a CDISC ODM 1.3.2 snapshot: protocol metadata, sites and users, and every participant's data.

Layout of the file:

* ``Study`` — GlobalVariables; BasicDefinitions (units); one MetaDataVersion with a StudyEventDef per visit
  definition plus two common events (subject-level forms, adverse events), their FormDefs, ItemGroupDefs,
  an ItemDef per endpoint (data type, length, unit, range checks from the endpoint's minimum and maximum)
  and per collected field, and the CodeLists of the coded fields.
* ``AdminData`` — a User per person named in the audit trail, a Location per site.
* ``ClinicalData`` — a SubjectData per participant the exporting user may see, with StudyEventData,
  FormData, ItemGroupData and ItemData. Each record carries an ``AuditRecord`` taken from the latest
  pghistory event of the row it came from: who (UserRef), at which site (LocationRef), when
  (DateTimeStamp, the database clock) and why (ReasonForChange); SourceID names the event row.

Participants are read in chunks of ``SUBJECTS_PER_CHUNK`` with a fixed number of queries per chunk, and
each SubjectData is written as soon as it is built (``lxml.etree.xmlfile``), so memory stays bounded.

For a user who may not see the allocation there is no arm anywhere in the file (no arm CodeList, no arm
item) and no lot, volume or particle count of any dose.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db.models import Model
from django.db.models.fields.json import KT
from django.utils import timezone
from lxml import etree

from participants.exchange.exports import TrialExport
from participants.meddra import SOC_CHOICES
from participants.models import AdverseEvent, DoseAdministration, OutcomeMeasurement, Participant, Randomization, Visit
from trials.models import Arm, Endpoint, Role, Trial, TrialMembership

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SUBJECTS_PER_CHUNK = 200
SYSTEM_ACTOR = "system"
_UNSAFE_OID = re.compile(r"[^A-Za-z0-9._-]")


def _q(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


def E(tag: str, attributes: dict[str, object] | None = None, *children: etree._Element, text: object = None):  # noqa: N802 - an element builder reads like the XML it builds
    """An ODM element; attributes whose value is None are left out."""
    element = etree.Element(
        _q(tag),
        {key: str(value) for key, value in (attributes or {}).items() if value is not None},
        nsmap={None: ODM_NS},
    )
    element.extend(child for child in children if child is not None)
    if text is not None:
        element.text = str(text)
    return element


def _translated(tag: str, text: str) -> etree._Element:
    node = E(tag)
    translated = etree.SubElement(node, _q("TranslatedText"))
    translated.set(XML_LANG, "en")
    translated.text = text
    return node


def _oid(*parts: object) -> str:
    return ".".join(_UNSAFE_OID.sub("_", str(part)) for part in parts)


def _decimal_text(value: float) -> str:
    """A float in plain decimal notation (ODM ``float`` is xs:decimal: no exponent)."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _value_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, float):
        return _decimal_text(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def actor_name(context: dict | None) -> str:
    """Who an audit event names, as audit.history reads it."""
    context = context or {}
    return str(context.get("username") or context.get("user") or SYSTEM_ACTOR)


@dataclass(frozen=True)
class Item:
    oid: str
    name: str
    data_type: str
    length: int | None = None
    question: str = ""
    codelist: str | None = None
    unit: str | None = None
    digits: int | None = None
    alias: str = ""
    sas_name: str = ""


@dataclass(frozen=True)
class AuditEvent:
    at: dt.datetime
    actor: str
    reason: str
    source: str


def _batched(iterable: Iterable, size: int) -> Iterator[list]:
    iterator = iter(iterable)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class OdmWriter:
    def __init__(self, *, trial: Trial, user) -> None:
        self.export = TrialExport(trial=trial, user=user)
        self.trial = trial
        self.user = user
        self.unblinded = self.export.unblinded
        self.study_oid = _oid("ST", trial.protocol_code)
        self.mdv_oid = _oid("MDV", trial.protocol_code, "1")
        self.visits = list(
            trial.visit_definitions.order_by("order").values_list("code", "name", "order", "is_dosing_visit")
        )
        self.endpoints = list(
            trial.endpoints.order_by("rank", "code").values_list(
                "pk", "code", "name", "kind", "unit", "min_value", "max_value", "description"
            )
        )
        self.sites = list(trial.sites.order_by("code").values_list("code", "name"))
        self.units: dict[str, str] = {}
        self._value_shapes = self._scan_values()

    # ------------------------------------------------------------------ metadata
    def _unit_oid(self, unit: str) -> str:
        if unit not in self.units:
            self.units[unit] = _oid("MU", re.sub(r"\W+", "_", unit.strip()).upper() or "UNIT", len(self.units) + 1)
        return self.units[unit]

    def _scan_values(self) -> dict[int, tuple[int, int]]:
        """Per endpoint: (longest value as text, most decimals), for ItemDef Length and SignificantDigits.

        One pass over the values through a server-side cursor; also registers every unit the data use.
        """
        shapes: dict[int, tuple[int, int]] = {}
        rows = (
            OutcomeMeasurement.objects.filter(visit__participant__in=self.export.participants.values("pk"))
            .values_list("endpoint_id", "value", "unit")
            .iterator(chunk_size=2000)
        )
        for endpoint_id, value, unit in rows:
            if unit:
                self._unit_oid(unit)
            if value is None:
                continue
            text = _decimal_text(value)
            decimals = len(text.split(".")[1]) if "." in text else 0
            longest, most = shapes.get(endpoint_id, (1, 0))
            shapes[endpoint_id] = (max(longest, len(text)), max(most, decimals))
        return shapes

    def _endpoint_items(self) -> list[tuple[Item, tuple]]:
        items = []
        for endpoint in self.endpoints:
            pk, code, name, kind, unit, _minimum, _maximum, _description = endpoint
            whole = kind in (Endpoint.Kind.BINARY, Endpoint.Kind.COUNT, Endpoint.Kind.ORDINAL)
            longest, decimals = self._value_shapes.get(pk, (1, 0))
            items.append(
                (
                    Item(
                        _oid("IT", "EFF", code),
                        code,
                        "integer" if whole else "float",
                        length=longest,
                        question=name,
                        codelist="CL.NOYES01" if kind == Endpoint.Kind.BINARY else None,
                        unit=self._unit_oid(unit) if unit else None,
                        digits=None if whole else decimals,
                        alias="QS.QSSTRESN" if kind != Endpoint.Kind.TIME_TO_EVENT else "",
                        sas_name=code,
                    ),
                    endpoint,
                )
            )
        return items

    def _event_items(self) -> list[Item]:
        return [
            Item(_oid("IT", "EFF", code, "EVENT"), f"{code} event", "text", 1, f"{name}: event occurred", "CL.NY")
            for _pk, code, name, kind, *_rest in self.endpoints
            if kind == Endpoint.Kind.TIME_TO_EVENT
        ]

    def item_groups(self) -> dict[str, tuple[str, str, list[Item]]]:
        """Item group OID → (name, repeating, items)."""
        years = self._unit_oid("years")
        randomization = [
            Item("IT.RAND.RANDNO", "Randomization number", "text", 24, "Randomization number", sas_name="RANDNO"),
            Item("IT.RAND.RANDDTC", "Randomized at", "datetime", question="Date and time of randomization (UTC)"),
            Item("IT.RAND.STRATUM", "Stratum", "text", 200, "Randomization stratum"),
        ]
        if self.unblinded:
            randomization.append(
                Item(
                    "IT.RAND.ARMCD",
                    "Arm code",
                    "text",
                    16,
                    "Assigned arm",
                    "CL.ARM",
                    alias="DM.ARMCD",
                    sas_name="ARMCD",
                )
            )
        doses = [
            Item("IT.EX.EXDTC", "Administered at", "datetime", question="Date and time of administration (UTC)"),
            Item("IT.EX.ROUTE", "Route", "text", 20, "Route of administration", "CL.ROUTE", alias="EX.EXROUTE"),
        ]
        if self.unblinded:
            doses += [
                Item("IT.EX.LOT", "Lot number", "text", 40, "Product lot number", alias="EX.EXLOT", sas_name="EXLOT"),
                Item("IT.EX.VOLUME", "Volume", "float", 12, "Volume administered", unit=self._unit_oid("mL"), digits=3),
                Item("IT.EX.PARTICLES", "Particles", "float", 20, "Particles given", digits=0, alias="EX.EXDOSE"),
            ]
        return {
            "IG.DM": (
                "Demographics and consent",
                "No",
                [
                    Item("IT.DM.SEX", "Sex", "text", 1, "Sex", "CL.SEX", alias="DM.SEX", sas_name="SEX"),
                    Item(
                        "IT.DM.AGE", "Age", "integer", 3, "Age at screening", unit=years, alias="DM.AGE", sas_name="AGE"
                    ),
                    Item("IT.DM.BRTHYR", "Birth year", "integer", 4, "Year of birth", sas_name="BRTHYR"),
                    Item("IT.DM.SCRNDAT", "Screening date", "date", question="Screening date"),
                    Item("IT.DM.STATUS", "Status", "text", 20, "Participant status", "CL.STATUS"),
                    Item("IT.DM.ICDAT", "Consent date", "date", question="Informed consent date", alias="DM.RFICDTC"),
                    Item("IT.DM.ICVER", "Consent version", "text", 20, "Informed consent form version"),
                ],
            ),
            "IG.RAND": ("Randomization", "No", randomization),
            "IG.DS": (
                "Disposition",
                "No",
                [
                    Item("IT.DS.DSDECOD", "Disposition", "text", 24, "Disposition", "CL.DISP", alias="DS.DSDECOD"),
                    Item("IT.DS.DSSTDAT", "Disposition date", "date", question="Date of disposition event"),
                    Item("IT.DS.DSTERM", "Disposition detail", "text", 500, "Reported reason or detail"),
                ],
            ),
            "IG.SV": (
                "Visit",
                "No",
                [
                    Item("IT.SV.STATUS", "Visit status", "text", 10, "Visit status", "CL.VISSTAT"),
                    Item("IT.SV.SVDAT", "Visit date", "date", question="Visit date", alias="SV.SVSTDTC"),
                    Item("IT.SV.STUDYDAY", "Study day", "integer", 4, "Days since baseline (baseline = day 0)"),
                    Item("IT.SV.INWIN", "In window", "text", 1, "Visit within the protocol window", "CL.NY"),
                    Item("IT.SV.MISSREAS", "Reason missed", "text", 300, "Reason the visit was missed"),
                ],
            ),
            "IG.EFF": (
                "Outcome measurements",
                "No",
                [item for item, _endpoint in self._endpoint_items()] + self._event_items(),
            ),
            "IG.EX": ("Study treatment administration", "Yes", doses),
            "IG.AE": (
                "Adverse event",
                "Yes",
                [
                    Item(
                        "IT.AE.TERM", "Verbatim term", "text", 200, "Adverse event (verbatim term)", alias="AE.AETERM"
                    ),
                    Item("IT.AE.SOC", "System organ class", "text", 8, "MedDRA system organ class", "CL.SOC"),
                    Item("IT.AE.STDAT", "Onset date", "date", question="Onset date", alias="AE.AESTDTC"),
                    Item("IT.AE.ENDAT", "Stop date", "date", question="Stop date", alias="AE.AEENDTC"),
                    Item(
                        "IT.AE.GRADE", "CTCAE grade", "integer", 1, "CTCAE v5.0 grade", "CL.GRADE", alias="AE.AETOXGR"
                    ),
                    Item("IT.AE.SER", "Serious", "text", 1, "Serious adverse event", "CL.NY", alias="AE.AESER"),
                    Item("IT.AE.REL", "Causality", "text", 12, "Relationship to study treatment", "CL.CAUSALITY"),
                    Item(
                        "IT.AE.EXPECTED", "Expected", "text", 1, "Listed in the reference safety information", "CL.NY"
                    ),
                    Item("IT.AE.ACN", "Action taken", "text", 16, "Action taken with study treatment", "CL.ACTION"),
                    Item("IT.AE.OUT", "Outcome", "text", 16, "Outcome", "CL.AEOUT", alias="AE.AEOUT"),
                ],
            ),
        }

    FORMS = {
        "F.DM": ("Demographics and consent", ["IG.DM"]),
        "F.RAND": ("Randomization", ["IG.RAND"]),
        "F.DS": ("Disposition", ["IG.DS"]),
        "F.VISIT": ("Visit and outcome measurements", ["IG.SV", "IG.EFF"]),
        "F.EX": ("Study treatment administration", ["IG.EX"]),
        "F.AE": ("Adverse events", ["IG.AE"]),
    }

    def codelists(self) -> dict[str, tuple[str, str, list[tuple[object, str]]]]:
        lists = {
            "CL.SEX": ("Sex", "text", Participant.Sex.choices),
            "CL.STATUS": ("Participant status", "text", Participant.Status.choices),
            "CL.DISP": (
                "Disposition",
                "text",
                [
                    ("completed", "Completed"),
                    ("screen_failed", "Screen failure"),
                    *Participant.WithdrawalReason.choices,
                ],
            ),
            "CL.VISSTAT": ("Visit status", "text", Visit.Status.choices),
            "CL.NY": ("No Yes response", "text", [("N", "No"), ("Y", "Yes")]),
            "CL.NOYES01": ("No Yes (0/1)", "integer", [(0, "No"), (1, "Yes")]),
            "CL.GRADE": ("CTCAE grade", "integer", AdverseEvent.Grade.choices),
            "CL.CAUSALITY": ("Causality", "text", AdverseEvent.Causality.choices),
            "CL.ACTION": ("Action taken", "text", AdverseEvent.Action.choices),
            "CL.AEOUT": ("Adverse event outcome", "text", AdverseEvent.Outcome.choices),
            "CL.SOC": ("MedDRA system organ class", "text", list(SOC_CHOICES)),
            "CL.ROUTE": ("Route of administration", "text", Arm.Route.choices),
        }
        if self.unblinded:
            lists["CL.ARM"] = ("Arm", "text", list(self.trial.arms.order_by("code").values_list("code", "name")))
        return lists

    def _item_def(self, item: Item, endpoint: tuple | None = None) -> etree._Element:
        description = None
        range_checks = []
        if endpoint is not None:
            _pk, _code, name, _kind, unit, minimum, maximum, text = endpoint
            if text:
                description = _translated("Description", text)
            # Hard checks: data entry refuses a value outside the endpoint's range (Endpoint.range_error).
            for comparator, bound, wording in (("GE", minimum, "at least"), ("LE", maximum, "at most")):
                if bound is None:
                    continue
                bound_text = _value_text(float(bound) if item.data_type == "float" else int(bound))
                message = f"{name}: must be {wording} {bound_text}{' ' + unit if unit else ''}."
                range_checks.append(
                    E(
                        "RangeCheck",
                        {"Comparator": comparator, "SoftHard": "Hard"},
                        E("CheckValue", text=bound_text),
                        _translated("ErrorMessage", message),
                    )
                )
        return E(
            "ItemDef",
            {
                "OID": item.oid,
                "Name": item.name,
                "DataType": item.data_type,
                "Length": item.length,
                "SignificantDigits": item.digits,
                "SASFieldName": item.sas_name or None,
            },
            description,
            _translated("Question", item.question) if item.question else None,
            E("MeasurementUnitRef", {"MeasurementUnitOID": item.unit}) if item.unit else None,
            *range_checks,
            E("CodeListRef", {"CodeListOID": item.codelist}) if item.codelist else None,
            E("Alias", {"Context": "SDTM", "Name": item.alias}) if item.alias else None,
        )

    def _events(self) -> list[tuple[str, str, str, list[str]]]:
        """(OID, name, type, form OIDs) of every study event, scheduled visits first."""
        events = [
            (_oid("SE", code), name, "Scheduled", ["F.VISIT", *(["F.EX"] if dosing else [])])
            for code, name, _order, dosing in self.visits
        ]
        events.append(("SE.SUBJECT", "Subject-level data", "Common", ["F.DM", "F.RAND", "F.DS", "F.EX"]))
        events.append(("SE.AE", "Adverse events", "Common", ["F.AE"]))
        return events

    def study(self) -> etree._Element:
        groups = self.item_groups()
        endpoint_items = dict((item.oid, endpoint) for item, endpoint in self._endpoint_items())
        events = self._events()
        metadata = E(
            "MetaDataVersion",
            {
                "OID": self.mdv_oid,
                "Name": f"{self.trial.protocol_code} eCRF",
                "Description": "ExoTrial protocol metadata",
            },
            E(
                "Protocol",
                None,
                *[
                    E(
                        "StudyEventRef",
                        {
                            "StudyEventOID": oid,
                            "OrderNumber": number,
                            "Mandatory": "Yes" if kind == "Scheduled" else "No",
                        },
                    )
                    for number, (oid, _name, kind, _forms) in enumerate(events, start=1)
                ],
            ),
            *[
                E(
                    "StudyEventDef",
                    {"OID": oid, "Name": name, "Repeating": "No", "Type": kind},
                    *[
                        E(
                            "FormRef",
                            {"FormOID": form, "OrderNumber": number, "Mandatory": "Yes" if form == "F.VISIT" else "No"},
                        )
                        for number, form in enumerate(forms, start=1)
                    ],
                )
                for oid, name, kind, forms in events
            ],
            *[
                E(
                    "FormDef",
                    {"OID": oid, "Name": name, "Repeating": "Yes" if oid == "F.EX" else "No"},
                    *[
                        E(
                            "ItemGroupRef",
                            {
                                "ItemGroupOID": group,
                                "OrderNumber": number,
                                "Mandatory": "Yes" if group == "IG.SV" else "No",
                            },
                        )
                        for number, group in enumerate(group_oids, start=1)
                    ],
                )
                for oid, (name, group_oids) in self.FORMS.items()
            ],
            *[
                E(
                    "ItemGroupDef",
                    {"OID": oid, "Name": name, "Repeating": repeating},
                    *[
                        E("ItemRef", {"ItemOID": item.oid, "OrderNumber": number, "Mandatory": "No"})
                        for number, item in enumerate(items, start=1)
                    ],
                )
                for oid, (name, repeating, items) in groups.items()
            ],
            *[
                self._item_def(item, endpoint_items.get(item.oid))
                for _name, _repeating, items in groups.values()
                for item in items
            ],
            *[
                E(
                    "CodeList",
                    {"OID": oid, "Name": name, "DataType": data_type},
                    *[
                        E(
                            "CodeListItem",
                            {"CodedValue": value, "OrderNumber": number},
                            _translated("Decode", str(label)),
                        )
                        for number, (value, label) in enumerate(choices, start=1)
                    ],
                )
                for oid, (name, data_type, choices) in self.codelists().items()
            ],
        )
        units = E(
            "BasicDefinitions",
            None,
            *[
                E("MeasurementUnit", {"OID": oid, "Name": unit}, _translated("Symbol", unit))
                for unit, oid in self.units.items()
            ],
        )
        return E(
            "Study",
            {"OID": self.study_oid},
            E(
                "GlobalVariables",
                None,
                E("StudyName", text=self.trial.protocol_code),
                E("StudyDescription", text=self.trial.title),
                E("ProtocolName", text=self.trial.registry_id or self.trial.protocol_code),
            ),
            units,
            metadata,
        )

    # ------------------------------------------------------------------ admin data
    def _audited_objects(self) -> list[tuple[type[Model], object]]:
        participants = self.export.participants.values("pk")
        return [
            (Participant, participants),
            (Randomization, Randomization.objects.filter(participant__in=participants).values("pk")),
            (Visit, Visit.objects.filter(participant__in=participants).values("pk")),
            (OutcomeMeasurement, OutcomeMeasurement.objects.filter(visit__participant__in=participants).values("pk")),
            (DoseAdministration, DoseAdministration.objects.filter(participant__in=participants).values("pk")),
            (AdverseEvent, AdverseEvent.objects.filter(participant__in=participants).values("pk")),
        ]

    def actors(self) -> list[str]:
        names = {SYSTEM_ACTOR}
        for model, objects in self._audited_objects():
            contexts = (
                model.pgh_event_model.objects.filter(pgh_obj_id__in=objects)
                .values_list(KT("pgh_context__username"), KT("pgh_context__user"))
                .distinct()
            )
            names.update(actor_name({"username": username, "user": user}) for username, user in contexts)
        return sorted(names)

    def admin_data(self, actors: list[str]) -> etree._Element:
        people = {
            user.username: user
            for user in get_user_model().objects.filter(username__in=actors).only("username", "first_name", "last_name")
        }
        roles = dict(
            TrialMembership.objects.filter(trial=self.trial, user__username__in=actors).values_list(
                "user__username", "role"
            )
        )
        effective = self.trial.analysis_plan.approved_on if hasattr(self.trial, "analysis_plan") else None
        effective = effective or timezone.localdate(self.trial.created_at)
        users = []
        for name in actors:
            person = people.get(name)
            kind = "Other" if person is None else ("Investigator" if roles.get(name) == Role.SITE_STAFF else "Sponsor")
            users.append(
                E(
                    "User",
                    {"OID": _oid("USR", name), "UserType": kind},
                    E("LoginName", text=name),
                    E("DisplayName", text=(person.get_full_name() if person else "") or name),
                    E("FirstName", text=person.first_name) if person and person.first_name else None,
                    E("LastName", text=person.last_name) if person and person.last_name else None,
                )
            )
        locations = [
            E(
                "Location",
                {"OID": _oid("LOC", code), "Name": name, "LocationType": "Site"},
                E(
                    "MetaDataVersionRef",
                    {
                        "StudyOID": self.study_oid,
                        "MetaDataVersionOID": self.mdv_oid,
                        "EffectiveDate": effective.isoformat(),
                    },
                ),
            )
            for code, name in self.sites
        ]
        return E("AdminData", {"StudyOID": self.study_oid}, *users, *locations)

    # ------------------------------------------------------------------ clinical data
    @staticmethod
    def _latest_events(model: type[Model], ids: list[int]) -> dict[int, AuditEvent]:
        """The newest pghistory event of each row: it produced the value the snapshot shows."""
        if not ids:
            return {}
        event_model = model.pgh_event_model
        rows = (
            event_model.objects.filter(pgh_obj_id__in=ids)
            .order_by("pgh_obj_id", "-pgh_created_at", "-pgh_id")
            .distinct("pgh_obj_id")
            .values_list("pgh_obj_id", "pgh_created_at", "pgh_context", "pgh_id")
        )
        table = event_model._meta.db_table
        return {
            obj_id: AuditEvent(at, actor_name(context), str((context or {}).get("reason") or ""), f"{table}:{event_id}")
            for obj_id, at, context, event_id in rows
        }

    @staticmethod
    def _audit_record(event: AuditEvent | None, site_code: str) -> etree._Element | None:
        if event is None:
            return None
        return E(
            "AuditRecord",
            {"EditPoint": "DBAudit", "UsedImputationMethod": "No"},
            E("UserRef", {"UserOID": _oid("USR", event.actor)}),
            E("LocationRef", {"LocationOID": _oid("LOC", site_code)}),
            E("DateTimeStamp", text=event.at.astimezone(dt.UTC).isoformat()),
            E("ReasonForChange", text=event.reason) if event.reason else None,
            E("SourceID", text=event.source),
        )

    @staticmethod
    def _item(
        oid: str, value: object, *, audit: etree._Element | None = None, unit: str | None = None, null_reason: str = ""
    ):
        text = _value_text(value)
        if text is None or text == "":
            if not null_reason:
                return None
            return E(
                "ItemData",
                {"ItemOID": oid, "IsNull": "Yes"},
                audit,
                E("Annotation", {"SeqNum": 1}, E("Comment", {"SponsorOrSite": "Site"}, text=null_reason)),
            )
        return E(
            "ItemData",
            {"ItemOID": oid, "Value": text},
            audit,
            E("MeasurementUnitRef", {"MeasurementUnitOID": unit}) if unit else None,
        )

    @staticmethod
    def _group(oid: str, items: list, *, audit=None, repeat: int | None = None) -> etree._Element | None:
        items = [item for item in items if item is not None]
        if not items:
            return None
        return E("ItemGroupData", {"ItemGroupOID": oid, "ItemGroupRepeatKey": repeat}, audit, *items)

    def _subject_fields(self) -> list[str]:
        fields = [
            "pk",
            "screening_number",
            "site__code",
            "sex",
            "age_at_screening",
            "birth_year",
            "status",
            "screened_on",
            "consent_date",
            "consent_version",
            "completed_on",
            "withdrawn_on",
            "withdrawal_reason",
            "withdrawal_detail",
            "screen_failure_reason",
            "randomization__pk",
            "randomization__randomization_number",
            "randomization__randomized_at",
            "randomization__stratum",
        ]
        if self.unblinded:
            fields.append("randomization__arm__code")
        return fields

    def _subject_chunks(self) -> Iterator[list[dict]]:
        fields = self._subject_fields()
        rows = self.export.participants.order_by("screening_number").values_list(*fields).iterator(chunk_size=2000)
        for chunk in _batched(rows, SUBJECTS_PER_CHUNK):
            yield [dict(zip(fields, row, strict=True)) for row in chunk]

    def _chunk_data(self, ids: list[int]) -> dict[str, object]:
        """Everything the chunk's subjects need, in a fixed number of queries whatever the chunk holds."""
        visits = defaultdict(list)
        for row in (
            Visit.objects.filter(participant_id__in=ids)
            .order_by("participant_id", "visit_definition__order")
            .values_list(
                "pk",
                "participant_id",
                "visit_definition__code",
                "status",
                "visit_date",
                "study_day",
                "in_window",
                "missed_reason",
            )
        ):
            visits[row[1]].append(row)
        measurements = defaultdict(list)
        for row in (
            OutcomeMeasurement.objects.filter(visit__participant_id__in=ids)
            .order_by("visit_id", "endpoint__rank", "endpoint__code")
            .values_list(
                "pk",
                "visit_id",
                "endpoint__code",
                "endpoint__kind",
                "value",
                "event_occurred",
                "unit",
                "not_done_reason",
            )
        ):
            measurements[row[1]].append(row)
        doses = defaultdict(list)
        for row in (
            DoseAdministration.objects.filter(participant_id__in=ids)
            .order_by("participant_id", "administered_at", "pk")
            .values_list(*self._dose_fields())
        ):
            doses[(row[1], row[2])].append(row)
        events = defaultdict(list)
        for row in (
            AdverseEvent.objects.filter(participant_id__in=ids)
            .order_by("participant_id", "onset_date", "pk")
            .values_list(
                "pk",
                "participant_id",
                "term",
                "soc",
                "onset_date",
                "stop_date",
                "grade",
                "serious",
                "causality",
                "expected",
                "action_taken",
                "outcome",
            )
        ):
            events[row[1]].append(row)
        visit_ids = [row[0] for rows in visits.values() for row in rows]
        return {
            "visits": visits,
            "measurements": measurements,
            "doses": doses,
            "events": events,
            "audit": {
                Participant: self._latest_events(Participant, ids),
                Visit: self._latest_events(Visit, visit_ids),
                OutcomeMeasurement: self._latest_events(
                    OutcomeMeasurement, [row[0] for rows in measurements.values() for row in rows]
                ),
                DoseAdministration: self._latest_events(
                    DoseAdministration, [row[0] for rows in doses.values() for row in rows]
                ),
                AdverseEvent: self._latest_events(AdverseEvent, [row[0] for rows in events.values() for row in rows]),
            },
        }

    def _randomization_audit(self, chunk: list[dict]) -> dict[int, AuditEvent]:
        return self._latest_events(
            Randomization, [row["randomization__pk"] for row in chunk if row["randomization__pk"]]
        )

    def _dose_form(self, rows: list[tuple], audit: dict, site: str) -> etree._Element | None:
        groups = []
        for repeat, row in enumerate(rows, start=1):
            values = dict(zip(self._dose_fields(), row, strict=True))
            items = [
                self._item("IT.EX.EXDTC", values["administered_at"]),
                self._item("IT.EX.ROUTE", values["route"]),
            ]
            if self.unblinded:
                items += [
                    self._item("IT.EX.LOT", values["lot__lot_number"]),
                    self._item("IT.EX.VOLUME", values["volume_ml"], unit=self._unit_oid("mL")),
                    self._item("IT.EX.PARTICLES", values["particles_given"]),
                ]
            groups.append(
                self._group("IG.EX", items, audit=self._audit_record(audit.get(values["pk"]), site), repeat=repeat)
            )
        groups = [group for group in groups if group is not None]
        return E("FormData", {"FormOID": "F.EX"}, *groups) if groups else None

    def _dose_fields(self) -> list[str]:
        fields = ["pk", "participant_id", "visit_id", "administered_at", "route"]
        return [*fields, "lot__lot_number", "volume_ml", "particles_given"] if self.unblinded else fields

    def _subject(self, subject: dict, data: dict, randomization_audit: dict[int, AuditEvent]) -> etree._Element:
        site = subject["site__code"]
        audit = data["audit"]
        pk = subject["pk"]
        forms = [
            E(
                "FormData",
                {"FormOID": "F.DM"},
                self._group(
                    "IG.DM",
                    [
                        self._item("IT.DM.SEX", subject["sex"]),
                        self._item("IT.DM.AGE", subject["age_at_screening"]),
                        self._item("IT.DM.BRTHYR", subject["birth_year"]),
                        self._item("IT.DM.SCRNDAT", subject["screened_on"]),
                        self._item("IT.DM.STATUS", subject["status"]),
                        self._item("IT.DM.ICDAT", subject["consent_date"]),
                        self._item("IT.DM.ICVER", subject["consent_version"]),
                    ],
                ),
            )
        ]
        if subject["randomization__pk"]:
            items = [
                self._item("IT.RAND.RANDNO", subject["randomization__randomization_number"]),
                self._item("IT.RAND.RANDDTC", subject["randomization__randomized_at"]),
                self._item("IT.RAND.STRATUM", subject["randomization__stratum"]),
            ]
            if self.unblinded:
                items.append(self._item("IT.RAND.ARMCD", subject["randomization__arm__code"]))
            record = self._audit_record(randomization_audit.get(subject["randomization__pk"]), site)
            forms.append(E("FormData", {"FormOID": "F.RAND"}, self._group("IG.RAND", items, audit=record)))
        disposition = self._disposition(subject)
        if disposition:
            forms.append(E("FormData", {"FormOID": "F.DS"}, self._group("IG.DS", disposition)))
        unscheduled_doses = self._dose_form(data["doses"].get((pk, None), []), audit[DoseAdministration], site)
        if unscheduled_doses is not None:
            forms.append(unscheduled_doses)
        events = [E("StudyEventData", {"StudyEventOID": "SE.SUBJECT"}, *forms)]
        events += [self._visit(visit, data, site) for visit in data["visits"].get(pk, [])]
        adverse = [
            self._group(
                "IG.AE", self._ae_items(row), audit=self._audit_record(audit[AdverseEvent].get(row[0]), site), repeat=n
            )
            for n, row in enumerate(data["events"].get(pk, []), start=1)
        ]
        if adverse:
            events.append(E("StudyEventData", {"StudyEventOID": "SE.AE"}, E("FormData", {"FormOID": "F.AE"}, *adverse)))
        return E(
            "SubjectData",
            {"SubjectKey": f"{self.trial.protocol_code}-{subject['screening_number']}"},
            self._audit_record(audit[Participant].get(pk), site),
            E("SiteRef", {"LocationOID": _oid("LOC", site)}),
            *events,
        )

    @staticmethod
    def _disposition(subject: dict) -> list:
        if subject["status"] == Participant.Status.SCREEN_FAILED:
            code, when, detail = "screen_failed", subject["screened_on"], subject["screen_failure_reason"]
        elif subject["completed_on"]:
            code, when, detail = "completed", subject["completed_on"], ""
        elif subject["withdrawn_on"] and subject["withdrawal_reason"]:
            code, when, detail = subject["withdrawal_reason"], subject["withdrawn_on"], subject["withdrawal_detail"]
        else:
            return []
        return [
            OdmWriter._item("IT.DS.DSDECOD", code),
            OdmWriter._item("IT.DS.DSSTDAT", when),
            OdmWriter._item("IT.DS.DSTERM", detail or None),
        ]

    def _visit(self, visit: tuple, data: dict, site: str) -> etree._Element:
        visit_id, participant_id, code, status, visit_date, study_day, in_window, missed_reason = visit
        audit = data["audit"]
        visit_group = self._group(
            "IG.SV",
            [
                self._item("IT.SV.STATUS", status),
                self._item("IT.SV.SVDAT", visit_date),
                self._item("IT.SV.STUDYDAY", study_day),
                self._item("IT.SV.INWIN", in_window),
                self._item("IT.SV.MISSREAS", missed_reason or None),
            ],
            audit=self._audit_record(audit[Visit].get(visit_id), site),
        )
        values = []
        for pk, _visit_id, endpoint, kind, value, event, unit, not_done in data["measurements"].get(visit_id, []):
            record = self._audit_record(audit[OutcomeMeasurement].get(pk), site)
            if kind in (Endpoint.Kind.BINARY, Endpoint.Kind.COUNT, Endpoint.Kind.ORDINAL) and value is not None:
                value = int(value)
            values.append(
                self._item(
                    _oid("IT", "EFF", endpoint),
                    value,
                    audit=record,
                    unit=self._unit_oid(unit) if unit and value is not None else None,
                    null_reason=not_done or "Not recorded",
                )
            )
            if kind == Endpoint.Kind.TIME_TO_EVENT and event is not None:
                values.append(self._item(_oid("IT", "EFF", endpoint, "EVENT"), event))
        forms = [E("FormData", {"FormOID": "F.VISIT"}, visit_group, self._group("IG.EFF", values))]
        doses = self._dose_form(data["doses"].get((participant_id, visit_id), []), audit[DoseAdministration], site)
        if doses is not None:
            forms.append(doses)
        return E("StudyEventData", {"StudyEventOID": _oid("SE", code)}, *forms)

    @staticmethod
    def _ae_items(row: tuple) -> list:
        _pk, _participant, term, soc, onset, stop, grade, serious, causality, expected, action, outcome = row
        return [
            OdmWriter._item("IT.AE.TERM", term),
            OdmWriter._item("IT.AE.SOC", soc),
            OdmWriter._item("IT.AE.STDAT", onset),
            OdmWriter._item("IT.AE.ENDAT", stop),
            OdmWriter._item("IT.AE.GRADE", grade),
            OdmWriter._item("IT.AE.SER", serious),
            OdmWriter._item("IT.AE.REL", causality),
            OdmWriter._item("IT.AE.EXPECTED", expected),
            OdmWriter._item("IT.AE.ACN", action),
            OdmWriter._item("IT.AE.OUT", outcome),
        ]

    def subjects(self) -> Iterator[etree._Element]:
        for subjects in self._subject_chunks():
            data = self._chunk_data([subject["pk"] for subject in subjects])
            randomization_audit = self._randomization_audit(subjects)
            for subject in subjects:
                yield self._subject(subject, data, randomization_audit)

    def write(self, path: Path) -> None:
        now = timezone.now().astimezone(dt.UTC).replace(microsecond=0)
        study = self.study()  # registers every unit before BasicDefinitions is serialised
        admin = self.admin_data(self.actors())
        attributes = {
            "FileType": "Snapshot",
            "Granularity": "All",
            "FileOID": _oid("ODM", self.trial.protocol_code, now.strftime("%Y%m%dT%H%M%SZ")),
            "CreationDateTime": now.isoformat(),
            "AsOfDateTime": now.isoformat(),
            "ODMVersion": "1.3.2",
            "Originator": "ExoTrial",
            "SourceSystem": "ExoTrial",
            "Description": f"Snapshot of {self.trial.protocol_code} exported by {self.user.get_username()}",
        }
        with etree.xmlfile(str(path), encoding="UTF-8") as document:
            document.write_declaration()
            with document.element(_q("ODM"), attributes, nsmap={None: ODM_NS}):
                document.write(study, pretty_print=True)
                document.write(admin, pretty_print=True)
                with document.element(
                    _q("ClinicalData"), {"StudyOID": self.study_oid, "MetaDataVersionOID": self.mdv_oid}
                ):
                    for subject in self.subjects():
                        document.write(subject, pretty_print=True)


def write_odm(*, trial: Trial, user, path: str | os.PathLike[str]) -> Path:
    """Write ``trial`` as an ODM 1.3.2 snapshot to ``path``, as ``user`` may see it; returns the path."""
    writer = OdmWriter(trial=trial, user=user)  # authorizes before anything touches the disk
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer.write(target)
    return target
