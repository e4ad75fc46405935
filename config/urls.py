from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config import health
from participants import views_data_management, views_exchange
from participants.urls import allocation_urlpatterns
from trials import views as trial_views

admin.site.site_header = "ExoTrial administration"
admin.site.site_title = "ExoTrial"
admin.site.index_title = "Trial set-up and data"

urlpatterns = [
    path("", trial_views.home, name="home"),
    # Load balancer and operator probes: no login, MFA, session or CSRF; JSON, 200 or 503 (config/health.py).
    path("health/", health.health, name="health"),
    path("health/live/", health.live, name="health_live"),
    path("health/db/", health.db, name="health_db"),
    path("health/broker/", health.broker, name="health_broker"),
    path("health/workers/", health.workers, name="health_workers"),
    path("accounts/", include("accounts.urls")),
    path("trials/<str:code>/", trial_views.trial_home, name="trial_home"),
    path("trials/<str:code>/participants/", include("participants.urls")),
    path("trials/<str:code>/lock/", views_data_management.trial_lock_view, name="trial_lock"),
    path("trials/<str:code>/analyses/", include("analysis.urls")),
    path("trials/<str:code>/exports/", views_exchange.exports, name="exports"),
    path("trials/<str:code>/exports/csv/<str:table>/", views_exchange.export_table_csv, name="export_csv"),
    path("trials/<str:code>/exports/<str:fmt>/", views_exchange.export_download, name="export_download"),
    path("trials/<str:code>/imports/", views_exchange.imports, name="imports"),
    path("trials/<str:code>/imports/<int:job_id>/", views_exchange.import_job, name="import_job"),
    path("trials/<str:code>/randomization/", include((allocation_urlpatterns, "allocation"), namespace="allocation")),
    path("api/v1/", include("config.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file: the Content-Security-Policy allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
