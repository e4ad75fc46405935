"""Clinical data through the API. Reads are scoped by site and blinded by role; writes go through the same
services as the web forms (validation, locks, reasons, optimistic concurrency)."""

from __future__ import annotations

import copy

import django_filters
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.history import record_history
from audit.security import record_security_event
from config.api import PayloadTooLarge, StrictInputMixin, StrictOrderingFilter, etag, expected_version
from participants.models import (
    AdverseEvent,
    DataQuery,
    DoseAdministration,
    ImportJob,
    OutcomeMeasurement,
    Participant,
    ProtocolDeviation,
    Signature,
    Visit,
)
from participants.selectors import QUERYABLE, participants_visible, query_target
from participants.services.adverse_events import adverse_event_record, adverse_event_update
from participants.services.dosing import dose_record
from participants.services.queries import query_answer, query_close, query_raise, query_reopen
from participants.services.signatures import signature_is_valid, signature_manifestation
from participants.services.visits import MeasurementInput, scheduled_visit, visit_record, visit_update
from trials.apis import TrialScopedMixin
from trials.models import Arm
from trials.policies.access import Capability, require
from trials.policies.blinding import hidden_fields, sees_allocation, sees_participant_allocation

IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The ETag of the version you read (or send `version` in the body).",
)


class ClinicalMixin(TrialScopedMixin):
    capability = Capability.VIEW_PARTICIPANTS
    # Read along with the participant by get_participant (outputs and notifications name the site).
    participant_related: tuple[str, ...] = ("site",)

    def visible_participants(self):
        return participants_visible(trial=self.get_trial(), user=self.request.user)

    def get_participant(self) -> Participant:
        participants = self.visible_participants()
        if self.participant_related:  # select_related() without names would follow every foreign key
            participants = participants.select_related(*self.participant_related)
        try:
            participant = participants.get(pk=self.kwargs["participant_id"])
        except Participant.DoesNotExist:
            raise NotFound("No such participant.") from None
        # The trial the participant was selected by: one instance per request, not a second copy from a join.
        participant.trial = self.get_trial()
        return participant


# --- participants ------------------------------------------------------------------------------------------


class ParticipantOutputSerializer(serializers.ModelSerializer):
    site = serializers.CharField(source="site.code")
    randomization_number = serializers.CharField(
        source="randomization.randomization_number", default=None, allow_null=True
    )
    arm = serializers.SerializerMethodField(help_text="Only for users who may see the treatment assignment.")
    withdrawal_reason = serializers.CharField(read_only=True, help_text="CDISC disposition term; empty if none.")

    class Meta:
        model = Participant
        fields = [
            "id",
            "screening_number",
            "site",
            "status",
            "sex",
            "birth_year",
            "age_at_screening",
            "strata",
            "screened_on",
            "consent_date",
            "consent_version",
            "randomization_number",
            "arm",
            "withdrawn_on",
            "withdrawal_reason",
            "completed_on",
            "version",
        ]
        read_only_fields = fields

    def get_arm(self, participant) -> str | None:
        randomization = getattr(participant, "randomization", None)
        if randomization is None or not self.context.get("unblinded", False):
            return None
        return randomization.arm.code

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("unblinded", False):
            data.pop("arm")  # absent, not merely null: blinded responses carry no treatment key at all
        return data


class ParticipantFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="site__code")
    status = django_filters.ChoiceFilter(choices=Participant.Status.choices)
    screening_number = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Participant
        fields = ["site", "status", "screening_number"]


class ParticipantListApi(ClinicalMixin, generics.ListAPIView):
    queryset = Participant.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = ParticipantOutputSerializer
    filterset_class = ParticipantFilter
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend, StrictOrderingFilter]
    ordering_fields = ["screening_number", "screened_on", "status"]  # allow-list: never by arm
    ordering = ["screening_number"]

    def get_queryset(self):
        return self.visible_participants().select_related("site", "randomization__arm")

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "unblinded": sees_allocation(self.request.user, self.get_trial())}


class SignatureOutputSerializer(serializers.ModelSerializer):
    """A casebook signature with its manifestation (21 CFR 11.50): printed name, UTC time, meaning."""

    meaning = serializers.CharField(source="get_meaning_display")
    manifestation = serializers.SerializerMethodField()
    valid = serializers.SerializerMethodField(help_text="False once invalidated or the casebook changed since.")

    class Meta:
        model = Signature
        fields = ["signer_name", "signed_at", "meaning", "manifestation", "valid", "invalidated_at"]
        read_only_fields = fields

    def get_manifestation(self, signature) -> str:
        return signature_manifestation(signature)

    def get_valid(self, signature) -> bool:
        return signature_is_valid(signature)


class ParticipantDetailOutputSerializer(ParticipantOutputSerializer):
    signatures = SignatureOutputSerializer(many=True, read_only=True)

    class Meta(ParticipantOutputSerializer.Meta):
        fields = [*ParticipantOutputSerializer.Meta.fields, "signatures"]
        read_only_fields = fields


class ParticipantDetailApi(ClinicalMixin, generics.RetrieveAPIView):
    serializer_class = ParticipantDetailOutputSerializer

    def get_object(self):
        return self.get_participant()

    def retrieve(self, request, *args, **kwargs):
        participant = self.get_object()
        unblinded = getattr(participant, "randomization", None) is not None and sees_participant_allocation(
            request.user, participant
        )
        data = ParticipantDetailOutputSerializer(participant, context={"unblinded": unblinded}).data
        return Response(data, headers={"ETag": etag(participant.version)})


class HistoryEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    action = serializers.CharField()
    username = serializers.CharField()
    reason = serializers.CharField()
    changes = serializers.ListField(child=serializers.DictField())


def _history(obj, user, trial) -> list[dict]:
    hidden = hidden_fields(user, trial, obj._meta.label_lower)
    return [
        {
            "at": entry.at,
            "action": entry.action,
            "username": entry.username,
            "reason": entry.reason,
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in entry.changes],
        }
        for entry in record_history(obj, hidden_fields=hidden)
    ]


class RecordHistoryApi(ClinicalMixin, APIView):
    """Audit trail of one record (participant, visit, adverse event or dose), blinded fields masked."""

    models = {"participants": Participant, "visits": Visit, "adverse-events": AdverseEvent, "doses": DoseAdministration}

    @extend_schema(responses=HistoryEntrySerializer(many=True))
    def get(self, request, code, kind, record_id):
        model = self.models.get(kind)
        if model is None:
            raise NotFound()
        participant_path = "pk" if model is Participant else "participant"
        lookup = {f"{participant_path}__in" if participant_path != "pk" else "pk__in": self.visible_participants()}
        obj = model.objects.filter(pk=record_id, **lookup).first()
        if obj is None:
            raise NotFound()
        return Response(HistoryEntrySerializer(_history(obj, request.user, self.get_trial()), many=True).data)


# --- visits and measurements -----------------------------------------------------------------------------


class FieldsBuiltOnceMixin:
    """A ModelSerializer derives its fields from the model again for every instance; where they depend on nothing
    else (no context, no instance), derive them once per class and give each instance copies, as DRF does with
    declared fields. Put first in the bases."""

    def get_fields(self):
        serializer_class = type(self)
        if "_built_fields" not in serializer_class.__dict__:
            serializer_class._built_fields = super().get_fields()
        return copy.deepcopy(serializer_class._built_fields)


class MeasurementOutputSerializer(FieldsBuiltOnceMixin, serializers.ModelSerializer):
    endpoint = serializers.CharField(source="endpoint.code")
    participant_id = serializers.IntegerField(source="visit.participant_id")
    visit = serializers.CharField(source="visit.visit_definition.code")

    class Meta:
        model = OutcomeMeasurement
        fields = [
            "id",
            "participant_id",
            "visit",
            "endpoint",
            "value",
            "event_occurred",
            "unit",
            "measured_on",
            "not_done_reason",
            "version",
        ]


class VisitOutputSerializer(FieldsBuiltOnceMixin, serializers.ModelSerializer):
    visit = serializers.CharField(source="visit_definition.code")
    measurements = MeasurementOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Visit
        fields = [
            "id",
            "participant_id",
            "visit",
            "status",
            "visit_date",
            "study_day",
            "in_window",
            "missed_reason",
            "version",
            "measurements",
        ]


class MeasurementInputSerializer(StrictInputMixin, serializers.Serializer):
    endpoint = serializers.CharField()
    value = serializers.FloatField(allow_null=True, required=False, default=None)
    event_occurred = serializers.BooleanField(allow_null=True, required=False, default=None)
    not_done_reason = serializers.CharField(allow_blank=True, required=False, default="")


class VisitInputSerializer(StrictInputMixin, serializers.Serializer):
    visit = serializers.CharField(help_text="Visit definition code, e.g. W12.")
    visit_date = serializers.DateField()
    measurements = MeasurementInputSerializer(many=True)


class VisitUpdateSerializer(StrictInputMixin, serializers.Serializer):
    visit_date = serializers.DateField()
    measurements = MeasurementInputSerializer(many=True)
    reason = serializers.CharField()
    version = serializers.IntegerField(required=False)


def _validated(serializer_class, data, *, partial: bool = False):
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _measurements(trial, entries, *, scheduled=()) -> dict[int, MeasurementInput]:
    """The entries keyed by endpoint id; codes name endpoints of ``trial``. ``scheduled``: the visit's endpoints,
    already in memory. The trial's other endpoints are read only when an entry names none of those: an unknown
    code and an endpoint not measured at the visit are refused with different errors."""
    endpoints = {endpoint.code: endpoint.pk for endpoint in scheduled if endpoint.trial_id == trial.pk}
    if any(entry["endpoint"] not in endpoints for entry in entries):
        endpoints = dict(trial.endpoints.order_by().values_list("code", "pk"))
    result = {}
    for entry in entries:
        if entry["endpoint"] not in endpoints:
            raise serializers.ValidationError({"measurements": f"Unknown endpoint {entry['endpoint']!r}."})
        result[endpoints[entry["endpoint"]]] = MeasurementInput(
            value=entry.get("value"),
            event=entry.get("event_occurred"),
            not_done_reason=entry.get("not_done_reason", ""),
        )
    return result


def _visits(participants):
    return (
        Visit.objects.filter(participant__in=participants)
        .select_related("visit_definition")
        .prefetch_related("measurements__endpoint", "measurements__visit__visit_definition")
    )


class ParticipantVisitsApi(ClinicalMixin, APIView):
    participant_related = ()  # visits need the participant's site id only (for the site check)

    @extend_schema(responses=VisitOutputSerializer(many=True))
    def get(self, request, code, participant_id):
        participant = self.get_participant()
        visits = _visits([participant]).order_by("visit_definition__order")
        return Response(VisitOutputSerializer(visits, many=True).data)

    @extend_schema(request=VisitInputSerializer, responses={201: VisitOutputSerializer})
    def post(self, request, code, participant_id):
        participant = self.get_participant()
        data = _validated(VisitInputSerializer, request.data)
        trial = self.get_trial()
        definition = scheduled_visit(trial, data["visit"])
        if definition is None:
            raise serializers.ValidationError({"visit": f"Unknown visit {data['visit']!r}."})
        # visit_record hands the visit back with its measurements: the response is built without reading it back.
        visit = visit_record(
            participant=participant,
            definition=definition,
            user=request.user,
            visit_date=data["visit_date"],
            measurements=_measurements(trial, data["measurements"], scheduled=definition.endpoints.all()),
        )
        return Response(
            VisitOutputSerializer(visit).data, status=status.HTTP_201_CREATED, headers={"ETag": etag(visit.version)}
        )


class VisitDetailApi(ClinicalMixin, APIView):
    def get_visit(self) -> Visit:
        visit = _visits(self.visible_participants()).filter(pk=self.kwargs["visit_id"]).first()
        if visit is None:
            raise NotFound("No such visit.")
        return visit

    @extend_schema(responses=VisitOutputSerializer)
    def get(self, request, code, visit_id):
        visit = self.get_visit()
        return Response(VisitOutputSerializer(visit).data, headers={"ETag": etag(visit.version)})

    @extend_schema(request=VisitUpdateSerializer, responses=VisitOutputSerializer, parameters=[IF_MATCH])
    def patch(self, request, code, visit_id):
        visit = self.get_visit()
        data = _validated(VisitUpdateSerializer, request.data)
        visit_update(
            visit=visit,
            user=request.user,
            expected_version=expected_version(request, data.get("version")),
            visit_date=data["visit_date"],
            measurements=_measurements(self.get_trial(), data["measurements"]),
            reason=data["reason"],
        )
        visit = self.get_visit()
        return Response(VisitOutputSerializer(visit).data, headers={"ETag": etag(visit.version)})


class MeasurementFilter(django_filters.FilterSet):
    endpoint = django_filters.CharFilter(field_name="endpoint__code")
    visit = django_filters.CharFilter(field_name="visit__visit_definition__code")
    participant = django_filters.NumberFilter(field_name="visit__participant_id")

    class Meta:
        model = OutcomeMeasurement
        fields = ["endpoint", "visit", "participant"]


class MeasurementListApi(ClinicalMixin, generics.ListAPIView):
    queryset = OutcomeMeasurement.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = MeasurementOutputSerializer
    filterset_class = MeasurementFilter

    def get_queryset(self):
        return (
            OutcomeMeasurement.objects.filter(visit__participant__in=self.visible_participants())
            .select_related("endpoint", "visit__visit_definition")
            .order_by("pk")
        )


# --- adverse events ----------------------------------------------------------------------------------------

AE_FIELDS = [
    "term",
    "soc",
    "onset_date",
    "stop_date",
    "grade",
    "results_in_death",
    "life_threatening",
    "hospitalization",
    "disability",
    "congenital_anomaly",
    "important_medical_event",
    "causality",
    "expected",
    "action_taken",
    "outcome",
    "site_aware_at",
]


class AdverseEventOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = AdverseEvent
        fields = [
            "id",
            "participant_id",
            *AE_FIELDS,
            "serious",
            "sponsor_notified_at",
            "regulator_reported_at",
            "version",
        ]


class AdverseEventInputSerializer(StrictInputMixin, serializers.ModelSerializer):
    class Meta:
        model = AdverseEvent
        fields = AE_FIELDS


class AdverseEventUpdateSerializer(AdverseEventInputSerializer):
    reason = serializers.CharField()
    version = serializers.IntegerField(required=False)

    class Meta(AdverseEventInputSerializer.Meta):
        fields = [*AE_FIELDS, "reason", "version"]


class AdverseEventFilter(django_filters.FilterSet):
    serious = django_filters.BooleanFilter()
    grade = django_filters.NumberFilter()
    participant = django_filters.NumberFilter(field_name="participant_id")

    class Meta:
        model = AdverseEvent
        fields = ["serious", "grade", "participant"]


class AdverseEventListApi(ClinicalMixin, generics.ListAPIView):
    queryset = AdverseEvent.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = AdverseEventOutputSerializer
    filterset_class = AdverseEventFilter

    def get_queryset(self):
        return AdverseEvent.objects.filter(participant__in=self.visible_participants()).order_by("pk")


class ParticipantAdverseEventsApi(ClinicalMixin, APIView):
    @extend_schema(request=AdverseEventInputSerializer, responses={201: AdverseEventOutputSerializer})
    def post(self, request, code, participant_id):
        participant = self.get_participant()
        data = _validated(AdverseEventInputSerializer, request.data)
        event = adverse_event_record(
            participant=participant, user=request.user, data={name: data.get(name) for name in AE_FIELDS}
        )
        return Response(
            AdverseEventOutputSerializer(event).data,
            status=status.HTTP_201_CREATED,
            headers={"ETag": etag(event.version)},
        )


class AdverseEventDetailApi(ClinicalMixin, APIView):
    def get_event(self) -> AdverseEvent:
        event = AdverseEvent.objects.filter(
            pk=self.kwargs["event_id"], participant__in=self.visible_participants()
        ).first()
        if event is None:
            raise NotFound("No such adverse event.")
        return event

    @extend_schema(responses=AdverseEventOutputSerializer)
    def get(self, request, code, event_id):
        event = self.get_event()
        return Response(AdverseEventOutputSerializer(event).data, headers={"ETag": etag(event.version)})

    @extend_schema(request=AdverseEventUpdateSerializer, responses=AdverseEventOutputSerializer, parameters=[IF_MATCH])
    def patch(self, request, code, event_id):
        event = self.get_event()
        data = _validated(AdverseEventUpdateSerializer, request.data, partial=True)
        if not data.get("reason"):
            raise serializers.ValidationError({"reason": "Give a reason for changing saved data."})
        current = {name: getattr(event, name) for name in AE_FIELDS}
        event = adverse_event_update(
            event=event,
            user=request.user,
            expected_version=expected_version(request, data.get("version")),
            data={**current, **{k: v for k, v in data.items() if k in AE_FIELDS}},
            reason=data["reason"],
        )
        return Response(AdverseEventOutputSerializer(event).data, headers={"ETag": etag(event.version)})


# --- doses, deviations -------------------------------------------------------------------------------------


class DoseOutputSerializer(serializers.ModelSerializer):
    lot_number = serializers.CharField(source="lot.lot_number", default=None, allow_null=True)

    class Meta:
        model = DoseAdministration
        fields = [
            "id",
            "participant_id",
            "administered_at",
            "route",
            "lot_number",
            "volume_ml",
            "particles_given",
            "administered_by",
        ]
        # Output only; lot, volume, particles and who gave it are left out for blinded readers.
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("unblinded", False):
            for name in ("lot_number", "volume_ml", "particles_given", "administered_by"):
                data.pop(name)
        return data


class DoseInputSerializer(StrictInputMixin, serializers.Serializer):
    lot_number = serializers.CharField()
    volume_ml = serializers.FloatField()
    administered_at = serializers.DateTimeField()
    route = serializers.ChoiceField(choices=Arm.Route.choices)


class DoseListApi(ClinicalMixin, generics.ListAPIView):
    queryset = DoseAdministration.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = DoseOutputSerializer

    def get_queryset(self):
        return (
            DoseAdministration.objects.filter(participant__in=self.visible_participants())
            .select_related("lot")
            .order_by("pk")
        )

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "unblinded": sees_allocation(self.request.user, self.get_trial())}


class ParticipantDosesApi(ClinicalMixin, APIView):
    @extend_schema(request=DoseInputSerializer, responses={201: DoseOutputSerializer})
    def post(self, request, code, participant_id):
        participant = self.get_participant()
        data = _validated(DoseInputSerializer, request.data)
        dose = dose_record(participant=participant, user=request.user, **data)
        # The person who gave the dose sees what they entered.
        return Response(DoseOutputSerializer(dose, context={"unblinded": True}).data, status=status.HTTP_201_CREATED)


class DeviationOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProtocolDeviation
        fields = [
            "id",
            "participant_id",
            "visit_id",
            "category",
            "severity",
            "description",
            "occurred_on",
            "detected_on",
            "is_automatic",
        ]


class DeviationListApi(ClinicalMixin, generics.ListAPIView):
    queryset = ProtocolDeviation.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = DeviationOutputSerializer

    def get_queryset(self):
        return ProtocolDeviation.objects.filter(participant__in=self.visible_participants()).order_by("pk")


# --- data queries ------------------------------------------------------------------------------------------


class QueryOutputSerializer(serializers.ModelSerializer):
    raised_by = serializers.CharField(source="raised_by.username")

    class Meta:
        model = DataQuery
        fields = [
            "id",
            "participant_id",
            "target_model",
            "target_id",
            "field_name",
            "message",
            "status",
            "raised_by",
            "raised_at",
            "answer",
            "answered_at",
            "closed_at",
            "reopened_count",
        ]


class QueryRaiseSerializer(StrictInputMixin, serializers.Serializer):
    target_model = serializers.ChoiceField(choices=list(QUERYABLE))
    target_id = serializers.IntegerField(min_value=1)
    field_name = serializers.CharField()
    message = serializers.CharField()


class QueryActionSerializer(StrictInputMixin, serializers.Serializer):
    action = serializers.ChoiceField(choices=["answer", "close", "reopen"])
    text = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="The answer (answer) or the new question (reopen)."
    )


class QueryListApi(ClinicalMixin, generics.ListAPIView):
    queryset = DataQuery.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = QueryOutputSerializer
    filterset_fields = ["status"]

    def get_queryset(self):
        return (
            DataQuery.objects.filter(participant__in=self.visible_participants())
            .select_related("raised_by")
            .order_by("pk")
        )


class ParticipantQueriesApi(ClinicalMixin, APIView):
    @extend_schema(request=QueryRaiseSerializer, responses={201: QueryOutputSerializer})
    def post(self, request, code, participant_id):
        participant = self.get_participant()
        data = _validated(QueryRaiseSerializer, request.data)
        target = query_target(participant=participant, label=f"{data['target_model']}:{data['target_id']}")
        if target is None:
            raise serializers.ValidationError({"target_id": "No such record in this participant's casebook."})
        query = query_raise(
            participant=participant,
            user=request.user,
            target=target,
            field_name=data["field_name"],
            message=data["message"],
        )
        return Response(QueryOutputSerializer(query).data, status=status.HTTP_201_CREATED)


class QueryActionApi(ClinicalMixin, APIView):
    @extend_schema(request=QueryActionSerializer, responses=QueryOutputSerializer)
    def post(self, request, code, query_id):
        query = DataQuery.objects.filter(pk=query_id, participant__in=self.visible_participants()).first()
        if query is None:
            raise NotFound("No such query.")
        data = _validated(QueryActionSerializer, request.data)
        if data["action"] == "answer":
            query = query_answer(query=query, user=request.user, answer=data["text"])
        elif data["action"] == "close":
            query = query_close(query=query, user=request.user)
        else:
            query = query_reopen(query=query, user=request.user, message=data["text"])
        return Response(QueryOutputSerializer(query).data)


# --- bulk import and exports -------------------------------------------------------------------------------


class ImportJobOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        fields = [
            "id",
            "kind",
            "file_name",
            "sha256",
            "size",
            "dry_run",
            "status",
            "progress",
            "rows_total",
            "rows_imported",
            "rows_unchanged",
            "error_count",
            "errors",
            "message",
            "requested_at",
            "finished_at",
        ]
        read_only_fields = fields


class ImportInputSerializer(StrictInputMixin, serializers.Serializer):
    kind = serializers.ChoiceField(choices=ImportJob.Kind.choices, default=ImportJob.Kind.OUTCOMES)
    file = serializers.FileField(help_text="CSV or XLSX: screening_number, visit, endpoint, value, unit, measured_on.")
    commit = serializers.BooleanField(default=False, help_text="Import if valid; otherwise only check (dry run).")

    def validate_file(self, upload):
        from participants.views_exchange import import_file_problem

        problem = import_file_problem(upload)
        if problem:
            raise serializers.ValidationError(problem)
        return upload


class ImportsApi(ClinicalMixin, APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ImportInputSerializer},
        responses={201: ImportJobOutputSerializer, 413: OpenApiResponse(description="The file is over the limit.")},
    )
    def post(self, request, code):
        from participants.views_exchange import oversized_upload_message, start_import, store_upload

        trial = self.get_trial()
        require(request.user, trial, Capability.ENTER_DATA)
        too_large = oversized_upload_message(request)  # before request.data parses (and spools) the body
        if too_large:
            raise PayloadTooLarge(too_large)
        data = _validated(ImportInputSerializer, request.data)
        job = store_upload(
            trial=trial, user=request.user, upload=data["file"], commit=data["commit"], kind=data["kind"]
        )
        job = start_import(job)
        return Response(ImportJobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class ImportJobApi(ClinicalMixin, APIView):
    @extend_schema(responses=ImportJobOutputSerializer)
    def get(self, request, code, job_id):
        job = ImportJob.objects.filter(pk=job_id, trial=self.get_trial(), requested_by=request.user).first()
        if job is None:
            raise NotFound("No such import.")
        return Response(ImportJobOutputSerializer(job).data)


class ExportApi(ClinicalMixin, APIView):
    """A whole-trial export: xlsx (with data dictionary), odm (CDISC ODM 1.3.2) or sdtm (zip of XPT v5 + CSV)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The export file.")})
    def get(self, request, code, fmt):
        from participants.views_exchange import FORMATS, export_file, file_response

        if fmt not in FORMATS:
            raise NotFound("No such format: use xlsx, odm or sdtm.")
        return file_response(*export_file(trial=self.get_trial(), user=request.user, fmt=fmt))


class ExportTableApi(ClinicalMixin, APIView):
    """One table as CSV, streamed (bounded memory whatever the trial's size)."""

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(description="The table as CSV.")})
    def get(self, request, code, table):
        from participants.exchange.exports import csv_streaming_response

        trial = self.get_trial()
        try:
            response = csv_streaming_response(trial=trial, user=request.user, table=table)
        except KeyError:
            raise NotFound("No such table.") from None
        record_security_event("export", request=request, trial=trial.protocol_code, format="csv", table=table)
        return response
