from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "ExoTrial administration"
admin.site.site_title = "ExoTrial"
admin.site.index_title = "Trial set-up and data"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
]
