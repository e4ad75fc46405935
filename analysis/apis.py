"""Analysis runs and their artifacts through the API (same report policy as the web pages)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from analysis.models import AnalysisRun, Artifact
from analysis.services import analysis_run_request, artifact_download_response
from config.api import StrictInputMixin
from trials.apis import TrialScopedMixin
from trials.policies.access import Capability
from trials.policies.reports import may_read, may_request, readable_audiences


class ArtifactOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["id", "audience", "name", "media_type", "sha256", "size"]


class RunOutputSerializer(serializers.ModelSerializer):
    results = serializers.SerializerMethodField(help_text="results.json; only for readers of closed reports.")

    class Meta:
        model = AnalysisRun
        fields = [
            "id",
            "kind",
            "look_number",
            "cutoff",
            "status",
            "progress",
            "step",
            "attempts",
            "requested_at",
            "started_at",
            "finished_at",
            "error",
            "results",
        ]

    def get_results(self, run) -> dict | None:
        return run.results if self.context.get("closed_reader") else None


class RunRequestSerializer(StrictInputMixin, serializers.Serializer):
    kind = serializers.ChoiceField(choices=AnalysisRun.Kind.choices)
    cutoff = serializers.DateField(required=False)


class RunsApi(TrialScopedMixin, generics.ListAPIView):
    queryset = AnalysisRun.objects.none()  # for the schema; get_queryset scopes the real rows
    capability = Capability.VIEW_REPORTS_OPEN
    serializer_class = RunOutputSerializer

    def get_queryset(self):
        return AnalysisRun.objects.filter(trial=self.get_trial())

    def get_serializer_context(self):
        return {
            **super().get_serializer_context(),
            "closed_reader": may_read(self.request.user, self.get_trial(), "closed"),
        }

    @extend_schema(request=RunRequestSerializer, responses={201: RunOutputSerializer})
    def post(self, request, code):
        trial = self.get_trial()
        if not may_request(request.user, trial):
            raise PermissionDenied("Only the unblinded statistician requests analyses.")
        serializer = RunRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = analysis_run_request(trial=trial, user=request.user, **serializer.validated_data)
        return Response(RunOutputSerializer(run, context={"closed_reader": True}).data, status=status.HTTP_201_CREATED)


class RunDetailApi(TrialScopedMixin, APIView):
    capability = Capability.VIEW_REPORTS_OPEN

    @extend_schema(responses=RunOutputSerializer)
    def get(self, request, code, run_id):
        trial = self.get_trial()
        run = AnalysisRun.objects.filter(trial=trial, pk=run_id).first()
        if run is None:
            raise NotFound("No such run.")
        return Response(
            RunOutputSerializer(run, context={"closed_reader": may_read(request.user, trial, "closed")}).data
        )


class RunArtifactsApi(TrialScopedMixin, generics.ListAPIView):
    queryset = Artifact.objects.none()  # for the schema; get_queryset scopes the real rows
    capability = Capability.VIEW_REPORTS_OPEN
    serializer_class = ArtifactOutputSerializer

    def get_queryset(self):
        trial = self.get_trial()
        return Artifact.objects.filter(
            run__trial=trial, run_id=self.kwargs["run_id"], audience__in=readable_audiences(self.request.user, trial)
        ).order_by("name")


class ArtifactDownloadApi(TrialScopedMixin, APIView):
    capability = Capability.VIEW_REPORTS_OPEN

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The file.")})
    def get(self, request, code, run_id, artifact_id):
        trial = self.get_trial()
        artifact = Artifact.objects.filter(run__trial=trial, run_id=run_id, pk=artifact_id).first()
        if artifact is None or not may_read(request.user, trial, artifact.audience):
            raise NotFound("No such file.")
        return artifact_download_response(
            artifact=artifact, user=request.user, remote_addr=request.META.get("REMOTE_ADDR")
        )
