from tests.learner.ml.conftest import tiny_model_dir  # noqa: F401 - shared fixture
