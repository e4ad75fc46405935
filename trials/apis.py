"""Trial set-up, read through the API (writes of set-up happen in the coordinators' admin)."""

from __future__ import annotations

from rest_framework import generics, serializers
from rest_framework.exceptions import PermissionDenied

from trials.models import Arm, Endpoint, ProductLot, Site, Trial, VisitDefinition
from trials.policies.access import Capability, trials_for
from trials.policies.blinding import sees_arm_definitions
from trials.selectors import trial_get_for


class TrialScopedMixin:
    capability = Capability.VIEW_TRIAL

    def get_trial(self) -> Trial:
        if not hasattr(self, "_trial"):
            self._trial = trial_get_for(self.request.user, self.kwargs["code"], self.capability)
        return self._trial


class TrialOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = [
            "protocol_code",
            "title",
            "phase",
            "status",
            "blinding",
            "target_enrollment",
            "sponsor",
            "registry_id",
        ]


class TrialListApi(generics.ListAPIView):
    serializer_class = TrialOutputSerializer

    def get_queryset(self):
        return trials_for(self.request.user).order_by("protocol_code")


class TrialDetailApi(TrialScopedMixin, generics.RetrieveAPIView):
    serializer_class = TrialOutputSerializer

    def get_object(self):
        return self.get_trial()


class SiteOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "code", "name", "country", "principal_investigator", "target_enrollment", "is_active"]


class SiteListApi(TrialScopedMixin, generics.ListAPIView):
    queryset = Site.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = SiteOutputSerializer

    def get_queryset(self):
        return self.get_trial().sites.order_by("code")


class VisitDefinitionOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = VisitDefinition
        fields = [
            "id",
            "code",
            "name",
            "order",
            "target_day",
            "window_before_days",
            "window_after_days",
            "is_baseline",
            "is_dosing_visit",
        ]


class VisitDefinitionListApi(TrialScopedMixin, generics.ListAPIView):
    queryset = VisitDefinition.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = VisitDefinitionOutputSerializer

    def get_queryset(self):
        return self.get_trial().visit_definitions.order_by("order")


class EndpointOutputSerializer(serializers.ModelSerializer):
    visits = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = Endpoint
        fields = ["id", "code", "name", "kind", "unit", "min_value", "max_value", "role", "direction", "rank", "visits"]


class EndpointListApi(TrialScopedMixin, generics.ListAPIView):
    queryset = Endpoint.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = EndpointOutputSerializer

    def get_queryset(self):
        return self.get_trial().endpoints.prefetch_related("visits").order_by("rank", "code")


class LotOutputSerializer(serializers.ModelSerializer):
    product = serializers.CharField(source="product.name")
    particle_to_protein_ratio = serializers.FloatField()

    class Meta:
        model = ProductLot
        fields = [
            "id",
            "lot_number",
            "product",
            "manufactured_on",
            "expires_on",
            "storage_temperature_c",
            "particle_concentration_per_ml",
            "mean_diameter_nm",
            "modal_diameter_nm",
            "protein_concentration_ug_per_ml",
            "particle_to_protein_ratio",
            "endotoxin_eu_per_ml",
            "sterility",
            "mycoplasma",
            "potency_assay",
            "potency_result",
            "potency_unit",
            "release_status",
            "released_on",
        ]


class LotListApi(TrialScopedMixin, generics.ListAPIView):
    queryset = ProductLot.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = LotOutputSerializer

    def get_queryset(self):
        return self.get_trial().lots.select_related("product").order_by("lot_number")


class ArmOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Arm
        fields = [
            "id",
            "code",
            "name",
            "role",
            "allocation_weight",
            "dose_particles",
            "dose_protein_ug",
            "route",
            "schedule",
        ]


class ArmListApi(TrialScopedMixin, generics.ListAPIView):
    """Arm definitions: treatment information, for unblinded roles only once a blinded trial is live."""

    queryset = Arm.objects.none()  # for the schema; get_queryset scopes the real rows
    serializer_class = ArmOutputSerializer

    def get_queryset(self):
        trial = self.get_trial()
        if not sees_arm_definitions(self.request.user, trial):
            raise PermissionDenied("Arm definitions are visible to unblinded roles only.")
        return trial.arms.order_by("code")
