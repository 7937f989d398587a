"""The Round row as the job: request, claim, progress, cancel, failure, recovery."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from django.utils import timezone

from learner import services
from learner.models import Round
from learner.worker import Worker
from tests.conftest import subprocess_env


def test_only_one_active_round_per_project(project, lead):
    first = services.round_request(project=project, requested_by=lead)
    assert first.number == 1 and first.status == "queued"
    with pytest.raises(services.RoundBusy):
        services.round_request(project=project)
    services.round_cancel(round=first)
    second = services.round_request(project=project)
    assert second.number == 2


def test_claim_gives_each_round_to_one_worker(project):
    queued = services.round_request(project=project)
    claimed = services.round_claim(worker="a")
    assert claimed.pk == queued.pk and claimed.status == "running" and claimed.worker == "a"
    assert claimed.attempts == 1
    assert services.round_claim(worker="b") is None


def test_progress_records_phase_and_heartbeat(project):
    services.round_request(project=project)
    claimed = services.round_claim(worker="a")
    services.round_progress(round_id=claimed.pk, phase="train", step=5, total_steps=20,
                            eta_seconds=12.5)
    claimed.refresh_from_db()
    assert (claimed.phase, claimed.step, claimed.percent) == ("train", 5, 25.0)
    assert claimed.eta_seconds == 12.5


def test_cancel_stops_a_running_round_at_its_next_progress_report(project):
    services.round_request(project=project)
    claimed = services.round_claim(worker="a")
    services.round_cancel(round=claimed)

    def runner(round, progress):  # type: ignore[no-untyped-def]
        progress("train", 1, 10)
        raise AssertionError("the round should have been stopped")

    worker = Worker(name="w", runner=runner)
    worker._run(claimed)
    claimed.refresh_from_db()
    assert claimed.status == "cancelled"


def test_a_round_that_raises_records_error_and_traceback_and_the_next_proceeds(project):
    def broken(round, progress):  # type: ignore[no-untyped-def]
        raise ValueError("labels are all one class")

    services.round_request(project=project)
    assert Worker(name="w", runner=broken).run_once() is True
    failed = Round.objects.get(number=1)
    assert failed.status == "failed"
    assert "ValueError: labels are all one class" in failed.error
    assert "Traceback" in failed.traceback and "broken" in failed.traceback

    services.round_request(project=project)
    assert Worker(name="w", runner=lambda r, p: {"n_train": 3}).run_once() is True
    done = Round.objects.get(number=2)
    assert done.status == "done" and done.n_train == 3


def test_stale_running_round_is_requeued_then_failed(project):
    services.round_request(project=project)
    claimed = services.round_claim(worker="dead")
    old = timezone.now() - timedelta(minutes=10)
    Round.objects.filter(pk=claimed.pk).update(heartbeat_at=old)
    assert services.rounds_recover_stale(heartbeat_timeout=timedelta(minutes=2)) == [claimed.pk]
    claimed.refresh_from_db()
    assert claimed.status == "queued"
    again = services.round_claim(worker="alive")
    assert again.attempts == 2
    Round.objects.filter(pk=claimed.pk).update(heartbeat_at=old)
    services.rounds_recover_stale(heartbeat_timeout=timedelta(minutes=2))
    claimed.refresh_from_db()
    assert claimed.status == "failed" and "stopped responding" in claimed.error


@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_never_run_the_same_round(lead):
    from annotate import services as annotate_services

    projects = [annotate_services.project_create(name=f"p{i}", created_by=lead) for i in range(6)]
    for project in projects:
        services.round_request(project=project)
    script = textwrap.dedent("""
        import os, django
        django.setup()
        from learner.worker import Worker
        import time
        def runner(round, progress):
            time.sleep(0.2)
            return {"n_train": 1}
        worker = Worker(name=f"proc-{os.getpid()}", runner=runner)
        while worker.run_once():
            pass
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], env=subprocess_env())
             for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    rounds = list(Round.objects.all())
    assert all(r.status == "done" and r.attempts == 1 for r in rounds)
    assert len({r.worker for r in rounds}) == 2, "both workers should have taken rounds"


def _label(project, n: int, start: int = 0) -> None:  # type: ignore[no-untyped-def]
    from annotate.models import Document, text_hash

    label = project.labels.first().pk
    Document.objects.bulk_create(
        Document(project=project, text=f"t{i}", text_hash=text_hash(f"t{i}"), rand=0.5,
                 final_labels=[label], n_annotations=1, slots_taken=1)
        for i in range(start, start + n)
    )


def test_a_round_is_queued_after_n_new_labels_and_not_before(project):
    from learner.models import LearnerSettings

    LearnerSettings.objects.create(project=project, train_every_labels=10)
    _label(project, 9)
    assert services.rounds_request_due() == []
    _label(project, 1, start=9)
    [first] = services.rounds_request_due()
    assert first.trigger == "labels" and first.config["labels_at_request"] == 10
    assert services.rounds_request_due() == []  # one active round at most
    services.round_cancel(round=first)
    assert services.rounds_request_due() == []  # no new labels since that request
    _label(project, 10, start=10)
    assert len(services.rounds_request_due()) == 1


def test_timer_trigger_needs_new_labels_and_elapsed_time(project):
    from learner.models import LearnerSettings

    LearnerSettings.objects.create(project=project, train_every_labels=0, train_every_minutes=30)
    _label(project, 3)
    [first] = services.rounds_request_due()
    assert first.trigger == "timer"
    services.round_cancel(round=first)
    _label(project, 1, start=3)
    assert services.rounds_request_due() == []  # 30 minutes have not passed
    Round.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(minutes=31))
    assert len(services.rounds_request_due()) == 1
