"""The learner settings and TrainConfig agree: the settings' training defaults are
TrainConfig's, the form offers the ranges of learner.ml.config.BOUNDS, and a value a round
would fail on is refused by the form instead."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from django.urls import reverse

from learner import services
from learner.ml.config import BOUNDS, MODES, TrainConfig
from learner.models import LearnerSettings
from learner.views import LearnerSettingsForm

# LearnerSettings fields that train_config_of copies into the TrainConfig field of that name.
TRAINING_FIELDS = ("mode", "max_length", "epochs", "learning_rate", "batch_size", "seed",
                   "warm_start")
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig)}


@pytest.mark.parametrize("name", TRAINING_FIELDS)
def test_a_settings_default_is_train_configs_default(name: str) -> None:
    assert LearnerSettings._meta.get_field(name).get_default() == DEFAULTS[name]


def test_the_settings_offer_every_training_mode() -> None:
    assert sorted(LearnerSettings.Mode.values) == sorted(MODES)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_the_form_offers_the_bounds_and_train_config_accepts_their_ends(name: str) -> None:
    field = LearnerSettingsForm.base_fields[name]
    low, high = BOUNDS[name].offered
    assert (field.min_value, field.max_value) == (low, high)  # type: ignore[attr-defined]
    assert TrainConfig(**{name: low}) and TrainConfig(**{name: high})
    if DEFAULTS[name] is not None:
        assert low <= DEFAULTS[name] <= high


def test_a_new_projects_settings_train_with_the_default_config(project) -> None:  # type: ignore[no-untyped-def]
    settings = services.learner_settings_for(project)
    assert services.train_config_of(settings, task_type="single_label") == TrainConfig()


@pytest.mark.parametrize(("name", "value"), [
    ("max_length", 4), ("epochs", 0), ("learning_rate", -1e-3), ("batch_size", 0),
])
def test_a_value_train_config_refuses_is_refused_by_the_form(
    client, project, lead, name: str, value: float
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=name):
        TrainConfig(**{name: value})
    client.force_login(lead)
    data = {
        "model_name": "", "mode": "head", "strategy": "entropy", "random_share": "0.1",
        "max_length": "64", "epochs": "2", "learning_rate": "3e-5", "batch_size": "8",
        "train_every_labels": "20", "train_every_minutes": "0", "suggestion_threshold": "0.6",
        name: str(value),
    }
    response = client.post(reverse("learner:settings", kwargs={"pk": project.pk}), data)
    assert response.status_code == 200
    low = BOUNDS[name].offered[0]
    assert f"Ensure this value is greater than or equal to {low}." in response.content.decode()
    # Nothing saved, so the next round still trains.
    assert getattr(services.learner_settings_for(project), name) == DEFAULTS[name]
    round = services.round_request(project=project)
    assert round.config["train"][name] == DEFAULTS[name]
