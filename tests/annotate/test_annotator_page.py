"""The annotator's page through Django's test client: full page, HTMX partials, no-JS forms."""

from __future__ import annotations

from django.urls import reverse

from annotate.models import Annotation, Assignment, Document, Flag
from annotate.services import guideline_update


def htmx_post(client, url: str, data: dict):  # type: ignore[no-untyped-def]
    return client.post(url, data, HTTP_HX_REQUEST="true")


def held_document(user):  # type: ignore[no-untyped-def]
    return Assignment.objects.get(user=user, status="active").document


def start(client, project):  # type: ignore[no-untyped-def]
    """The annotator presses Start: the one request that reserves a document for them."""
    return client.post(reverse("annotate:annotate_next", args=[project.pk]))


def page(client, project):  # type: ignore[no-untyped-def]
    return client.get(reverse("annotate:annotate", args=[project.pk]))


def test_page_shows_a_document_labels_hotkeys_and_guidelines(client, project, annotator,
                                                             documents):
    client.force_login(annotator)
    start(client, project)
    response = page(client, project)
    assert response.status_code == 200
    html = response.content.decode()
    document = held_document(annotator)
    assert document.text in html
    for label in project.labels.all():
        assert label.name in html and f'data-hotkey="{label.hotkey}"' in html
    assert "<strong>main</strong>" in html  # the guidelines' Markdown, rendered
    assert "Left in queue" in html and "static/vendor/htmx.min.js" in html


def test_guidelines_are_sanitised(client, project, annotator, lead, documents):
    guideline_update(project=project, text="Hi <script>alert(1)</script> **bold**", user=lead)
    client.force_login(annotator)
    html = page(client, project).content.decode()
    assert "<script>alert(1)</script>" not in html and "<strong>bold</strong>" in html


def test_htmx_submit_records_and_swaps_in_the_next_document(client, project, annotator,
                                                            documents):
    client.force_login(annotator)
    start(client, project)
    first = held_document(annotator)
    sport = project.labels.get(name="sport")
    response = htmx_post(client, reverse("annotate:annotate_submit", args=[project.pk]),
                         {"document": first.pk, "label": sport.pk, "duration_ms": "850"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="item"')  # the partial, not a whole page
    assert "<html" not in html
    annotation = Annotation.objects.get(document=first)
    assert annotation.labels == [sport.pk] and annotation.duration_ms == 850
    second = held_document(annotator)
    assert second.pk != first.pk and second.text in html


def test_plain_form_submit_without_javascript_redirects_back(client, project, annotator,
                                                             documents):
    client.force_login(annotator)
    start(client, project)
    first = held_document(annotator)
    response = client.post(reverse("annotate:annotate_submit", args=[project.pk]),
                           {"document": first.pk, "label": project.labels.first().pk})
    assert response.status_code == 302
    assert Annotation.objects.filter(document=first, annotator=annotator).exists()


def test_bad_label_shows_an_error_and_keeps_the_document(client, project, annotator,
                                                         documents):
    client.force_login(annotator)
    start(client, project)
    first = held_document(annotator)
    response = htmx_post(client, reverse("annotate:annotate_submit", args=[project.pk]),
                         {"document": first.pk, "label": "12345678"})
    html = response.content.decode()
    assert "Unknown label" in html and first.text in html
    assert not Annotation.objects.exists()


def test_skip_undo_and_flag_from_the_page(client, project, annotator, documents):
    client.force_login(annotator)
    start(client, project)
    first = held_document(annotator)
    htmx_post(client, reverse("annotate:annotate_skip", args=[project.pk]),
              {"document": first.pk})
    second = held_document(annotator)
    assert second.pk != first.pk
    htmx_post(client, reverse("annotate:annotate_submit", args=[project.pk]),
              {"document": second.pk, "label": project.labels.first().pk})
    response = htmx_post(client, reverse("annotate:annotate_undo", args=[project.pk]), {})
    assert "Undone" in response.content.decode() and second.text in response.content.decode()
    assert not Annotation.objects.filter(document=second).exists()
    response = htmx_post(client, reverse("annotate:annotate_flag", args=[project.pk]),
                         {"document": second.pk, "comment": "Not English"})
    assert "Flagged" in response.content.decode()
    assert Flag.objects.get(document=second).comment == "Not English"


def test_viewer_cannot_annotate(client, project, viewer, documents):
    client.force_login(viewer)
    assert client.get(reverse("annotate:annotate", args=[project.pk])).status_code == 403


def test_empty_queue_says_so(client, project, annotator):
    client.force_login(annotator)
    html = page(client, project).content.decode()
    assert "Nothing left to label" in html and 'id="start"' not in html
    response = htmx_post(client, reverse("annotate:annotate_next", args=[project.pk]), {})
    assert "Nothing left to label" in response.content.decode()


def test_metadata_starting_with_underscore_is_hidden_from_annotators(
    client, project, annotator, documents
):
    Document.objects.filter(project=project).update(meta={"source": "wire", "_gold": "sport"})
    client.force_login(annotator)
    start(client, project)
    html = page(client, project).content.decode()
    assert "source: wire" in html and "_gold" not in html


def test_opening_the_page_reserves_nothing(client, project, annotator, documents):
    """A GET has no side effect: a browser's prefetch or a link preview of the page must
    not take a document away from the queue."""
    client.force_login(annotator)
    response = page(client, project)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="start"' in html and "Nothing left to label" not in html
    assert not Assignment.objects.exists()
    assert not Document.objects.filter(slots_taken__gt=0).exists()


def test_start_reserves_the_next_document_and_the_page_shows_it_again(
    client, project, annotator, documents
):
    client.force_login(annotator)
    response = htmx_post(client, reverse("annotate:annotate_next", args=[project.pk]), {})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="item"')
    held = held_document(annotator)
    assert held.text in html
    # Reloading the page shows the same document and reserves no other.
    assert held.text in page(client, project).content.decode()
    assert Assignment.objects.filter(user=annotator).count() == 1
    # Without JavaScript, Start is a plain form post that comes back to the page.
    assert start(client, project).status_code == 302
    assert Assignment.objects.filter(user=annotator).count() == 1


def test_start_is_a_post(client, project, annotator, documents):
    client.force_login(annotator)
    assert client.get(reverse("annotate:annotate_next", args=[project.pk])).status_code == 405
    assert not Assignment.objects.exists()


def test_submitting_a_document_never_handed_out_is_refused(client, project, annotator,
                                                           documents):
    client.force_login(annotator)
    start(client, project)
    held = held_document(annotator)
    other = Document.objects.exclude(pk=held.pk).first()
    response = htmx_post(client, reverse("annotate:annotate_submit", args=[project.pk]),
                         {"document": other.pk, "label": project.labels.first().pk})
    assert response.status_code == 200
    assert "not handed to you" in response.content.decode()
    assert not Annotation.objects.exists()
    other.refresh_from_db()
    assert other.slots_taken == 0 and other.n_annotations == 0


def test_external_ids_and_label_valued_metadata_stay_hidden_from_annotators(
    client, project, annotator, documents
):
    """A corpus's ids ("sport/409") and a metadata field holding a label's name would give
    the answer away: annotators see neither unless the lead turns external ids on."""
    label = project.labels.first()
    Document.objects.filter(project=project).update(
        external_id="gold-is-in-this-id", meta={"section": label.name.upper(), "title": "Hi"})
    client.force_login(annotator)
    start(client, project)
    html = page(client, project).content.decode()
    assert "gold-is-in-this-id" not in html and label.name.upper() not in html
    assert "title: Hi" in html
    api = client.post(f"/api/projects/{project.pk}/next/").json()["document"]
    assert api["external_id"] == "" and api["meta"] == {"title": "Hi"}

    project.annotators_see_external_ids = True
    project.save()
    assert "gold-is-in-this-id" in page(client, project).content.decode()
