"""The learner dashboard, Train now / Cancel, the rounds pages and the learner settings."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import URLPattern, reverse
from django.utils import timezone

from annotate import selectors as annotate_selectors
from annotate import services as annotate_services
from annotate.models import Annotation, Document, Membership, text_hash
from learner import selectors, services
from learner.models import DriftAlert, LearnerSettings, Prediction, Round
from learner.urls import urlpatterns
from learner.worker import Worker
from tests.conftest import make_user
from tests.learner.dashboard_data import label_more, trainable_project

WATCHERS = {"lead", "reviewer", "viewer"}
LEAD = {"lead"}
# URL name -> the roles allowed in. Every route in learner/urls.py must be listed here.
ACCESS = {
    "dashboard": WATCHERS,
    "progress": WATCHERS,
    "train": LEAD,
    "adapt": LEAD,
    "rounds": WATCHERS,
    "round": WATCHERS,
    "round_exports": WATCHERS,
    "round_cancel": LEAD,
    "final_model": LEAD,
    "settings": LEAD,
    "drift_clear": LEAD,
}
POST_ONLY = {"train", "adapt", "round_cancel", "final_model", "drift_clear"}


@pytest.fixture
def reviewer(project, django_user_model):  # type: ignore[no-untyped-def]
    user = make_user(django_user_model, "reviewer")
    annotate_services.membership_set(project=project, username="reviewer",
                                     role=Membership.Role.REVIEWER)
    return user


def _patterns() -> dict[str, URLPattern]:
    return {p.name: p for p in urlpatterns if isinstance(p, URLPattern)}


def _url(name: str, project, number: int = 1, alert_id: int = 0) -> str:  # type: ignore[no-untyped-def]
    params = _patterns()[name].pattern.converters.keys()
    values = {"pk": project.pk, "number": number, "alert_id": alert_id}
    return reverse(f"learner:{name}", kwargs={p: values[p] for p in params})


def test_every_learner_url_is_in_the_access_table() -> None:
    assert set(_patterns()) == set(ACCESS)
    for name in ACCESS:
        assert "pk" in _patterns()[name].pattern.converters, name


@pytest.mark.parametrize("name", sorted(ACCESS))
def test_learner_urls_answer_each_role_as_the_access_table_says(
    name, client, project, lead, annotator, viewer, reviewer, stranger
):  # type: ignore[no-untyped-def]
    queued = services.round_request(project=project, requested_by=lead)  # round 1, queued
    alert = DriftAlert.objects.create(project=project, round=queued, day=timezone.localdate())
    url = _url(name, project, alert_id=alert.pk)
    method = "post" if name in POST_ONLY else "get"
    users = {"stranger": stranger, "annotator": annotator, "viewer": viewer,
             "reviewer": reviewer, "lead": lead}
    for role, user in users.items():  # the lead last: its POSTs change the round
        client.force_login(user)
        response = getattr(client, method)(url)
        if role == "stranger":
            assert response.status_code == 404, (name, role)
        elif role not in ACCESS[name]:
            assert response.status_code == 403, (name, role)
        else:
            # 286: a polled panel with nothing left to follow (htmx stops polling).
            assert response.status_code in (200, 286, 302), (name, role, response.status_code)
    client.logout()
    anonymous = getattr(client, method)(url)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_the_project_nav_links_the_dashboard_for_everyone_but_annotators(
    client, project, annotator, viewer
):  # type: ignore[no-untyped-def]
    link = f'href="{_url("dashboard", project)}"'
    client.force_login(viewer)
    assert link in client.get(reverse("annotate:project", args=[project.pk])).content.decode()
    client.force_login(annotator)
    assert link not in client.get(reverse("annotate:project", args=[project.pk])).content.decode()


def test_write_urls_refuse_get(client, project, lead) -> None:  # type: ignore[no-untyped-def]
    services.round_request(project=project)
    client.force_login(lead)
    for name in POST_ONLY:
        assert client.get(_url(name, project)).status_code == 405, name


def test_train_now_queues_a_manual_round_and_a_second_press_says_busy(
    client, project, lead
):  # type: ignore[no-untyped-def]
    client.force_login(lead)
    response = client.post(_url("train", project), follow=True)
    round = Round.objects.get(project=project)
    assert (round.status, round.trigger, round.requested_by) == ("queued", "manual", lead)
    assert "Round 1 queued" in response.content.decode()

    again = client.post(_url("train", project), follow=True)
    assert Round.objects.filter(project=project).count() == 1
    assert "Round 1 is already queued or running" in again.content.decode()


def test_train_now_over_htmx_answers_the_polling_status_panel(
    client, project, lead
):  # type: ignore[no-untyped-def]
    client.force_login(lead)
    response = client.post(_url("train", project), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="round-status"' in html and 'hx-trigger="every 2s"' in html
    assert "Round 1 queued" in html and "<html" not in html
    busy = client.post(_url("train", project), headers={"HX-Request": "true"}).content.decode()
    assert "already queued or running" in busy


def test_cancel_stops_a_queued_round_and_flags_a_running_one(
    client, project, lead
):  # type: ignore[no-untyped-def]
    client.force_login(lead)
    queued = services.round_request(project=project)
    client.post(_url("round_cancel", project, queued.number))
    queued.refresh_from_db()
    assert queued.status == "cancelled"

    services.round_request(project=project)
    running = services.round_claim(worker="t")
    response = client.post(_url("round_cancel", project, running.number),
                           headers={"HX-Request": "true"})
    running.refresh_from_db()
    assert running.status == "running" and running.cancel_requested
    assert "will stop at its next progress report" in response.content.decode()
    assert "Cancelling" in response.content.decode()

    done = client.post(_url("round_cancel", project, queued.number), follow=True)
    assert "nothing to cancel" in done.content.decode()


def test_progress_is_286_when_idle_and_200_with_percent_while_running(
    client, project, viewer
):  # type: ignore[no-untyped-def]
    client.force_login(viewer)
    idle = client.get(_url("progress", project), headers={"HX-Request": "true"})
    assert idle.status_code == 286
    assert idle["HX-Trigger"] == "learner-round-finished"
    assert "every 2s" not in idle.content.decode()

    services.round_request(project=project)
    queued = client.get(_url("progress", project), headers={"HX-Request": "true"})
    assert queued.status_code == 200 and "waiting for a learner worker" in queued.content.decode()

    round = services.round_claim(worker="t")
    services.round_progress(round_id=round.pk, phase="training", step=5, total_steps=20,
                            eta_seconds=95)
    running = client.get(_url("progress", project), headers={"HX-Request": "true"})
    html = running.content.decode()
    assert running.status_code == 200 and "HX-Trigger" not in running
    assert 'hx-trigger="every 2s"' in html
    assert "25.0%" in html and "training" in html and "step 5 of 20" in html
    assert "1 min 35 s" in html
    assert "Train now" not in html  # a viewer never sees the lead's buttons

    services.round_finish(round=round, n_train=3)
    assert client.get(_url("progress", project)).status_code == 286


def test_an_idle_dashboard_keeps_asking_and_shows_a_round_that_labels_queued(
    client, project, viewer
):  # type: ignore[no-untyped-def]
    """Nobody pressed Train now on this page: the round came from new labels (or a timer,
    or another lead). The idle panel polls slowly and swaps nothing until one exists."""
    client.force_login(viewer)
    page = client.get(_url("dashboard", project)).content.decode()
    assert 'hx-trigger="every 5s"' in page and "newest=0" in page
    quiet = client.get(_url("progress", project) + "?shown=0&newest=0",
                       headers={"HX-Request": "true"})
    assert quiet.status_code == 204 and not quiet.content

    first = services.round_request(project=project, trigger="labels")
    poll = client.get(_url("progress", project) + "?shown=0&newest=0",
                      headers={"HX-Request": "true"})
    assert poll.status_code == 200 and 'hx-trigger="every 2s"' in poll.content.decode()
    assert "Round 1" in poll.content.decode()

    # A round that started and finished between two idle polls still shows, with its point.
    services.round_finish(round=services.round_claim(worker="t"), n_train=3)
    assert first.pk == Round.objects.get(status="done").pk
    missed = client.get(_url("progress", project) + "?shown=0&newest=0",
                        headers={"HX-Request": "true"})
    assert missed.status_code == 286 and missed["HX-Trigger"] == "learner-round-finished"
    html = missed.content.decode()
    assert "round 1" in html and 'hx-trigger="every 5s"' in html and "newest=1" in html
    assert client.get(_url("progress", project) + "?shown=1&newest=1",
                      headers={"HX-Request": "true"}).status_code == 204


def test_an_open_dashboard_reloads_its_results_when_a_round_finishes_and_another_is_queued(
    client, project, viewer
):  # type: ignore[no-untyped-def]
    """The demo's pace: the next round is queued before the poll ever finds the learner
    idle, so "no active round" never happens; the poll carries the newest finished round
    it knew and the results reload as soon as a newer one exists."""
    client.force_login(viewer)
    first = services.round_request(project=project)
    services.round_claim(worker="t")
    page = client.get(_url("dashboard", project)).content.decode()
    assert '?shown=0"' in page  # nothing finished yet
    poll = client.get(_url("progress", project) + "?shown=0", headers={"HX-Request": "true"})
    assert poll.status_code == 200 and "HX-Trigger" not in poll

    services.round_finish(round=first, n_train=3)
    services.round_request(project=project)  # round 2 queued straight away
    poll = client.get(_url("progress", project) + "?shown=0", headers={"HX-Request": "true"})
    assert poll.status_code == 200  # still polling: round 2 is queued
    assert poll["HX-Trigger"] == "learner-round-finished"
    assert '?shown=1"' in poll.content.decode()  # the next poll knows round 1
    again = client.get(_url("progress", project) + "?shown=1", headers={"HX-Request": "true"})
    assert "HX-Trigger" not in again


def test_dashboard_shows_a_curve_point_per_done_round(
    client, project, lead, tiny_model_name
):  # type: ignore[no-untyped-def]
    trainable_project(project, tiny_model_name)
    client.force_login(lead)
    empty = client.get(_url("dashboard", project)).content.decode()
    assert "No evaluated round yet" in empty

    for extra in (0, 6):
        label_more(project, extra)
        client.post(_url("train", project))
        assert Worker(name="t").run_once() is True
    rounds = list(Round.objects.filter(project=project).order_by("number"))
    assert [r.status for r in rounds] == ["done", "done"], rounds[-1].traceback
    assert rounds[1].n_train > rounds[0].n_train

    html = client.get(_url("dashboard", project)).content.decode()
    curve = html[html.index('id="learning-curve"'):html.index('id="round-results"')]
    assert len(re.findall(r'class="point" data-series="macro_f1"', curve)) == 2
    assert len(re.findall(r'class="point" data-series="accuracy"', curve)) == 2
    assert f"with {rounds[1].n_train} labels" in curve
    assert "Round 2 on the holdout" in html
    assert html.count('class="cell"') == 9  # 3 x 3 confusion matrix
    assert html.count('class="bin"') == 20  # the pool's confidence histogram
    # An earlier round can be chosen; the htmx refresh returns the results partial only.
    first = client.get(_url("dashboard", project) + "?round=1",
                       headers={"HX-Request": "true"}).content.decode()
    assert "Round 1 on the holdout" in first and "<html" not in first
    assert 'hx-trigger="learner-round-finished from:body"' in first
    assert f'{_url("dashboard", project)}?round=1"' in first  # a picked round stays picked
    assert f'hx-get="{_url("dashboard", project)}"' in html  # else the latest is shown

    page = client.get(_url("round", project, 2)).content.decode()
    for text in ("Precision", "business", "calibration error", "Training",
                 rounds[1].data_fingerprint[:10], "version 1"):
        assert text in page, text
    assert "train_s" not in page and "scored_labelled" not in page
    listing = client.get(_url("rounds", project)).content.decode()
    assert listing.count('class="tag status-done"') == 2


def test_round_page_names_its_timings_and_configuration_and_hides_empty_values(
    client, project, lead
):  # type: ignore[no-untyped-def]
    round = services.round_request(project=project)
    config = {**round.config, "model_name": ""}
    config["train"] = {**config["train"], "min_steps": None, "epochs": None}
    Round.objects.filter(pk=round.pk).update(
        status=Round.Status.DONE, config=config,
        timings={"train_s": 12.34, "score_s": 1.5, "scored": 1200, "scored_labelled": 40,
                 "selected": 20, "new_phase_s": 0.25, "empty": None},
    )
    client.force_login(lead)
    page = client.get(_url("round", project, round.number)).content.decode()
    for raw in ("train_s", "score_s", "scored_labelled", "new_phase_s", "model_name",
                "min_steps", ">empty<"):
        assert raw not in page, raw
    for text in ("Training</th><td class=\"num\">12.3 s", "Labelled documents scored",
                 "Pool documents scored</th><td class=\"num\">1,200", "New phase",
                 "Epochs</th><td><code>from the label count", "Base model"):
        assert text in page, text
    assert "Minimum steps" not in page  # unset: left out, not an empty row
    rows = re.findall(r"<tr><th>([^<]*)</th><td[^>]*>(.*?)</td></tr>", page)
    assert rows and all(value.strip() not in ("", "<code></code>") for _, value in rows)


def test_failed_round_page_shows_the_error_and_a_collapsed_traceback(
    client, project, lead
):  # type: ignore[no-untyped-def]
    def broken(round, progress):  # type: ignore[no-untyped-def]
        raise RuntimeError("the GPU caught fire <b>")

    services.round_request(project=project)
    Worker(name="t", runner=broken).run_once()
    client.force_login(lead)
    page = client.get(_url("round", project, 1)).content.decode()
    assert "RuntimeError: the GPU caught fire &lt;b&gt;" in page
    assert "<details><summary>Traceback</summary>" in page and "Traceback (most recent" in page
    status = client.get(_url("dashboard", project)).content.decode()
    assert "the GPU caught fire" in status and "Train now" in status


def test_settings_form_saves_and_the_queue_plan_is_recomputed(
    client, project, lead, settings, tmp_path
):  # type: ignore[no-untyped-def]
    settings.LABELWISE_MODELS_DIR = tmp_path
    (tmp_path / "minilm").mkdir()
    (tmp_path / "minilm" / "config.json").write_text("{}")
    client.force_login(lead)
    assert annotate_selectors.queue_plan(project).random_share == 0.0  # cached: no row yet
    page = client.get(_url("settings", project)).content.decode()
    assert 'value="margin"' in page and 'value="badge"' in page
    data = {
        "model_name": "minilm", "mode": "head", "strategy": "entropy",
        "random_share": "0.25", "max_length": "64", "epochs": "2", "learning_rate": "3e-5",
        "batch_size": "8", "train_every_labels": "20", "train_every_minutes": "30",
        "show_suggestions": "on", "suggestion_threshold": "0.8",
    }
    response = client.post(_url("settings", project), data)
    assert response.status_code == 302
    saved = LearnerSettings.objects.get(project=project)
    assert (saved.mode, saved.strategy, saved.random_share, saved.epochs) == (
        "head", "entropy", 0.25, 2)
    assert saved.show_suggestions and saved.model_name == "minilm"
    assert annotate_selectors.queue_plan(project).random_share == 0.25
    assert annotate_selectors.queue_plan(project).suggestion_threshold == 0.8
    # Blank epochs: the label count decides (early stopping on validation).
    client.post(_url("settings", project), {**data, "epochs": ""})
    assert LearnerSettings.objects.get(project=project).epochs is None

    bad = client.post(_url("settings", project), {**data, "random_share": "1.5",
                                                   "strategy": "nonsense"})
    assert bad.status_code == 200
    assert LearnerSettings.objects.get(project=project).random_share == 0.25
    assert "nonsense is not one of the available choices" in bad.content.decode()


def test_confidence_histogram_is_counted_in_bins(project, documents) -> None:  # type: ignore[no-untyped-def]
    round = services.round_request(project=project)
    label = project.labels.first().pk
    confidences = [0.34, 0.36, 0.51, 0.55, 0.99, 1.0]
    Prediction.objects.bulk_create(
        Prediction(round=round, document=doc, labels=[label], probs=[c], confidence=c,
                   score=1 - c)
        for doc, c in zip(documents, confidences, strict=False)
    )
    # A labelled document's prediction (score None) is not part of the pool's histogram.
    Prediction.objects.create(round=round, document=documents[7], labels=[label],
                              probs=[0.1], confidence=0.1, score=None)
    histogram = selectors.confidence_histogram(round, bins=10)
    assert histogram.counts == [0, 0, 0, 2, 0, 2, 0, 0, 0, 2] and histogram.total == 6
    assert histogram.edges[0] == 0 and histogram.edges[-1] == 1


def _answer(document, user, label_ids, *, minutes_ago: float = 0,
            duration_ms: int | None = 4000) -> None:  # type: ignore[no-untyped-def]
    annotation = Annotation.objects.create(document=document, annotator=user, labels=label_ids,
                                           duration_ms=duration_ms)
    Annotation.objects.filter(pk=annotation.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_ago))
    Document.objects.filter(pk=document.pk).update(n_annotations=document.n_annotations + 1)
    document.n_annotations += 1


def test_throughput_counts_labels_per_active_hour(project, annotator, lead, documents) -> None:  # type: ignore[no-untyped-def]
    label = project.labels.first().pk
    # The annotator: 4 labels in one clock hour, 2 in another three hours earlier (6 / 2).
    now = timezone.now().replace(minute=30)
    for i, minutes in enumerate([0, 1, 2, 3, 180, 181]):
        _answer(documents[i], annotator, [label], duration_ms=2000 + 1000 * i)
        Annotation.objects.filter(document=documents[i], annotator=annotator).update(
            created_at=now - timedelta(minutes=minutes))
    # Older than a week: not counted.
    _answer(documents[6], lead, [label], minutes_ago=8 * 24 * 60)
    rows = selectors.annotator_throughput(project)
    assert [(r.username, r.annotations) for r in rows] == [("annotator", 6)]
    # Two sessions: 3 minutes of gaps plus the first label's 5 s on screen, then 1 minute
    # plus 7 s; the three hours between them are a break.
    assert rows[0].active_hours * 3600 == pytest.approx(180 + 5 + 60 + 7)
    assert rows[0].per_hour == pytest.approx(6 * 3600 / 252)
    assert rows[0].median_seconds == pytest.approx(4.5)  # durations 2..7 s: median bucket 4


def test_throughput_of_fast_bursts_is_their_pace_not_their_clock_hours(project, annotator):  # type: ignore[no-untyped-def]
    """A label every 2 s is 1,800 an hour, however few minutes of each hour it fills."""
    texts = [f"burst text {i}" for i in range(300)]
    docs = Document.objects.bulk_create(
        Document(project=project, text=t, text_hash=text_hash(t), rand=0.5) for t in texts
    )
    label = project.labels.first().pk
    start = timezone.now().replace(minute=5, second=0, microsecond=0) - timedelta(hours=6)
    annotations = []
    for i, doc in enumerate(docs):
        burst, k = divmod(i, 100)  # three bursts of 100 labels, two hours apart
        annotations.append(Annotation(document=doc, annotator=annotator, labels=[label],
                                      duration_ms=2000))
        annotations[-1].at = start + timedelta(hours=2 * burst, seconds=2 * k)
    Annotation.objects.bulk_create(annotations)
    for annotation in annotations:
        Annotation.objects.filter(pk=annotation.pk).update(created_at=annotation.at)
    [row] = selectors.annotator_throughput(project)
    assert row.annotations == 300
    assert row.active_hours * 3600 == pytest.approx(3 * (99 * 2 + 2))
    assert row.per_hour == pytest.approx(1800)  # counting clock hours said 100


def test_throughput_without_measured_time_says_so(project, annotator, documents):  # type: ignore[no-untyped-def]
    _answer(documents[0], annotator, [project.labels.first().pk], duration_ms=None)
    [row] = selectors.annotator_throughput(project)
    assert (row.annotations, row.active_hours, row.per_hour) == (1, 0, None)


def test_agreement_gives_kappa_per_pair_and_alpha_overall(
    client, project, lead, annotator, viewer, documents
):  # type: ignore[no-untyped-def]
    b, s, t = (label.pk for label in project.labels.all())
    # Lead and annotator on 4 documents: agree on 3. Document 4 has one answer only.
    pairs = [(b, b), (s, s), (t, t), (b, s)]
    for doc, (x, y) in zip(documents, pairs, strict=False):
        _answer(doc, lead, [x])
        _answer(doc, annotator, [y])
    _answer(documents[5], lead, [b])
    result = selectors.agreement_of(project)
    assert result.documents == 4 and len(result.pairs) == 1
    pair = result.pairs[0]
    assert {pair.coder_a, pair.coder_b} == {"lead", "annotator"} and pair.documents == 4
    # p_o = 3/4; marginals lead (b2, s1, t1), annotator (b1, s2, t1): p_e = (2+2+1)/16.
    assert pair.kappa == pytest.approx((0.75 - 5 / 16) / (1 - 5 / 16))
    from annotate.agreement import krippendorff_alpha_nominal
    assert result.alpha == pytest.approx(krippendorff_alpha_nominal([list(p) for p in pairs]))

    client.force_login(viewer)
    html = client.get(_url("dashboard", project)).content.decode()
    assert f"{pair.kappa:.3f}" in html and f"{result.alpha:.3f}" in html
    assert "75%" in html


def test_multi_label_agreement_averages_per_label(project, lead, annotator, documents) -> None:  # type: ignore[no-untyped-def]
    project.task_type = "multi_label"
    project.save()
    b, s, _t = (label.pk for label in project.labels.all())
    answers = [([b], [b]), ([b, s], [b]), ([s], [s]), ([], [s])]
    for doc, (x, y) in zip(documents, answers, strict=False):
        _answer(doc, lead, x)
        _answer(doc, annotator, y)
    pair = selectors.agreement_of(project).pairs[0]
    # Label b: kappa 1; label s: kappa 0 (see test_agreement); label t: undefined.
    assert pair.kappa == pytest.approx(0.5)
    assert pair.observed == 0.5


def test_label_distribution_counts_final_labels(project, documents) -> None:  # type: ignore[no-untyped-def]
    b = project.labels.first()
    Document.objects.filter(pk__in=[d.pk for d in documents[:3]]).update(final_labels=[b.pk])
    other = Document.objects.create(project=project, text="x", text_hash=text_hash("x"), rand=0.5)
    assert other.final_labels is None
    rows = selectors.label_distribution(project)
    assert [(r.name, r.count) for r in rows] == [("business", 3), ("sport", 0), ("tech", 0)]
