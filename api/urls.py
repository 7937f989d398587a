from django.urls import path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from api import pages, views
from config.csp import DOCS_POLICY, with_policy

app_name = "api"

project = "projects/<int:pk>/"

urlpatterns = [
    # The schema and its browsable docs (Swagger UI and Redoc from the vendored sidecar).
    # The split view serves Swagger UI's set-up script as a file (?script=), not inline;
    # both pages get the docs' policy (their bundles inject styles).
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", with_policy(DOCS_POLICY)(
        SpectacularSwaggerSplitView.as_view(url_name="api:schema")), name="docs"),
    path("redoc/", with_policy(DOCS_POLICY)(
        SpectacularRedocView.as_view(url_name="api:schema")), name="redoc"),
    # The user's API keys: a page (session) and the same as JSON.
    path("tokens/", pages.tokens_page, name="tokens-page"),
    path("tokens/<int:token_id>/revoke/", pages.token_revoke_page, name="tokens-page-revoke"),
    path("p/<int:pk>/rounds/<int:number>/export/", pages.round_export_page,
         name="round-export-page"),
    path("me/tokens/", views.TokenListView.as_view(), name="tokens"),
    path("me/tokens/<int:token_id>/", views.TokenRevokeView.as_view(), name="token"),
    # Projects and everything in them.
    path("projects/", views.ProjectListView.as_view(), name="projects"),
    path(project, views.ProjectDetailView.as_view(), name="project"),
    path(project + "labels/", views.LabelListView.as_view(), name="labels"),
    path(project + "labels/<int:label_id>/", views.LabelDetailView.as_view(), name="label"),
    path(project + "guidelines/", views.GuidelineListView.as_view(), name="guidelines"),
    path(project + "guidelines/<int:version>/", views.GuidelineDetailView.as_view(),
         name="guideline"),
    path(project + "documents/", views.DocumentListView.as_view(), name="documents"),
    path(project + "documents/<int:document_id>/", views.DocumentDetailView.as_view(),
         name="document"),
    path(project + "annotations/", views.AnnotationListView.as_view(), name="annotations"),
    path(project + "next/", views.NextItemView.as_view(), name="next"),
    path(project + "submit/", views.SubmitView.as_view(), name="submit"),
    path(project + "review/<str:kind>/", views.ReviewView.as_view(), name="review"),
    path(project + "rounds/", views.RoundListView.as_view(), name="rounds"),
    path(project + "rounds/<int:number>/", views.RoundDetailView.as_view(), name="round"),
    path(project + "rounds/<int:number>/cancel/", views.RoundCancelView.as_view(),
         name="round-cancel"),
    path(project + "rounds/<int:number>/final/", views.RoundFinalModelView.as_view(),
         name="round-final"),
    path(project + "rounds/<int:number>/exports/", views.RoundExportListView.as_view(),
         name="round-exports"),
    path(project + "exports/<int:job_id>/", views.ExportJobView.as_view(), name="export"),
    path(project + "exports/<int:job_id>/download/", views.ExportDownloadView.as_view(),
         name="export-download"),
    path(project + "predict/", views.PredictView.as_view(), name="predict"),
    path(project + "export/<str:fmt>/", views.DataExportView.as_view(), name="data-export"),
    # Anything else under /api/ (a negative id, a typo) is a JSON 404, not the HTML page.
    re_path(r"^.*$", pages.api_not_found),
]
