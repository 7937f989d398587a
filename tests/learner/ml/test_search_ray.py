"""The final model's search on Ray Tune (LEARNER_BACKEND=ray): the same space and
objective as the local search, its trials on a local cluster, the ASHA scheduler pruning
by fold, and an ordinary fitted classifier at the end."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")

from learner.ml.config import TrainConfig  # noqa: E402
from learner.ml.search import (  # noqa: E402
    Dimension,
    HyperparameterSearch,
    SearchConfig,
    SearchSpace,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
LABELS = ["positive", "negative", "neutral"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    temp = tempfile.mkdtemp(prefix="lw-tune-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False,
             configure_logging=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow  # about 75 s on 2 busy cores: Ray starts a worker per trial, each imports torch
def test_ray_tune_runs_the_trials_and_the_best_is_fitted(
    ray_cluster: None, tiny_model_dir: Path, toy_texts: tuple[list[str], list[int]]
) -> None:
    texts, labels = toy_texts
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), max_length=16, batch_size=8,
                         learning_rate=1e-3, head_learning_rate=1e-3, device="cpu")
    space = SearchSpace((Dimension("learning_rate", 3e-4, 3e-3, log=True),
                         Dimension("epochs", choices=(1,))))
    phases: list[str] = []
    search = HyperparameterSearch(
        config, LABELS, rung="full", space=space, backend="ray",
        search=SearchConfig(trials=2, folds=2, budget_seconds=None),
    ).fit(texts, labels, progress=lambda phase, step, total: phases.append(phase))
    assert len(search.trials_) == 2
    assert sum(t.default for t in search.trials_) == 1
    finished = [t for t in search.trials_ if t.mean is not None]
    assert finished and all(len(t.fold_scores) == 2 for t in finished)
    assert search.best_ in finished
    assert search.report_["backend"] == "ray"
    assert any(p.startswith("trial") for p in phases) and "final fit" in phases
    assert search.classifier_.predict_proba(texts[:4]).shape == (4, 3)
    assert search.config_.learning_rate == search.best_.params["learning_rate"]
