"""Which base model a project trains from: the shipped default or a folder the operator put
under LABELWISE_MODELS_DIR, never a path a lead types (another project's fine-tuned
artifact, say). Refused names are refused without echoing any server path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from learner import services
from learner.models import LearnerSettings, Round


def model_folder(root: Path, name: str, *, config: bool = True) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if config:
        (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return folder


@pytest.fixture
def models_dir(settings, tmp_path):  # type: ignore[no-untyped-def]
    root = tmp_path / "models"
    root.mkdir()
    settings.LABELWISE_MODELS_DIR = root
    settings.LABELWISE_ARTIFACT_DIR = tmp_path / "artifacts"
    model_folder(root, "bert-base-legal")
    model_folder(root, "minilm-news")
    model_folder(root, "half-copied", config=False)  # not a model: no config.json
    return root


def settings_url(project) -> str:  # type: ignore[no-untyped-def]
    return reverse("learner:settings", kwargs={"pk": project.pk})


def form_data(**overrides: str) -> dict[str, str]:
    return {
        "model_name": "", "mode": "auto", "strategy": "entropy", "random_share": "0.1",
        "max_length": "64", "epochs": "", "learning_rate": "5e-5", "batch_size": "8",
        "train_every_labels": "0", "train_every_minutes": "0", "suggestion_threshold": "0.6",
        **overrides,
    }


def test_settings_form_offers_the_default_and_the_model_folders_only(
    client, project, lead, models_dir
):
    client.force_login(lead)
    html = client.get(settings_url(project)).content.decode()
    assert '<select name="model_name"' in html
    assert 'value="bert-base-legal"' in html and 'value="minilm-news"' in html
    assert 'value=""' in html and "all-MiniLM-L6-v2" in html
    assert "half-copied" not in html
    assert str(models_dir) not in html  # the page never shows where the models live


def test_lead_picks_a_model_folder_by_name(client, project, lead, models_dir):
    client.force_login(lead)
    response = client.post(settings_url(project), form_data(model_name="minilm-news"))
    assert response.status_code == 302
    assert LearnerSettings.objects.get(project=project).model_name == "minilm-news"
    round = services.round_request(project=project)
    assert round.config["train"]["model_name_or_path"] == str(models_dir / "minilm-news")


@pytest.mark.parametrize("value", [
    "/etc",
    "/srv/labelwise/var/artifacts/project-2/round-1",
    "../artifacts/project-2/round-1",
    "minilm-news/../../artifacts/project-2/round-1",
    "..",
    "half-copied",
    "no-such-model",
    "sentence-transformers/all-MiniLM-L6-v2",  # a hub id: nothing is downloaded either
])
def test_settings_form_refuses_anything_but_an_offered_name(
    client, project, lead, models_dir, value
):
    client.force_login(lead)
    response = client.post(settings_url(project), form_data(model_name=value))
    assert response.status_code == 200
    assert response.context["form"].errors["model_name"]
    assert not LearnerSettings.objects.filter(project=project).exclude(model_name="").exists()
    assert str(models_dir) not in response.content.decode()


def test_a_round_refuses_a_stored_path_and_never_echoes_it(
    client, project, lead, models_dir, tmp_path
):
    """A value that reached the row some other way (the admin, an old version) is resolved
    again when the round is requested: refused, with a message naming no path."""
    other = model_folder(tmp_path / "artifacts" / "project-999", "round-1")
    LearnerSettings.objects.create(project=project, model_name=str(other))
    with pytest.raises(ValidationError) as refused:
        services.round_request(project=project)
    assert str(other) not in " ".join(refused.value.messages)
    assert "round-1" not in " ".join(refused.value.messages)

    client.force_login(lead)
    response = client.post(reverse("learner:train", kwargs={"pk": project.pk}), follow=True)
    html = response.content.decode()
    assert response.status_code == 200 and "base model" in html.lower()
    assert str(other) not in html and str(tmp_path) not in html
    assert not Round.objects.filter(project=project).exists()


def test_the_api_refuses_a_round_from_a_stored_path_with_a_400(
    project, lead, models_dir, tmp_path
):
    from rest_framework.test import APIClient

    secret = tmp_path / "artifacts" / "project-999" / "round-3"
    LearnerSettings.objects.create(project=project, model_name=str(secret))
    api = APIClient()
    api.force_authenticate(lead)
    response = api.post(f"/api/projects/{project.pk}/rounds/")
    assert response.status_code == 400
    assert str(secret) not in response.content.decode()
    assert not Round.objects.filter(project=project).exists()


def test_a_blank_model_name_is_the_shipped_default(project, models_dir):
    LearnerSettings.objects.create(project=project, model_name="")
    round = services.round_request(project=project)
    assert round.config["train"]["model_name_or_path"] is None


def test_the_models_dir_defaults_to_models_under_the_data_dir():
    from django.conf import settings

    if os.environ.get("LABELWISE_MODELS_DIR"):
        pytest.skip("LABELWISE_MODELS_DIR is set in this environment")

    assert Path(settings.LABELWISE_MODELS_DIR) == Path(settings.DATA_DIR) / "models"
