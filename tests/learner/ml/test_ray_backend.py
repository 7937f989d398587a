"""The Ray backend gives the local backend's results: the same probabilities, embeddings
and selected batch for the same artifact, and a data-parallel fit that saves and loads."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")

from learner.ml.backends import get_backend  # noqa: E402
from learner.ml.backends.local import LocalBackend  # noqa: E402
from learner.ml.backends.ray import RayBackend  # noqa: E402
from learner.ml.config import ScoreConfig, TrainConfig  # noqa: E402
from learner.ml.strategies import get_strategy  # noqa: E402
from learner.ml.train import TextClassifier  # noqa: E402

# Ray Data's context warns about its own deprecated options when Ray Train imports it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local 2-CPU cluster for this module, its temp dir under /tmp, shut down after."""
    # Ray's session folder path must stay short (a Unix socket lives in it).
    temp = tempfile.mkdtemp(prefix="lw-ray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False,
             configure_logging=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def artifact(tiny_model_dir: Path, toy_texts: Any, tmp_path_factory: pytest.TempPathFactory
             ) -> Path:
    texts, labels = toy_texts
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), mode="head", max_length=32,
                         seed=3)
    clf = TextClassifier(config, ["pos", "neg", "neutral"]).fit(texts, labels)
    return clf.save(tmp_path_factory.mktemp("artifact"))


def chunks_of(texts: list[str], size: int) -> Iterator[tuple[list[int], list[str]]]:
    for start in range(0, len(texts), size):
        yield list(range(start, start + size))[: len(texts[start:start + size])], \
            texts[start:start + size]


def test_get_backend_reads_learner_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEARNER_BACKEND", raising=False)
    assert isinstance(get_backend(), LocalBackend)
    monkeypatch.setenv("LEARNER_BACKEND", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "ray-head:6379")
    monkeypatch.setenv("LABELWISE_RAY_TRAIN_WORKERS", "2")
    backend = get_backend(ScoreConfig(batch_size=8))
    assert isinstance(backend, RayBackend)
    assert backend.address == "ray-head:6379" and backend.num_workers == 2
    assert backend.score_config.batch_size == 8
    monkeypatch.setenv("LEARNER_BACKEND", "spark")
    with pytest.raises(ValueError, match="spark"):
        get_backend()


def test_ray_scores_and_selection_equal_the_local_backend(
    ray_cluster: None, artifact: Path, toy_texts: Any
) -> None:
    texts = list(toy_texts[0]) * 3  # 180 texts in 12 chunks: several per actor
    clf = TextClassifier.load(artifact)
    config = ScoreConfig(batch_size=16, chunk_size=15)
    local = list(LocalBackend(config).score_chunks(clf, chunks_of(texts, 15)))
    seen: list[tuple[int, int]] = []
    remote = list(RayBackend(config).score_chunks(
        clf, chunks_of(texts, 15), progress=lambda phase, done, total: seen.append((done, total)),
        total=len(texts),
    ))

    assert [list(ids) for ids, _, _ in remote] == [list(ids) for ids, _, _ in local]
    probs_l, probs_r = (np.concatenate([p for _, p, _ in out]) for out in (local, remote))
    emb_l, emb_r = (np.concatenate([e for _, _, e in out]) for out in (local, remote))
    assert probs_r.shape == (180, 3) and emb_r.shape == (180, 32)
    np.testing.assert_allclose(probs_r, probs_l, rtol=0, atol=1e-6)
    np.testing.assert_allclose(emb_r, emb_l, rtol=0, atol=1e-5)
    assert seen[-1] == (180, 180)

    ids = list(range(len(texts)))
    margin = get_strategy("margin")
    picked_l = margin.select(ids, 10, probs=probs_l, embeddings=emb_l, seed=5)
    picked_r = margin.select(ids, 10, probs=probs_r, embeddings=emb_r, seed=5)
    assert picked_r.ids == picked_l.ids
    np.testing.assert_allclose(picked_r.scores, picked_l.scores, rtol=0, atol=1e-6)


def test_ray_scoring_of_an_empty_pool_yields_nothing(ray_cluster: None, artifact: Path) -> None:
    clf = TextClassifier.load(artifact)
    assert list(RayBackend().score_chunks(clf, iter([]))) == []


@pytest.mark.slow  # 25-30 s on 2 busy cores: two Ray Train workers each import torch
def test_torch_trainer_fits_on_two_workers_and_saves_a_loadable_artifact(
    ray_cluster: None, tiny_model_dir: Path, toy_texts: Any, tmp_path: Path
) -> None:
    texts, labels = toy_texts
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), mode="full", max_length=32,
                         epochs=4, early_stopping_patience=1, batch_size=16,
                         learning_rate=3e-3, head_learning_rate=3e-3,
                         # The validation split's early stopping, then the refit on
                         # every label, both through Ray Train (not the folds).
                         crossfit_max_labels=0)
    backend = RayBackend(num_workers=2, storage_path=str(tmp_path / "ray-results"))
    clf = backend.train(config, ["pos", "neg", "neutral"], texts, labels)
    assert clf.metrics_["device"] == "ray x2"
    assert clf.metrics_["ladder"]["refit"]["n"] == len(texts)
    # The same stable hash split as a local fit: every text is in exactly one part.
    assert clf.metrics_["n_validation"] > 0
    assert clf.metrics_["n_train"] + clf.metrics_["n_validation"] == len(texts)
    # Early stopping: the run ends at the first epoch that is `patience` epochs past the
    # best (macro-F1, then loss), or after all epochs; the best epoch's weights come back.
    history = clf.metrics_["history"]
    keys = [(h["val_score"], -h["val_loss"]) for h in history]
    best_at = max(range(len(keys)), key=lambda i: (keys[i], -i))
    stopped_early = len(history) < config.epochs
    assert not stopped_early or len(history) - 1 - best_at == config.early_stopping_patience
    assert all(keys[i] <= keys[best_at] for i in range(len(keys)))
    assert clf.metrics_["validation"]["macro_f1"] == pytest.approx(keys[best_at][0], abs=1e-6)

    saved = clf.save(tmp_path / "artifact")
    loaded = TextClassifier.load(saved)
    probs = loaded.predict_proba(texts[:5])
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs, clf.predict_proba(texts[:5]), atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert os.path.exists(saved / "labelwise.json")
