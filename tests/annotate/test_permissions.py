"""Who may open which URL. Every route in annotate/urls.py must appear in ACCESS below, so a
new page cannot ship without deciding (and testing) who may see it.

Strangers get 404 on every project URL (they must not learn a project exists), whatever the
method; anonymous users are sent to the login page; members without the role get 403.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, reverse

from annotate.models import Membership
from annotate.urls import urlpatterns

LEAD = {"lead"}
ANNOTATORS = {"lead", "annotator"}
DOCUMENT_READERS = {"lead", "viewer"}
MEMBERS = {"lead", "annotator", "viewer"}

# URL name -> the fixture roles allowed in; None for pages outside any project.
ACCESS: dict[str, set[str] | None] = {
    "home": None,
    "project_create": None,
    "annotate": ANNOTATORS,
    "annotate_next": ANNOTATORS,
    "annotate_submit": ANNOTATORS,
    "annotate_skip": ANNOTATORS,
    "annotate_undo": ANNOTATORS,
    "annotate_flag": ANNOTATORS,
    "project": MEMBERS,
    "project_settings": LEAD,
    "labels": LEAD,
    "label_edit": LEAD,
    "label_delete": LEAD,
    "members": LEAD,
    "member_remove": LEAD,
    "guidelines": MEMBERS,
    "guideline_edit": LEAD,
    "guideline_version": MEMBERS,
    "documents": DOCUMENT_READERS,
    "document": DOCUMENT_READERS,
    "document_decide": LEAD,
    "document_answer_delete": LEAD,
    "document_delete": LEAD,
    "documents_bulk": LEAD,
    "import": LEAD,
    "holdout": LEAD,
    "export": LEAD,
    # Reviewers get in too (tests/annotate/test_review.py); the fixtures have no reviewer.
    "review": LEAD,
    "review_kind": LEAD,
    "review_adjudicate": LEAD,
    "review_flag_resolve": LEAD,
}
PROJECT_URLS = sorted(name for name, roles in ACCESS.items() if roles is not None)
ROLES = ("lead", "annotator", "viewer")
METHODS = ("get", "post")


def _patterns() -> dict[str, URLPattern]:
    return {p.name: p for p in urlpatterns if isinstance(p, URLPattern) and p.name}


def _url(name: str, project) -> str:  # type: ignore[no-untyped-def]
    """The URL with real ids from the project fixture for each of the route's parameters."""
    from annotate.models import Document, text_hash

    document = project.documents.first() or Document.objects.create(
        project=project, text="A document", text_hash=text_hash("A document"), rand=0.5)
    values = {
        "pk": project.pk,
        "label_id": project.labels.first().pk,
        "membership_id": project.memberships.get(user__username="annotator").pk,
        "version": 1,
        "fmt": "jsonl",
        "kind": "disagreements",
        # POST-only actions: the role check runs before the id is looked up.
        "document_id": document.pk,
        "annotation_id": 1,
        "flag_id": 1,
    }
    params = _patterns()[name].pattern.converters.keys()
    unknown = set(params) - set(values)
    assert not unknown, f"{name}: give test_permissions a value for {sorted(unknown)}"
    return reverse(f"annotate:{name}", kwargs={p: values[p] for p in params})


def test_every_url_is_covered() -> None:
    names = set(_patterns())
    assert names - set(ACCESS) == set(), "new URL(s): add them to ACCESS in this file"
    assert set(ACCESS) - names == set(), "ACCESS lists URL names that no longer exist"


def test_project_urls_take_the_project_id() -> None:
    # access.project_view finds the project from `pk`: a project URL without it could not
    # be guarded.
    for name in PROJECT_URLS:
        assert "pk" in _patterns()[name].pattern.converters, name


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", PROJECT_URLS)
def test_stranger_gets_404_on_every_project_url(client, stranger, project, name, method):
    client.force_login(stranger)
    response = getattr(client, method)(_url(name, project))
    assert response.status_code == 404


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(ACCESS))
def test_anonymous_user_is_sent_to_login(client, project, name, method):
    url = _url(name, project) if ACCESS[name] is not None else reverse(f"annotate:{name}")
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("name", "role"),
    [(name, role) for name in PROJECT_URLS for role in ROLES if role not in ACCESS[name]],
)
def test_member_without_the_role_gets_403(client, project, name, role, method):
    client.force_login(Membership.objects.get(project=project, user__username=role).user)
    response = getattr(client, method)(_url(name, project))
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("name", "role"),
    [(name, role) for name in PROJECT_URLS for role in ROLES if role in ACCESS[name]],
)
def test_member_with_the_role_gets_in(client, project, name, role):
    client.force_login(Membership.objects.get(project=project, user__username=role).user)
    response = client.get(_url(name, project))
    # 405: a POST-only action answers GET with "method not allowed", not with a refusal.
    assert response.status_code in {200, 302, 405}


def test_project_create_is_open_to_any_logged_in_user(client, stranger):
    client.force_login(stranger)
    assert client.get(reverse("annotate:project_create")).status_code == 200


def test_lead_of_another_project_cannot_touch_this_ones_labels(
    client, project, django_user_model
):
    from annotate import services

    other_lead = django_user_model.objects.create_user(username="other", password="x")
    other = services.project_create(name="Other", created_by=other_lead, labels=["a"])
    client.force_login(other_lead)
    label = project.labels.first()
    # Their own project id with this project's label id: the label is not found.
    url = reverse("annotate:label_edit", kwargs={"pk": other.pk, "label_id": label.pk})
    assert client.get(url).status_code == 404
    url = reverse("annotate:label_delete", kwargs={"pk": other.pk, "label_id": label.pk})
    assert client.post(url).status_code == 404
    assert project.labels.filter(pk=label.pk).exists()
