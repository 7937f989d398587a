"""Shared fixtures: a project with a lead, an annotator and a viewer, and a stranger who
belongs to no project (every project endpoint is tested against the stranger)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing here may reach a model hub: a hidden download would hang or fail offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"


def shared_datasets_dir() -> Path:
    """The real labelled datasets (benchmarks and slow tests only)."""
    return Path(os.environ.get("LABELWISE_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


def make_user(django_user_model, username: str):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(username=username, password=PASSWORD)


@pytest.fixture
def lead(db, django_user_model):  # type: ignore[no-untyped-def]
    return make_user(django_user_model, "lead")


@pytest.fixture
def annotator(db, django_user_model):  # type: ignore[no-untyped-def]
    return make_user(django_user_model, "annotator")


@pytest.fixture
def viewer(db, django_user_model):  # type: ignore[no-untyped-def]
    return make_user(django_user_model, "viewer")


@pytest.fixture
def stranger(db, django_user_model):  # type: ignore[no-untyped-def]
    return make_user(django_user_model, "stranger")


@pytest.fixture
def project(lead, annotator, viewer):  # type: ignore[no-untyped-def]
    from annotate import services
    from annotate.models import Membership

    project = services.project_create(
        name="News topics",
        created_by=lead,
        labels=["business", "sport", "tech"],
        guidelines="# Topics\n\nPick the **main** topic of the article.",
    )
    services.membership_set(project=project, username="annotator", role=Membership.Role.ANNOTATOR)
    services.membership_set(project=project, username="viewer", role=Membership.Role.VIEWER)
    return project


@pytest.fixture
def documents(project):  # type: ignore[no-untyped-def]
    """Twelve unlabelled documents in the project."""
    import random

    from annotate.models import Document, text_hash

    rng = random.Random(0)
    texts = [f"Document number {i} about markets, matches or machines." for i in range(12)]
    return Document.objects.bulk_create(
        Document(project=project, text=t, text_hash=text_hash(t), rand=rng.random()) for t in texts
    )


def hand_out(user, document) -> None:  # type: ignore[no-untyped-def]
    """Hands `document` to `user` as the queue does (a reservation holding one of its
    slots), for tests that answer a chosen document rather than the queue's next one:
    annotation_submit takes only documents handed to the user. A document the user was
    already handed keeps that hand-out."""
    from datetime import timedelta

    from django.db.models import F
    from django.utils import timezone

    from annotate.models import Assignment, Document

    if Assignment.objects.filter(document=document, user=user).exists():
        return
    Assignment.objects.create(document=document, project_id=document.project_id, user=user,
                              expires_at=timezone.now() + timedelta(hours=1))
    Document.objects.filter(pk=document.pk).update(slots_taken=F("slots_taken") + 1)


def subprocess_env() -> dict[str, str]:
    """Environment for a child process (a worker, a server) that must use this test's
    database: the test database's name replaces the configured one."""
    from django.db import connection

    env = dict(os.environ)
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{name}"
    else:
        env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return env


def client_for(client, user):  # type: ignore[no-untyped-def]
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):  # type: ignore[no-untyped-def]
    # PBKDF2's deliberate slowness costs ~0.3 s per user on these cores; tests need no
    # protection against offline cracking.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache():  # type: ignore[no-untyped-def]
    # Project counts and the expiry throttle live in the cache; no test may see another's.
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
