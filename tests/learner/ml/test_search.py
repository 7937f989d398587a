"""The final model's hyperparameter search: reproducible trials, cross-validation on the
labels it is given, pruning, the time budget, and an ordinary classifier at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learner.ml.artifact import data_fingerprint
from learner.ml.config import TrainConfig
from learner.ml.search import (
    Dimension,
    HyperparameterSearch,
    SearchConfig,
    SearchSpace,
    Trial,
    search_rung,
)
from learner.ml.train import TextClassifier

LABELS = ["positive", "negative", "neutral"]
Toy = tuple[list[str], list[int]]


@pytest.fixture
def tiny_config(tiny_model_dir: Path) -> TrainConfig:
    return TrainConfig(
        model_name_or_path=str(tiny_model_dir), max_length=16, batch_size=8,
        learning_rate=1e-3, head_learning_rate=1e-3, device="cpu",
    )


def tiny_space() -> SearchSpace:
    return SearchSpace((Dimension("learning_rate", 3e-4, 3e-3, log=True),
                        Dimension("epochs", 1, 2, integer=True),
                        Dimension("max_length", choices=(8, 16))))


def test_trials_are_drawn_reproducibly_from_the_seed(tiny_config: TrainConfig) -> None:
    space = SearchSpace.for_rung("full", tiny_config)

    def draw(seed: int) -> list[dict]:
        return HyperparameterSearch(tiny_config, LABELS, rung="full", space=space,
                                    search=SearchConfig(trials=8, seed=seed)).draw(60)

    first, again, other = draw(0), draw(0), draw(1)
    assert first == again
    assert first[1:] != other[1:]
    # The ladder's default comes first, its epochs planned for the label count.
    assert first[0]["learning_rate"] == tiny_config.learning_rate
    assert first[0]["epochs"] >= 2
    for params in first[1:]:
        assert tiny_config.learning_rate / 5 <= params["learning_rate"] <= (
            tiny_config.learning_rate * 5)
        assert 2 <= params["epochs"] <= 8 and isinstance(params["epochs"], int)
        assert 0.7 <= params["layer_lr_decay"] <= 1.0
        assert params["max_length"] in (8, 16, 32)


def test_lora_searches_its_own_learning_rate_without_layer_decay(
    tiny_config: TrainConfig,
) -> None:
    names = [d.name for d in SearchSpace.for_rung("lora", tiny_config).dimensions]
    assert "lora_learning_rate" in names
    assert "learning_rate" not in names and "layer_lr_decay" not in names


def test_a_round_that_kept_the_head_searches_its_fine_tuning_rung() -> None:
    assert search_rung("full", ("full",)) == "full"
    assert search_rung("lora", ("lora", "full")) == "lora"
    assert search_rung("head", ("lora", "full")) == "full"


def test_search_records_every_trial_and_fits_the_best(
    tiny_config: TrainConfig, toy_texts: Toy, tmp_path: Path
) -> None:
    texts, labels = toy_texts
    doc_ids = list(range(100, 100 + len(texts)))
    steps: list[str] = []
    search = HyperparameterSearch(
        tiny_config, LABELS, rung="full", space=tiny_space(),
        search=SearchConfig(trials=3, folds=2, budget_seconds=None, prune_margin=1.0),
    ).fit(texts, labels, doc_ids=doc_ids,
          progress=lambda phase, step, total: steps.append(phase))

    assert len(search.trials_) == 3
    for trial in search.trials_:
        assert not trial.pruned  # a margin of 1.0 prunes nothing
        assert len(trial.fold_scores) == 2
        assert trial.mean == pytest.approx(np.mean(trial.fold_scores))
        assert trial.seconds > 0
    assert search.best_.mean == max(t.mean for t in search.trials_ if t.mean is not None)
    assert search.trials_[0].default and not search.trials_[1].default
    # The final model is the best configuration, the rung forced, trained on every label.
    assert search.config_.mode == "full"
    for name, value in search.best_.params.items():
        assert getattr(search.config_, name) == value
    clf = search.classifier_
    assert clf.rung_ == "full"
    assert clf.metrics_["n_train"] == len(texts)
    assert clf.metrics_["calibration"]["on"] == "out-of-fold"
    assert clf.data_fingerprint_ == data_fingerprint(
        doc_ids, [[LABELS[y]] for y in labels])
    assert {p for p in steps if p.startswith("trial")} >= {"trial 1/3, fold 1/2",
                                                           "trial 3/3, fold 2/2"}
    assert "final fit" in steps
    report = clf.metrics_["search"]
    assert report["trials_run"] == 3 and report["stopped"] == "all trials ran"
    assert [t["number"] for t in report["trials"]] == [0, 1, 2]
    assert report["best"] == search.best_.number
    assert [d["name"] for d in report["space"]] == ["learning_rate", "epochs", "max_length"]

    # An ordinary classifier: it saves with the search record and loads back the same.
    probs = clf.predict_proba(texts[:5])
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    loaded = TextClassifier.load(clf.save(tmp_path / "final"))
    assert loaded.metrics_["search"]["best"] == search.best_.number
    assert loaded.config.max_length == search.best_.params["max_length"]
    np.testing.assert_allclose(loaded.predict_proba(texts[:5]), probs, atol=1e-5)


def test_a_trial_trailing_the_best_after_a_fold_is_pruned(
    tiny_config: TrainConfig, toy_texts: Toy
) -> None:
    texts, labels = toy_texts
    # Trial 0 is the default; trial 1 trains every weight at a rate of 10, which wrecks
    # the encoder and the head it starts from.
    space = SearchSpace((Dimension("learning_rate", choices=(10.0,)),
                         Dimension("epochs", choices=(2,))))
    search = HyperparameterSearch(
        tiny_config, LABELS, rung="full", space=space,
        search=SearchConfig(trials=2, folds=3, budget_seconds=None, prune_margin=0.0),
    ).fit(texts, labels)
    good, bad = search.trials_
    assert good.mean is not None and not good.pruned and len(good.fold_scores) == 3
    assert bad.pruned and bad.mean is None
    assert len(bad.fold_scores) < 3
    assert bad.fold_scores[0] < good.fold_scores[0]
    assert search.best_ is good
    assert search.report_["trials_pruned"] == 1


def test_pruning_allows_for_the_noise_of_the_folds_seen() -> None:
    search = HyperparameterSearch(TrainConfig(), LABELS, rung="full",
                                  search=SearchConfig(prune_margin=0.01))
    best = Trial(0, {}, fold_scores=[0.80, 0.80, 0.80], mean=0.80)
    # Five points below the best: beyond one standard error of 400 validation labels
    # (0.02), within one of 40 (0.063).
    trailing = Trial(1, {}, fold_scores=[0.75])
    assert search._prune(trailing, best, seen=400)
    assert not search._prune(trailing, best, seen=40)
    assert not search._prune(Trial(2, {}, fold_scores=[0.79]), best, seen=400)
    assert not search._prune(trailing, None, seen=400)


def test_the_time_budget_stops_starting_trials(tiny_config: TrainConfig, toy_texts: Toy
                                               ) -> None:
    texts, labels = toy_texts
    search = HyperparameterSearch(
        tiny_config, LABELS, rung="full", space=tiny_space(),
        search=SearchConfig(trials=4, folds=2, budget_seconds=0.0),
    ).fit(texts, labels)
    # The first trial always runs (a final model needs one); none starts after the budget.
    assert len(search.trials_) == 1
    assert search.report_["trials_run"] == 1
    assert "budget" in search.report_["stopped"]
    assert search.classifier_.predict(texts[:3]).shape == (3,)


def test_search_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        SearchConfig(trials=0)
    with pytest.raises(ValueError):
        SearchConfig(folds=1)
    with pytest.raises(ValueError):
        Dimension("not_a_field", 0, 1)
    with pytest.raises(ValueError):
        Dimension("learning_rate", 0.0, 1.0, log=True)


def test_a_multi_label_search_scores_micro_f1_and_tunes_thresholds(
    tiny_config: TrainConfig, toy_texts: Toy
) -> None:
    texts, labels = toy_texts
    Y = np.eye(3, dtype=np.int64)[labels]
    Y[::4, 1] = 1  # every 4th text carries a second label
    config = TrainConfig(**{**tiny_config.to_dict(), "task_type": "multi_label",
                            "ladder": ("full",)})
    search = HyperparameterSearch(
        config, LABELS, rung="full", space=tiny_space(),
        search=SearchConfig(trials=2, folds=2, budget_seconds=None),
    ).fit(texts, Y)
    clf = search.classifier_
    assert clf.thresholds_ is not None and clf.thresholds_.shape == (3,)
    predicted = clf.predict(texts[:6])
    assert predicted.shape == (6, 3) and set(np.unique(predicted)) <= {0, 1}
    assert all(0.0 <= s <= 1.0 for t in search.trials_ for s in t.fold_scores)
