from django.urls import path

from participants import views, views_allocation, views_data_management, views_entry

app_name = "participants"
P = "<int:participant_id>/"
urlpatterns = [
    path("", views.participants_index, name="list"),
    path("screen/", views_entry.screen, name="screen"),
    path(P, views.participant_detail, name="detail"),
    path(P + "eligibility/", views_entry.eligibility, name="eligibility"),
    path(P + "randomize/", views.participant_randomize_view, name="randomize"),
    path(P + "unblind/", views.participant_unblind_view, name="unblind"),
    path(P + "visits/<int:definition_id>/", views_entry.visit_form, name="visit"),
    path(P + "visits/<int:definition_id>/missed/", views_entry.visit_missed, name="visit_missed"),
    path(P + "adverse-events/new/", views_entry.adverse_event_form, name="adverse_event_new"),
    path(P + "adverse-events/<int:event_id>/", views_entry.adverse_event_form, name="adverse_event"),
    path(P + "adverse-events/<int:event_id>/notify/", views_entry.adverse_event_notify, name="adverse_event_notify"),
    path(P + "doses/new/", views_entry.dose_form, name="dose_new"),
    path(P + "history/", views_entry.history, name="history"),
    path(P + "queries/", views_data_management.raise_query, name="query_raise"),
    path(P + "queries/<int:query_id>/answer/", views_data_management.answer_query, name="query_answer"),
    path(P + "queries/<int:query_id>/close/", views_data_management.close_query, name="query_close"),
    path(P + "queries/<int:query_id>/reopen/", views_data_management.reopen_query, name="query_reopen"),
    path(P + "verify/<int:visit_id>/", views_data_management.verify_visit, name="verify"),
    path(P + "lock/", views_data_management.lock_participant, name="lock"),
    path(P + "sign/", views_data_management.sign_casebook, name="sign"),
]

allocation_urlpatterns = [
    path("", views_allocation.allocation_overview, name="overview"),
    path("balance/", views_allocation.allocation_balance, name="balance"),
    path("simulate/", views_allocation.allocation_simulate, name="simulate"),
]
