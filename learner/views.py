"""The learner's pages: the dashboard (with the running round's live progress), Train now
and Cancel, the rounds list, one round, and the learner settings.

Thin views (CONVENTIONS 1, 8): a selector reads, learner.services writes, learner.charts
draws, a template renders; HTMX requests get the page's named partial. Leads, reviewers and
viewers may watch; only leads start, cancel or configure; annotators get 403 and
strangers 404 (annotate.access.project_view).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotate import selectors as annotate_selectors
from annotate.access import LEAD, WATCHERS, ProjectRequest, project_view
from annotate.models import Label, Project
from learner import charts, selectors, services
from learner.adaptation import ADAPT_MAX_STEPS, ADAPT_STEPS, adaptation_request, adapted_encoder
from learner.base_models import BaseModelUnavailable, base_model_choices
from learner.finalmodel import (
    FINAL_BUDGET_MINUTES,
    FINAL_MAX_BUDGET_MINUTES,
    FINAL_MAX_TRIALS,
    FINAL_MIN_BUDGET_MINUTES,
    FINAL_MIN_TRIALS,
    FINAL_TRIALS,
    FinalModelRefused,
    final_model_allowed,
    final_model_request,
)
from learner.ml.config import BOUNDS
from learner.ml.strategies import STRATEGIES
from learner.models import DriftAlert, ExportJob, LearnerSettings, Round

ROUNDS_PER_PAGE = 50
# htmx stops polling when a poll is answered with this status.
STOP_POLLING = 286
ROUND_FINISHED_EVENT = "learner-round-finished"


def duration_text(seconds: float | None) -> str:
    """'2 min 05 s' style duration (a remaining time, how long a round took); '' when
    unknown."""
    if seconds is None or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# --- dashboard -----------------------------------------------------------------------------


def _status_context(project: Project, notice: str = "") -> dict:
    active = selectors.round_active(project)
    adaptation = selectors.adaptation_latest(project)
    settings = services.learner_settings_for(project)
    latest = selectors.round_latest_done(project)
    return {
        # The newest finished round: the poll carries it, so a round that finishes while
        # the next is already queued still reloads the results (see `progress`).
        "latest_done": latest.number if latest else 0,
        "active": active,
        "eta": duration_text(active.eta_seconds) if active else "",
        "last": None if active else selectors.rounds_of(project).first(),
        "notice": notice,
        "adaptation": adaptation,
        "adaptation_used": adapted_encoder(project, settings) is not None,
        "adapt_steps": ADAPT_STEPS, "adapt_max_steps": ADAPT_MAX_STEPS,
        # The round a final model would be searched from: the latest that trained one.
        "final_source": None if active else selectors.round_final_source(project),
        **FINAL_FORM,
    }


def _results_context(project: Project, number: int | None) -> dict:
    labels = annotate_selectors.labels_of(project)
    curve = selectors.learning_curve(project)
    shown = selectors.round_shown(project, number)
    context: dict = {
        "curve": curve,
        "curve_svg": charts.line_chart(
            [
                charts.Series(
                    name="Macro-F1", key="macro_f1", colour=charts.PALETTE[0],
                    points=[charts.Point(p.n_train, p.macro_f1,
                                         f"Round {p.number}: macro-F1 {p.macro_f1:.3f} "
                                         f"with {p.n_train} labels") for p in curve],
                ),
                charts.Series(
                    name="Accuracy", key="accuracy", colour=charts.PALETTE[1],
                    points=[charts.Point(p.n_train, p.accuracy,
                                         f"Round {p.number}: accuracy {p.accuracy:.3f} "
                                         f"with {p.n_train} labels") for p in curve],
                ),
                *([charts.Series(
                    name="Baseline macro-F1 (frozen encoder + linear probe)", key="baseline",
                    colour=charts.PALETTE[2], dashed=True,
                    points=[charts.Point(p.n_train, p.baseline_f1,
                                         f"Round {p.number}: the frozen-embedding baseline "
                                         f"scores {p.baseline_f1:.3f} with the same labels")
                            for p in curve if p.baseline_f1 is not None],
                )] if any(p.baseline_f1 is not None for p in curve) else []),
            ],
            x_label="Labelled documents used for training",
            y_label="Score on the holdout",
            title="Learning curve",
        ) if curve else "",
        "shown": shown,
        # A round the user picked stays shown after a refresh; otherwise the latest is.
        "pinned": shown is not None and shown.number == number,
        "done_numbers": [p.number for p in reversed(curve)],
    }
    if shown is not None:
        context.update(_round_charts(shown, labels))
        histogram = selectors.confidence_histogram(shown)
        context["histogram"] = histogram
        context["histogram_svg"] = charts.histogram(
            histogram.counts, histogram.edges, title="Confidence of the pool predictions",
            x_label="Model confidence", y_label="Documents",
        ) if histogram.total else ""
    return context


def _round_charts(round: Round, labels: list[Label]) -> dict:
    """Per-class F1 bars and the confusion heatmap of one round (empty when unevaluated)."""
    per_class = selectors.round_class_metrics(round, labels)
    matrix = (round.metrics or {}).get("confusion_matrix")
    names = selectors.round_label_names(round, labels)
    return {
        "per_class": per_class,
        "f1_svg": charts.bar_chart(
            [charts.Bar(c.name, c.f1, c.colour,
                        f"{c.name}: F1 {c.f1:.3f} (precision {c.precision:.3f}, recall "
                        f"{c.recall:.3f}, {c.support} in the holdout)") for c in per_class],
            title=f"Per-class F1, round {round.number}", max_value=1.0, x_label="F1",
        ) if per_class else "",
        "confusion_svg": charts.heatmap(
            matrix, names, names, title=f"Confusion matrix, round {round.number}"
        ) if matrix else "",
    }


def _optional_int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@project_view(*WATCHERS)
def dashboard(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    number = _optional_int(request.GET.get("round"))
    context = {"project": project, **_results_context(project, number)}
    if request.htmx:
        return render(request, "learner/dashboard.html#results", context)
    distribution = selectors.label_distribution(project)
    context.update(
        _status_context(project),
        membership=request.membership,
        label_svg=charts.bar_chart(
            [charts.Bar(d.name, d.count, d.colour) for d in distribution],
            title="Final labels per class", value_digits=0,
        ) if any(d.count for d in distribution) else "",
        throughput=selectors.annotator_throughput(project),
        agreement=selectors.agreement_cached(project),
        **_monitoring_context(project, request.GET.get("day")),
    )
    return render(request, "learner/dashboard.html", context)


def _shares(counts: list[int] | list[float]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _monitoring_context(project: Project, day: str | None) -> dict:
    """The predictions the API served, per day, against the latest round's holdout: the
    volume, the predicted labels and the confidences beside the holdout's, the drift score;
    and the open drift alerts that mark the project."""
    settings = services.learner_settings_for(project)
    monitored = selectors.round_latest_done(project)
    days = selectors.monitoring_days(project, monitored, threshold=settings.drift_threshold)
    context: dict[str, Any] = {
        "drift_alerts": list(selectors.drift_alerts_open(project)),
        "monitored": monitored, "monitor_days": days, "drift_threshold":
        settings.drift_threshold, "recording": settings.record_predictions,
    }
    if not days:
        return context
    chosen = next((d for d in days if d.day.isoformat() == day), None) or next(
        (d for d in days if d.profile["n"]), days[0])
    context["monitor_day"] = chosen
    context["volume_svg"] = charts.bar_chart(
        [charts.Bar(d.day.isoformat(), d.volume,
                    tip=f"{d.day.isoformat()}: {d.volume} predictions") for d in days],
        title="Predictions served per day", value_digits=0, x_label="Predictions",
    )
    reference = (monitored.holdout_profile or {}) if monitored is not None else {}
    if not reference or not chosen.profile["n"]:
        return context
    bins = len(reference["confidence"])
    day_name = chosen.day.isoformat()
    context["served_confidence_svg"] = charts.grouped_bars(
        [f"{i / bins:.2f}–{(i + 1) / bins:.2f}" for i in range(bins)],
        [charts.BarSeries("Holdout", _shares(reference["confidence"]), charts.PALETTE[2]),
         charts.BarSeries(day_name, _shares(chosen.profile["confidence"]), charts.PALETTE[0])],
        title=f"Confidence on {day_name} beside the holdout's", x_label="Model confidence",
        y_label="Share of texts", label_every=4,
    )
    names = list((monitored.config or {}).get("labels") or reference["predicted"])
    names += sorted(set(chosen.profile["predicted"]) - set(names))
    context["served_labels_svg"] = charts.grouped_bars(
        names,
        [charts.BarSeries("Holdout", _shares([reference["predicted"].get(n, 0) for n in names]),
                          charts.PALETTE[2]),
         charts.BarSeries(day_name, _shares([chosen.profile["predicted"].get(n, 0)
                                             for n in names]), charts.PALETTE[0])],
        title=f"Predicted labels on {day_name} beside the holdout's", x_label="Predicted label",
        y_label="Share of texts",
    )
    return context


@project_view(*LEAD)
@require_POST
def drift_alert_clear(request: ProjectRequest, pk: int, alert_id: int) -> HttpResponse:
    project = request.project
    alert = get_object_or_404(DriftAlert, pk=alert_id, project=project)
    services.drift_alert_clear(alert=alert, user=request.user)
    messages.info(request, f"The drift alert of {alert.day.isoformat()} is cleared.")
    return redirect("learner:dashboard", pk=pk)


@project_view(*WATCHERS)
def progress(request: ProjectRequest, pk: int) -> HttpResponse:
    """The round-status panel, polled every 2 s while a round is queued or running. Once
    none is, it answers 286 (htmx stops polling) and fires an event on which the results
    panel reloads itself, so the new point appears without a page load; it fires the same
    event when a round finished since the last poll (`?shown=` the newest it knew).

    The idle panel polls too (`?newest=` the newest round it shows), so a round that labels,
    a timer or another lead started appears on an open dashboard; while there is still no
    newer round it gets 204, which htmx swaps nothing for (a half-typed field survives)."""
    project = request.project
    context = {"project": project, "membership": request.membership,
               **_status_context(project)}
    newest = context["last"].number if context["last"] else 0
    if context["active"] is None and request.GET.get("newest") == str(newest):
        return HttpResponse(status=204)
    response = render(request, "learner/dashboard.html#status", context)
    if context["active"] is None:
        response.status_code = STOP_POLLING
        response["HX-Trigger"] = ROUND_FINISHED_EVENT
    elif request.GET.get("shown", str(context["latest_done"])) != str(context["latest_done"]):
        # A round finished and the next one is already queued (the demo's pace): the
        # panel keeps polling, and the results reload now rather than when all is idle.
        response["HX-Trigger"] = ROUND_FINISHED_EVENT
    return response


def _status_or_redirect(request: ProjectRequest, project: Project, notice: str,
                        *, level: int = messages.INFO, to: str = "") -> HttpResponse:
    if request.htmx:
        context = {"project": project, "membership": request.membership,
                   **_status_context(project, notice)}
        return render(request, "learner/dashboard.html#status", context)
    messages.add_message(request, level, notice)
    return redirect(to or "learner:dashboard", pk=project.pk)


@project_view(*LEAD)
@require_POST
def train_now(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    try:
        round = services.round_request(
            project=project, trigger=Round.Trigger.MANUAL, requested_by=request.user
        )
    except BaseModelUnavailable as exc:
        return _status_or_redirect(request, project, " ".join(exc.messages),
                                   level=messages.ERROR)
    except services.RoundBusy:
        active = selectors.round_active(project)
        which = f"Round {active.number} is" if active else "A round is"
        return _status_or_redirect(
            request, project,
            f"{which} already queued or running: wait for it to finish or cancel it.",
            level=messages.WARNING,
        )
    return _status_or_redirect(
        request, project, f"Round {round.number} queued: a learner worker will pick it up.",
        level=messages.SUCCESS,
    )


@project_view(*LEAD)
@require_POST
def adapt(request: ProjectRequest, pk: int) -> HttpResponse:
    """Queues a domain adaptation of the encoder (learner.adaptation) with the steps asked
    for, bounded so one request cannot occupy the worker for hours."""
    project = request.project
    try:
        steps = int(request.POST.get("steps", ADAPT_STEPS))
    except ValueError:
        steps = 0
    if not 10 <= steps <= ADAPT_MAX_STEPS:
        return _status_or_redirect(request, project,
                                   f"Steps must be between 10 and {ADAPT_MAX_STEPS}.",
                                   level=messages.ERROR)
    try:
        round = adaptation_request(project=project, steps=steps, requested_by=request.user)
    except BaseModelUnavailable as exc:
        return _status_or_redirect(request, project, " ".join(exc.messages),
                                   level=messages.ERROR)
    except services.RoundBusy:
        return _status_or_redirect(
            request, project, "A round is already queued or running: adapt after it.",
            level=messages.WARNING)
    return _status_or_redirect(
        request, project, f"Domain adaptation queued as round {round.number}.",
        level=messages.SUCCESS)


# The final-model form's defaults and bounds (learner.finalmodel), for both pages.
FINAL_FORM = {
    "final_trials": FINAL_TRIALS, "final_min_trials": FINAL_MIN_TRIALS,
    "final_max_trials": FINAL_MAX_TRIALS, "final_budget": FINAL_BUDGET_MINUTES,
    "final_min_budget": FINAL_MIN_BUDGET_MINUTES, "final_max_budget": FINAL_MAX_BUDGET_MINUTES,
}


@project_view(*LEAD)
@require_POST
def final_model(request: ProjectRequest, pk: int, number: int) -> HttpResponse:
    """Queues a final model searched from round `number` (learner.finalmodel), with the
    trials and time budget asked for, within their bounds."""
    project = request.project
    source = selectors.round_get(project, number)
    back = "learner:round" if request.POST.get("from") == "round" else ""
    try:
        trials = int(request.POST.get("trials", FINAL_TRIALS))
        budget = int(request.POST.get("budget_minutes", FINAL_BUDGET_MINUTES))
    except ValueError:
        trials = budget = 0
    try:
        round = final_model_request(round=source, trials=trials, budget_minutes=budget,
                                    requested_by=request.user)
    except FinalModelRefused as exc:
        return _final_answer(request, project, str(exc), messages.ERROR, back, number)
    except BaseModelUnavailable as exc:
        return _final_answer(request, project, " ".join(exc.messages), messages.ERROR, back,
                             number)
    except services.RoundBusy:
        return _final_answer(request, project, "A round is already queued or running: "
                             "search after it.", messages.WARNING, back, number)
    return _final_answer(
        request, project, f"Final model queued as round {round.number}: {trials} trials "
        f"over round {number}'s model, at most {budget} min.", messages.SUCCESS, back, number)


def _final_answer(request: HttpRequest, project: Project, notice: str, level: int, back: str,
                  number: int) -> HttpResponse:
    if back:
        messages.add_message(request, level, notice)
        return redirect(back, pk=project.pk, number=number)
    return _status_or_redirect(request, project, notice, level=level)


@project_view(*LEAD)
@require_POST
def round_cancel(request: ProjectRequest, pk: int, number: int) -> HttpResponse:
    project = request.project
    round = selectors.round_get(project, number)
    if not round.is_active:
        notice = f"Round {number} is {round.get_status_display().lower()}: nothing to cancel."
    else:
        round = services.round_cancel(round=round)
        notice = (f"Round {number} cancelled." if round.status == Round.Status.CANCELLED
                  else f"Round {number} will stop at its next progress report.")
    if request.POST.get("from") == "round":
        messages.info(request, notice)
        return redirect("learner:round", pk=pk, number=number)
    return _status_or_redirect(request, project, notice)


# --- rounds --------------------------------------------------------------------------------


@project_view(*WATCHERS)
def rounds(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    page = Paginator(selectors.rounds_of(project), ROUNDS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    for round in page:
        took = (round.finished_at - round.started_at).total_seconds() if (
            round.started_at and round.finished_at) else None
        round.took = duration_text(took)
    return render(request, "learner/rounds.html", {"project": project, "page": page,
                                                   "membership": request.membership})


@project_view(*WATCHERS)
def round_detail(request: ProjectRequest, pk: int, number: int) -> HttpResponse:
    project = request.project
    round = selectors.round_get(project, number)
    labels = annotate_selectors.labels_of(project)
    context = {
        "project": project,
        "membership": request.membership,
        "round": round,
        "eta": duration_text(round.eta_seconds),
        "config": _config_rows(round.config or {}),
        "timings": _timing_rows(round.timings or {}),
        "ladder": _ladder_rows(round.fit or {}),
        "search": _search_context(round.fit or {}),
        "can_search": final_model_allowed(round),
        **FINAL_FORM,
        "calibration": (round.fit or {}).get("calibration") or {},
        "groups": round.groups or {},
        "export_formats": ExportJob.Format.choices,
        **_round_charts(round, labels),
    }
    return render(request, "learner/round.html", context)


@project_view(*WATCHERS)
def round_exports(request: ProjectRequest, pk: int, number: int) -> HttpResponse:
    """The round page's exports panel, polled every 2 s while an export is queued or
    running (the worker writes its phase, steps and time left on the job's row); once
    none is, it answers 286 and htmx stops polling."""
    project = request.project
    round = selectors.round_get(project, number)
    response = render(request, "learner/round.html#exports", {
        "project": project, "membership": request.membership,
        "round": round, "export_formats": ExportJob.Format.choices,
    })
    if not selectors.export_jobs_active(round):
        response.status_code = STOP_POLLING
    return response


RUNG_NAMES = {"head": "Linear head (frozen encoder)", "full": "Full fine-tuning",
              "lora": "LoRA", "gradual": "Gradual unfreezing"}
# What the round page lists of a round's configuration, in this order, with readable names.
CONFIG_ROWS = (
    ("mode", "Mode"), ("model_name_or_path", "Base model"), ("max_length", "Max length"),
    ("epochs", "Epochs"), ("min_steps", "Minimum steps"),
    ("max_steps", "Step cap"), ("learning_rate", "Learning rate"),
    ("batch_size", "Batch size"), ("warm_start", "Warm start"), ("seed", "Seed"),
)
# What an unset value means, for the settings where unset is itself a choice; any other
# unset value is left out of the page rather than shown as an empty row.
CONFIG_BLANKS = {"model_name_or_path": "all-MiniLM-L6-v2 (default)",
                 "epochs": "from the label count"}


def _config_rows(config: dict) -> list[tuple[str, object]]:
    train = config.get("train") or {}
    rows = [(name, _config_value(key, train.get(key))) for key, name in CONFIG_ROWS
            if key in train]
    rows += [("Strategy", config.get("strategy")), ("Random share", config.get("random_share"))]
    return [(name, value) for name, value in rows if value not in (None, "")]


def _config_value(key: str, value: object) -> object:
    if value in (None, ""):
        return CONFIG_BLANKS.get(key)
    if key == "model_name_or_path":
        # The folder's name: where the server keeps its models is not the watchers' business.
        return Path(str(value)).name
    return value


# A round's timings (learner.pipeline, coldstart, adaptation write them) as the round page
# names them, in the order the round does them: keys ending in _s are seconds, the others
# counts of documents.
TIMING_NAMES = {
    "adapt_s": "Adapting the encoder", "train_s": "Training", "evaluate_s": "Holdout evaluation",
    "save_s": "Saving the model", "score_s": "Scoring", "select_s": "Choosing the next batch",
    "texts": "Texts adapted on", "scored": "Pool documents scored",
    "scored_labelled": "Labelled documents scored", "selected": "Documents queued",
    "picked": "Documents queued (cold start)",
}


def _timing_rows(timings: dict) -> list[tuple[str, str]]:
    order = list(TIMING_NAMES)
    keys = sorted(timings, key=lambda k: (order.index(k) if k in order else len(order), k))
    rows = []
    for key in keys:
        value = timings[key]
        if value in (None, ""):
            continue
        # A key this page does not know yet still reads as words, never as an identifier.
        name = TIMING_NAMES.get(key) or key.removesuffix("_s").replace("_", " ").capitalize()
        if key.endswith("_s") and isinstance(value, int | float):
            rows.append((name, f"{value:.1f} s"))
        elif isinstance(value, int | float):
            rows.append((name, f"{value:,.0f}"))
        else:
            rows.append((name, str(value)))
    return rows


def _ladder_rows(fit: dict) -> list[dict]:
    """One row per rung the round's ladder fitted: its validation score, time, epochs."""
    ladder = fit.get("ladder") or {}
    pick = ladder.get("pick")
    return [
        {"rung": rung, "name": RUNG_NAMES.get(rung, rung), "picked": rung == pick,
         "val_score": c.get("val_score"), "seconds": c.get("seconds"),
         "epochs": c.get("epochs"), "C": c.get("C"), "warm": c.get("warm")}
        for rung, c in (ladder.get("candidates") or {}).items()
    ]


def _search_context(fit: dict) -> dict | None:
    """A final model's search as the round page shows it: the space, one row per trial
    (its values, fold scores, mean, pruned, seconds, the pick); None for other rounds."""
    search = fit.get("search")
    if not search:
        return None
    names = [d["name"] for d in search.get("space", [])]
    trials = [
        {**t, "values": [_param_text(t["params"].get(name)) for name in names],
         "picked": t["number"] == search.get("best")}
        for t in search.get("trials", [])
    ]
    space = [
        {"name": d["name"], "range": ", ".join(str(c) for c in d["choices"]) if "choices" in d
         else f"{_param_text(d['low'])} to {_param_text(d['high'])} ({d['kind']})"}
        for d in search.get("space", [])
    ]
    return {**search, "names": names, "trial_rows": trials, "space_rows": space,
            "gain": None if search.get("default_score") is None
            else round(search["best_score"] - search["default_score"], 4)}


def _param_text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# --- settings ------------------------------------------------------------------------------


def _offered(name: str) -> dict[str, float]:
    """min_value/max_value for a training setting: the range learner.ml.config.BOUNDS
    offers a lead, inside what TrainConfig accepts, so a bad value is refused here and
    never fails a round in the worker."""
    low, high = BOUNDS[name].offered
    return {"min_value": low, "max_value": high}


class LearnerSettingsForm(forms.ModelForm):
    # A choice, never a typed path: the shipped default or a folder the operator put under
    # LABELWISE_MODELS_DIR (learner.base_models); the choices are read when the form is made.
    model_name = forms.ChoiceField(
        required=False, label="Base model",
        help_text="The shipped default, or a model your administrator added to the server.",
    )
    strategy = forms.ChoiceField(
        choices=[(name, name.replace("_", " ")) for name in STRATEGIES],
        help_text="How the queue picks the next documents: the strategy's batch selection "
                  "after every round and fast refresh.",
    )
    random_share = forms.FloatField(
        min_value=0.0, max_value=1.0, help_text="Share of random picks for exploration, 0-1."
    )
    max_length = forms.IntegerField(**_offered("max_length"), label="Max length (tokens)")
    epochs = forms.IntegerField(
        **_offered("epochs"), required=False,
        help_text="Blank: from the label count, early-stopped on validation.",
    )
    learning_rate = forms.FloatField(**_offered("learning_rate"))
    batch_size = forms.IntegerField(**_offered("batch_size"))
    suggestion_threshold = forms.FloatField(
        min_value=0.0, max_value=1.0, label="Suggest from confidence",
        help_text="Suggestions appear only when the model's calibrated confidence reaches "
                  "this: 0.8 means it is right about 8 times in 10 at that confidence.",
    )
    # The monitoring and group numbers keep their saved value when a form from before
    # they existed (a script, an open tab) leaves them out.
    drift_threshold = forms.FloatField(
        min_value=0.01, max_value=10.0, label="Drift threshold (PSI)", required=False,
        help_text="A day's predictions drift when the population stability index of their "
                  "confidences or predicted labels against the holdout's reaches this "
                  "(0.1: a small shift, 0.25: a large one) and a chi-square test says it "
                  "is not chance.",
    )
    drift_queue_size = forms.IntegerField(min_value=1, max_value=10_000, required=False,
                                          label="Texts queued per drift alert")
    group_fields = forms.CharField(
        required=False, max_length=1000, label="Group fields",
        help_text="Metadata fields to break the holdout down by, comma-separated (source, "
                  "language, region...): every round reports its metrics per value.",
    )
    group_margin = forms.FloatField(
        min_value=0.0, max_value=1.0, label="Flag a group below the overall macro-F1 by",
        required=False,
    )

    class Meta:
        model = LearnerSettings
        fields = [
            "model_name", "mode", "strategy", "random_share", "max_length", "epochs",
            "learning_rate", "batch_size", "train_every_labels", "train_every_minutes",
            "show_suggestions", "suggestion_threshold", "warm_start", "use_adapted_encoder",
            "record_predictions", "record_texts", "drift_threshold", "drift_queue",
            "drift_queue_size", "group_fields", "group_margin",
        ]
        labels = {
            "train_every_labels": "Train every N new labels",
            "train_every_minutes": "Train every T minutes",
            "show_suggestions": "Show annotators the latest model's suggestion",
            "warm_start": "Start fine-tuning from the previous round's model",
            "use_adapted_encoder": "Start from the encoder adapted to this project's texts",
            "record_predictions": "Record the predictions the API serves",
            "record_texts": "Record their texts too",
            "drift_queue": "On drift, queue the least confident texts for annotation "
                           "and a round",
        }
        help_texts = {"show_suggestions": ""}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model_name"].choices = base_model_choices()  # type: ignore[attr-defined]
        if self.instance and not self.is_bound:
            self.initial["group_fields"] = ", ".join(self.instance.group_fields or [])

    def clean_group_fields(self) -> list[str]:
        if "group_fields" not in self.data:
            return list(self.instance.group_fields or [])
        names = [name.strip() for name in self.cleaned_data["group_fields"].split(",")]
        return list(dict.fromkeys(name for name in names if name))

    def _kept(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        return getattr(self.instance, name) if value is None else value

    def clean_drift_threshold(self) -> float:
        return self._kept("drift_threshold")

    def clean_drift_queue_size(self) -> int:
        return self._kept("drift_queue_size")

    def clean_group_margin(self) -> float:
        return self._kept("group_margin")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("drift_queue") and not data.get("record_texts"):
            self.add_error("drift_queue", "Queueing texts needs their texts recorded: turn "
                                          "on recording texts too.")
        return data


@project_view(*LEAD)
def learner_settings(request: ProjectRequest, pk: int) -> HttpResponse:
    project = request.project
    form = LearnerSettingsForm(request.POST or None,
                               instance=services.learner_settings_for(project))
    if request.method == "POST" and form.is_valid():
        # One row; the next round copies these values into its config when requested.
        form.save()
        annotate_selectors.queue_plan_forget(project.pk)
        messages.success(request, "Learner settings saved; the next round uses them.")
        return redirect("learner:settings", pk=pk)
    return render(request, "learner/settings.html", {"project": project, "form": form})
