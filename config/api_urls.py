from django.urls import path

from accounts import apis as account_apis
from analysis import apis as analysis_apis
from participants import apis as participant_apis
from trials import apis as trial_apis

T = "trials/<str:code>/"
urlpatterns = [
    path("auth/token/", account_apis.TokenObtainApi.as_view(), name="api-token"),
    path("trials/", trial_apis.TrialListApi.as_view(), name="api-trials"),
    path(T, trial_apis.TrialDetailApi.as_view(), name="api-trial"),
    path(T + "sites/", trial_apis.SiteListApi.as_view(), name="api-sites"),
    path(T + "arms/", trial_apis.ArmListApi.as_view(), name="api-arms"),
    path(T + "visit-definitions/", trial_apis.VisitDefinitionListApi.as_view(), name="api-visit-definitions"),
    path(T + "endpoints/", trial_apis.EndpointListApi.as_view(), name="api-endpoints"),
    path(T + "lots/", trial_apis.LotListApi.as_view(), name="api-lots"),
    path(T + "participants/", participant_apis.ParticipantListApi.as_view(), name="api-participants"),
    path(
        T + "participants/<int:participant_id>/",
        participant_apis.ParticipantDetailApi.as_view(),
        name="api-participant",
    ),
    path(
        T + "participants/<int:participant_id>/visits/",
        participant_apis.ParticipantVisitsApi.as_view(),
        name="api-participant-visits",
    ),
    path(
        T + "participants/<int:participant_id>/adverse-events/",
        participant_apis.ParticipantAdverseEventsApi.as_view(),
        name="api-participant-adverse-events",
    ),
    path(
        T + "participants/<int:participant_id>/doses/",
        participant_apis.ParticipantDosesApi.as_view(),
        name="api-participant-doses",
    ),
    path(
        T + "participants/<int:participant_id>/queries/",
        participant_apis.ParticipantQueriesApi.as_view(),
        name="api-participant-queries",
    ),
    path(T + "visits/<int:visit_id>/", participant_apis.VisitDetailApi.as_view(), name="api-visit"),
    path(T + "measurements/", participant_apis.MeasurementListApi.as_view(), name="api-measurements"),
    path(T + "adverse-events/", participant_apis.AdverseEventListApi.as_view(), name="api-adverse-events"),
    path(
        T + "adverse-events/<int:event_id>/", participant_apis.AdverseEventDetailApi.as_view(), name="api-adverse-event"
    ),
    path(T + "doses/", participant_apis.DoseListApi.as_view(), name="api-doses"),
    path(T + "deviations/", participant_apis.DeviationListApi.as_view(), name="api-deviations"),
    path(T + "queries/", participant_apis.QueryListApi.as_view(), name="api-queries"),
    path(T + "queries/<int:query_id>/actions/", participant_apis.QueryActionApi.as_view(), name="api-query-action"),
    path(T + "history/<str:kind>/<int:record_id>/", participant_apis.RecordHistoryApi.as_view(), name="api-history"),
    path(T + "imports/", participant_apis.ImportsApi.as_view(), name="api-imports"),
    path(T + "imports/<int:job_id>/", participant_apis.ImportJobApi.as_view(), name="api-import"),
    path(T + "exports/csv/<str:table>/", participant_apis.ExportTableApi.as_view(), name="api-export-table"),
    path(T + "exports/<str:fmt>/", participant_apis.ExportApi.as_view(), name="api-export"),
    path(T + "analyses/", analysis_apis.RunsApi.as_view(), name="api-runs"),
    path(T + "analyses/<int:run_id>/", analysis_apis.RunDetailApi.as_view(), name="api-run"),
    path(T + "analyses/<int:run_id>/artifacts/", analysis_apis.RunArtifactsApi.as_view(), name="api-run-artifacts"),
    path(
        T + "analyses/<int:run_id>/artifacts/<int:artifact_id>/",
        analysis_apis.ArtifactDownloadApi.as_view(),
        name="api-artifact",
    ),
]
