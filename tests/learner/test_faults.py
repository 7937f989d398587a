"""The learner survives its worker being killed mid-round, and keeps labels that arrive
while a round runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from annotate import services as queue
from annotate.models import Annotation
from learner import services
from learner.models import LearnerSettings, Round
from learner.worker import Worker
from tests.conftest import REPO_ROOT, subprocess_env
from tests.learner.test_pipeline import labelled_project  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(predicate, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_sigkill_mid_round_is_recovered_and_labels_during_the_round_are_kept(
    labelled_project, annotator  # noqa: F811
):
    project = labelled_project
    # Enough epochs that the round is certainly still training when it is killed.
    LearnerSettings.objects.filter(project=project).update(mode="full", epochs=500)
    round = services.round_request(project=project)
    worker = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "manage.py"), "learner", "--poll", "0.2"],
        env={**subprocess_env(), "LABELWISE_LEARNER_NICE": "10"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: Round.objects.filter(pk=round.pk, phase="train", step__gt=0).exists())
        # The worker gave itself a lower CPU priority (LABELWISE_LEARNER_NICE) so that
        # annotators' requests on a shared machine come first.
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, own + 10)
        # An annotator keeps labelling while the round trains.
        document = queue.assignment_next(user=annotator, project=project)
        queue.annotation_submit(user=annotator, project=project, document_id=document.pk,
                                label_ids=[project.labels.first().pk])
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    round.refresh_from_db()
    assert round.status == "running"  # nobody told the database: only the heartbeat knows

    # The next worker finds the silent round, requeues it and runs it to the end.
    time.sleep(1.5)
    Round.objects.filter(pk=round.pk).update(
        config={**round.config, "train": {**round.config["train"], "epochs": 1}})
    assert Worker(name="next", heartbeat_timeout=timedelta(seconds=1)).run_once() is True
    round.refresh_from_db()
    assert round.status == "done", round.traceback
    assert round.attempts == 2 and round.worker == "next"
    assert Annotation.objects.filter(document=document, annotator=annotator).exists()
