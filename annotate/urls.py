from django.urls import path

from annotate import lead_views, review_views, views

app_name = "annotate"

urlpatterns = [
    path("", views.home, name="home"),
    # The annotator's page and its HTMX actions.
    path("p/<int:pk>/annotate/", views.annotate_page, name="annotate"),
    path("p/<int:pk>/annotate/next/", views.annotate_next, name="annotate_next"),
    path("p/<int:pk>/annotate/submit/", views.annotate_submit, name="annotate_submit"),
    path("p/<int:pk>/annotate/skip/", views.annotate_skip, name="annotate_skip"),
    path("p/<int:pk>/annotate/undo/", views.annotate_undo, name="annotate_undo"),
    path("p/<int:pk>/annotate/flag/", views.annotate_flag, name="annotate_flag"),
    # The lead's pages.
    path("p/new/", lead_views.project_create, name="project_create"),
    path("p/<int:pk>/", lead_views.project_overview, name="project"),
    path("p/<int:pk>/settings/", lead_views.project_settings, name="project_settings"),
    path("p/<int:pk>/labels/", lead_views.labels, name="labels"),
    path("p/<int:pk>/labels/<int:label_id>/", lead_views.label_edit, name="label_edit"),
    path("p/<int:pk>/labels/<int:label_id>/delete/", lead_views.label_delete, name="label_delete"),
    path("p/<int:pk>/members/", lead_views.members, name="members"),
    path("p/<int:pk>/members/<int:membership_id>/remove/", lead_views.member_remove,
         name="member_remove"),
    path("p/<int:pk>/guidelines/", lead_views.guidelines, name="guidelines"),
    path("p/<int:pk>/guidelines/edit/", lead_views.guideline_edit, name="guideline_edit"),
    path("p/<int:pk>/guidelines/v<int:version>/", lead_views.guideline_version,
         name="guideline_version"),
    path("p/<int:pk>/documents/", lead_views.documents, name="documents"),
    path("p/<int:pk>/documents/bulk/", lead_views.documents_bulk, name="documents_bulk"),
    path("p/<int:pk>/documents/<int:document_id>/", lead_views.document_detail,
         name="document"),
    path("p/<int:pk>/documents/<int:document_id>/decide/", lead_views.document_decide,
         name="document_decide"),
    path("p/<int:pk>/documents/<int:document_id>/answers/<int:annotation_id>/delete/",
         lead_views.document_answer_delete, name="document_answer_delete"),
    path("p/<int:pk>/documents/<int:document_id>/delete/", lead_views.document_delete,
         name="document_delete"),
    path("p/<int:pk>/import/", lead_views.import_upload, name="import"),
    path("p/<int:pk>/holdout/", lead_views.holdout, name="holdout"),
    path("p/<int:pk>/export/<str:fmt>/", lead_views.export, name="export"),
    # Review and adjudication (leads and reviewers).
    path("p/<int:pk>/review/", review_views.review, name="review"),
    path("p/<int:pk>/review/<slug:kind>/", review_views.review, name="review_kind"),
    path("p/<int:pk>/review/decide/<int:document_id>/", review_views.adjudicate,
         name="review_adjudicate"),
    path("p/<int:pk>/review/flags/<int:flag_id>/resolve/", review_views.flag_resolve,
         name="review_flag_resolve"),
]
