"""API fixtures: clients that authenticate as a real API user would (a token header), a
done round without a model (for permission checks), and a round trained for real with
the tiny BERT (for predictions and exports)."""

from __future__ import annotations

import random

import pytest
from rest_framework.test import APIClient

from tests.learner import conftest as learner_conftest
from tests.learner.ml import conftest as ml_conftest

# The tiny random BERT of the ML tests, shared (a session fixture, built once).
tiny_model_dir = ml_conftest.tiny_model_dir
tiny_model_name = learner_conftest.tiny_model_name

WORDS = {
    "business": ["market", "shares", "profit", "bank", "economy", "trade"],
    "sport": ["match", "goal", "team", "coach", "league", "cup"],
    "tech": ["software", "chip", "internet", "phone", "computer", "data"],
}


def token_client(user) -> APIClient:  # type: ignore[no-untyped-def]
    from api.authentication import token_create

    client = APIClient()
    if user is not None:
        _token, key = token_create(user=user, name="tests")
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def clients(lead, annotator, viewer, stranger):  # type: ignore[no-untyped-def]
    return {
        "anonymous": token_client(None),
        "stranger": token_client(stranger),
        "annotator": token_client(annotator),
        "viewer": token_client(viewer),
        "lead": token_client(lead),
    }


@pytest.fixture
def done_round(project):  # type: ignore[no-untyped-def]
    """A finished round row whose model is not on disk."""
    from django.utils import timezone

    from learner.models import Round

    return Round.objects.create(project=project, number=1, status=Round.Status.DONE,
                                finished_at=timezone.now(), metrics={"accuracy": 0.5})


def fill_labelled(project, n: int = 60, labelled: int = 42, multi: bool = False) -> None:  # type: ignore[no-untyped-def]
    from annotate import services
    from annotate.models import Document, text_hash

    rng = random.Random(3)
    ids = {label.name: label.pk for label in project.labels.all()}
    names = list(WORDS)
    docs = []
    for i in range(n):
        name = names[i % 3]
        text = f"{i} " + " ".join(rng.choice(WORDS[name]) for _ in range(rng.randint(3, 12)))
        final = None
        if i < labelled:
            final = sorted({ids[name], ids[names[(i + 1) % 3]]}) if multi and i % 2 else [ids[name]]
        docs.append(Document(
            project=project, text=text, text_hash=text_hash(text), rand=rng.random(),
            final_labels=final, n_annotations=int(final is not None),
            slots_taken=int(final is not None), meta={"source": f"s{i % 2}", "n": i},
        ))
    Document.objects.bulk_create(docs)
    services.holdout_reserve(project=project, fraction=0.3)


def train_round(project, model_name: str):  # type: ignore[no-untyped-def]
    from learner import services
    from learner.models import LearnerSettings, Round
    from learner.worker import Worker

    LearnerSettings.objects.update_or_create(project=project, defaults=dict(
        model_name=model_name, epochs=2, max_length=32, batch_size=8))
    services.round_request(project=project)
    assert Worker(name="test").run_once() is True
    done = Round.objects.filter(project=project).order_by("-number").first()
    assert done.status == Round.Status.DONE, done.traceback
    return done


@pytest.fixture
def trained_round(project, tiny_model_name, settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.DATA_DIR = tmp_path
    fill_labelled(project)
    return train_round(project, tiny_model_name)


@pytest.fixture(autouse=True)
def _one_torch_thread():  # type: ignore[no-untyped-def]
    # Two OpenMP threads on a shared 2-core machine spin-wait on each other (see
    # tests/learner/ml/conftest.py); one thread is faster here.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _fresh_model_cache():  # type: ignore[no-untyped-def]
    from learner import inference

    inference.models.clear()
    yield
    inference.models.clear()
