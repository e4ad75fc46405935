from django.urls import path

from analysis import views

app_name = "analysis"
urlpatterns = [
    path("", views.runs, name="runs"),
    path("<int:run_id>/", views.run_detail, name="run"),
    path("<int:run_id>/status/", views.run_status, name="run_status"),
    path("<int:run_id>/report/<str:audience>/", views.report_view, name="report"),
    path("<int:run_id>/artifacts/<int:artifact_id>/", views.download, name="download"),
]
