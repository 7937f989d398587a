"""The base models a project may train from: the shipped all-MiniLM-L6-v2 (a blank name) or
a folder the operator put under LABELWISE_MODELS_DIR, chosen by its name.

Never a path a lead types: artifact folders are predictable
(<data dir>/artifacts/project-<id>/round-<n>), so a free path would let one project load
another's fine-tuned weights, and a loader's error would tell whether a path exists. The
name is checked where the lead picks it (the settings form) and again where a round reads
it (learner.services.train_config_of, learner.adaptation.run_adaptation); what is refused
is refused with one message that names no path.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

DEFAULT_LABEL = "all-MiniLM-L6-v2 (shipped default)"
# A folder name, never a path: no separators, no leading dot (so neither "." nor "..").
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
UNAVAILABLE = ("The project's base model is not one this server offers. A lead picks one "
               "on the learner settings page (blank: the shipped all-MiniLM-L6-v2).")


class BaseModelUnavailable(ValidationError):
    """The learner settings name a base model that is not on offer (any more)."""

    def __init__(self) -> None:
        super().__init__({"model_name": [UNAVAILABLE]})


def models_dir() -> Path:
    return Path(settings.LABELWISE_MODELS_DIR)


def base_model_names() -> list[str]:
    """The folders under LABELWISE_MODELS_DIR that hold a model (a config.json), sorted."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(
        entry.name for entry in root.iterdir()
        if NAME.match(entry.name) and (entry / "config.json").is_file()
    )


def base_model_choices() -> list[tuple[str, str]]:
    """The settings form's choices: the default first, then every offered folder."""
    return [("", DEFAULT_LABEL), *((name, name) for name in base_model_names())]


def base_model_folder(name: str) -> str | None:
    """The folder a round loads for the settings' `name`: None for the shipped default;
    BaseModelUnavailable for anything that is not an offered folder's name."""
    if not name:
        return None
    if not NAME.match(name) or name not in base_model_names():
        raise BaseModelUnavailable()
    return str(models_dir() / name)


def validate_base_model_name(value: str) -> None:
    """The model field's own check (the admin): a folder name, never a path."""
    if value and not NAME.match(value):
        raise ValidationError("Give the name of a folder under the models directory, not a "
                              "path.", code="invalid")
