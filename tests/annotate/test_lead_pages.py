"""The lead's pages, driven through the test client as a browser without JavaScript would
(plain form posts), plus the HTMX partials where the label editor uses them."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotate import selectors, services
from annotate.models import (
    Annotation,
    Document,
    Flag,
    GuidelineVersion,
    Label,
    Membership,
    Project,
    text_hash,
)
from tests.conftest import hand_out

HTMX = {"HX-Request": "true"}


@pytest.fixture
def lead_client(client, lead):  # type: ignore[no-untyped-def]
    client.force_login(lead)
    return client


def url(name: str, project: Project, **kwargs: object) -> str:
    return reverse(f"annotate:{name}", kwargs={"pk": project.pk, **kwargs})


def label(project: Project, name: str) -> Label:
    return project.labels.get(name=name)


def annotate_doc(user, project: Project, document: Document, *names: str) -> Annotation:  # type: ignore[no-untyped-def]
    hand_out(user, document)
    return services.annotation_submit(
        user=user,
        project=project,
        document_id=document.pk,
        label_ids=[label(project, name).pk for name in names],
    )


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in response.context["messages"]]


# --- create, overview, settings ------------------------------------------------------------


def test_any_user_creates_a_project_and_becomes_its_lead(client, stranger):
    client.force_login(stranger)
    response = client.post(
        reverse("annotate:project_create"),
        {
            "name": "Reviews",
            "description": "Film reviews",
            "task_type": "multi_label",
            "overlap": "2",
            "labels": "pos, neg, , pos",
            "guidelines": "# Guide\n\nBe kind.",
        },
    )
    project = Project.objects.get(name="Reviews")
    assert response.status_code == 302
    assert response["Location"] == url("project", project)
    assert project.task_type == "multi_label" and project.overlap == 2
    assert Membership.objects.get(project=project, user=stranger).role == "lead"
    assert list(project.labels.values_list("name", flat=True)) == ["pos", "neg"]
    assert project.guidelines.get().text.startswith("# Guide")


def test_project_create_offers_spans_only_as_coming_later(client, stranger):
    client.force_login(stranger)
    page = client.get(reverse("annotate:project_create")).content.decode()
    assert 'value="spans" disabled' in page and "coming later" in page
    response = client.post(
        reverse("annotate:project_create"), {"name": "NER", "task_type": "spans", "overlap": "1"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["task_type"]
    assert not Project.objects.filter(name="NER").exists()


def test_project_create_shows_errors_for_a_missing_name(client, stranger):
    client.force_login(stranger)
    response = client.post(
        reverse("annotate:project_create"), {"name": "", "task_type": "single_label"}
    )
    assert response.status_code == 200
    assert "name" in response.context["form"].errors
    assert 'class="errorlist' in response.content.decode()


def test_overview_shows_progress_chart_flags_and_export_links(
    lead_client, project, documents, annotator
):
    annotate_doc(annotator, project, documents[0], "sport")
    annotate_doc(annotator, project, documents[1], "sport")
    annotate_doc(annotator, project, documents[2], "tech")
    services.flag_create(
        user=annotator, project=project, document_id=documents[3].pk, comment="Two topics here"
    )
    response = lead_client.get(url("project", project))
    assert response.status_code == 200
    stats = response.context["stats"]
    assert (stats.documents, stats.final, stats.holdout) == (12, 3, 0)
    assert stats.left_in_queue == 9
    bars = {bar.name: bar.count for bar in response.context["chart"]["bars"]}
    assert bars == {"business": 0, "sport": 2, "tech": 1}
    page = response.content.decode()
    assert "<svg" in page and page.count("<rect") == 3
    assert "Two topics here" in page and documents[3].text[:30] in page
    for fmt in ("jsonl", "csv", "hf"):
        assert url("export", project, fmt=fmt) in page
    assert url("members", project) in page


def test_overview_for_an_annotator_has_no_lead_links_or_flags(client, project, documents,
                                                              annotator):
    services.flag_create(
        user=annotator, project=project, document_id=documents[0].pk, comment="Broken text"
    )
    client.force_login(annotator)
    page = client.get(url("project", project)).content.decode()
    assert url("annotate", project) in page and url("guidelines", project) in page
    assert url("members", project) not in page
    assert url("export", project, fmt="jsonl") not in page
    assert "Broken text" not in page


def test_settings_page_saves_the_project(lead_client, project):
    response = lead_client.post(
        url("project_settings", project),
        {
            "name": "News topics 2",
            "description": "BBC",
            "overlap": "3",
            "annotators_see_others": "on",
            "text_direction": "rtl",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.overlap, project.annotators_see_others) == (
        "News topics 2", 3, True
    )
    assert project.text_direction == "rtl"


def test_lowering_overlap_settles_documents_with_enough_answers(
    lead_client, project, documents, annotator, lead
):
    project.overlap = 2
    project.save()
    annotate_doc(annotator, project, documents[0], "tech")
    documents[0].refresh_from_db()
    assert documents[0].final_labels is None
    lead_client.post(
        url("project_settings", project),
        {"name": project.name, "overlap": "1", "text_direction": "ltr"},
    )
    documents[0].refresh_from_db()
    assert documents[0].final_labels == [label(project, "tech").pk]


def test_settings_rejects_overlap_zero(lead_client, project):
    response = lead_client.post(
        url("project_settings", project), {"name": "x", "overlap": "0", "text_direction": "ltr"}
    )
    assert response.status_code == 200
    assert "overlap" in response.context["form"].errors


# --- labels --------------------------------------------------------------------------------


def test_lead_adds_a_label(lead_client, project):
    response = lead_client.post(
        url("labels", project),
        {"name": "politics", "description": "Elections", "colour": "#112233", "hotkey": "p"},
    )
    assert response.status_code == 302
    added = label(project, "politics")
    assert (added.colour, added.hotkey, added.description) == ("#112233", "p", "Elections")
    page = lead_client.get(url("labels", project)).content.decode()
    assert "politics" in page and "<kbd>p</kbd>" in page and "background: #112233" in page


def test_new_label_without_hotkey_gets_a_free_one(lead_client, project):
    lead_client.post(url("labels", project), {"name": "politics", "colour": "#112233"})
    assert label(project, "politics").hotkey == "4"


def test_htmx_label_add_returns_the_panel_partial(lead_client, project):
    response = lead_client.post(
        url("labels", project), {"name": "politics", "colour": "#112233"}, headers=HTMX
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in page and 'id="labels-panel"' in page and "politics" in page


def test_label_hotkey_clash_is_shown_as_an_error(lead_client, project):
    response = lead_client.post(
        url("labels", project), {"name": "politics", "colour": "#112233", "hotkey": "1"}
    )
    assert response.status_code == 200
    errors = response.context["form"].errors["hotkey"]
    assert "already the hotkey of business" in errors[0]
    assert not project.labels.filter(name="politics").exists()
    # Editing a label onto another's hotkey is refused the same way.
    sport = label(project, "sport")
    response = lead_client.post(
        url("label_edit", project, label_id=sport.pk),
        {"name": "sport", "colour": sport.colour, "hotkey": "3"},
    )
    assert "already the hotkey of tech" in response.content.decode()
    sport.refresh_from_db()
    assert sport.hotkey == "2"


def test_reserved_hotkey_is_refused(lead_client, project):
    response = lead_client.post(
        url("labels", project), {"name": "politics", "colour": "#112233", "hotkey": "s"}
    )
    assert "taken by the annotator page" in response.content.decode()


def test_lead_edits_a_label(lead_client, project):
    sport = label(project, "sport")
    page = lead_client.get(url("label_edit", project, label_id=sport.pk)).content.decode()
    assert 'value="sport"' in page
    response = lead_client.post(
        url("label_edit", project, label_id=sport.pk),
        {"name": "sports", "description": "All games", "colour": "#00aa00", "hotkey": "x"},
    )
    assert response.status_code == 302
    sport.refresh_from_db()
    assert (sport.name, sport.description, sport.colour, sport.hotkey) == (
        "sports", "All games", "#00aa00", "x"
    )


def test_htmx_label_edit_swaps_form_and_row(lead_client, project):
    sport = label(project, "sport")
    edit_url = url("label_edit", project, label_id=sport.pk)
    form_html = lead_client.get(edit_url, headers=HTMX).content.decode()
    assert "<html" not in form_html and "<form" in form_html
    row = lead_client.post(
        edit_url, {"name": "sports", "colour": "#00aa00", "hotkey": "2"}, headers=HTMX
    ).content.decode()
    assert "<html" not in row and f'id="label-{sport.pk}"' in row and "sports" in row


def test_lead_deletes_an_unused_label(lead_client, project):
    business = label(project, "business")
    response = lead_client.post(url("label_delete", project, label_id=business.pk), follow=True)
    assert not project.labels.filter(name="business").exists()
    assert any("deleted" in m for m in messages_of(response))


def test_deleting_a_used_label_is_refused_with_a_message(
    lead_client, project, documents, annotator
):
    annotate_doc(annotator, project, documents[0], "tech")
    tech = label(project, "tech")
    response = lead_client.post(url("label_delete", project, label_id=tech.pk), follow=True)
    assert project.labels.filter(pk=tech.pk).exists()
    assert any("used by annotations" in m for m in messages_of(response))
    htmx = lead_client.post(url("label_delete", project, label_id=tech.pk), headers=HTMX)
    assert "used by annotations" in htmx.content.decode()


def test_deleting_a_label_a_decision_uses_shows_why_not(
    lead_client, project, documents, annotator, lead
):
    annotate_doc(annotator, project, documents[0], "sport")
    tech = label(project, "tech")
    services.document_adjudicate(document=documents[0], user=lead, label_ids=[tech.pk],
                                 reason="A chip story.")
    response = lead_client.post(url("label_delete", project, label_id=tech.pk), follow=True)
    assert response.status_code == 200
    assert project.labels.filter(pk=tech.pk).exists()
    assert any("final labels and adjudications" in m for m in messages_of(response))
    htmx = lead_client.post(url("label_delete", project, label_id=tech.pk), headers=HTMX)
    assert htmx.status_code == 200
    row = htmx.content.decode()
    assert f'id="label-{tech.pk}"' in row and "final labels and adjudications" in row


def test_label_delete_needs_post(lead_client, project):
    response = lead_client.get(url("label_delete", project, label_id=label(project, "tech").pk))
    assert response.status_code == 405


# --- members -------------------------------------------------------------------------------


def test_lead_adds_an_existing_user(lead_client, project, stranger):
    response = lead_client.post(
        url("members", project), {"username": "stranger", "role": "reviewer"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user=stranger).role == "reviewer"


def test_staff_lead_creates_an_account_with_a_password(client, lead_client, lead, project,
                                                       django_user_model):
    lead.is_staff = True
    lead.save()
    response = lead_client.post(
        url("members", project),
        {"username": "newbie", "role": "annotator", "password": "a-long-fresh-passphrase"},
        follow=True,
    )
    assert any("Created the account" in m for m in messages_of(response))
    newbie = django_user_model.objects.get(username="newbie")
    assert newbie.check_password("a-long-fresh-passphrase")
    assert Membership.objects.get(project=project, user=newbie).role == "annotator"


def test_unknown_user_without_password_is_an_error_for_staff(lead_client, lead, project,
                                                             django_user_model):
    lead.is_staff = True
    lead.save()
    response = lead_client.post(url("members", project), {"username": "ghost", "role": "viewer"})
    assert response.status_code == 200
    assert "There is no user 'ghost'" in response.context["form"].errors["username"][0]
    assert "There is no user" in response.content.decode()
    assert not django_user_model.objects.filter(username="ghost").exists()


def test_a_lead_who_is_not_staff_cannot_create_accounts(lead_client, project,
                                                         django_user_model):
    """Anyone may create a project and so be a lead: account creation is the staff's."""
    page = lead_client.get(url("members", project)).content.decode()
    assert 'name="password"' not in page
    response = lead_client.post(url("members", project), {
        "username": "newbie", "role": "annotator", "password": "a-long-fresh-passphrase"})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert not django_user_model.objects.filter(username="newbie").exists()
    assert not Membership.objects.filter(project=project, user__username="newbie").exists()


def test_non_staff_get_one_answer_for_any_name_they_cannot_add(lead_client, project,
                                                                django_user_model):
    """A free name, a free name with a password, and a deactivated account all read the
    same: the members page cannot be used to find out which usernames exist."""
    retired = django_user_model.objects.create_user(username="retired", password="x" * 20)
    retired.is_active = False
    retired.save()
    answers = []
    for data in ({"username": "ghost"}, {"username": "ghost", "password": "a-long-passphrase"},
                 {"username": "retired"}):
        response = lead_client.post(url("members", project), {**data, "role": "viewer"})
        assert response.status_code == 200
        answers.append(response.context["form"].errors["username"])
    assert answers[0] == answers[1] == answers[2]
    assert "ghost" not in answers[0][0] and "There is no user" not in answers[0][0]
    assert not django_user_model.objects.filter(username="ghost").exists()
    assert not Membership.objects.filter(project=project, user=retired).exists()


def test_a_setting_lets_every_lead_create_accounts(lead_client, project, django_user_model,
                                                   settings):
    settings.LABELWISE_LEADS_CREATE_USERS = True
    assert 'name="password"' in lead_client.get(url("members", project)).content.decode()
    lead_client.post(url("members", project), {
        "username": "newbie", "role": "annotator", "password": "a-long-fresh-passphrase"})
    assert Membership.objects.get(project=project, user__username="newbie").role == "annotator"


@pytest.mark.parametrize("typed", ["ａｄｍｉｎ", "  admin ", "ａdmin"])
def test_a_look_alike_name_finds_the_existing_account(lead_client, lead, project,
                                                      django_user_model, typed):
    """NFKC folds full-width letters: the existing account is added, none is created, and
    nothing crashes on the unique username (even for staff giving a password)."""
    admin = django_user_model.objects.create_user(username="admin", password="x" * 20)
    lead.is_staff = True
    lead.save()
    response = lead_client.post(url("members", project), {
        "username": typed, "role": "viewer", "password": "a-long-fresh-passphrase"})
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user=admin).role == "viewer"
    assert django_user_model.objects.filter(username__icontains="dmin").count() == 1


@pytest.mark.parametrize("typed", ["ad\u200bmin", "\u200badmin", "ad\u2060min",
                                   "new\u200dbie", "\u3164", "new\ufeffbie", "bad name",
                                   "semi;colon", ""])
def test_invisible_or_invalid_characters_are_refused(lead_client, lead, project,
                                                     django_user_model, typed):
    lead.is_staff = True
    lead.save()
    before = django_user_model.objects.count()
    response = lead_client.post(url("members", project), {
        "username": typed, "role": "viewer", "password": "a-long-fresh-passphrase"})
    assert response.status_code == 200
    assert response.context["form"].errors["username"]
    assert django_user_model.objects.count() == before


def test_a_name_differing_only_in_case_is_not_a_new_account(lead_client, lead, project,
                                                            django_user_model):
    django_user_model.objects.create_user(username="admin", password="x" * 20)
    lead.is_staff = True
    lead.save()
    response = lead_client.post(url("members", project), {
        "username": "Admin", "role": "viewer", "password": "a-long-fresh-passphrase"})
    assert response.status_code == 200 and response.context["form"].errors["username"]
    assert not django_user_model.objects.filter(username="Admin").exists()


def test_weak_password_for_a_new_account_is_refused(lead_client, lead, project,
                                                    django_user_model):
    lead.is_staff = True
    lead.save()
    response = lead_client.post(
        url("members", project), {"username": "ghost", "role": "viewer", "password": "abc"}
    )
    assert response.context["form"].errors["password"]
    assert not django_user_model.objects.filter(username="ghost").exists()


def test_lead_changes_a_role_and_removes_a_member(lead_client, project, annotator):
    lead_client.post(url("members", project), {"username": "annotator", "role": "viewer"})
    membership = Membership.objects.get(project=project, user=annotator)
    assert membership.role == "viewer"
    lead_client.post(url("member_remove", project, membership_id=membership.pk))
    assert not Membership.objects.filter(project=project, user=annotator).exists()


def test_the_last_lead_cannot_leave_or_step_down(lead_client, project, lead):
    own = Membership.objects.get(project=project, user=lead)
    response = lead_client.post(url("member_remove", project, membership_id=own.pk), follow=True)
    assert any("at least one lead" in m for m in messages_of(response))
    response = lead_client.post(url("members", project), {"username": "lead", "role": "viewer"})
    assert "at least one lead" in response.content.decode()
    own.refresh_from_db()
    assert own.role == "lead"


# --- guidelines ----------------------------------------------------------------------------


def test_guideline_edit_makes_version_2_and_the_diff_shows_the_change(lead_client, project):
    response = lead_client.post(
        url("guideline_edit", project),
        {"text": "# Topics\n\nPick the **single** main topic.\n\nNew rule.", "note": "Clearer"},
    )
    assert response.status_code == 302
    assert response["Location"] == url("guideline_version", project, version=2)
    v2 = project.guidelines.get(version=2)
    assert v2.note == "Clearer"
    page = lead_client.get(response["Location"]).content.decode()
    assert '<span class="add">+Pick the **single** main topic.</span>' in page
    assert '<span class="add">+New rule.</span>' in page
    assert '<span class="del">-Pick the **main** topic of the article.</span>' in page
    # The version itself is shown rendered (Markdown to HTML).
    assert "<strong>single</strong>" in page


def test_unchanged_guidelines_make_no_new_version(lead_client, project):
    text = project.guidelines.get().text
    response = lead_client.post(url("guideline_edit", project), {"text": text}, follow=True)
    assert project.guidelines.count() == 1
    assert any("unchanged" in m for m in messages_of(response))


def test_every_member_reads_the_guidelines_and_history(client, project, viewer):
    client.force_login(viewer)
    page = client.get(url("guidelines", project)).content.decode()
    assert "<strong>main</strong>" in page
    assert url("guideline_version", project, version=1) in page
    assert url("guideline_edit", project) not in page


def test_raw_html_in_guidelines_is_sanitised(lead_client, project):
    services.guideline_update(
        project=project, text="Hi <script>alert(1)</script>", user=project.created_by
    )
    page = lead_client.get(url("guidelines", project)).content.decode()
    assert "<script>alert(1)" not in page


def test_history_counts_annotations_made_under_each_version(
    lead_client, project, documents, annotator, lead
):
    annotate_doc(annotator, project, documents[0], "tech")
    annotate_doc(annotator, project, documents[1], "tech")
    services.guideline_update(project=project, text="Version two", user=lead, note="v2")
    annotate_doc(annotator, project, documents[2], "sport")
    response = lead_client.get(url("guidelines", project))
    counts = {version.version: n for version, n in response.context["history"]}
    assert counts == {2: 1, 1: 2}
    page = response.content.decode()
    assert 'data-version="1" class="annotation-count">2<' in page


def test_unknown_guideline_version_is_404(lead_client, project):
    assert lead_client.get(url("guideline_version", project, version=9)).status_code == 404


def test_first_version_diff_is_against_nothing(lead_client, project):
    page = lead_client.get(url("guideline_version", project, version=1)).content.decode()
    assert "(first version)" in page and '<span class="add">+# Topics</span>' in page


# --- documents -----------------------------------------------------------------------------


@pytest.fixture
def varied_documents(project, documents, annotator, lead):  # type: ignore[no-untyped-def]
    """documents[0..2] labelled (sport, sport, tech), [3] flagged, [0] in the holdout."""
    annotate_doc(annotator, project, documents[0], "sport")
    annotate_doc(annotator, project, documents[1], "sport")
    annotate_doc(annotator, project, documents[2], "tech")
    services.flag_create(
        user=annotator, project=project, document_id=documents[3].pk, comment="odd"
    )
    Document.objects.filter(pk=documents[0].pk).update(split=Document.Split.HOLDOUT)
    return documents


def listed(client, project, **params) -> list[int]:  # type: ignore[no-untyped-def]
    response = client.get(url("documents", project), params)
    assert response.status_code == 200
    return [doc.pk for doc in response.context["page"]]


def test_documents_list_filters(lead_client, project, varied_documents):
    docs = varied_documents
    assert len(listed(lead_client, project)) == 12
    assert listed(lead_client, project, status="labelled") == [d.pk for d in docs[:3]]
    assert len(listed(lead_client, project, status="unlabelled")) == 9
    assert listed(lead_client, project, status="holdout") == [docs[0].pk]
    assert listed(lead_client, project, status="flagged") == [docs[3].pk]
    sport = label(project, "sport").pk
    assert listed(lead_client, project, label=sport) == [docs[0].pk, docs[1].pk]
    assert listed(lead_client, project, q="NUMBER 11") == [docs[11].pk]
    assert listed(lead_client, project, status="labelled", label=sport, q="number 1 ") == [
        docs[1].pk
    ]


def test_documents_list_shows_final_label_and_answer_count(lead_client, project,
                                                           varied_documents):
    page = lead_client.get(url("documents", project), {"status": "flagged"}).content.decode()
    assert "flagged" in page
    page = lead_client.get(url("documents", project), {"status": "labelled"}).content.decode()
    assert "sport" in page and "holdout" in page


def test_documents_list_is_open_to_viewers(client, project, viewer, varied_documents):
    client.force_login(viewer)
    assert len(listed(client, project)) == 12


def test_label_filter_matches_whole_ids_in_multi_label_lists(project):
    rows = {(13,): "a", (3,): "b", (2, 3): "c", (31, 4): "d", (1, 30): "e"}
    for labels, text in rows.items():
        Document.objects.create(
            project=project, text=text, text_hash=text_hash(text), rand=0.5,
            final_labels=list(labels),
        )
    found = selectors.document_list(project=project, label_id=3)
    assert sorted(found.values_list("text", flat=True)) == ["b", "c"]


def test_documents_list_paginates_by_50_with_constant_queries(
    lead_client, project, django_assert_max_num_queries
):
    Document.objects.bulk_create(
        Document(project=project, text=f"bulk {i}", text_hash=text_hash(f"bulk {i}"), rand=0.1)
        for i in range(120)
    )
    response = lead_client.get(url("documents", project), {"page": 2})
    assert len(response.context["page"].object_list) == 50
    assert response.context["page"].paginator.num_pages == 3
    assert "page=3" in response.content.decode()
    # Session, user, membership, labels, count, page: no query per row.
    with django_assert_max_num_queries(8):
        lead_client.get(url("documents", project), {"page": 3, "q": "bulk"})


# --- import --------------------------------------------------------------------------------


def upload(name: str, content: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode("utf-8"))


def test_import_upload_reports_created_duplicates_and_labelled(lead_client, project):
    lines = [
        {"text": "Shares fell sharply.", "label": "business"},
        {"text": "The match ended 2-2."},
        {"text": "Shares fell   sharply."},
        {"text": "New phone released.", "label": "tech"},
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines)
    response = lead_client.post(
        url("import", project),
        {"file": upload("docs.jsonl", content), "fmt": "auto", "text_field": "text",
         "label_field": "label"},
    )
    assert response.status_code == 200
    report = response.context["report"]
    assert (report.created, report.labelled, report.duplicates) == (3, 2, 1)
    assert report.duplicate_lines == [3]
    page = response.content.decode()
    assert 'class="created">3<' in page and 'class="duplicate-lines">3<' in page
    assert project.documents.count() == 3


def test_import_csv_with_explicit_format_and_fields(lead_client, project):
    content = "body,topic\nMarkets rallied,business\nGoal!,sport\n"
    response = lead_client.post(
        url("import", project),
        {"file": upload("x.txt", content), "fmt": "csv", "text_field": "body",
         "label_field": "topic"},
    )
    assert response.context["report"].labelled == 2
    assert project.documents.filter(final_labels__isnull=False).count() == 2


def test_malformed_import_names_the_line_and_creates_nothing(lead_client, project):
    content = '{"text": "fine"}\n{"text": "also fine"}\n{"text": broken\n'
    response = lead_client.post(
        url("import", project),
        {"file": upload("docs.jsonl", content), "fmt": "jsonl", "text_field": "text",
         "label_field": "label"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Line 3" in page and "nothing was imported" in page
    assert project.documents.count() == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("export.json", "[\n" + "[" * 100_000 + "\n]", "nested too deeply"),
        ("export.json", json.dumps([{"data": {"text": "a"}, "annotations": [
            {"result": [{"type": "choices", "value": "sport"}]}]}]),
         "&#x27;value&#x27; must be an object"),
        ("docs.jsonl", '{"text": "a"}\n{"text": "b", "n": ' + "9" * 5000 + "}\n",
         "more than 4300 digits"),
    ],
    ids=["nested", "ls-value", "huge-integer"],
)
def test_malformed_json_upload_is_an_import_error_not_a_server_error(
    lead_client, project, name, content, message
):
    response = lead_client.post(
        url("import", project),
        {"file": upload(name, content), "fmt": "auto", "text_field": "text",
         "label_field": "label"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Line " in page and message in page and "nothing was imported" in page
    assert project.documents.count() == 0


def test_import_with_an_unknown_label_creates_nothing(lead_client, project):
    content = '{"text": "a", "label": "sport"}\n{"text": "b", "label": "weather"}\n'
    response = lead_client.post(
        url("import", project),
        {"file": upload("docs.jsonl", content), "fmt": "auto", "text_field": "text",
         "label_field": "label"},
    )
    assert "Line 2" in response.content.decode() and "weather" in response.content.decode()
    assert project.documents.count() == 0


def test_import_form_requires_a_file(lead_client, project):
    response = lead_client.post(url("import", project), {"fmt": "auto", "text_field": "text"})
    assert response.status_code == 200
    assert "file" in response.context["form"].errors


# --- holdout -------------------------------------------------------------------------------


@pytest.fixture
def labelled_project(project, documents, annotator):  # type: ignore[no-untyped-def]
    for i, document in enumerate(documents):
        document.meta = {"source": f"feed-{i % 4}"}
        document.save(update_fields=["meta"])
        annotate_doc(annotator, project, document, ("sport", "tech")[i % 2])
    return project


def test_holdout_form_reserves_a_share_and_shows_per_label_counts(lead_client, labelled_project):
    project = labelled_project
    page = lead_client.get(url("holdout", project)).content.decode()
    assert '<option value="source">source</option>' in page
    assert "replaces" not in page
    response = lead_client.post(
        url("holdout", project), {"share": "25", "group_field": "", "seed": "1"}, follow=True
    )
    holdout = project.documents.filter(split="holdout").count()
    # Stratified per label, so the share is met per stratum, give or take a document.
    assert 2 <= holdout <= 4
    assert response.context["stats"].holdout == holdout
    per_label = dict(response.context["per_label"])
    assert sum(per_label.values()) == holdout and set(per_label) == {"sport", "tech"}
    assert "replaces" in response.content.decode()


def test_holdout_by_count_with_groups(lead_client, labelled_project):
    project = labelled_project
    lead_client.post(url("holdout", project), {"count": "3", "group_field": "source", "seed": "0"})
    held = project.documents.filter(split="holdout")
    # Groups move whole: every source feed is entirely in or out.
    sources = {d.meta["source"] for d in held}
    assert held.count() == 3 * len(sources)


def test_holdout_needs_share_or_count_not_both(lead_client, labelled_project):
    response = lead_client.post(
        url("holdout", labelled_project), {"share": "20", "count": "2", "seed": "0"}
    )
    assert "either a share or a count" in response.content.decode()
    assert not labelled_project.documents.filter(split="holdout").exists()


def test_holdout_without_labelled_documents_shows_the_service_error(lead_client, project,
                                                                    documents):
    response = lead_client.post(url("holdout", project), {"share": "20", "seed": "0"})
    assert response.status_code == 200
    assert "No labelled documents yet" in response.content.decode()


# --- export --------------------------------------------------------------------------------


@pytest.fixture
def export_project(project, documents, annotator):  # type: ignore[no-untyped-def]
    annotate_doc(annotator, project, documents[0], "sport")
    annotate_doc(annotator, project, documents[1], "tech")
    return project


def content_of(response) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(response.streaming_content)


def test_export_jsonl_downloads_the_labelled_documents(lead_client, export_project, documents):
    response = lead_client.get(url("export", export_project, fmt="jsonl"))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert ".jsonl" in response["Content-Disposition"]
    rows = [json.loads(line) for line in content_of(response).decode().splitlines()]
    assert [(r["text"], r["label"]) for r in rows] == [
        (documents[0].text, "sport"), (documents[1].text, "tech")
    ]


def test_export_csv_downloads_the_labelled_documents(lead_client, export_project, documents):
    response = lead_client.get(url("export", export_project, fmt="csv"))
    assert response.status_code == 200
    assert ".csv" in response["Content-Disposition"]
    text = content_of(response).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["text"], r["label"]) for r in rows] == [
        (documents[0].text, "sport"), (documents[1].text, "tech")
    ]


def test_export_csv_download_neutralises_formulas_without_a_byte_order_mark(
    lead_client, export_project, documents
):
    Document.objects.filter(pk=documents[0].pk).update(text="=HYPERLINK(\"http://x\")")
    response = lead_client.get(url("export", export_project, fmt="csv"))
    data = content_of(response)
    assert data.startswith(b"id,")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert rows[0]["text"] == "'=HYPERLINK(\"http://x\")"


def test_export_hf_is_a_zip_that_load_from_disk_reads(
    lead_client, export_project, documents, tmp_path
):
    datasets = pytest.importorskip("datasets")
    response = lead_client.get(url("export", export_project, fmt="hf"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert ".zip" in response["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(content_of(response))) as archive:
        archive.extractall(tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    dataset = datasets.load_from_disk(str(folder))["train"]
    names = dataset.features["label"].names
    assert [(row["text"], names[row["label"]]) for row in dataset] == [
        (documents[0].text, "sport"), (documents[1].text, "tech")
    ]


def test_unknown_export_format_is_404(lead_client, project):
    assert lead_client.get(url("export", project, fmt="xlsx")).status_code == 404


def test_guideline_version_rows_are_never_rewritten_by_the_edit_page(lead_client, project):
    v1 = project.guidelines.get()
    lead_client.post(url("guideline_edit", project), {"text": "changed"})
    assert GuidelineVersion.objects.get(pk=v1.pk).text == v1.text


def test_flag_comment_is_escaped_on_the_overview(lead_client, project, documents, annotator):
    Flag.objects.create(document=documents[0], user=annotator, comment="<b>bold</b>")
    page = lead_client.get(url("project", project)).content.decode()
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


def test_htmx_document_filter_returns_only_the_table(lead_client, project, varied_documents):
    response = lead_client.get(url("documents", project), {"status": "flagged"}, headers=HTMX)
    page = response.content.decode()
    assert "<html" not in page and 'id="document-table"' in page
    assert varied_documents[3].text in page and varied_documents[4].text not in page


def test_documents_table_has_a_named_header_for_every_column(
    lead_client, project, documents
):  # type: ignore[no-untyped-def]
    import re

    Document.objects.filter(pk=documents[0].pk).update(split=Document.Split.HOLDOUT)
    page = lead_client.get(url("documents", project)).content.decode()
    table = page[page.index("<table>"):page.index("</table>")]
    headers = re.findall(r"<th>(.*?)</th>", table)
    assert headers and all(h.strip() for h in headers), headers
    rows = re.findall(r"<tr>\s*(<td.*?)</tr>", table, flags=re.S)
    assert len(rows) == len(documents)
    assert all(len(re.findall(r"<td[ >]", row)) == len(headers) for row in rows)


@pytest.mark.parametrize("page", ["annotate:project", "annotate:project_settings",
                                  "learner:dashboard", "learner:rounds", "learner:settings"])
def test_project_pages_have_one_settings_link_reaching_both_settings_pages(
    lead_client, project, page
):  # type: ignore[no-untyped-def]
    import re

    html = lead_client.get(reverse(page, args=[project.pk])).content.decode()
    navs = "".join(re.findall(r'<nav class="(?:project|learner)-nav".*?</nav>', html, re.S))
    assert navs.count(">Settings</a>") == 1
    if page.endswith("settings"):
        tabs = html[html.index('class="settings-tabs"'):]
        tabs = tabs[:tabs.index("</nav>")]
        assert reverse("annotate:project_settings", args=[project.pk]) in tabs
        assert reverse("learner:settings", args=[project.pk]) in tabs
        assert tabs.count('aria-current="page"') == 1


def test_task_type_choices_are_a_styled_fieldset(lead_client) -> None:  # type: ignore[no-untyped-def]
    from django.conf import settings

    page = lead_client.get(reverse("annotate:project_create")).content.decode()
    assert '<fieldset class="choices">' in page
    css = (settings.BASE_DIR / "static" / "labelwise" / "app.css").read_text()
    assert "fieldset.choices {" in css and "fieldset.choices legend {" in css
