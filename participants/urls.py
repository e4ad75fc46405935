from django.urls import path

from participants import views, views_allocation

app_name = "participants"
urlpatterns = [
    path("", views.participants_index, name="list"),
    path("<int:participant_id>/", views.participant_detail, name="detail"),
    path("<int:participant_id>/randomize/", views.participant_randomize_view, name="randomize"),
    path("<int:participant_id>/unblind/", views.participant_unblind_view, name="unblind"),
]

allocation_urlpatterns = [
    path("", views_allocation.allocation_overview, name="overview"),
    path("balance/", views_allocation.allocation_balance, name="balance"),
    path("simulate/", views_allocation.allocation_simulate, name="simulate"),
]
