import pytest

from tests.learner.ml import conftest as ml_conftest

# The tiny random BERT of the ML tests, shared (a session fixture, built once).
tiny_model_dir = ml_conftest.tiny_model_dir


@pytest.fixture
def tiny_model_name(tiny_model_dir, settings) -> str:  # type: ignore[no-untyped-def]
    """The tiny BERT as a lead picks it: by name, from the models directory it sits in
    (learner.base_models: rounds never load a path from the settings)."""
    settings.LABELWISE_MODELS_DIR = tiny_model_dir.parent
    return tiny_model_dir.name
